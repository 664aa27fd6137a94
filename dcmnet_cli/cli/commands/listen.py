"""``dcmnet listen``: a DICOM node on a port (Verification SCP; storage with -od)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from ..app import App, escape
from ..exitcodes import ExitCode
from ..options import ae_title, positive_seconds, seconds_or_unlimited, server_tls_from, server_tls_options


class _Stop(Exception):
    """Raised in the main thread by SIGTERM so the accept loop unwinds like Ctrl-C."""


def log_line(event: dict) -> str:
    kind = event.get("event")
    peer = event.get("peer", "?")
    if kind == "association":
        return (f"{peer} {escape(event['calling_ae'])} -> {escape(event['called_ae'])}: {event['outcome']}, "
                f"{event['echoes']} echo(es), {event['stored']} stored, {event['failed']} failed, "
                f"{event['bytes']} bytes in {event['duration_ms']:.1f} ms")
    if kind == "associated":
        return f"{peer} {escape(event['calling_ae'])} -> {escape(event['called_ae'])}: associated ({event['contexts']} contexts)"
    if kind == "rejected":
        return f"{peer} rejected: {event.get('reason_text') or event.get('reason')}"
    if kind in ("stored", "received", "store-failed"):
        where = event.get("path") or "(discarded)"
        extra = f" ({event['duplicate']})" if event.get("duplicate") else ""
        why = f": {escape(event['detail'])}" if event.get("detail") else ""
        return (f"{peer} {kind} {escape(event.get('sop_instance_uid') or '?')} {event['status']} "
                f"{escape(where)}{extra}, {event['bytes']} bytes{why}")
    return f"{peer} {kind}: {escape(str(event.get('detail', '')))}"


@click.command("listen")
@click.argument("port", type=click.IntRange(0, 65535))
@click.option("-aet", "--aetitle", default="DCMNET", show_default=True, callback=ae_title, envvar="DCMNET_AETITLE",
              help="Our AE title.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--require-called-aet", is_flag=True, help="Reject requests whose called AE title is not ours.")
@click.option("--allow-calling-aet", multiple=True, callback=lambda c, p, v: tuple(ae_title(c, p, x) for x in v),
              help="Accept only these calling AE titles (repeatable).")
@click.option("--max-associations", type=click.IntRange(min=1), default=64, show_default=True,
              help="Simultaneous associations; beyond it requests are rejected (transient, local limit).")
@click.option("--artim-timeout", type=float, default=30.0, show_default=True, callback=positive_seconds,
              help="Seconds a connection may take to send its whole A-ASSOCIATE-RQ, and to close after release/abort.")
@click.option("--network-timeout", "--idle-timeout", type=float, default=120.0, show_default=True,
              callback=seconds_or_unlimited,
              help="Seconds an association may stay idle, or a peer may stop reading what we send, before the "
                   "association is aborted (bounds what a stalled or hostile peer can hold); 0 = no limit.")
@click.option("-pdu", "--max-pdu", type=click.IntRange(min=0, max=0xFFFFFFFF), default=131056, show_default=True,
              help="Largest P-DATA-TF we accept (0 = no limit).")
@click.option("--shutdown-grace", type=float, default=10.0, show_default=True,
              help="On SIGINT/SIGTERM, seconds to let in-flight associations finish.")
@click.option("--no-progress", is_flag=True, help="No live dashboard on a terminal (log lines only).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line on stdout: per stored object and per association event.")
@click.option("-od", "--output-directory", type=click.Path(file_okay=False), default=None,
              help="Enable storage: write received objects below this folder (created if missing).")
@click.option("--filepath", default=None, metavar="TEMPLATE",
              help="Path of each file below -od, from element keywords, e.g. "
                   "'{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm' "
                   "[default: {SOPInstanceUID}.dcm]. Also {CallingAET}, {CalledAET}.")
@click.option("--on-duplicate", type=click.Choice(["replace", "keep", "rename"]), default="replace", show_default=True,
              help="An instance whose file exists: replace it atomically, keep the old one, or store as NAME_1.dcm.")
@click.option("--ignore", is_flag=True, help="Storage SCP that receives and discards (no file written; benchmarks).")
@click.option("--accept", "accept_syntaxes", multiple=True, metavar="UID_OR_KEYWORD",
              help="Accept only these transfer syntaxes for storage (repeatable) [default: all known].")
@click.option("--promiscuous", is_flag=True, help="Accept unknown SOP classes too (any abstract syntax).")
@click.option("--no-fsync", is_flag=True, help="Do not fsync files and folders before answering (faster, less safe).")
@click.option("--exec-on-receive", default=None, metavar="CMD",
              help="Run CMD (split like a shell, never run by one) for each stored file; the path is appended and "
                   "DCMNET_PATH, DCMNET_SOP_CLASS_UID, DCMNET_SOP_INSTANCE_UID, DCMNET_REMOTE_AET (the calling AE), DCMNET_LOCAL_AET (the called AE), "
                   "DCMNET_PEER are set.")
@click.option("--exec-on-association-end", default=None, metavar="CMD",
              help="Run CMD after each association that stored something; the folder is appended and "
                   "DCMNET_COUNT, DCMNET_DIR, DCMNET_REMOTE_AET (the calling AE), DCMNET_LOCAL_AET (the called AE), DCMNET_PEER are set.")
@click.option("--exec-timeout", type=float, default=60.0, show_default=True, callback=positive_seconds,
              help="Seconds a hook may run before it is killed (at most 8 run at once).")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Processes sharing the port (SO_REUSEPORT), to use more than one core.")
@server_tls_options
@click.pass_obj
def command(app: App, port: int, aetitle: str, bind: str, require_called_aet: bool, allow_calling_aet: tuple[str, ...],
            max_associations: int, artim_timeout: float, network_timeout: float | None, max_pdu: int,
            shutdown_grace: float, as_json: bool, output_directory: str | None = None, filepath: str | None = None,
            on_duplicate: str = "replace", ignore: bool = False, accept_syntaxes: tuple[str, ...] = (),
            promiscuous: bool = False, no_fsync: bool = False, exec_on_receive: str | None = None,
            exec_on_association_end: str | None = None, exec_timeout: float = 60.0, workers: int = 1,
            no_progress: bool = False, **tls_settings: Any) -> int:
    """Run a DICOM node until interrupted: Verification SCP, and Storage SCP with -od or --ignore.

    Without -od (or --ignore) only C-ECHO is answered. With -od DIR every Storage SOP class is accepted in
    every known transfer syntax (explicit VR little endian preferred, then implicit; a compressed syntax
    is taken when it is all that is proposed, and stored as sent). Each object is streamed to a temporary
    file in DIR, then renamed to its final name and fsynced before Success is answered; an abort leaves
    nothing behind. Peer values in file names are made safe (UIDs kept, anything else hashed).
    Failures answer 0xA700 (disk full, folder gone), 0xA900 (data set UIDs differ from the command) or
    0xC000 (unparsable where parsing is needed, or a path outside DIR).

    With --tls every connection must complete a TLS handshake (TLS 1.2 or later, bounded by
    --artim-timeout) before any DICOM is read; a failure is logged as one tls-error line and the
    connection closed. --tls-ca checks client certificates when offered; --tls-require-client-cert
    refuses clients without one.

    PORT 0 picks a free port (printed on stderr at start). Ctrl-C or SIGTERM stops accepting, lets
    in-flight associations finish, and exits 0 with a summary.
    """
    from ...services.scp.entity import ListenerSettings, build_listener

    tls = server_tls_from(tls_settings)
    lock = threading.Lock()

    storage: Any = None

    dashboard: Any = None

    def on_event(event: dict) -> None:
        with lock:
            if dashboard is not None:
                dashboard.event(event)
            if as_json:
                app.json(event)
            elif event.get("event") in ("association", "rejected", "error", "internal-error", "protocol-error",
                                        "store-failed", "hook-error", "tls-error"):
                say(log_line(event))
            elif app.verbose:
                say(log_line(event))

        if storage is not None and event.get("event") == "association":
            storage.association_ended(event)

    def say(line: str) -> None:
        if dashboard is not None:
            dashboard.log(line)
        else:
            app.info(line)

    contexts: Any = None  # Verification only
    if output_directory or ignore:
        storage, contexts = build_storage(app, output_directory, filepath, on_duplicate, ignore, accept_syntaxes,
                                          promiscuous, no_fsync, exec_on_receive, exec_on_association_end,
                                          exec_timeout, on_event)
        if storage is None:
            return ExitCode.USAGE
    elif filepath or accept_syntaxes or promiscuous or exec_on_receive or exec_on_association_end:
        raise click.UsageError("--filepath, --accept, --promiscuous and --exec-* need -od DIR (or --ignore)")
    settings = ListenerSettings(
        ae_title=aetitle, host=bind, port=port, max_pdu=max_pdu, require_called_aet=require_called_aet,
        allowed_calling_aets=frozenset(allow_calling_aet) if allow_calling_aet else None,
        max_associations=max_associations, artim_timeout=artim_timeout, network_timeout=network_timeout,
        reuse_port=workers > 1, tls=tls,
    )

    def show_pdu(peer: str, direction: str, summary: str) -> None:
        with lock:
            app.trace(direction, f"{peer} {summary}")

    trace = show_pdu if app.debug else None

    def make_server(listen_port: int) -> Any:
        handlers = storage.handlers() if storage is not None else None
        return build_listener(settings._replace(port=listen_port), contexts, handlers, on_event, trace)

    server = make_server(port)
    try:
        bound = server.bind()
    except OSError as error:
        app.error(f"cannot listen on {bind}:{port}: {error.strerror or error}")
        return ExitCode.CONNECT
    children: list[int] = []
    if workers > 1:
        child = _fork_workers(app, as_json, workers, bound, make_server, children, shutdown_grace, storage, on_event)
        if child is not None:
            return child
    stopping: list[bool] = []

    def terminate(signum: int, frame: object) -> None:
        if stopping:
            return
        stopping.append(True)
        for pid in children:
            _signal_quietly(pid)
        raise _Stop()

    # SIGINT too: a listener started in the background by a script inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    if as_json:
        on_event({"event": "listening", "address": bind, "port": bound, "aet": aetitle, "tls": tls is not None})
    else:
        app.info(f"listening on {bind}:{bound}{' (TLS)' if tls is not None else ''} as {aetitle} (Ctrl-C to stop)")
    if app.err_is_terminal and not (as_json or app.quiet or no_progress) and workers == 1:
        from ..dashboard import Dashboard

        dashboard = Dashboard(app.err, f"dcmnet listen {bind}:{bound} as {aetitle}", color=app.color)
    try:
        if dashboard is not None:
            with dashboard:
                server.serve_forever()
        else:
            server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        stopping.append(True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second Ctrl-C during the grace period forces the exit
        for pid in children:
            _signal_quietly(pid)
        server.stop(shutdown_grace)
        if storage is not None:
            storage.close(shutdown_grace)
        if children:
            _wait_children(children, shutdown_grace + 5.0)
    _summary(app, as_json, on_event, server, storage)
    return ExitCode.SUCCESS


def _signal_quietly(pid: int) -> None:
    import os

    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


def _summary(app: App, as_json: bool, on_event: Any, server: Any, storage: Any, worker: int | None = None) -> None:
    stats = server.stats
    summary = {"event": "stopped", "connections": stats.connections, "associations": stats.associations,
               "rejected": stats.rejected, "errors": stats.errors}
    text = (f"stopped: {stats.connections} connection(s), {stats.associations} association(s), "
            f"{stats.rejected} rejected, {stats.errors} error(s)")
    if storage is not None:
        totals = storage.totals
        summary.update(stored=totals.stored, failed=totals.failed, bytes=totals.bytes)
        text += f", {totals.stored} stored, {totals.failed} failed, {totals.bytes} bytes"
    if worker is not None:
        summary["worker"] = worker
        text = f"worker {worker} {text}"
    if as_json:
        on_event(summary)
    else:
        app.info(text)



def build_storage(app: App, output_directory: str | None, filepath: str | None, on_duplicate: str, ignore: bool,
                   accept: tuple[str, ...], promiscuous: bool, no_fsync: bool, exec_on_receive: str | None,
                   exec_on_association_end: str | None, exec_timeout: float, on_event: Any) -> tuple[Any, Any]:
    """The Storage SCP and the negotiation callable (imports pydicom: storage only)."""
    from ...part10 import sopclasses
    from ...part10.filenames import TemplateError, parse_template
    from ...services.scp.hooks import HookRunner, split_command
    from ...services.scp.entity import ALL_UNCOMPRESSED
    from ...services.scp.storage import StorageConfig, StorageSCP

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


def _fork_workers(app: App, as_json: bool, workers: int, port: int, make_server: Any, children: list[int],
                  grace: float, storage: Any, on_event: Any) -> int | None:
    """``--workers N``: fork N-1 processes, each with its own SO_REUSEPORT socket on ``port``.

    Returns None in the parent (which serves too); a child serves until SIGTERM and never returns.
    A child ignores SIGINT: Ctrl-C reaches the whole process group and the parent forwards SIGTERM.
    """
    import os

    for index in range(1, workers):
        pid = os.fork()
        if pid:
            children.append(pid)
            continue
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            stopping: list[bool] = []

            def terminate(signum: int, frame: object) -> None:
                if not stopping:
                    stopping.append(True)
                    raise _Stop()

            signal.signal(signal.SIGTERM, terminate)
            server = make_server(port)
            server.bind()
            try:
                server.serve_forever()
            except _Stop:
                pass
            finally:
                stopping.append(True)
                server.stop(grace)
                if storage is not None:
                    storage.close(grace)
            _summary(app, as_json, on_event, server, storage, worker=index)
        except BaseException as error:  # noqa: BLE001 - a child must never return into the parent's code
            app.error(f"worker {index}: {type(error).__name__}: {error}")
            code = 70
        finally:
            os._exit(code)
    return None


def _wait_children(children: list[int], timeout: float) -> None:
    """Reap the workers; SIGKILL any still running after ``timeout`` (pidfd: no polling)."""
    import os
    import select
    import time

    deadline = time.monotonic() + timeout
    for pid in children:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            try:
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    os.kill(pid, signal.SIGKILL)
            finally:
                os.close(fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
