"""C-FIND SCU (PS3.4 C.4.1, K.4): one association, one query, a stream of matches, optional C-CANCEL.

The loop reads pending responses one by one (each restarts the DIMSE timeout), decodes each identifier
fully (our own reader, :func:`..query_build.decode_match`: a lean DataSet, no pydicom), hands it to
``on_match`` as it arrives and returns the final status. The identifier sent may be a lean DataSet
(``find``) or a pydicom Dataset (``get``'s probe). Rules:

- a pending response whose identifier cannot be decoded (or that has none) is a protocol problem: we
  abort the association and raise DIMSEError (exit 6);
- a final status is returned as it is, whatever its category; the CLI maps it (unknown codes fall in
  PS3.7's failure range, exit 7);
- ``cancel_after`` sends C-CANCEL-RQ (PS3.7 §9.3.2.3) after that many matches; pending responses the peer
  had already sent are read and dropped (not passed on), and the final response is awaited as usual;
- ``on_idle()`` is called each time every response received so far has been handed over and the next
  one has not arrived (:func:`..transport.arrived.more_arrived`), before waiting for it: ``find`` flushes
  its output there, so a reader sees each match while the peer pauses, and a burst of matches in one
  write rather than one write (and one wake-up of the reader) per match;
- the peer decides how big an identifier is and how many pending responses come, so both are bounded:
  an identifier over ``max_identifier`` bytes aborts the association (AssociationAborted naming the cap,
  exit 6) before it is held whole, and ``deadline`` seconds bound the whole query, association and
  release included (then: A-ABORT and TimeoutExpired, exit 6), like move/get's ``--deadline``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...ul.typenames import Any, NamedTuple  # typing's names, typing not imported (start-up)
from ... import counted
from ...dimse.commandset import C_FIND_RSP, PRIORITY_MEDIUM, c_cancel_rq, c_find_rq
from ...dimse.status import Category, describe
from ...errors import DIMSEError, RemoteDIMSEError, TimeoutExpired
from ...part10.dataset_codec import DataSet
from ...part10.syntaxes import EXPLICIT_LE, IMPLICIT_LE
from ...transport.arrived import more_arrived
from ...transport.client import Timeouts, release
from ...ul.items import SOPClassExtendedNegotiation
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptedContext, build_contexts
from .association import associate, context_for
from ..peer import Peer
from ..query import QuerySpec, encode_identifier
from ..query_build import decode_match, encode_query
from ..session import DimseTimeout, Session



_PENDING = frozenset((0xFF00, 0xFF01))
"""Pending and Pending with optional keys unsupported (PS3.4 C.4.1.1.4): every match but the last."""


class ExtendedFlags(NamedTuple):
    """C-FIND SOP Class Extended Negotiation (PS3.4 C.5.1.1, Table C.5-1; K.5.1 for worklist)."""

    relational: bool = False
    datetime_matching: bool = False
    fuzzy: bool = False
    timezone_adjust: bool = False

    def any(self) -> bool:
        return any(self)

    def info(self) -> bytes:
        """Byte 0 relational-queries, 1 combined date-time matching, 2 fuzzy semantic matching of person
        names, 3 timezone query adjustment: 1 = supported/requested, 0 = not."""
        return bytes(int(flag) for flag in self)

    @classmethod
    def from_info(cls, info: bytes) -> "ExtendedFlags":
        """The flags the peer accepted; missing trailing bytes mean 0 (PS3.4 C.5.1.1)."""
        padded = (bytes(info) + b"\0\0\0\0")[:4]
        return cls(*(byte == 1 for byte in padded))


class FindResult:
    """What one query came to. A plain slotted class, not a dataclass: ``dataclasses`` (and building the
    class) cost ~3 ms of every ``find``'s start-up, which nothing else on its path imports."""

    __slots__ = ("peer", "matches", "status", "error_comment", "offending_element", "cancel_sent",
                 "dropped_after_cancel", "extended_accepted", "elapsed_ms")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.matches = 0
        self.status: int | None = None
        self.error_comment: str | None = None
        self.offending_element: tuple[int, ...] | None = None
        self.cancel_sent = False
        self.dropped_after_cancel = 0
        self.extended_accepted: ExtendedFlags | None = None
        self.elapsed_ms = 0.0

    def __repr__(self) -> str:
        return (f"FindResult(matches={self.matches}, status={self.status}, cancel_sent={self.cancel_sent}, "
                f"elapsed_ms={self.elapsed_ms:.1f})")

    @property
    def category(self) -> Category | None:
        return None if self.status is None else describe(self.status, "find").category

    @property
    def meaning(self) -> str:
        return "" if self.status is None else describe(self.status, "find").meaning


