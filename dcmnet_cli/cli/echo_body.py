"""The body of ``dcmnet echo`` without click: the click command (:mod:`.commands.echo`) and the fast path
(:mod:`.fastpath`) both call :func:`echo_body` with the parsed PEER and options."""

from __future__ import annotations

import time
from ..ul.typenames import Any

from ..dimse.status import describe
from ..errors import DcmnetError
from ..services.peer import Peer
from .app import App
from .exitcodes import ExitCode, combine, for_error, for_status
from .peer import timeouts_from


def echo_body(app: App, target: Peer, count: int, interval: float, abort: bool, as_json: bool,
              options: dict[str, Any]) -> int:
    """C-ECHO ``target`` ``count`` times; print the outcome; the exit code."""
    from ..services.scu.echo import echo

    label = f"echo {target} ({target.called_ae})"

    def on_reply(index: int, status: int, rtt: float) -> None:
        app.detail(f"C-ECHO-RQ (message {index}) -> C-ECHO-RSP status 0x{status:04X} in {rtt:.3f} ms")
        if count > 1 and not as_json:
            app.result(f"{label}: seq={index} {describe(status, 'echo').meaning.capitalize()} in {rtt:.2f} ms")

    if as_json:
        from .json_fields import head, status_text, tail
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
