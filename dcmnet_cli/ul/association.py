"""One DICOM Upper Layer association, sans-IO (the h11 shape).

Rules:

* The driver feeds what happened: :meth:`connection_made`, :meth:`receive_data`, :meth:`connection_lost`,
  :meth:`artim_expired`. The user asks for things: :meth:`request`, :meth:`accept`, :meth:`reject`,
  :meth:`send_pdata`, :meth:`release`, :meth:`release_response`, :meth:`abort`.
* Every input becomes a PS3.8 event and goes through :func:`~.statemachine.transition`; the effects it
  returns are carried out here as bytes queued for :meth:`data_to_send`, events queued for
  :meth:`next_event`, and flags the driver reads (:attr:`close_requested`, :attr:`artim_running`).
* A local request in the wrong state raises :class:`LocalProtocolError` and queues nothing.
* A bad PDU from the peer never raises out of :meth:`receive_data`: it becomes Evt19, an A-ABORT with the
  most specific reason is queued, and an :class:`Aborted` event tells the user why.
"""

from __future__ import annotations

from collections import deque

from .records import NamedTuple
from ..errors import AbortReason, LocalProtocolError, PDUDecodeError, RemoteProtocolError
from .framing import PDATA_START, PDV_PIECE, STREAM_ABOVE, UNLIMITED_PDATA_CAP, PDUReader
from .negotiation import (
    DEFAULT_MAX_PDU,
    AcceptedContext,
    acceptor_contexts,
    check_request_structure,
    peer_max_pdu_problem,
    requestor_contexts,
    send_limit,
)
from .pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PDUType,
    ReleaseRP,
    ReleaseRQ,
    Valueless,
    TYPE_CODES,
    decode_pdata,
    decode_pdu,
    summarize,
)
from .statemachine import Effect, Event, Role, State, transition

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Final

# --------------------------------------------------------------------------- events for the user


class AssociationRequested(NamedTuple):
    """Acceptor: a well-formed A-ASSOCIATE-RQ arrived; answer with accept() or reject()."""

    request: AssociateRQ


class AssociationAccepted(NamedTuple):
    accept: AssociateAC


class AssociationRejected(NamedTuple):
    reject: AssociateRJ


class DataReceived(NamedTuple):
    """One P-DATA-TF; its PDVs' data are memoryviews valid until the next receive_data()."""

    pdata: PDataTF


class ReleaseRequested(Valueless):
    """The peer asked to release; answer with release_response() (collisions included)."""


class ReleaseConfirmed(Valueless):
    """The peer answered our A-RELEASE-RQ."""


class Aborted(NamedTuple):
    """The association ended abnormally.

    ``initiator`` is ``"peer"`` (A-ABORT received), ``"local"`` (we aborted on a protocol error) or
    ``"transport"`` (the connection closed under us). source/reason are PS3.8 Table 9-26 values.
    """

    initiator: str
    source: int | None
    reason: int | None
    message: str


AssociationEvent = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | DataReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
)

_PDU_EVENTS = {
    PDUType.ASSOCIATE_RQ: Event.EVT6,
    PDUType.ASSOCIATE_AC: Event.EVT3,
    PDUType.ASSOCIATE_RJ: Event.EVT4,
    PDUType.P_DATA_TF: Event.EVT10,
    PDUType.RELEASE_RQ: Event.EVT12,
    PDUType.RELEASE_RP: Event.EVT13,
    PDUType.ABORT: Event.EVT16,
}

PROVIDER = 2

_P_DATA_TF: Final = PDUType.P_DATA_TF
_new_tuple = tuple.__new__
_STA1: Final = State.STA1
_STA6: Final = State.STA6
"""The states the per-PDU paths test, bound once: reading a member off an Enum class goes through the enum
machinery (~65 ns on CPython 3.11, as much as the rest of a test), several times per C-STORE (issue 13)."""


