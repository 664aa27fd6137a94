"""``dcmnet probe``: what a peer accepts, learnt by negotiation alone (PS3.8 §7.1, PS3.7 Annex D.3.3).

:mod:`.probe_plan` decides what each association proposes and reads the answers; this module opens the
associations, one at a time, each released before the next is requested, so a peer that limits its
associations (often to 1 per calling AE) is never asked for two at once. A transient rejection (the
peer's "local limit exceeded" or "temporary congestion", PS3.8 Table 9-21) is retried after 0.25, 0.5
and 1 s, since a peer may count the association just released for a moment longer.

Nothing is stored or queried: the only DIMSE message is one C-ECHO, on the first association that
accepts Verification. A rejection that concerns who we are (called or calling AE title, application
context, protocol version), a transient one that outlasts the retries, and any rejection before one
association was accepted (a refused user identity is "no reason given") stop the probe; a later
rejection with no reason given concerns the contexts of that association only, which are reported
refused with the reason, and the probe goes on (rare: every later association carries a context the
peer accepted before, see :mod:`.probe_plan`).

A user identity (``peer.identity``, PS3.7 D.3.3.7) is proposed on every association; the peer's answer
is read from the first A-ASSOCIATE-AC and recorded on it.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

from ... import counted
from ...dimse.commandset import VERIFICATION_SOP_CLASS, c_echo_rq
from ...errors import AssociationRejected, DcmnetError
from ...transport.channel import Channel
from ...transport.client import Timeouts, open_association, release
from ...ul.items import AsyncOperationsWindow, UserIdentityRQ, UserInformation
from ...ul.negotiation import DEFAULT_MAX_PDU, build_request, describe_rejection
from ...ul.pdu import AssociateRJ, AssociateRQ
from ..peer import Peer
from ..session import Session
from .identity import IdentityNotConfirmed, identity_of
from .probe_plan import Batch, ProbePlan

RETRY_DELAYS = (0.25, 0.5, 1.0)
"""Seconds to wait before each retry of an association refused with a transient rejection."""

ASYNC_PROPOSED = AsyncOperationsWindow(0, 0)
"""Proposed so the peer states its own window (PS3.7 D.3.3.3: 0 = unlimited; the reply may only lower it)."""


class Rejection(NamedTuple):
    """An A-ASSOCIATE-RJ in numbers and in words, with the likely fix."""

    result: int
    source: int
    reason: int
    words: str
    hint: str

    @classmethod
    def of(cls, error: AssociationRejected, identity: UserIdentityRQ | None = None) -> "Rejection":
        words, hint = describe_rejection(AssociateRJ(error.result, error.source, error.reason))
        if (error.source, error.reason) == (1, 1) and identity is not None:
            hint = (f"we sent a user identity ({identity.describe()}): a peer that checks identities refuses a "
                    "wrong password or an unknown user this way")
        elif (error.source, error.reason) == (1, 1):
            hint = ("the peer refused without saying why: it may not know our AE title (-aet), may want a user "
                    "identity (--user), or supports none of the SOP classes proposed")
        return cls(error.result, error.source, error.reason, words, hint)

    @property
    def transient(self) -> bool:
        return self.result == 2 or self.source == 3

    @property
    def decisive(self) -> bool:
        """About the association itself, not its contexts: no other association would fare better."""
        return self.transient or self.source == 2 or (self.source, self.reason) in ((1, 2), (1, 3), (1, 7))


class ProbeResult:
    """What the probe learnt; :attr:`plan` holds the per-class answers."""

    def __init__(self, peer: Peer, calling_ae: str, plan: ProbePlan) -> None:
        self.peer, self.calling_ae, self.plan = peer, calling_ae, plan
        self.identity = identity_of(peer)
        """The user identity proposed (``peer.identity``, PS3.7 D.3.3.7), which records the peer's answer."""
        self.identity_unconfirmed: str | None = None
        """Why the probe failed --identity-response: the peer accepted without confirming the identity."""
        self.associations = 0
        self.setup_ms: list[float] = []
        self.peer_info: UserInformation | None = None
        """The user information of the first A-ASSOCIATE-AC: implementation, max PDU, async window, identity."""
        self.echo_status: int | None = None
        self.echo_ms: float | None = None
        self.rejection: Rejection | None = None
        self.stopped = False
        """True when a rejection or an error ended the probe before every class was done."""
        self.error: DcmnetError | None = None
        self.elapsed_ms = 0.0

    @property
    def accepted_classes(self) -> list[str]:
        return [uid for uid, probe in self.plan.probes.items() if probe.accepted]


