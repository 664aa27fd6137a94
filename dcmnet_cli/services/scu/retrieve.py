"""C-MOVE and C-GET SCU (PS3.4 C.4.2, C.4.3; PS3.7 §9.1.3, §9.1.4): one association, one or more retrieves.

What the caller gets back is data (:class:`RetrieveResult`): the final status of each request, the
sub-operation counts, the Failed SOP Instance UID List (0008,0058) when the peer gives one, and the error
that ended the association early, if any. The CLI turns that into output and an exit code.

Timing rules, all deadlines fed to :meth:`Channel.next_event`, nothing polls:

- the DIMSE timeout (``Timeouts.dimse``) bounds the silence between two messages from the peer: every
  event (a pending response, a C-STORE sub-operation, a data set fragment) restarts it, so a long
  retrieve with steady pending responses never times out;
- ``deadline`` bounds the whole operation (association set-up to release): when it passes the
  association is aborted and :class:`TimeoutExpired` ends the run (exit 6);
- ``cancel_after`` sends one C-CANCEL-RQ (PS3.7 §9.3.2.3 / §9.3.3.3) that many seconds after the first
  request and stops before any further request; the peer then answers Cancel (0xFE00) or finishes.

C-GET (PS3.4 C.4.3): the storage SOP classes are proposed with the SCP role only (RoleSelection
SCU=0, SCP=1, as DCMTK getscu does), each with an uncompressed and (room permitting) a compressed
context, whose objects are stored as received; every C-STORE-RQ that arrives on the association is written by
the Storage SCP's own handler (atomic writes, path templates, path-safe names) and answered with its
status before the next event is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from ... import counted
from ...dimse.commandset import C_ECHO_RQ, C_GET_RSP, C_MOVE_RSP, Message, c_cancel_rq, c_get_rq, c_move_rq
from ...dimse.status import Category, describe
from ...errors import DcmnetError, LocalDIMSEError, TimeoutExpired
from ...part10.syntaxes import EXPLICIT_LE, IMPLICIT_LE
from ...transport.client import Timeouts, release
from ...transport.server import BackgroundServer
from ...ul.items import RoleSelection
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptedContext, build_contexts
from .association import associate, context_for
from ..peer import Peer
from ..scp.store_handler import storage_handlers
from ..session import AssociationReport, HandlerFactory, Session

if TYPE_CHECKING:  # pragma: no cover
    from ..scp.events import ListenEvent
    from ..scp.storage import StorageSCP

MOVE = "move"
GET = "get"
QR_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE)
STORAGE_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE)
UNCOMPRESSED_GROUP = frozenset({EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.2"})
COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
)
"""What ``get`` accepts besides uncompressed: stored as received, never decoded (the common lossless and
lossy syntaxes)."""
MAX_CONTEXTS = 128
MAX_STORAGE_CLASSES = 126
"""128 presentation contexts at most (PS3.8 §9.3.2.2), two of them for the Q/R GET and FIND SOP classes."""
FAILED_SOP_LIST = 0x00080058


class RetrieveRequest(NamedTuple):
    """One C-MOVE/C-GET to send: ``encode(transfer_syntax_uid)`` gives the identifier bytes in the
    accepted syntax; ``label`` names it in logs (e.g. ``STUDY 1.2.3``); ``identifier`` and ``level``
    (when known) let ``get`` first ask which SOP classes it will receive."""

    encode: Callable[[str], bytes]
    label: str
    identifier: Any = None
    level: str | None = None


@dataclass
class Operation:
    """What the peer answered to one request (PS3.7 Tables 9.3-5/9.3-7: counts; PS3.4 C.4.2.1.3)."""

    label: str
    status: int | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    failed_uids: list[str] = field(default_factory=list)
    error_comment: str | None = None
    pending: int = 0
    cancel_sent: bool = False
    identifier_problems: list[str] = field(default_factory=list)
    error: DcmnetError | None = None
    """What ended this operation before a final status (an abort, a malformed response, a timeout)."""
    foreign_elements: list[str] = field(default_factory=list)
    """Elements outside group 0000 the peer put in its command sets (ignored, named for -v)."""

    @property
    def category(self) -> Category | None:
        return None if self.status is None else describe(self.status, "move").category


@dataclass
class RetrieveResult:
    kind: str
    peer: Peer
    destination: str | None = None
    operations: list[Operation] = field(default_factory=list)
    elapsed: float = 0.0
    error: DcmnetError | None = None
    cancel_sent: bool = False
    associated: bool = False
    not_attempted: list[str] = field(default_factory=list)
    """Labels of the requests never sent (the association could not be reopened, deadline, cancel)."""


@dataclass
class RetrieveCallbacks:
    """``on_response(operation, message)`` for each response (pending and final), from the calling thread."""

    on_response: Callable[[Operation, Message], None] = lambda op, message: None
    on_request: Callable[[Operation], None] = lambda op: None
    log: Callable[[str], None] | None = None
    trace: Callable[[str, str], None] | None = None


def storage_roles(sop_classes: Sequence[str]) -> tuple[RoleSelection, ...]:
    """C-GET: we are the Storage SCP; mirror getscu (SCU role 0, SCP role 1; PS3.7 D.3.3.4)."""
    return tuple(RoleSelection(uid, 0, 1) for uid in sop_classes)


def resolve_storage_class(text: str) -> str:
    """A storage SOP class UID or pydicom keyword (``CTImageStorage``) → UID; ValueError otherwise."""
    import re

    from pydicom._uid_dict import UID_dictionary

    value = text.strip()
    for uid, (_name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if kind == "SOP Class" and value in (uid, keyword):
            return uid
    if re.fullmatch(r"[0-9]+(\.[0-9]+)*", value) and len(value) <= 64:
        return value  # a private SOP class
    raise ValueError(f"{text!r} is neither a SOP class UID nor a SOP class keyword (e.g. CTImageStorage)")


# ------------------------------------------------------------------------------------------ the SCU


def retrieve(
    kind: str,
    peer: Peer,
    calling_ae: str,
    sop_class: str,
    requests: Sequence[RetrieveRequest],
    *,
    destination: str | None = None,
    storage: "StorageSCP | None" = None,
    storage_classes: Sequence[str] = (),
    timeouts: Timeouts = Timeouts(),
    max_pdu: int = DEFAULT_MAX_PDU,
    deadline: float | None = None,
    cancel_after: float | None = None,
    callbacks: RetrieveCallbacks | None = None,
    storage_syntaxes: Sequence[str] | None = None,
) -> RetrieveResult:
    """Send each request in turn; never raises a :class:`DcmnetError` (it is returned in
    ``result.error`` or the operation's ``error``, with whatever was learnt before it).

    Each request is its own operation: one that fails (a malformed response, an abort, a DIMSE timeout)
    does not stop the others. When the association ended with it, a new one is opened for the remaining
    requests; if that cannot be opened (or the whole-run ``deadline`` passed, or we sent a C-CANCEL),
    the remaining requests are listed in ``result.not_attempted``.
    ``storage_syntaxes``: C-GET, the transfer syntaxes to accept (default: uncompressed + compressed).
    """
    if kind not in (MOVE, GET):
        raise ValueError(f"kind must be {MOVE!r} or {GET!r}")
    if kind == MOVE and not destination:
        raise ValueError("C-MOVE needs a move destination AE title")
    if kind == GET and storage is None:
        raise ValueError("C-GET needs a Storage SCP for its sub-operations")
    callbacks = callbacks or RetrieveCallbacks()
    result = RetrieveResult(kind, peer, destination)
    started = time.monotonic()
    plan = _plan(kind, sop_class, storage, storage_classes, storage_syntaxes)
    run = _Run(kind, peer, calling_ae, sop_class, plan, timeouts, max_pdu, callbacks, result)
    run.waits = _Waits(timeouts.dimse, deadline, run.cancel)
    try:
        run.all(requests, destination, cancel_after)
    finally:
        run.close()
        result.elapsed = time.monotonic() - started
    return result


class _Run:
    """The associations of one retrieve run: opened on demand, reopened after one ended early."""

    def __init__(self, kind: str, peer: Peer, calling_ae: str, sop_class: str, plan: "_Plan", timeouts: Timeouts,
                 max_pdu: int, callbacks: RetrieveCallbacks, result: RetrieveResult) -> None:
        self.kind, self.peer, self.calling_ae, self.sop_class, self.plan = kind, peer, calling_ae, sop_class, plan
        self.timeouts, self.max_pdu, self.callbacks, self.result = timeouts, max_pdu, callbacks, result
        self.session: Session | None = None
        self.retrieves: _Retrieves | None = None
        self.waits = _Waits(None, None, self.cancel)

    def cancel(self) -> None:
        if self.retrieves is not None:
            self.retrieves.cancel()

    def open(self) -> _Retrieves:
        pairs, roles, handlers = self.plan
        waits, timeouts = self.waits, self.timeouts
        setup = timeouts._replace(acse=waits.bounded(timeouts.acse), connect=waits.bounded(timeouts.connect))
        self.session = session = associate(self.peer, self.calling_ae, build_contexts(pairs), setup, self.max_pdu,
                                           roles=roles, trace=self.callbacks.trace, log=self.callbacks.log,
                                           handlers=handlers)
        # C-STORE sub-operations come from the peer: it is the "calling" side of what it stores.
        session.report = AssociationReport(session.driver.peer, self.peer.called_ae, self.calling_ae)
        self.result.associated = True
        self.retrieves = _Retrieves(self.kind, session, context_for(session, self.sop_class), waits, self.callbacks)
        return self.retrieves

    def all(self, requests: Sequence[RetrieveRequest], destination: str | None, cancel_after: float | None) -> None:
        result = self.result
        for index, request in enumerate(requests):
            if self.session is None or self.session.driver.closed:
                if not self._reopen(index, len(requests) - index):
                    result.not_attempted = [r.label for r in requests[index:]]
                    return
                if cancel_after is not None and self.waits.cancel_at is None and not result.cancel_sent:
                    self.waits.cancel_at = time.monotonic() + cancel_after
            operation = Operation(request.label)
            result.operations.append(operation)
            assert self.retrieves is not None
            try:
                self.retrieves.perform(request, operation, destination)
            except DcmnetError as error:
                operation.error = error
                if self.waits.past_deadline():
                    result.not_attempted = [r.label for r in requests[index + 1:]]
                    return
            if self.retrieves.cancel_sent:
                result.cancel_sent = True
                result.not_attempted = [r.label for r in requests[index + 1:]]
                return
        self._release()

    def _reopen(self, index: int, left: int) -> bool:
        """Open the (next) association; False (error noted) when that fails or the deadline passed."""
        if self.waits.past_deadline():
            return False
        if index and self.callbacks.log is not None:
            self.callbacks.log(f"the association ended early: opening a new one for the {counted(left, 'remaining request')}")
        try:
            self.open()
        except DcmnetError as error:
            self.result.error = error
            return False
        return True

    def _release(self) -> None:
        if self.session is None or self.session.driver.closed:
            return
        try:
            release(self.session.driver, self.waits.bounded(self.timeouts.acse))
        except DcmnetError as error:
            self.result.error = error

    def close(self) -> None:
        if self.session is not None and not self.session.driver.closed:
            self.session.driver.abort()


_Plan = tuple[list[tuple[str, tuple[str, ...]]], tuple[RoleSelection, ...], dict[int, HandlerFactory]]


def _plan(kind: str, sop_class: str, storage: "StorageSCP | None", storage_classes: Sequence[str],
          storage_syntaxes: Sequence[str] | None = None) -> _Plan:
    """The contexts to propose, the role selections, and the requests we serve on the association.

    C-GET: each storage class gets an uncompressed context and, while the 128-context limit allows
    (PS3.8 §9.3.2.2), a compressed one too, so a peer that cannot transcode can still send what it
    holds compressed (see :func:`storage_pairs`)."""
    from ..query import MODELS

    pairs: list[tuple[str, tuple[str, ...]]] = [(sop_class, QR_SYNTAXES)]
    # The model's FIND context too, as movescu/getscu propose it: dcmqrscp logs an error without it.
    pairs += [(m.find, QR_SYNTAXES) for m in MODELS.values() if sop_class in (m.move, m.get) and m.find][:1]
    if kind != GET:
        return pairs, (), {}  # a C-MOVE SCU serves nothing: whatever the peer asks is answered 0x0211
    pairs += storage_pairs(storage_classes, storage_syntaxes, MAX_CONTEXTS - len(pairs))
    handlers = storage_handlers(storage) if storage is not None else {}
    handlers.pop(C_ECHO_RQ, None)  # only the C-STORE sub-operations belong on a C-GET association
    return pairs, storage_roles(storage_classes), handlers


def storage_pairs(classes: Sequence[str], syntaxes: Sequence[str] | None, budget: int) -> list[tuple[str, tuple[str, ...]]]:
    """(class, syntaxes) contexts for C-GET within ``budget`` contexts: every class gets an uncompressed
    context; as many classes as still fit (the first ones) also get a compressed one. ``syntaxes``
    (``--accept``) narrows both groups; a group left empty is not proposed.

    A class's compressed context comes before its uncompressed one. Peers that pick the context by the
    object's transfer syntax (Orthanc, pynetdicom, dcm4chee) do not care; DCMTK's dcmqrscp sends every
    object of a class on the first context it accepted for it, and it accepts a compressed one only when
    configured to store compressed (+xr, +xs ...), i.e. when that is what it holds."""
    chosen = tuple(syntaxes) if syntaxes else (*STORAGE_SYNTAXES, *COMPRESSED_SYNTAXES)
    plain = tuple(s for s in chosen if s in UNCOMPRESSED_GROUP)
    packed = tuple(s for s in chosen if s not in UNCOMPRESSED_GROUP)
    if not plain:
        plain, packed = packed, ()
    classes = list(classes)[:budget]
    doubled = min(len(classes), max(0, budget - len(classes))) if packed else 0
    pairs: list[tuple[str, tuple[str, ...]]] = []
    for index, uid in enumerate(classes):
        if index < doubled:
            pairs.append((uid, packed))
        pairs.append((uid, plain))
    return pairs


class _Waits:
    """The deadlines of one retrieve (see the module docstring); the session asks them at every wait."""

    def __init__(self, dimse: float | None, deadline: float | None, cancel: "Callable[[], None]") -> None:
        self.dimse, self.deadline = dimse, deadline
        self.deadline_at = None if deadline is None else time.monotonic() + deadline
        self.cancel_at: float | None = None
        self.dimse_at: float | None = None
        self._cancel = cancel

    def bounded(self, timeout: float | None) -> float | None:
        """``timeout`` shortened to what is left of the whole-operation deadline."""
        if self.deadline_at is None:
            return timeout
        left = max(0.001, self.deadline_at - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def past_deadline(self) -> bool:
        return self.deadline_at is not None and time.monotonic() >= self.deadline_at

    def activity(self) -> None:
        self.dimse_at = None if self.dimse is None else time.monotonic() + self.dimse

    def wait(self) -> float | None:
        limits = [t for t in (self.dimse_at, self.deadline_at, self.cancel_at) if t is not None]
        return None if not limits else max(0.0, min(limits) - time.monotonic())

    def expired(self, session: Session) -> None:
        now = time.monotonic()
        if self.deadline_at is not None and now >= self.deadline_at:
            session.driver.abort()
            raise TimeoutExpired(f"the retrieve did not finish within --deadline {self.deadline:g} s; "
                                 f"association aborted")
        if self.cancel_at is not None and now >= self.cancel_at:
            self.cancel_at = None
            self._cancel()
            return
        if self.dimse_at is not None and now >= self.dimse_at:
            session.driver.abort()
            raise TimeoutExpired(f"no DIMSE message from the peer within {self.dimse:g} s (DIMSE timeout)")


class _Retrieves:
    """Drives one association's retrieves: a request, its responses, the C-CANCEL."""

    def __init__(self, kind: str, session: Session, context: AcceptedContext, waits: _Waits,
                 callbacks: RetrieveCallbacks) -> None:
        self.kind, self.session, self.context, self.waits = kind, session, context, waits
        self.callbacks = callbacks
        self.response_field = C_MOVE_RSP if kind == MOVE else C_GET_RSP
        self.cancel_sent = False
        self.message_id = 0
        self.operation: Operation | None = None

    def perform(self, request: RetrieveRequest, operation: Operation, destination: str | None) -> None:
        sop_class = self.context.abstract_syntax
        try:
            identifier = request.encode(self.context.transfer_syntax)
        except ValueError as error:
            raise LocalDIMSEError(f"cannot encode the identifier: {error}") from None
        build = (lambda mid: c_move_rq(mid, sop_class, destination or "")) if self.kind == MOVE \
            else (lambda mid: c_get_rq(mid, sop_class))
        self.operation = operation
        self.message_id = self.session.request(self.context.context_id, build, identifier)
        self.callbacks.on_request(operation)
        self.waits.activity()
        what = f"C-{self.kind.upper()} response"
        for response, data in self.session.responses(self.message_id, self.waits, self.response_field, what):
            if self._response(operation, response, data):
                return

    def cancel(self) -> None:
        """The --cancel-after time came: one C-CANCEL-RQ for the outstanding request."""
        if self.cancel_sent or self.operation is None:
            return
        self.session.send(self.context.context_id, c_cancel_rq(self.message_id))
        self.cancel_sent = self.operation.cancel_sent = True
        if self.callbacks.log is not None:
            self.callbacks.log(f"sent C-CANCEL-RQ for message {self.message_id}")

    def _response(self, operation: Operation, message: Message, data: bytes | None) -> bool:
        """Record one C-MOVE/C-GET-RSP; True when it is the final one."""
        status = message.status if message.status is not None else 0xFFFF
        final = describe(status, self.kind).category is not Category.PENDING
        operation.remaining = message.remaining if message.remaining is not None else \
            (0 if final and status != 0xFE00 else operation.remaining)
        for name in ("completed", "failed", "warning"):
            value = getattr(message, name)
            if value is not None:
                setattr(operation, name, value)
        if message.foreign:
            _foreign(operation, message, self.callbacks.log)
        if data:
            _failed_uids(operation, data, self.context.transfer_syntax)
        if final:
            operation.status = status
            operation.error_comment = message.error_comment
        else:
            operation.pending += 1
        self.callbacks.on_response(operation, message)
        return final


def _foreign(operation: Operation, message: Message, log: Callable[[str], None] | None) -> None:
    """Elements outside group 0000 in a response's command set (Orthanc 1.10: (0008,0000) and the
    Failed SOP Instance UID List (0008,0058)): ignored, but the list is used as the failed UIDs."""
    for tag, raw in message.foreign:
        name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if name not in operation.foreign_elements:
            operation.foreign_elements.append(name)
            if log is not None:
                log(f"{message.name}: ignored element {name} outside group 0000 in the command set")
        if tag == FAILED_SOP_LIST:
            for uid in raw.decode("latin-1").split("\\"):
                text = uid.strip("\0 ")
                if text and text not in operation.failed_uids:
                    operation.failed_uids.append(text)


def _failed_uids(operation: Operation, data: bytes, transfer_syntax: str) -> None:
    """The response identifier: only Failed SOP Instance UID List (0008,0058) matters (PS3.4 C.4.2.1.3.1).
    A malformed one is noted, never fatal: it is information about sub-operations, not a status."""
    from ..query import decode_identifier

    try:
        ds = decode_identifier(data, transfer_syntax)
        element = ds.get(FAILED_SOP_LIST)
        value = None if element is None else element.value
    except Exception as error:  # DIMSEError, or whatever pydicom raises for bad data
        operation.identifier_problems.append(str(error))
        return
    if value is None or value == "":
        return
    values = [value] if isinstance(value, (str, bytes)) else list(value)
    for uid in values:
        text = uid.decode("latin-1") if isinstance(uid, bytes) else str(uid)
        text = text.strip("\0 ")
        if text and text not in operation.failed_uids:
            operation.failed_uids.append(text)


# ------------------------------------------------------------------ C-MOVE to ourselves (--store-port)


class StoreReceiver:
    """A Storage SCP on ``host:port`` served in the background for the length of a ``with`` block (the
    C-MOVE destination when it is this process). Stopped and joined on exit, never left behind."""

    def __init__(self, storage: "StorageSCP", contexts: Any, ae_title: str, host: str, port: int,
                 max_pdu: int = DEFAULT_MAX_PDU, on_event: Callable[["ListenEvent"], None] = lambda e: None,
                 network_timeout: float | None = None, grace: float = 5.0, tls: Any = None) -> None:
        """``tls``: a server ``ssl.SSLContext`` to require TLS on the receiver (``move --store-tls``)."""
        from ..scp.entity import ListenerSettings, build_listener

        settings = ListenerSettings(ae_title, host, port, max_pdu, network_timeout=network_timeout, tls=tls)
        self.storage = storage
        self.grace = grace
        self.server = build_listener(settings, contexts, storage_handlers(storage), on_event,
                                     on_association_end=storage.association_ended)
        self._background = BackgroundServer(self.server, grace, name="dcmnet-store-receiver")

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> "StoreReceiver":
        self._background.start()  # OSError (port in use) propagates to the caller before any thread exists
        return self

    def __exit__(self, *exc: Any) -> None:
        self._background.stop()
        self.storage.close(self.grace)
