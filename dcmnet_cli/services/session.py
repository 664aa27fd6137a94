"""One association seen from the application: the single consumer of the DIMSE event stream.

Every SCU and the SCP read events here and nowhere else. A :class:`Session` sends requests and yields
their responses (:meth:`Session.responses`), serves requests the peer sends meanwhile (C-STORE
sub-operations of a C-GET) or for as long as the association lasts (:meth:`Session.serve`, the SCP), and
turns the ways an association can end into the package's errors. The rules, once:

- A request whose SOP class does not fit its presentation context is refused by the DIMSE layer
  (PS3.7 §9.1: 0x0122); the session answers it and the association goes on.
- A request nobody handles is answered 0x0211 (unrecognised operation); a malformed request whose
  Message ID is known gets 0xC000 (PS3.7 scenario F.34). An SCU-only session (``handlers`` None) takes
  any request from the peer as a protocol error.
- A C-CANCEL-RQ (PS3.7 §9.3.2.3, no response of its own) is noted in :attr:`Session.cancelled`; the
  handler of the operation it names reads it between two of its responses. A handler that runs long
  without reading this association (C-MOVE sub-operations over another one) calls
  :meth:`Session.serve_arrived` between steps to see it.
- A malformed or misaddressed response, a release request or an abort while a request is outstanding
  end the run with :class:`RemoteDIMSEError` / :class:`AssociationAborted` (exit 6).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator, Mapping
from ..ul.typenames import Any, NamedTuple, Protocol  # typing's names, typing not imported (start-up)

from ..dimse.commandset import C_CANCEL_RQ, C_STORE_RQ, Message, c_store_rsp
from ..dimse.connection import (
    Aborted,
    Command,
    CommandReceived,
    DatasetFragment,
    Event,
    InvalidCommand,
    MessageComplete,
    ReleaseRequested,
    RequestRefused,
)
from ..dimse.fragment import Dataset
from ..dimse.status import CANNOT_UNDERSTAND, UNRECOGNIZED_OPERATION
from ..errors import AssociationAborted, RemoteDIMSEError, TimeoutExpired
from ..transport.channel import Driver
from ..ul.negotiation import AcceptedContext


class Response(NamedTuple):
    """One response to our request; ``dataset`` is its whole data set (identifier), if it had one."""

    message: Message
    dataset: bytes | None


class AssociationReport:
    """What one association did, for logs and ``--json``. A plain slotted class, not a dataclass: this
    module is on ``dcmnet echo``'s start-up path, where ``dataclasses`` (and ``copy``) cost ~3 ms."""

    __slots__ = ("peer", "calling_ae", "called_ae", "started", "echoes", "stored", "failed", "bytes", "outcome",
                 "queries", "retrievals")

    def __init__(self, peer: str, calling_ae: str, called_ae: str) -> None:
        self.peer, self.calling_ae, self.called_ae = peer, calling_ae, called_ae
        self.started = time.monotonic()
        self.echoes = self.stored = self.failed = self.bytes = self.queries = self.retrievals = 0
        self.outcome = "released"

    def __repr__(self) -> str:
        return (f"AssociationReport({self.peer!r}, {self.calling_ae!r} -> {self.called_ae!r}, echoes={self.echoes}, "
                f"stored={self.stored}, failed={self.failed}, bytes={self.bytes}, outcome={self.outcome!r})")

    @property
    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)


class MessageHandler:
    """Receives one DIMSE request from the peer (command, data set) and answers it."""

    def begin(self, session: "Session", context_id: int, message: Message) -> None:
        self.session, self.context_id, self.message = session, context_id, message

    def fragment(self, data: memoryview, last: bool) -> None:
        """A streamed data set fragment (C-STORE-RQ); valid only until this call returns."""

    def complete(self, dataset: bytes | None) -> None:
        """The request is whole; ``dataset`` is its collected data set (None when streamed or absent)."""

    def abandon(self) -> None:
        """The association ended mid-message: undo partial work (temporary files)."""

    def bulk_target(self, count: int) -> tuple[int, int] | None:
        """(file descriptor, bytes) where the driver may move up to ``count`` of the next data-set bytes
        without handing them to :meth:`fragment` (bytes the handler writes unread): see transport/bulk.py."""
        return None

    def bulk_moved(self, count: int, error: OSError | None) -> None:
        """The driver moved ``count`` bytes :meth:`bulk_target` allowed; ``error``: writing them failed."""

    def refuse(self, session: "Session", event: RequestRefused) -> None:
        """The DIMSE layer refused this request (its SOP class does not fit the context): answer it."""
        session.answer(event.context_id, event.message, event.status, event.reason)


