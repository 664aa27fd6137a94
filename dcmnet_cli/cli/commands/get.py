"""``dcmnet get``: C-GET objects from a Q/R SCP; they arrive as C-STORE sub-operations on the same association."""

from __future__ import annotations

from typing import Any

import click

from ..app import App
from ..exitcodes import ExitCode
from ..options import SectionedCommand, network_options, parse_peer, timeouts_from, tls_options
from ..query_options import retrieve_query_options
from ..retrieve import build_requests, finish, make_storage, retrieve_options, run_retrieve
from ..storage_options import storage_options


@click.command("get", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@retrieve_query_options
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, allow_dash=True), default=None, metavar="FILE|-",
              help="Get each match `dcmnet find --json` printed (one DICOM JSON object per line) at its level.")
@click.option("--storage-class", "storage_classes", multiple=True, metavar="UID_OR_KEYWORD",
              help="Storage SOP class to accept (repeatable, e.g. CTImageStorage) [default: 119 common ones].")
@click.option("--accept", "accept_syntaxes", multiple=True, metavar="TS",
              help="Transfer syntax to accept (repeatable; keyword such as RLELossless, or UID) "
                   "[default: uncompressed, JPEG, JPEG-LS, JPEG 2000, RLE, deflated].")
@storage_options
@retrieve_options
@click.pass_obj
def command(app: App, peer: tuple[str, ...], from_json: str | None, storage_classes: tuple[str, ...],
            accept_syntaxes: tuple[str, ...], output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
            **options: Any) -> int:
    """Retrieve objects from a Q/R SCP over one association (C-GET; another if the peer ends it early).

    PEER is HOST PORT, [AET@]HOST:PORT or a node name. What to get comes from -k/-f at -L level, or
    from --from-json (the NDJSON of `dcmnet find --json`, each line at its own level).

    We propose the Q/R GET context plus, with the SCP role (role selection SCU=0, SCP=1, as DCMTK
    getscu), one context per storage SOP class with explicit and implicit VR little endian and, while
    the 128-context limit allows (the first classes first), a second one with the compressed syntaxes
    (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE, deflated): the classes named by
    --storage-class, else the classes a C-FIND walk down to IMAGE level finds for the request (one
    short association per query; -v shows it), else 119 common ones (CT, MR, CR, DX, MG, US, SC, NM,
    PET, XA, RT, SR, PDF, ...). Compressed objects are stored as received. --accept TS narrows the
    syntaxes (--accept ExplicitVRLittleEndian --accept ImplicitVRLittleEndian: uncompressed only, for
    a peer such as dcmqrscp that sends every object of a class on the first context it accepted). An
    object of a class we did not propose, or in a syntax we did not accept, cannot be sent to us and
    counts as a failed sub-operation (name fewer --storage-class values to leave room for compressed
    contexts).

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
        classes = tuple(dict.fromkeys(resolve_storage_class(c) for c in storage_classes))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--storage-class") from None
    if len(classes) > MAX_STORAGE_CLASSES:
        raise click.BadParameter(f"{len(classes)} storage classes: at most {MAX_STORAGE_CLASSES} fit beside the GET "
                                 "and FIND contexts", param_hint="--storage-class")
    syntaxes = _accepted(accept_syntaxes)
    model, requests, problems = build_requests(options, from_json)
    for problem in problems:
        app.error(problem)
    if not requests:
        if from_json is not None:
            app.error("nothing to get: no usable line in --from-json")
        return finish(app, options, "get", target, None, None, problems)
    classes = classes or _probed(app, options, target, model, requests, syntaxes) or DEFAULT_STORAGE_CLASSES
    received: list[dict[str, Any]] = []
    storage, _contexts = make_storage(app, output_directory, filepath, on_duplicate, no_fsync, received)
    if storage is None:
        return ExitCode.USAGE
    try:
        result = run_retrieve(app, options, "get", target, model.get, requests, storage=storage, storage_classes=classes,
                              storage_syntaxes=syntaxes)
    finally:
        storage.close(5.0)
    return finish(app, options, "get", target, result, received, problems, hints={"peer": target.called_ae})


def _probed(app: App, options: dict[str, Any], target: Any, model: Any, requests: list[Any],
            syntaxes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Without --storage-class: the SOP classes a C-FIND walk finds (so each gets a compressed context
    too), or None (the default list) when the probe cannot tell or only uncompressed is accepted."""
    from ...services.scu.retrieve import UNCOMPRESSED_GROUP
    from ...services.scu.retrieve_probe import Probe

    if syntaxes is not None and all(uid in UNCOMPRESSED_GROUP for uid in syntaxes):
        return None
    probe = Probe(target, options["calling_aet"], model, timeouts_from(options), options["max_pdu"], log=app.detail)
    found = probe.classes(requests)
    return tuple(found) if found else None


def _accepted(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--accept values as transfer syntax UIDs (None: the default list); exit 2 for an unknown name."""
    if not values:
        return None
    from ...part10.sopclasses import NOT_NETWORK_SYNTAXES, resolve_transfer_syntax

    try:
        uids = tuple(dict.fromkeys(resolve_transfer_syntax(value) for value in values))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--accept") from None
    bad = [uid for uid in uids if uid in NOT_NETWORK_SYNTAXES]
    if bad:
        raise click.BadParameter(f"{bad[0]} cannot be used on the network", param_hint="--accept")
    return uids