def probe(
    peer: Peer,
    plan: ProbePlan,
    calling_ae: str = "DCMNET",
    timeouts: Timeouts = Timeouts(),
    max_pdu: int = DEFAULT_MAX_PDU,
    trace: Callable[[str, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Run ``plan`` against ``peer``; never raises the package's errors: they end up in the result.
    Every association proposes ``peer.identity`` when there is one."""
    result = ProbeResult(peer, calling_ae, plan)
    user_identity = result.identity.request if result.identity is not None else None
    started = time.perf_counter()
    try:
        while (batch := plan.next_batch()) is not None:
            request = _request(peer, calling_ae, batch, max_pdu, user_identity)
            if not _run(peer, request, batch, result, timeouts, trace, log, sleep):
                break
    except DcmnetError as error:
        result.error, result.stopped = error, True
        plan.abandon(f"the probe stopped ({error})")
    result.elapsed_ms = (time.perf_counter() - started) * 1000
    return result


def _request(peer: Peer, calling_ae: str, batch: Batch, max_pdu: int, identity: UserIdentityRQ | None) -> AssociateRQ:
    rq = build_request(peer.called_ae, calling_ae, batch.contexts, max_pdu, batch.roles, identity, batch.extended)
    info = rq.user_info
    user_info = UserInformation.build(
        max_length=info.max_length, implementation_class_uid=info.implementation_class_uid,
        implementation_version_name=info.implementation_version_name, async_window=ASYNC_PROPOSED,
        roles=info.roles, extended=info.extended, user_identity=info.user_identity)
    return rq._replace(user_info=user_info)


def _run(peer: Peer, request: AssociateRQ, batch: Batch, result: ProbeResult, timeouts: Timeouts,
         trace: Callable[[str, str], None] | None, log: Callable[[str], None] | None,
         sleep: Callable[[float], None]) -> bool:
    """One association for ``batch``: read the answers, echo once, release; False stops the probe."""
    number = result.associations + 1
    opened = _open(peer, request, number, timeouts, trace, log, sleep)
    if isinstance(opened, Rejection):
        return _rejected(batch, opened, result, log)
    channel, started = opened
    setup_ms = (time.perf_counter() - started) * 1000
    result.associations += 1
    result.setup_ms.append(setup_ms)
    try:
        ac = channel.assoc.accept_pdu
        assert ac is not None
        result.plan.record_accept(batch, ac)
        if result.peer_info is None:
            result.peer_info = ac.user_info
            _record_identity(result, ac.user_info, log)
        accepted = sum(1 for c in ac.presentation_contexts if c.result == 0)
        _say(log, f"association {number}: {counted(len(batch.contexts), 'context')} proposed for "
                  f"{counted(len(batch.classes()), 'SOP class', 'SOP classes')}, {accepted} accepted, in {setup_ms:.1f} ms")
        if result.echo_status is None:
            _echo(Session(channel), result, timeouts, log)
        release(channel, timeouts.acse)
    finally:
        if not channel.closed:
            channel.abort()
    return True


def _open(peer: Peer, request: AssociateRQ, number: int, timeouts: Timeouts, trace: Callable[[str, str], None] | None,
          log: Callable[[str], None] | None, sleep: Callable[[float], None]) -> tuple[Channel, float] | Rejection:
    """The accepted association and when its (last) request started, or the final rejection; a transient
    rejection is retried after each of :data:`RETRY_DELAYS`."""
    for delay in (*RETRY_DELAYS, None):
        started = time.perf_counter()
        try:
            return open_association(peer.host, peer.port, request, timeouts, trace=trace, tls=peer.tls), started
        except AssociationRejected as error:
            rejection = Rejection.of(error, request.user_info.user_identity)
            if not rejection.transient or delay is None:
                return rejection
            _say(log, f"association {number} rejected ({rejection.words}): retrying in {delay:g} s")
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _rejected(batch: Batch, rejection: Rejection, result: ProbeResult, log: Callable[[str], None] | None) -> bool:
    _say(log, f"association {result.associations + 1} rejected: {rejection.words}")
    if result.rejection is None:
        result.rejection = rejection
    result.plan.record_reject(batch, rejection.words)
    if rejection.decisive or not result.associations:  # nothing accepted yet: no other association will be
        result.rejection, result.stopped = rejection, True
        result.plan.abandon(f"the probe stopped: association rejected ({rejection.words})")
        return False
    return True


def _record_identity(result: ProbeResult, info: UserInformation, log: Callable[[str], None] | None) -> None:
    """The peer's answer to our user identity, from the first A-ASSOCIATE-AC (never a secret in the log)."""
    if result.identity is None:
        return
    try:
        result.identity.record(info.user_identity_response)
    except IdentityNotConfirmed as error:
        result.identity_unconfirmed = str(error)
    _say(log, result.identity.describe_answer())


def _echo(session: Session, result: ProbeResult, timeouts: Timeouts, log: Callable[[str], None] | None) -> None:
    """One C-ECHO on the Verification context, when this association accepted one."""
    context = next((c for c in session.contexts.values() if c.abstract_syntax == VERIFICATION_SOP_CLASS), None)
    if context is None:
        return
    sent = time.perf_counter()
    message_id = session.request(context.context_id, c_echo_rq)
    response, _ = session.response(message_id, timeouts.dimse)
    result.echo_ms = (time.perf_counter() - sent) * 1000
    result.echo_status = response.status if response.status is not None else 0xFFFF
    _say(log, f"C-ECHO-RQ -> C-ECHO-RSP status 0x{result.echo_status:04X} in {result.echo_ms:.1f} ms")


def _say(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(text)
