"""``dcmnet move``: C-MOVE studies, series or instances to an AE, optionally receiving them here.

What ``move`` and ``get`` share lives in :mod:`..retrieve` and :mod:`..storage_options`.
"""

from __future__ import annotations

from typing import Any

import click

from ..app import App
from ..exitcodes import ExitCode
from ..options import SectionedCommand, ae_title, network_options, parse_peer, server_tls_from, tls_options
from ..query_options import retrieve_query_options
from ..retrieve import build_requests, finish, make_storage, retrieve_options, run_retrieve
from ..storage_options import storage_options


@click.command("move", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@retrieve_query_options
@click.option("--dest", "-aem", "--move-destination", "destination", default=None, callback=ae_title, metavar="AET",
              help="AE title to move to (the peer must know it) [default: our -aet when --store-port is given].")
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, allow_dash=True), default=None, metavar="FILE|-",
              help="Move each match `dcmnet find --json` printed (one DICOM JSON object per line) at its level.")
@click.option("--store-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Receive the moved objects in this process: a Storage SCP on PORT while the move runs.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address the --store-port receiver listens on.")
@click.option("--store-tls", is_flag=True,
              help="The --store-port receiver requires TLS too, with --tls-cert/--tls-key as its certificate "
                   "(client certificates checked against --tls-ca when offered).")
@storage_options
@retrieve_options
@click.pass_obj
def command(app: App, peer: tuple[str, ...], destination: str | None, from_json: str | None, store_port: int | None,
            bind: str, store_tls: bool, output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
            **options: Any) -> int:
    """Move objects from a Q/R SCP to an AE (C-MOVE).

    PEER is HOST PORT, [AET@]HOST:PORT or a node name. What to move comes from -k/-f at -L level
    (the unique keys of that level and, for -P, those above it), or from --from-json: the NDJSON that
    `dcmnet find --json` printed, each line moved at its own QueryRetrieveLevel, so
    `dcmnet find ... --json | dcmnet move ... --from-json -` works.

    --store-port PORT receives the objects here: a Storage SCP (listen's storage code: atomic writes,
    --filepath templates, path-safe names) runs on PORT for the length of the move, and --dest defaults
    to our -aet. The peer must know that AE title with this host and PORT.

    Exit 7 when the peer reports failed sub-operations (their SOP Instance UIDs are listed when it
    names them) or a failure status such as 0xA801 (move destination unknown); 1 on warnings; 8 when
    the peer cancelled on its own; 0 when it confirms a cancel we asked for (--cancel-after-seconds).
    """
    target = parse_peer(peer, options["called_aet"], options, tls_detail_used=store_tls)
    if store_port is None and (output_directory or filepath or store_tls):
        raise click.UsageError("-od, --filepath and --store-tls need --store-port (objects go to --dest otherwise)")
    receiver_tls = _receiver_tls(options) if store_tls else None
    destination = destination or (options["calling_aet"] if store_port is not None else None)
    if not destination:
        raise click.UsageError("missing --dest AET: the AE title the peer should send the objects to "
                               "(or --store-port PORT to receive them here)")
    model, requests, problems = build_requests(options, from_json)
    for problem in problems:
        app.error(problem)
    if not requests:
        if from_json is not None:
            app.error("nothing to move: no usable line in --from-json")
        return finish(app, options, "move", target, None, None, problems, destination)
    received: list[dict[str, Any]] = []
    hints = {"peer": target.called_ae, "destination": destination, "aet": options["calling_aet"]}
    if store_port is None:
        result = run_retrieve(app, options, "move", target, model.move, requests, destination=destination)
        return finish(app, options, "move", target, result, None, problems, destination, hints)
    return _move_here(app, options, target, model, requests, problems, destination, hints, received,
                      (output_directory, filepath, on_duplicate, no_fsync), (bind, store_port, receiver_tls))


def _move_here(app: App, options: dict[str, Any], target: Any, model: Any, requests: list[Any], problems: list[str],
               destination: str, hints: dict[str, str], received: list[Any], where: tuple[Any, ...],
               listen: tuple[Any, ...]) -> int:
    """The move with a Storage SCP on --store-port for its length (and the hint when nothing arrived)."""
    output_directory, filepath, on_duplicate, no_fsync = where
    bind, store_port, receiver_tls = listen
    storage, contexts = make_storage(app, output_directory, filepath, on_duplicate, no_fsync, received)
    if storage is None:
        return ExitCode.USAGE
    from ...services.scu.retrieve import StoreReceiver

    arrivals: list[Any] = []

    def on_event(event: Any) -> None:
        arrivals.append(None)  # anything the receiver reports means a peer connected to it
        storage.on_event(event)

    receiver = StoreReceiver(storage, contexts, options["calling_aet"], bind, store_port, options["max_pdu"],
                             on_event=on_event, network_timeout=options["network_timeout"], tls=receiver_tls)
    try:
        receiver.__enter__()
    except OSError as error:
        app.error(f"cannot listen on {bind}:{store_port} for --store-port: {error.strerror or error}")
        return ExitCode.CONNECT
    try:
        app.detail(f"receiving on {bind}:{receiver.port}{' (TLS)' if receiver_tls is not None else ''} "
                   f"as {options['calling_aet']}")
        result = run_retrieve(app, options, "move", target, model.move, requests, destination=destination)
    finally:
        receiver.__exit__(None, None, None)
    hints.update(port=str(receiver.port), arrived="yes" if arrivals else "no")
    return finish(app, options, "move", target, result, received, problems, destination, hints)


def _receiver_tls(options: dict[str, Any]) -> Any:
    """``--store-tls``: the receiver's server TLS context from --tls-cert/--tls-key/--tls-ca."""
    if not options.get("tls_cert"):
        raise click.UsageError("--store-tls needs --tls-cert FILE (and --tls-key FILE): the receiver's certificate")
    return server_tls_from({"tls": True, "tls_allow_anonymous": bool(options.get("tls_ca")),  # as documented
                            **{k: options.get(k) for k in ("tls_cert", "tls_key", "tls_ca", "tls_key_password_env")}})