def find(
    peer: Peer,
    spec: QuerySpec,
    calling_ae: str = "DCMNET",
    timeouts: Timeouts = Timeouts(),
    *,
    max_pdu: int = DEFAULT_MAX_PDU,
    extended: ExtendedFlags = ExtendedFlags(),
    cancel_after: int | None = None,
    priority: int = PRIORITY_MEDIUM,
    on_match: Callable[[int, Any], None] | None = None,
    trace: Callable[[str, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    max_identifier: int = 64 << 20,
    deadline: float | None = None,
    on_idle: Callable[[], None] | None = None,
) -> FindResult:
    """Query ``peer``; ``on_match(index, match)`` gets each match (1-based, a lean DataSet) as it arrives,
    ``on_idle()`` is called before waiting for the peer (see the module docstring)."""
    started = time.perf_counter()
    sop_class = spec.model.find
    result = FindResult(peer)
    waits = FindWaits(timeouts.dimse, deadline, on_idle)
    negotiation = (SOPClassExtendedNegotiation(sop_class, extended.info()),) if extended.any() else ()
    setup = timeouts._replace(acse=waits.bounded(timeouts.acse), connect=waits.bounded(timeouts.connect))
    session = associate(peer, calling_ae, build_contexts([(sop_class, (EXPLICIT_LE, IMPLICIT_LE))]), setup, max_pdu,
                        trace=trace, log=log, extended=negotiation)
    channel = session.driver
    channel.conn.max_collected_bytes = max_identifier
    waits.driver = channel
    try:
        context = context_for(session, sop_class)
        if negotiation:
            result.extended_accepted = _accepted_flags(session, sop_class)
            if log is not None:
                log(f"extended negotiation: proposed {_flags_text(extended)}, "
                    f"accepted {_flags_text(result.extended_accepted) if result.extended_accepted else 'none (no reply)'}")
        identifier = _encode(spec.identifier, context.transfer_syntax)
        message_id = session.request(context.context_id, lambda mid: c_find_rq(mid, sop_class, priority), identifier)
        if log is not None:
            log(f"sent C-FIND-RQ (message {message_id}, {spec.model.name} model, level {spec.level or '-'}, "
                f"{len(identifier)} byte identifier)")
        _matches(session, message_id, context, waits, result, cancel_after, on_match, log)
        release(channel, waits.bounded(timeouts.acse))
    except DIMSEError:
        channel.abort()
        raise
    finally:
        if not channel.closed:
            channel.abort()
    result.elapsed_ms = (time.perf_counter() - started) * 1000
    return result


def _encode(identifier: Any, transfer_syntax: str) -> bytes:
    """find's lean identifier by our encoder; a pydicom Dataset (get's C-FIND probe) by pydicom's."""
    if isinstance(identifier, DataSet):
        return encode_query(identifier, transfer_syntax)
    return encode_identifier(identifier, transfer_syntax)


class FindWaits(DimseTimeout):
    """The DIMSE timeout between responses, the optional deadline on the whole query, and ``on_idle``
    before a wait that may block (see the module docstring)."""

    def __init__(self, dimse: float | None, deadline: float | None,
                 on_idle: Callable[[], None] | None = None) -> None:
        super().__init__(dimse, "C-FIND response")
        self.deadline = deadline
        self.deadline_at = None if deadline is None else time.monotonic() + deadline
        self.on_idle = on_idle
        self.driver: Any = None

    def bounded(self, timeout: float | None) -> float | None:
        """``timeout`` shortened to what is left of the deadline."""
        if self.deadline_at is None:
            return timeout
        left = max(0.001, self.deadline_at - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def wait(self) -> float | None:
        if self.on_idle is not None and self.driver is not None and not more_arrived(self.driver):
            self.on_idle()
        return self.bounded(super().wait())

    def expired(self, session: Session) -> None:
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            session.driver.abort()
            raise TimeoutExpired(f"the query did not finish within --deadline {self.deadline:g} s; "
                                 f"association aborted")
        if self._at is not None and time.monotonic() < self._at:
            return  # woken a little early: wait on
        super().expired(session)


def _matches(session: Session, message_id: int, context: AcceptedContext, waits: FindWaits,
             result: FindResult, cancel_after: int | None, on_match: Callable[[int, "DataSet"], None] | None,
             log: Callable[[str], None] | None) -> None:
    """Read the responses to our C-FIND-RQ into ``result`` until the final one (see the module rules)."""
    for response, data in session.responses(message_id, waits, C_FIND_RSP, "C-FIND response"):
        status = response.status if response.status is not None else 0xFFFF
        if status not in _PENDING and describe(status, "find").category is not Category.PENDING:
            result.status = status
            result.error_comment = response.error_comment
            result.offending_element = response.offending_element
            return
        if data is None:
            raise RemoteDIMSEError(f"pending C-FIND-RSP (status 0x{status:04X}) without an identifier")
        if result.cancel_sent:
            result.dropped_after_cancel += 1
            continue
        match = decode_match(data, context.transfer_syntax)
        result.matches += 1
        if on_match is not None:
            on_match(result.matches, match)
        if cancel_after is not None and result.matches >= cancel_after:
            session.send(context.context_id, c_cancel_rq(message_id))
            result.cancel_sent = True
            if log is not None:
                log(f"sent C-CANCEL-RQ after {counted(result.matches, 'match', 'matches')}")


def _accepted_flags(session: Session, sop_class: str) -> ExtendedFlags | None:
    ac = session.driver.assoc.accept_pdu
    if ac is None or ac.user_info is None:
        return None
    for item in ac.user_info.extended:
        if item.sop_class_uid == sop_class:
            return ExtendedFlags.from_info(item.info)
    return None


def _flags_text(flags: ExtendedFlags) -> str:
    names = [name for name, on in zip(("relational", "datetime-matching", "fuzzy", "timezone-adjust"), flags) if on]
    return ", ".join(names) or "nothing"
