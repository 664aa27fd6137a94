"""``dcmnet probe``: which SOP classes, transfer syntaxes and roles a peer accepts, by negotiation only."""

from __future__ import annotations

import time
from typing import Any

import click

from ..app import App
from ..exitcodes import ExitCode, combine, for_error, for_status
from ..options import SectionedCommand, network_options, output_options, parse_peer, timeouts_from, tls_options


def _sop_classes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from ...services.scu.probe_plan import resolve_sop_class

    try:
        return tuple(resolve_sop_class(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _syntaxes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from ...part10.sopclasses import resolve_transfer_syntax

    try:
        return tuple(resolve_transfer_syntax(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("probe", cls=SectionedCommand)
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@click.option("--sop-class", "sop_classes", multiple=True, callback=_sop_classes, metavar="UID_OR_KEYWORD",
              help="Probe only this SOP class (UID or keyword, e.g. CTImageStorage); repeatable [default: every "
                   "Verification, Storage, Query/Retrieve, Worklist, Storage Commitment and MPPS class].")
@click.option("--transfer-syntax", "transfer_syntaxes", multiple=True, callback=_syntaxes, metavar="UID_OR_KEYWORD",
              help="Propose only this transfer syntax (UID or keyword, e.g. JPEG2000Lossless); repeatable [default: "
                   "explicit and implicit VR little endian, deflate, and for storage JPEG, JPEG-LS, JPEG 2000, RLE, HTJ2K].")
@click.option("--all", "show_all", is_flag=True, help="List the refused SOP classes and transfer syntaxes too, with why.")
@output_options(json_help="One JSON object: what the peer said about itself and every SOP class's answers.")
@click.pass_obj
def command(app: App, peer: tuple[str, ...], sop_classes: tuple[str, ...], transfer_syntaxes: tuple[str, ...],
            show_all: bool, as_json: bool, **options: Any) -> int:
    """See what a peer accepts: SOP classes, transfer syntaxes, roles, and what it says about itself.

    Proposes every SOP class with the common transfer syntaxes over as many associations as needed (one at
    a time, each released before the next), and reports which syntaxes the peer accepted for each class or
    why it refused, the SCP role answer for storage classes (what C-GET needs), and the peer's
    implementation, maximum PDU length, asynchronous operations window, extended negotiation and user
    identity replies. Nothing is stored or queried: only negotiation, releases and one C-ECHO.

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml.
    """
    from ...services.scu.probe import probe
    from ...services.scu.probe_plan import ProbePlan, default_classes

    target = parse_peer(peer, options["called_aet"], options)
    plan = ProbePlan(list(sop_classes) or default_classes(), transfer_syntaxes or None)
    started = time.monotonic()
    result = probe(target, plan, options["calling_aet"], timeouts_from(options), max_pdu=options["max_pdu"],
                   trace=app.trace if app.debug else None, log=app.detail if app.verbose else None)
    code = _exit_code(result)
    _show(app, result, code, show_all, as_json, time.monotonic() - started)
    return code


def _exit_code(result: Any) -> ExitCode:
    """Errors first (connect 4, abort or timeout 6), a rejection that stopped the probe or nothing
    accepted at all 5 (so is an identity not confirmed with --identity-response), a C-ECHO that did not
    succeed by its status, else 0."""
    codes = []
    if result.error is not None:
        codes.append(for_error(result.error))
    if (result.rejection is not None and result.stopped) or (result.error is None and not result.accepted_classes):
        codes.append(ExitCode.REJECTED)
    if result.identity_unconfirmed is not None:
        codes.append(ExitCode.REJECTED)
    if result.echo_status is not None:
        codes.append(for_status(result.echo_status))
    return combine(codes)


def _show(app: App, result: Any, code: ExitCode, show_all: bool, as_json: bool, elapsed: float) -> None:
    from .. import probe_output

    if as_json:
        from ...services.scu.identity import json_field
        from ..json_fields import head, tail

        body = {**probe_output.as_json(result), **json_field(result.peer)}
        if result.error is not None:
            body["error"] = str(result.error)
        app.json({**head(result.peer, result.calling_ae, result.echo_status), **body, **tail(elapsed, code)})
    elif result.associations:
        if app.out.isatty() and not app.quiet:
            probe_output.table(result, show_all, app.out, app.color)
        else:
            for line in probe_output.plain(result, show_all):
                app.result(line)
    _complain(app, result)


def _complain(app: App, result: Any) -> None:
    """The one-line errors on stderr: what stopped the probe, or why nothing was accepted, and the fix."""
    rejection = result.rejection
    if result.identity_unconfirmed is not None:
        app.error(result.identity_unconfirmed)
    if result.error is not None:
        app.error(str(result.error))
    elif rejection is not None and (result.stopped or not result.associations):
        app.error(f"association rejected: {rejection.words} (likely fix: {rejection.hint})")
    elif not result.accepted_classes:
        app.error("the peer accepted none of the SOP classes proposed (--all lists why)")
