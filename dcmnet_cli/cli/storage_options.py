"""What ``listen``, ``move --store-port`` and ``get`` share to receive objects: the storage option stack,
the Storage SCP built from the options, and one log line per listener event.

pydicom is imported only when :func:`build_storage` runs with a --filepath template, never at import time.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from .app import App, escape
from .options import stack

STORE_EVENTS = ("stored", "received", "store-failed")
"""Listener events that report one received object."""

NOTABLE_EVENTS = ("association", "rejected", "error", "internal-error", "protocol-error", "store-failed",
                  "hook-error", "tls-error")
"""Listener events logged without -v (the others are detail)."""

storage_options = stack(
    click.option("-od", "--output-directory", type=click.Path(file_okay=False), default=None,
                 help="Write received objects below this folder (created if missing) [default: current folder]."),
    click.option("--filepath", default=None, metavar="TEMPLATE",
                 help="Path of each received file below -od, from element keywords, e.g. "
                      "'{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm' [default: {SOPInstanceUID}.dcm]."),
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
        return (f"{peer} {escape(event.calling_ae)} -> {escape(event.called_ae)}: {event.outcome}, "
                f"{event.echoes} echo(es), {event.stored} stored, {event.failed} failed, "
                f"{event.bytes} bytes in {event.duration_ms:.1f} ms")
    if kind == "associated":
        return f"{peer} {escape(event.calling_ae)} -> {escape(event.called_ae)}: associated ({event.contexts} contexts)"
    if kind == "rejected":
        return f"{peer} rejected: {getattr(event, 'reason_text', None) or event.reason}"
    if kind in STORE_EVENTS:
        where = event.path or "(discarded)"
        extra = f" ({event.duplicate})" if event.duplicate else ""
        why = f": {escape(event.detail)}" if event.detail else ""
        return (f"{peer} {kind} {escape(event.sop_instance_uid or '?')} {event.status} "
                f"{escape(where)}{extra}, {event.bytes} bytes{why}")
    detail = getattr(event, "detail", None) or getattr(event, "reason", "")
    return f"{peer} {kind}: {escape(str(detail))}"


def build_storage(app: App, output_directory: str | None, filepath: str | None, on_duplicate: str, ignore: bool,
                  accept: tuple[str, ...], promiscuous: bool, no_fsync: bool, exec_on_receive: str | None,
                  exec_on_association_end: str | None, exec_timeout: float,
                  on_event: Callable[[Any], None]) -> tuple[Any, Any]:
    """The Storage SCP and the negotiation callable; (None, None) when the output folder is unusable
    (reported). Bad --accept, --filepath or --exec-* values are usage errors."""
    from ..part10 import sopclasses
    from ..part10.filenames import TemplateError, parse_template
    from ..services.scp.entity import ALL_UNCOMPRESSED
    from ..services.scp.hooks import HookRunner, split_command
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
    try:
        on_receive = split_command(exec_on_receive) if exec_on_receive else None
        on_end = split_command(exec_on_association_end) if exec_on_association_end else None
    except ValueError as error:
        raise click.BadParameter(f"cannot split the command: {error}", param_hint="--exec-*") from None
    config = StorageConfig(None if ignore else output_directory, template, on_duplicate, not no_fsync, ignore,
                           on_receive, on_end)
    storage = StorageSCP(config, on_event, HookRunner(8, exec_timeout, on_event))
    try:
        removed = storage.prepare()
    except OSError as error:
        app.error(f"cannot use output folder {output_directory}: {error.strerror or error}")
        return None, None
    if removed:
        app.info(f"removed {removed} leftover temporary file(s) from {storage.root}")
    return storage, sopclasses.storage_contexts(syntaxes, promiscuous, ALL_UNCOMPRESSED)