HandlerFactory = Callable[[], MessageHandler]


class Waits(Protocol):
    """The deadlines one outstanding request is bounded by."""

    def wait(self) -> float | None:
        """Seconds until the nearest deadline (None: none)."""

    def expired(self, session: "Session") -> None:
        """The wait ran out: raise TimeoutExpired, or act (send C-CANCEL) and return to wait on."""

    def activity(self) -> None:
        """The peer said something: restart what the silence between messages is bounded by."""


class DimseTimeout:
    """The DIMSE timeout (PS3.7 has none; every toolkit has one): the longest silence from the peer
    while a response is outstanding; every event restarts it, so steady pending responses never trip it."""

    def __init__(self, seconds: float | None, what: str = "DIMSE response") -> None:
        self.seconds, self.what = seconds, what
        self._at: float | None = None
        self.activity()

    def wait(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def expired(self, session: "Session") -> None:
        session.driver.abort()
        raise TimeoutExpired(f"no {self.what} within {self.seconds:g} s (DIMSE timeout)")

    def activity(self) -> None:
        self._at = None if self.seconds is None else time.monotonic() + self.seconds


MAX_CANCELLED = 256
"""C-CANCEL-RQs noted at once: a peer cancelling requests it never sent cannot grow the set without bound
(beyond it, its own further cancels are ignored)."""


class _NothingArrived(Exception):
    """Internal to :meth:`Session.serve_arrived`: nothing more has arrived."""


class _NoWait:
    """The :class:`Waits` of :meth:`Session.serve_arrived`: take what has arrived, never block."""

    def wait(self) -> float | None:
        return 0.0

    def expired(self, session: "Session") -> None:
        raise _NothingArrived()

    def activity(self) -> None:
        pass


_NO_WAIT = _NoWait()


class Session:
    """The application's side of one established association."""

    def __init__(self, driver: Driver, handlers: Mapping[int, HandlerFactory] | None = None,
                 report: AssociationReport | None = None) -> None:
        self.driver = driver
        self.handlers = handlers
        self.report = report or AssociationReport(driver.peer, "", "")
        self._handler: MessageHandler | None = None
        self._storing = False
        """Completing a C-STORE-RQ while :meth:`serve` lets the driver hold answers (a peer granted a window
        of 4 or more, store --async): its answer may be held (:meth:`send`); serve's reads flush it before
        they wait."""
        self.cancelled: set[int] = set()
        """Message IDs of requests the peer asked to cancel (C-CANCEL-RQ): their handlers stop and answer 0xFE00."""
        self._serving: dict[type, Callable[[Any], None]] = {
            CommandReceived: self._command, MessageComplete: self._complete, DatasetFragment: self._fragment,
            RequestRefused: self._refuse, InvalidCommand: self._invalid}
        """What to do with each kind of event a request from the peer brings: one dict lookup per event
        (the events are final NamedTuple classes), not a chain of isinstance tests."""

    @property
    def contexts(self) -> dict[int, AcceptedContext]:
        return self.driver.conn.contexts

    # ------------------------------------------------------------------ sending

    def send(self, context_id: int, message: Command, dataset: Dataset = None) -> None:
        """Send one message (a :class:`Message`, or a command set already encoded: ``store_commands``).
        The answer to a C-STORE-RQ served by :meth:`serve` may be held while the peer's next requests are
        already here (:meth:`Driver.send_answer`)."""
        if self._storing and dataset is None:
            self.driver.send_answer(context_id, message)
        else:
            self.driver.send_message(context_id, message, dataset)

    def request(self, context_id: int, build: Callable[[int], Command], dataset: Dataset = None) -> int:
        """Send the request ``build(message_id)``; returns its Message ID."""
        message_id = self.driver.next_message_id()
        self.driver.send_message(context_id, build(message_id), dataset)
        return message_id

    def answer(self, context_id: int, request: Message, status: int, comment: str | None = None) -> None:
        """A response with only a status to ``request`` (refusals, unrecognised operations)."""
        if request.message_id is None:
            return
        if request.command_field == C_STORE_RQ:
            response = c_store_rsp(request.message_id, status, request.affected_sop_class_uid,
                                   request.affected_sop_instance_uid, comment)
        else:
            response = Message(request.command_field | 0x8000, message_id_being_responded_to=request.message_id,
                               affected_sop_class_uid=request.affected_sop_class_uid, status=status,
                               error_comment=comment[:64] if comment else None)
        self.send(context_id, response)

    # ------------------------------------------------------------------ the SCU: responses to a request

    def responses(self, message_id: int | Container[int], waits: Waits, expected: int | None = None,
                  what: str = "DIMSE response") -> Iterator[Response]:
        """Each response to ``message_id``, pending ones included, until the caller stops asking (after
        the final one). Requests from the peer in between are served."""
        while True:
            event = self._next_outstanding(waits, what)
            kind = type(event)
            if kind is MessageComplete:
                if event.message.is_response:  # type: ignore[union-attr]
                    yield Response(event.message, event.dataset)  # type: ignore[union-attr, arg-type]
                else:
                    self._complete(event)  # type: ignore[arg-type]
            elif kind is CommandReceived:
                if event.message.is_response:  # type: ignore[union-attr]
                    self._check_response(event.message, message_id, expected, what)  # type: ignore[union-attr, arg-type]
                else:
                    self._begin(event)  # type: ignore[arg-type]
            else:
                self._serve_event(event)  # fragments, refusals, malformed commands of the peer's requests

    def response(self, message_id: int | Container[int], timeout: float | None, expected: int | None = None) -> Response:
        """The one (final) response to a request that has no pending responses (C-ECHO, C-STORE); to any
        of several outstanding ones when ``message_id`` is a collection (store --async, PS3.7 D.3.3.3)."""
        return next(self.responses(message_id, DimseTimeout(timeout), expected))

    def serve_arrived(self, what: str = "response") -> None:
        """Serve what the peer has already sent, without waiting for more (a C-CANCEL-RQ while a handler
        works over another association). The ends of an association raise as in :meth:`responses`."""
        while True:
            try:
                event = self._next_outstanding(_NO_WAIT, what)
            except _NothingArrived:
                return
            self._serve_event(event)

    def _check_response(self, message: Message, message_id: int | Container[int], expected: int | None, what: str) -> None:
        wrong_field = expected is not None and message.command_field != expected
        answered = message.message_id_being_responded_to
        if wrong_field or (answered != message_id if isinstance(message_id, int) else answered not in message_id):
            self.driver.abort()
            raise RemoteDIMSEError(f"unexpected {message.name} from the peer (expected a {what} to message {message_id})")

    def _next_outstanding(self, waits: Waits, what: str) -> Event:
        """The next event while a request is outstanding; the ends of an association raise."""
        driver = self.driver
        while True:
            try:
                event = driver.next_event(waits.wait())
            except TimeoutExpired:
                waits.expired(self)
                continue
            kind = type(event)
            if kind is CommandReceived or kind is MessageComplete or kind is DatasetFragment:
                waits.activity()
                return event  # type: ignore[return-value]
            if event is None:
                self._abandon()
                raise AssociationAborted(f"the peer closed the connection while a {what} was outstanding")
            if kind is Aborted:
                self._abandon()
                raise AssociationAborted(event.message, event.source, event.reason)  # type: ignore[union-attr, arg-type]
            if kind is ReleaseRequested:
                self._abandon()
                driver.abort()
                raise AssociationAborted(f"the peer asked to release while a {what} was outstanding")
            waits.activity()
            return event

    # ------------------------------------------------------------------ the SCP: serve until the end

    def serve(self, idle_timeout: float | None, before_release: Callable[[], None] | None = None) -> str:
        """Answer the peer's requests until it releases ("released") or the association ends otherwise
        ("aborted"); ``idle_timeout`` bounds the silence between two events (TimeoutExpired).
        ``before_release`` runs before the A-RELEASE-RP leaves (e.g. the index commits what this
        association stored, so whoever waited for the release sees it)."""
        driver, released, serving = self.driver, False, self._serving
        driver.hold_answers_for(driver.assoc.granted_window)  # a peer allowed one request at a time: none held
        driver.bulk_sink = self
        try:
            while True:
                event = driver.next_event(idle_timeout)
                handle = serving.get(type(event))
                if handle is not None:
                    handle(event)
                    continue
                if event is None or type(event) is Aborted:
                    return "released" if released and event is None else "aborted"
                if type(event) is ReleaseRequested:
                    released = True
                    if before_release is not None:
                        before_release()
                    driver.conn.release_response()
                    driver.flush()
                    continue  # Sta13: the peer closes (or ARTIM), then next_event returns None
                self._serve_event(event)
        finally:
            driver.hold_answers = 1
            driver.bulk_sink = None
            self._abandon()

    def _serve_event(self, event: Event) -> None:
        handle = self._serving.get(type(event))
        if handle is not None:
            handle(event)

    def _command(self, event: CommandReceived) -> None:
        if event.message.command_field & 0x8000:  # Message.is_response, inlined (once per request served)
            self._handler = MessageHandler()  # a stray response: nothing to do with it
        else:
            self._begin(event)

    # ------------------------------------------------------------------ requests from the peer

    def _begin(self, event: CommandReceived) -> None:
        message, handlers = event.message, self.handlers
        if handlers is None:
            self.driver.abort()
            raise RemoteDIMSEError(f"unexpected {message.name} from the peer (no request of its kind was expected)")
        field = message.command_field
        factory = handlers.get(field)
        if field == C_CANCEL_RQ and message.message_id_being_responded_to is not None:
            if len(self.cancelled) < MAX_CANCELLED:  # and a C_CANCEL_RQ handler, if any
                self.cancelled.add(message.message_id_being_responded_to)
        if factory is None:
            self.answer(event.context_id, message, UNRECOGNIZED_OPERATION)
            self._handler = MessageHandler()  # swallows the data set of what was answered
            return
        handler = factory()
        handler.begin(self, event.context_id, message)
        self._handler = handler

    def _complete(self, event: MessageComplete) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            if self.driver.hold_answers > 1 and event.message.command_field == C_STORE_RQ:
                self._storing = True
                try:
                    handler.complete(event.dataset)
                finally:
                    self._storing = False
            else:
                handler.complete(event.dataset)

    def _fragment(self, event: DatasetFragment) -> None:
        self.report.bytes += len(event.data)
        if self._handler is not None:
            self._handler.fragment(event.data, event.last)

    def bulk_target(self, count: int) -> tuple[int, int] | None:
        """The driver's :class:`~..transport.bulk.BulkSink`: the current handler's file, if it takes bulk bytes."""
        handler = self._handler
        return None if handler is None else handler.bulk_target(count)

    def bulk_moved(self, count: int, error: OSError | None) -> None:
        self.report.bytes += count
        if self._handler is not None:
            self._handler.bulk_moved(count, error)

    def _refuse(self, event: RequestRefused) -> None:
        factory = None if self.handlers is None else self.handlers.get(event.message.command_field)
        (factory() if factory is not None else MessageHandler()).refuse(self, event)

    def _invalid(self, event: InvalidCommand) -> None:
        """A malformed request gets a failure answer; a malformed response ends the run."""
        error = event.error
        if error.command_field is not None and not error.command_field & 0x8000 and error.message_id is not None:
            response = Message((error.command_field | 0x8000) & 0xFFFF, message_id_being_responded_to=error.message_id,
                               status=CANNOT_UNDERSTAND, error_comment=str(error)[:64])
            self.send(event.context_id, response)
            return
        self.driver.abort()
        raise RemoteDIMSEError(f"malformed response from the peer: {error}")

    def _abandon(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.abandon()
