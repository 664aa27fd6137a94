"""``dcmnet listen``: a DICOM node on a port (Verification SCP; storage with -od)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from ..app import App, escape
from ..exitcodes import ExitCode
from ..options import ae_title, positive_seconds


class _Stop(Exception):
    """Raised in the main thread by SIGTERM so the accept loop unwinds like Ctrl-C."""


def _log_line(event: dict) -> str:
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
@click.option("--network-timeout", "--idle-timeout", type=float, default=None, callback=positive_seconds,
              help="Seconds an association may stay idle before it is aborted [default: forever].")
@click.option("-pdu", "--max-pdu", type=click.IntRange(min=0, max=0xFFFFFFFF), default=131056, show_default=True,
              help="Largest P-DATA-TF we accept (0 = no limit).")
@click.option("--shutdown-grace", type=float, default=10.0, show_default=True,
              help="On SIGINT/SIGTERM, seconds to let in-flight associations finish.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per association event on stdout.")
@click.pass_obj
def command(app: App, port: int, aetitle: str, bind: str, require_called_aet: bool, allow_calling_aet: tuple[str, ...],
            max_associations: int, artim_timeout: float, network_timeout: float | None, max_pdu: int,
            shutdown_grace: float, as_json: bool, **_: Any) -> int:
    """Run a DICOM node: answer C-ECHO (Verification SCP) until interrupted.

    PORT 0 picks a free port (printed on stderr at start). Ctrl-C or SIGTERM stops accepting, lets
    in-flight associations finish, and exits 0 with a summary.
    """
    from ...dimse.commandset import VERIFICATION_SOP_CLASS
    from ...services.scp import ALL_UNCOMPRESSED, ApplicationEntity
    from ...transport.server import Server
    from ...ul.negotiation import AcceptorPolicy

    lock = threading.Lock()

    def on_event(event: dict) -> None:
        with lock:
            if as_json:
                app.json(event)
            elif event.get("event") in ("association", "rejected", "error", "internal-error", "protocol-error"):
                app.info(_log_line(event))
            else:
                app.detail(_log_line(event))

    policy = AcceptorPolicy(
        ae_title=aetitle,
        contexts={VERIFICATION_SOP_CLASS: ALL_UNCOMPRESSED},
        require_called_aet=require_called_aet,
        allowed_calling_aets=frozenset(allow_calling_aet) if allow_calling_aet else None,
        max_pdu=max_pdu,
    )
    entity = ApplicationEntity(policy, on_event=on_event, idle_timeout=network_timeout)
    server = Server(entity, host=bind, port=port, max_associations=max_associations, artim_timeout=artim_timeout,
                    network_timeout=network_timeout, max_receive=max_pdu, log=on_event)
    try:
        bound = server.bind()
    except OSError as error:
        app.error(f"cannot listen on {bind}:{port}: {error.strerror or error}")
        return ExitCode.CONNECT

    def terminate(signum: int, frame: object) -> None:
        raise _Stop()

    # SIGINT too: a listener started in the background by a script inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    if as_json:
        on_event({"event": "listening", "address": bind, "port": bound, "aet": aetitle})
    else:
        app.info(f"listening on {bind}:{bound} as {aetitle} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop(shutdown_grace)
    stats = server.stats
    summary = {"event": "stopped", "connections": stats.connections, "associations": stats.associations,
               "rejected": stats.rejected, "errors": stats.errors}
    if as_json:
        on_event(summary)
    else:
        app.info(f"stopped: {stats.connections} connection(s), {stats.associations} association(s), "
                 f"{stats.rejected} rejected, {stats.errors} error(s)")
    return ExitCode.SUCCESS
