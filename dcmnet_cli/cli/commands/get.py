"""``dcmnet get``: C-GET objects from a Q/R SCP; they arrive as C-STORE sub-operations on the same association."""

from __future__ import annotations

from typing import Any

import click

from ..app import App
from ..exitcodes import ExitCode
from ..options import network_options, tls_options, parse_peer
from ..query_options import query_options
from ..retrieve import build_requests, finish, make_storage, retrieve_options, run_retrieve
from ..storage_options import storage_options


@click.command("get", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@query_options
@click.option("--from-json", "from_json", type=click.File("r", encoding="utf-8"), default=None, metavar="FILE|-",
              help="Get each match `dcmnet find --json` printed (one DICOM JSON object per line) at its level.")
@click.option("--storage-class", "storage_classes", multiple=True, metavar="UID_OR_KEYWORD",
              help="Storage SOP class to accept (repeatable, e.g. CTImageStorage) [default: 119 common ones].")
@storage_options
@retrieve_options
@click.pass_obj
def command(app: App, peer: tuple[str, ...], from_json: Any, storage_classes: tuple[str, ...],
            output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
            **options: Any) -> int:
    """Retrieve objects from a Q/R SCP over one association (C-GET).

    PEER is HOST PORT, [AET@]HOST:PORT or a node name. What to get comes from -k/-f at -L level, or
    from --from-json (the NDJSON of `dcmnet find --json`, each line at its own level).

    We propose the Q/R GET context plus one context per storage SOP class (explicit and implicit VR
    little endian) with the SCP role (role selection SCU=0, SCP=1, as DCMTK getscu): the classes named
    by --storage-class, or 119 common ones (CT, MR, CR, DX, MG, US, SC, NM, PET, XA, RT, SR, PDF, ...).
    An object of a class we did not propose cannot be sent to us and counts as a failed sub-operation.

    Each object is written below -od (default: the current folder, as getscu does) with listen's
    storage code: streamed to a temporary file, renamed into place, fsynced, then answered; --filepath
    templates and path-safe names as for listen.

    Exit codes as for move: 7 for failed sub-operations (their SOP Instance UIDs listed when the peer
    names them), a failure status, or an object we could not store; 1 on warnings; 8 when the peer
    cancelled on its own; 0 for a cancel we asked for.
    """
    from ...services.scu.retrieve import MAX_STORAGE_CLASSES, resolve_storage_class
    from ...services.scu.retrieve_classes import DEFAULT_STORAGE_CLASSES

    target = parse_peer(peer, options["called_aet"], options)
    try:
        classes = tuple(dict.fromkeys(resolve_storage_class(c) for c in storage_classes)) or DEFAULT_STORAGE_CLASSES
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--storage-class") from None
    if len(classes) > MAX_STORAGE_CLASSES:
        raise click.BadParameter(f"{len(classes)} storage classes: at most {MAX_STORAGE_CLASSES} fit beside the GET context",
                                 param_hint="--storage-class")
    model, requests, problems = build_requests(options, from_json)
    for problem in problems:
        app.error(problem)
    if not requests:
        if from_json is not None:
            app.error("nothing to get: no usable line in --from-json")
        return finish(app, options, "get", target, None, None, problems)
    received: list[dict[str, Any]] = []
    storage, _contexts = make_storage(app, output_directory, filepath, on_duplicate, no_fsync, received)
    if storage is None:
        return ExitCode.USAGE
    try:
        result = run_retrieve(app, options, "get", target, model.get, requests, storage=storage, storage_classes=classes)
    finally:
        storage.close(5.0)
    return finish(app, options, "get", target, result, received, problems)
