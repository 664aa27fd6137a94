"""``dcmnet echo``: C-ECHO one node, once or ping-style."""

from __future__ import annotations

import time
from typing import Any

import click

from ...dimse.status import describe
from ...errors import DcmnetError
from ..app import App
from ..exitcodes import ExitCode, combine, for_error, for_status
from ..options import SectionedCommand, network_options, output_options, parse_peer, timeouts_from, tls_options


@click.command("echo", cls=SectionedCommand)
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@click.option("-c", "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Echoes to send over one association.")
@click.option("-i", "--interval", type=click.FloatRange(min=0), default=0.0, help="Seconds between echoes with --count.")
@click.option("--abort", "abort", is_flag=True, help="End with A-ABORT instead of a release.")
@output_options(json_help="One JSON object with statuses and timings.")
@click.pass_obj
def command(app: App, peer: tuple[str, ...], count: int, interval: float, abort: bool, as_json: bool, **options: Any) -> int:
    """Check that a DICOM node answers (C-ECHO).

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml.
    """
    from ...services.scu.echo import echo

    target = parse_peer(peer, options["called_aet"], options)
    label = f"echo {target} ({target.called_ae})"

    def on_reply(index: int, status: int, rtt: float) -> None:
        app.detail(f"C-ECHO-RQ (message {index}) -> C-ECHO-RSP status 0x{status:04X} in {rtt:.3f} ms")
        if count > 1 and not as_json:
            app.result(f"{label}: seq={index} {describe(status, 'echo').meaning.capitalize()} in {rtt:.2f} ms")

    if as_json:
        from ..json_fields import head, status_text, tail
    started = time.monotonic()
    try:
        result = echo(target, options["calling_aet"], timeouts_from(options), count=count, interval=interval,
                      max_pdu=options["max_pdu"], abort=abort, on_reply=on_reply,
                      trace=app.trace if app.debug else None, log=app.detail if app.verbose else None)
    except DcmnetError as error:
        code = for_error(error)
        if as_json:
            app.json({**head(target, options["calling_aet"], None), "error": str(error),
                      **tail(time.monotonic() - started, code)})
        app.error(str(error))
        return code
    code = combine([for_status(s) for s in result.statuses])
    rtts = result.rtt_ms
    if as_json:
        deciding = next((s for s in result.statuses if for_status(s) == code), result.statuses[-1])
        app.json({**head(target, options["calling_aet"], deciding),
                  "statuses": [status_text(s) for s in result.statuses], "rtt_ms": [round(r, 3) for r in rtts],
                  "setup_ms": round(result.setup_ms, 3), "release_ms": round(result.release_ms, 3),
                  **tail(time.monotonic() - started, code)})
    elif count == 1:
        app.result(f"{label}: {describe(result.statuses[0], 'echo').meaning.capitalize()} in {rtts[0]:.1f} ms")
    else:
        app.result(f"--- {target} echo statistics ---")
        app.result(f"{count} echoes, association set-up {result.setup_ms:.2f} ms, "
                   f"rtt min/avg/max = {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/{max(rtts):.3f} ms")
    if code is not ExitCode.SUCCESS and not as_json:
        app.error(f"the peer answered status 0x{result.statuses[-1]:04X}")
    return code