class Association:
    """The state of one association and everything waiting to go out or up."""

    def __init__(self, role: Role, max_receive: int = DEFAULT_MAX_PDU) -> None:
        self.role = role
        self.state = State.STA1
        self.max_receive = max_receive
        self._reader = PDUReader(max_receive, stream_above=STREAM_ABOVE)
        self._deliver_pieces = False
        self._refused_ac: str | None = None
        self._out: list[Any] = []
        self._events: deque[AssociationEvent] = deque()
        self.artim_running = False
        self.artim_starts = 0
        """Incremented on every (re)start so a driver can tell a restart from a running timer."""
        self.close_requested = False
        self.request_pdu: AssociateRQ | None = None
        self.accept_pdu: AssociateAC | None = None
        self.contexts: dict[int, AcceptedContext] = {}
        self.peer_max_pdu = send_limit(None)
        # The PDU that the next SEND_* effect puts on the wire, set just before stepping.
        self._pending: PDU | None = None
        self._pending_pdata: Sequence[Any] = ()
        self._indication: AssociationEvent | None = None
        self._desynchronised = False
        self.trace: Callable[[str, str], None] | None = None
        """Called with ("sent" | "received", one-line PDU summary) when set (--debug)."""

    # ------------------------------------------------------------------ driver side

    def connection_made(self) -> None:
        """Evt2 for a requestor (connect confirmed), Evt5 for an acceptor (connection indication)."""
        self._step(Event.EVT2 if self.role is Role.REQUESTOR else Event.EVT5)

    def connection_lost(self) -> None:
        """Evt17; after a local close (already Sta1) it is a no-op."""
        if self.state is State.STA1:
            return
        self._indication = Aborted("transport", None, None, "the peer closed the connection")
        self._step(Event.EVT17)

    def artim_expired(self) -> None:
        """Evt18; meaningful only in Sta2 and Sta13, ignored elsewhere (a late timer)."""
        if self.state in (State.STA2, State.STA13):
            self._step(Event.EVT18)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed received bytes; whole PDUs are decoded and stepped through the state machine. A P-DATA-TF
        over :data:`~.framing.STREAM_ABOVE` bytes that does not arrive whole inside one chunk is streamed: one :class:`DataReceived` per piece of PDV
        (see :mod:`.framing`), so memory never grows with the PDU length the peer declares."""
        if self._idle() or self._desynchronised:
            return
        reader = self._reader
        reader.feed(data)
        next_pdu, events = reader.next_pdu, self._events
        while self.state is not _STA1:  # not _idle(): a call per PDU (a stepped PDU may end the association)
            try:
                framed = next_pdu()
                if framed is None:
                    return
                kind, body = framed
                if kind == _P_DATA_TF:
                    if self.state is _STA6:
                        # Hot path: Evt10 in Sta6 is always DT-2 (indicate), no table walk needed
                        # (tests/test_request_path.py holds it to the table's cell).
                        pdata = decode_pdata(body if type(body) is memoryview else memoryview(body))  # type: ignore[arg-type]
                        if self.trace is not None:
                            self.trace("received", summarize(pdata))
                        # Which contexts a PDV may use is checked once, above the UL (dimse.connection).
                        events.append(_new_tuple(DataReceived, (pdata,)))  # the record without its Python __new__
                        continue
                elif kind == PDV_PIECE:
                    if self._deliver_pieces:
                        events.append(DataReceived(PDataTF((body,))))  # type: ignore[arg-type]
                    continue
                elif kind == PDATA_START:
                    self._pdata_start(body)  # type: ignore[arg-type]
                    continue
                pdu = decode_pdu(kind, memoryview(body))  # type: ignore[arg-type]
                if self.trace is not None:
                    self.trace("received", summarize(pdu))
            except PDUDecodeError as error:
                self._protocol_error(error)
                return
            self._receive_pdu(pdu)

    def carry_tails(self, limit: int) -> None:
        """Leave a partial PDU of at most ``limit`` bytes at the end of the data fed (see :mod:`.framing`)."""
        self._reader.carry_max = limit

    def tail(self) -> int:
        """Bytes at the end of the data last fed that wait for more (at most the carry limit, else 0); none once
        nothing more is read (Sta1, or the framing lost after a protocol error)."""
        if self.state is _STA1 or self._desynchronised:
            return 0
        return self._reader.tail()

    def drop_tail(self) -> None:
        """The driver feeds :meth:`tail`'s bytes again, at the start of its next chunk."""
        self._reader.drop_tail()

    def bulk(self) -> tuple[int, int] | None:
        """(context ID, bytes) of a data-set PDV the driver may read past the framing (:meth:`.framing.PDUReader.bulk`),
        only while P-DATA is indicated to the user (Sta6); else None."""
        if self.state is not _STA6 or not self._deliver_pieces or self._desynchronised:
            return None
        return self._reader.bulk()

    def bulk_read_size(self) -> int:
        """In Sta6: :meth:`.framing.PDUReader.bulk_read_size`; else 0."""
        if self.state is not _STA6 or self._desynchronised:
            return 0
        return self._reader.bulk_read_size()

    def skip_bulk(self, count: int) -> None:
        """The driver read ``count`` bytes that :meth:`bulk` offered."""
        self._reader.skip(count)

    def _pdata_start(self, length: int) -> None:
        """A streamed P-DATA-TF begins: Evt10 now; its PDVs go up as pieces only if the table indicates
        P-DATA in this state (DT-2 in Sta6, AR-6 in Sta7), else they are checked and dropped."""
        if self.trace is not None:
            self.trace("received", f"P-DATA-TF {length} bytes (streamed)")
        if self.state is State.STA6:
            self._deliver_pieces = True
            return
        self._receive_pdu(PDataTF(()))
        self._deliver_pieces = self.state is State.STA7

    def _idle(self) -> bool:
        """Sta1: nothing to receive for. A method rather than an inline ``State.STA1`` test, which a type
        checker would narrow past a call that may change the state (the per-PDU loop of :meth:`receive_data`
        tests the bound :data:`_STA1`, which it leaves alone, to save the call)."""
        return self.state is _STA1

    def data_to_send(self) -> list[Any]:
        """Buffers to write in order: PDU bytes, and the driver's own buffers (file regions) given to
        :meth:`send_pdata`, which the UL never looks inside."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> AssociationEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def events_waiting(self) -> bool:
        """True when :meth:`next_event` has an event without more bytes."""
        return bool(self._events)

    @property
    def is_established(self) -> bool:
        return self.state is State.STA6

    @property
    def granted_window(self) -> int:
        """Operations the requestor may keep outstanding (PS3.7 D.3.3.3) as this negotiation left it: 1
        when no window was proposed or answered (the async_window module loads only when asked)."""
        from .async_window import granted

        return granted(self.request_pdu, self.accept_pdu)

    # ------------------------------------------------------------------ user side

    def request(self, rq: AssociateRQ) -> None:
        """Evt1: remember the request; it is sent when the driver reports the connection made."""
        self._step(Event.EVT1)
        self.request_pdu = rq
        self._advertised(rq.user_info.max_length)

    def accept(self, ac: AssociateAC) -> None:
        """Evt7: send the A-ASSOCIATE-AC and fix the negotiated contexts."""
        if self.request_pdu is None:
            raise LocalProtocolError("accept() before any A-ASSOCIATE-RQ")
        self._pending = ac
        self._step(Event.EVT7)
        self.accept_pdu = ac
        self.contexts = acceptor_contexts(self.request_pdu, ac)
        # negotiate_acceptor rejects such a request; an acceptor built otherwise still must not send to it.
        problem = peer_max_pdu_problem(self.request_pdu.user_info.max_length)
        if problem is not None:
            self.abort_for(RemoteProtocolError(problem, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE))
            return
        self.peer_max_pdu = send_limit(self.request_pdu.user_info.max_length)
        self._advertised(ac.user_info.max_length)

    def reject(self, rj: AssociateRJ) -> None:
        self._pending = rj
        self._step(Event.EVT8)

    def send_pdata(self, buffers: Sequence[Any]) -> None:
        """Evt9: ``buffers`` are whole P-DATA-TF PDUs (possibly split for scatter-gather writes)."""
        if self.state is _STA6:
            self._out.extend(buffers)  # hot path: Evt9 in Sta6 is always DT-1 (send)
            if self.trace is not None:
                self.trace("sent", f"P-DATA-TF {sum(len(b) for b in buffers) - 6} bytes")
            return
        self._pending_pdata = buffers
        self._step(Event.EVT9)

    def release(self) -> None:
        self._step(Event.EVT11)

    def release_response(self) -> None:
        self._step(Event.EVT14)

    def abort(self, source: int = 0, reason: int = 0) -> None:
        """Evt15: A-ABORT. Source 0 is the user's own abort; 2 with a reason for protocol errors."""
        if self.state in (State.STA1, State.STA13):
            return  # already closed or closing: nothing left to abort
        if self.state is State.STA2:
            # No A-ABORT is defined before the request arrived (Table 9-10): just close.
            self.close_requested, self.artim_running, self.state = True, False, State.STA1
            return
        self._pending = Abort(source, reason)
        self._step(Event.EVT15, abort_from_user=True)

    def abort_for(self, error: RemoteProtocolError) -> None:
        """Abort because the peer broke the protocol above the UL (DIMSE); the user is told."""
        self._events.append(Aborted("local", PROVIDER, int(error.reason), str(error)))
        self.abort(PROVIDER, int(error.reason))

    # ------------------------------------------------------------------ internals

    def _advertised(self, max_length: int | None) -> None:
        """Receive P-DATA-TF up to what we advertised; 0 ("no limit") means the reader's internal cap."""
        if max_length is not None:
            self._reader.max_pdata = max_length or UNLIMITED_PDATA_CAP

    def _protocol_error(self, error: PDUDecodeError) -> None:
        """Evt19 for an undecodable PDU: abort with the error's reason, stop reading."""
        self._pending = Abort(PROVIDER, int(error.reason))
        # The stream has lost its framing: nothing after this can be trusted, so stop reading it
        # (one A-ABORT, not one per garbage PDU that follows).
        self._desynchronised = True
        if self.state is State.STA13:
            self._step(Event.EVT19)
            return
        self._events.append(Aborted("local", PROVIDER, int(error.reason), str(error)))
        self._step(Event.EVT19)

    def _receive_pdu(self, pdu: PDU) -> None:
        event = _PDU_EVENTS[TYPE_CODES[type(pdu)]]
        acceptable = True
        abort_from_user = False
        # Sent only if the table answers this PDU with an abort (AA-1, AA-7, AA-8): it was unexpected.
        self._pending = Abort(PROVIDER, AbortReason.UNEXPECTED_PDU)
        if isinstance(pdu, AssociateRQ):
            if self.state is State.STA2:
                try:
                    check_request_structure(pdu)
                except PDUDecodeError as error:
                    self._protocol_error(error)
                    return
                self.request_pdu = pdu
                acceptable = bool(pdu.protocol_version & 1)
                if not acceptable:
                    self._pending = AssociateRJ(1, 2, 2)  # permanent, ACSE, protocol version not supported
                self._indication = AssociationRequested(pdu)
        elif isinstance(pdu, AssociateAC):
            self._accepted(pdu)
        elif isinstance(pdu, AssociateRJ):
            self._indication = AssociationRejected(pdu)
        elif isinstance(pdu, PDataTF):
            self._indication = DataReceived(pdu)
        elif isinstance(pdu, ReleaseRQ):
            self._indication = ReleaseRequested()
        elif isinstance(pdu, ReleaseRP):
            self._indication = ReleaseConfirmed()
        elif isinstance(pdu, Abort):
            abort_from_user = pdu.source == 0
            who = "the peer" if abort_from_user else "the peer's service provider"
            self._indication = Aborted("peer", pdu.source, pdu.reason, f"association aborted by {who}")
        self._step(event, acceptable=acceptable, abort_from_user=abort_from_user, from_peer=pdu)
        if self._refused_ac is not None and self.state is State.STA6:
            problem, self._refused_ac = self._refused_ac, None
            self.abort_for(RemoteProtocolError(problem, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE))

    def _accepted(self, ac: AssociateAC) -> None:
        self._indication = AssociationAccepted(ac)
        if self.state is State.STA5 and self.request_pdu is not None:
            self.accept_pdu = ac
            self.contexts = requestor_contexts(self.request_pdu, ac)
            problem = peer_max_pdu_problem(ac.user_info.max_length)
            if problem is not None:
                # A requestor cannot reject an AC: the user never sees it accepted, only this abort.
                self._indication = None
                self._refused_ac = problem
                return
            self.peer_max_pdu = send_limit(ac.user_info.max_length)

    def _step(
        self, event: Event, *, acceptable: bool = True, abort_from_user: bool = False, from_peer: PDU | None = None
    ) -> None:
        try:
            result = transition(self.state, event, self.role, acceptable=acceptable, abort_from_user=abort_from_user)
        except RemoteProtocolError:
            self._indication = None  # a PDU in Sta1/Sta4 cannot come from a real transport: drop it
            return
        indication, self._indication = self._indication, None
        if from_peer is not None and Effect.SEND_ABORT in result.effects and self.state is not State.STA13:
            # The table aborts on this PDU (AA-1/AA-8): tell the user why, once.
            name = PDUType.NAMES[TYPE_CODES[type(from_peer)]]
            indication = Aborted("local", PROVIDER, AbortReason.UNEXPECTED_PDU, f"unexpected {name} from the peer")
            self._events.append(indication)
            indication = None
        for effect in result.effects:
            self._apply(effect, indication)
        self.state = result.next_state

    def _send_for(self, effect: Effect) -> None:
        """Queue the PDU a SEND_* effect names (the pending one for AC, RJ and A-ABORT)."""
        pdu: PDU
        if effect is Effect.SEND_PDATA:
            buffers, self._pending_pdata = self._pending_pdata, ()
            self._out.extend(buffers)
            if self.trace is not None:
                self.trace("sent", f"P-DATA-TF {sum(len(b) for b in buffers) - 6} bytes")
            return
        if effect is Effect.SEND_ASSOCIATE_RQ:
            assert self.request_pdu is not None
            pdu = self.request_pdu
        elif effect is Effect.SEND_RELEASE_RQ:
            pdu = _RELEASE_RQ
        elif effect is Effect.SEND_RELEASE_RP:
            pdu = _RELEASE_RP
        else:
            assert self._pending is not None
            pdu = self._pending
        self._out.append(pdu.encode())
        if self.trace is not None:
            self.trace("sent", summarize(pdu))

    def _apply(self, effect: Effect, indication: AssociationEvent | None) -> None:
        if effect in _SENDS:
            self._send_for(effect)
        elif effect is Effect.START_ARTIM:
            self.artim_running = True
            self.artim_starts += 1
        elif effect is Effect.STOP_ARTIM:
            self.artim_running = False
        elif effect is Effect.CLOSE_TRANSPORT:
            self.close_requested = True
        elif effect in _INDICATIONS and indication is not None:
            self._events.append(indication)


_SENDS = frozenset(e for e in Effect if e.name.startswith("SEND_"))
_INDICATIONS = frozenset(e for e in Effect if e.name.startswith("INDICATE_"))
_RELEASE_RQ = ReleaseRQ()
_RELEASE_RP = ReleaseRP()
