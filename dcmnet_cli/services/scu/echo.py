"""C-ECHO SCU (PS3.4 Annex A): one association, ``count`` echoes, timings for a ping-style report."""

from __future__ import annotations

import time

from ...dimse.commandset import VERIFICATION_SOP_CLASS, c_echo_rq
from ...part10.syntaxes import EXPLICIT_LE, IMPLICIT_LE
from ...transport.client import Timeouts, release
from ...ul.negotiation import DEFAULT_MAX_PDU, build_contexts
from .association import associate, context_for
from ..peer import Peer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable


class EchoResult:
    """Statuses and timings of one echo run (a plain class: ``dataclasses`` costs start-up)."""

    __slots__ = ("peer", "statuses", "rtt_ms", "setup_ms", "release_ms")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.statuses: list[int] = []
        self.rtt_ms: list[float] = []
        self.setup_ms = 0.0
        self.release_ms = 0.0


def echo(
    peer: Peer,
    calling_ae: str = "DCMNET",
    timeouts: Timeouts = Timeouts(),
    count: int = 1,
    interval: float = 0.0,
    max_pdu: int = DEFAULT_MAX_PDU,
    abort: bool = False,
    on_reply: Callable[[int, int, float], None] | None = None,
    trace: Callable[[str, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> EchoResult:
    """Echo ``count`` times over one association. Raises the package errors on failure."""
    result = EchoResult(peer)
    start = time.perf_counter()
    session = associate(peer, calling_ae, build_contexts([(VERIFICATION_SOP_CLASS, (EXPLICIT_LE, IMPLICIT_LE))]), timeouts,
                        max_pdu, trace=trace, log=log)
    channel = session.driver
    result.setup_ms = (time.perf_counter() - start) * 1000
    try:
        context = context_for(session, VERIFICATION_SOP_CLASS)
        for index in range(count):
            if index and interval:
                time.sleep(interval)
            sent = time.perf_counter()
            message_id = session.request(context.context_id, c_echo_rq)
            response, _ = session.response(message_id, timeouts.dimse)
            rtt = (time.perf_counter() - sent) * 1000
            status = response.status if response.status is not None else 0xFFFF
            result.statuses.append(status)
            result.rtt_ms.append(rtt)
            if on_reply:
                on_reply(index + 1, status, rtt)
        ended = time.perf_counter()
        if abort:
            channel.abort()
        else:
            release(channel, timeouts.acse)
        result.release_ms = (time.perf_counter() - ended) * 1000
    finally:
        channel.abort() if not channel.closed else None
    return result
