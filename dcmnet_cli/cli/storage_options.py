"""What ``listen``, ``move --store-port`` and ``get`` share to receive objects: the storage option stack,
the Storage SCP built from the options, and one log line per listener event.

pydicom is imported only when :func:`build_storage` runs with a --filepath template, never at import time.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import click

from .app import App, escape
from .options import stack

STORE_EVENTS = ("stored", "received", "store-failed")
"""Listener events that report one received object."""

NOTABLE_EVENTS = ("association", "rejected", "error", "internal-error", "protocol-error", "store-failed",
                  "hook-error", "tls-error", "dropped", "worklist-skipped",
                  "index-error")
"""Listener events logged without -v (the others are detail)."""

storage_options = stack(
    click.option("-od", "--output-directory", type=click.Path(file_okay=False), default=None,
                 help="Write received objects below this folder (created if missing) [default: current folder]."),
    click.option("--filepath", default=None, metavar="TEMPLATE",
                 help="Path of each received file below -od, from element keywords, e.g. "
                      "'{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm' [default: {SOPInstanceUID}.dcm]. Unsafe "
                      "values are hashed; File Meta (0002) elements inside a data set are not stored."),
    click.option("--on-duplicate", type=click.Choice(["replace", "keep", "rename"]), default="replace",
                 show_default=True, help="An instance whose file exists: replace it atomically, keep it, or store as NAME_1.dcm."),
    click.option("--no-fsync", is_flag=True, help="Do not fsync received files before answering (faster, less safe)."),
)
"""Where ``move --store-port`` and ``get`` write: the command receives ``output_directory``, ``filepath``,
``on_duplicate`` and ``no_fsync``."""


def log_line(event: Any) -> str:
    """One stderr line for a listener event record (services/scp/events.py; peer text escaped)."""
    kind = event.event
    peer = getattr(event, "peer", "?")
    if kind == "association":
        echoes = f"{event.echoes} echo{'' if event.echoes == 1 else 'es'}"
        queries, retrievals = getattr(event, "queries", 0), getattr(event, "retrievals", 0)
        served = (f"{queries} quer{'y' if queries == 1 else 'ies'}, " if queries else "") + \
            (f"{retrievals} retrieval{'' if retrievals == 1 else 's'}, " if retrievals else "")
        return (f"{peer} {escape(event.calling_ae)} -> {escape(event.called_ae)}: {event.outcome}, "
                f"{served}{echoes}, {event.stored} stored, {event.failed} failed, "
                f"{human_size(event.bytes)} in {event.duration_ms:.1f} ms")
    if kind == "associated":
        contexts = f"{event.contexts} context{'' if event.contexts == 1 else 's'}"
        user = f" as user {escape(event.user)}" if getattr(event, "user", None) else ""
        return f"{peer} {escape(event.calling_ae)} -> {escape(event.called_ae)}: associated ({contexts}){user}"
    if kind == "rejected":
        return f"{peer} rejected: {getattr(event, 'reason_text', None) or event.reason}"
    if kind in STORE_EVENTS:
        where = event.path or "(discarded)"
        extra = f" ({event.duplicate})" if event.duplicate else ""
        why = f": {escape(event.detail)}" if event.detail else ""
        return (f"{peer} {kind} {escape(event.sop_instance_uid or '?')} {event.status} "
                f"{escape(where)}{extra}, {human_size(event.bytes)}{why}")
    detail = getattr(event, "detail", None) or getattr(event, "reason", "")
    return f"{peer} {kind}: {escape(str(detail))}"


def human_size(count: int) -> str:
    """``512 bytes``, ``1 byte``, ``12.3 kB``, ``12.3 MB``, ``1.2 GB`` (decimal units, like ``ls -h --si``)."""
    if count < 1000:
        return f"{count} byte{'' if count == 1 else 's'}"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    return f"{count} bytes"  # not reached


def check_output_folder(path: str) -> str:
    """The absolute path of an output folder that exists or can be created, and is writable (a probe
    temporary file is created and removed); InputError (exit 3) naming the path and the reason otherwise.
    Call it before any association, so nothing is received that could not be stored."""
    import tempfile

    from ..errors import InputError

    folder = os.path.abspath(path)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".dcmnet-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"cannot write into output folder {folder}: {error.strerror or error}") from None
    return folder


def bind_hint(error: OSError, port: int) -> str:
    """What to do about a failed bind, in words (empty when there is nothing to add)."""
    import errno

    if error.errno == errno.EACCES and 0 < port < 1024:
        return f" (ports below 1024 need root or CAP_NET_BIND_SERVICE: use a port above 1023, e.g. {port + 11000})"
    if error.errno == errno.EADDRINUSE:
        holder = _port_holder(port)
        return f" (held by {holder}; stop it or pick another port)" if holder else " (stop what holds it or pick another port)"
    return ""


def _port_holder(port: int) -> str | None:
    """``PID (name)`` of the process listening on ``port``, from /proc/net/tcp* and /proc/*/fd (Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        except (OSError, ValueError, IndexError):
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                with open(f"/proc/{pid}/comm") as comm:
                    return f"process {pid} ({comm.read().strip()})"
        except OSError:
            continue
    return None


def build_storage(app: App, output_directory: str | None, filepath: str | None, on_duplicate: str, ignore: bool,
                  accept: tuple[str, ...], promiscuous: bool, no_fsync: bool, exec_on_receive: str | None,
                  exec_on_association_end: str | None, exec_timeout: float,
                  on_event: Callable[[Any], None]) -> tuple[Any, Any]:
    """The Storage SCP and the negotiation callable; (None, None) when the output folder is unusable
    (reported). Bad --accept, --filepath or --exec-* values are usage errors."""
    from ..part10 import sopclasses
    from ..part10.filenames import TemplateError, parse_template
    from ..services.scp.entity import ALL_UNCOMPRESSED
    from ..services.scp.hooks import HookRunner
    from ..services.scp.storage import StorageConfig, StorageSCP

    try:
        syntaxes = sopclasses.narrowed(sopclasses.resolve_transfer_syntax(a) for a in accept) if accept \
            else sopclasses.all_transfer_syntaxes()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--accept") from None
    template = None
    if filepath:
        from pydicom.datadict import tag_for_keyword

        try:
            template = parse_template(filepath, lambda keyword: tag_for_keyword(keyword) is not None)
        except TemplateError as error:
            raise click.BadParameter(str(error), param_hint="--filepath") from None
    on_receive = _hook(exec_on_receive, "--exec-on-receive")
    on_end = _hook(exec_on_association_end, "--exec-on-association-end")
    if not ignore and output_directory is not None:  # only once the options are known good: a usage
        output_directory = check_output_folder(output_directory)  # error never leaves a folder behind
    config = StorageConfig(None if ignore else output_directory, template, on_duplicate, not no_fsync, ignore,
                           on_receive, on_end)
    storage = StorageSCP(config, on_event, HookRunner(8, exec_timeout, on_event))
    try:
        removed = storage.prepare()
    except OSError as error:
        app.error(f"cannot use output folder {output_directory}: {error.strerror or error}")
        return None, None
    if removed:
        app.info(f"removed {removed} leftover temporary file{'' if removed == 1 else 's'} from {storage.root}")
    return storage, sopclasses.storage_contexts(syntaxes, promiscuous, ALL_UNCOMPRESSED)


def _hook(command: str | None, option: str) -> list[str] | None:
    """An --exec-* command split once; usage error for an unsplittable one or one with DCMTK placeholders."""
    if not command:
        return None
    from ..services.scp.hooks import dcmtk_placeholders, split_command

    try:
        argv = split_command(command)
    except ValueError as error:
        raise click.BadParameter(f"cannot split the command: {error}", param_hint=option) from None
    found = dcmtk_placeholders(argv)
    if found:
        raise click.BadParameter(
            f"DCMTK placeholders ({', '.join(found)}) are not expanded by dcmnet: the hook gets the "
            f"{'stored file' if option == '--exec-on-receive' else 'output folder'} as its last argument and "
            "DCMNET_* variables instead (#p: DCMNET_DIR or dirname of DCMNET_PATH, #f: DCMNET_PATH, "
            "#a: DCMNET_REMOTE_AET, #c: DCMNET_LOCAL_AET, #r: DCMNET_PEER)", param_hint=option)
    return argv
