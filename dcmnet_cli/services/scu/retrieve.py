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
SCU=0, SCP=1, as DCMTK getscu does); every C-STORE-RQ that arrives on the association is written by
the Storage SCP's own handler (atomic writes, path templates, path-safe names) and answered with its
status before the next event is read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from ...dimse.assembler import CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from ...dimse.commandset import (
    C_GET_RSP,
    C_MOVE_RSP,
    C_STORE_RQ,
    Message,
    c_cancel_rq,
    c_get_rq,
    c_move_rq,
    c_store_rsp,
)
from ...dimse.status import Category, describe
from ...errors import AssociationAborted, DcmnetError, DIMSEError, TimeoutExpired
from ...transport.channel import Channel
from ...transport.client import Timeouts, release
from ...ul.association import Aborted, ReleaseRequested
from ...ul.items import RoleSelection
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptedContext, build_contexts
from .association import associate, context_for
from ..peer import Peer
from ..scp.entity import AssociationReport, MessageHandler

if TYPE_CHECKING:  # pragma: no cover
    from ..scp.storage import StorageSCP

MOVE = "move"
GET = "get"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
QR_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE)
STORAGE_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE)
MAX_STORAGE_CLASSES = 127
"""128 presentation contexts at most (PS3.8 §9.3.2.2), one of them for the Q/R GET SOP class."""
FAILED_SOP_LIST = 0x00080058
UNRECOGNIZED_OPERATION = 0x0211
SOP_CLASS_NOT_SUPPORTED = 0x0122
CANNOT_UNDERSTAND = 0xC000


class RetrieveRequest(NamedTuple):
    """One C-MOVE/C-GET to send: ``encode(transfer_syntax_uid)`` gives the identifier bytes in the
    accepted syntax; ``label`` names it in logs (e.g. ``STUDY 1.2.3``)."""

    encode: Callable[[str], bytes]
    label: str


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
) -> RetrieveResult:
    """Send each request in turn over one association; never raises a :class:`DcmnetError` (it is
    returned in ``result.error`` with whatever was learnt before it)."""
    if kind not in (MOVE, GET):
        raise ValueError(f"kind must be {MOVE!r} or {GET!r}")
    if kind == MOVE and not destination:
        raise ValueError("C-MOVE needs a move destination AE title")
    if kind == GET and storage is None:
        raise ValueError("C-GET needs a Storage SCP for its sub-operations")
    callbacks = callbacks or RetrieveCallbacks()
    result = RetrieveResult(kind, peer, destination)
    started = time.monotonic()
    clock = _Clock(timeouts.dimse, None if deadline is None else started + deadline, deadline)
    pairs = [(sop_class, QR_SYNTAXES)]
    from ..query import MODELS

    # The model's FIND context too, as movescu/getscu propose it: dcmqrscp logs an error without it.
    pairs += [(m.find, QR_SYNTAXES) for m in MODELS.values() if sop_class in (m.move, m.get) and m.find][:1]
    roles: tuple[RoleSelection, ...] = ()
    if kind == GET:
        pairs += [(uid, STORAGE_SYNTAXES) for uid in storage_classes]
        roles = storage_roles(storage_classes)
    channel: Channel | None = None
    try:
        setup = timeouts._replace(acse=clock.bounded(timeouts.acse), connect=clock.bounded(timeouts.connect))
        channel = associate(peer, calling_ae, build_contexts(pairs), setup, max_pdu, roles=roles,
                            trace=callbacks.trace, log=callbacks.log)
        result.associated = True
        context = context_for(channel, sop_class)
        session = _Session(kind, channel, context, clock, storage, peer, calling_ae, callbacks)
        if cancel_after is not None:
            clock.cancel_at = time.monotonic() + cancel_after
        for request in requests:
            operation = Operation(request.label)
            result.operations.append(operation)
            session.perform(request, operation, destination)
            if session.cancel_sent:
                result.cancel_sent = True
                break
        release(channel, clock.bounded(timeouts.acse))
    except DcmnetError as error:
        result.error = error
    finally:
        if channel is not None and not channel.closed:
            channel.abort()
        result.elapsed = time.monotonic() - started
    return result


@dataclass
class _Clock:
    """The deadlines one wait is bounded by; see the module docstring."""

    dimse: float | None
    deadline_at: float | None
    deadline: float | None
    cancel_at: float | None = None
    dimse_at: float | None = None

    def bounded(self, timeout: float | None) -> float | None:
        """``timeout`` shortened to what is left of the whole-operation deadline."""
        if self.deadline_at is None:
            return timeout
        left = max(0.001, self.deadline_at - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def restart(self) -> None:
        self.dimse_at = None if self.dimse is None else time.monotonic() + self.dimse

    def wait(self, cancel_pending: bool) -> float | None:
        limits = [t for t in (self.dimse_at, self.deadline_at, self.cancel_at if cancel_pending else None) if t is not None]
        return None if not limits else max(0.0, min(limits) - time.monotonic())


class _Session:
    """Drives one association's retrieves: requests, responses, C-STORE sub-operations, cancel."""

    def __init__(self, kind: str, channel: Channel, context: AcceptedContext, clock: _Clock,
                 storage: "StorageSCP | None", peer: Peer, calling_ae: str, callbacks: RetrieveCallbacks) -> None:
        self.kind, self.channel, self.context, self.clock = kind, channel, context, clock
        self.storage, self.callbacks = storage, callbacks
        self.response_field = C_MOVE_RSP if kind == MOVE else C_GET_RSP
        # C-STORE sub-operations come from the peer: it is the "calling" side of what it stores.
        self.report = AssociationReport(channel.peer, peer.called_ae, calling_ae)
        self.cancel_sent = False
        self.message_id = 0

    # ------------------------------------------------------------------ one request

    def perform(self, request: RetrieveRequest, operation: Operation, destination: str | None) -> None:
        channel = self.channel
        self.message_id = channel.next_message_id()
        sop_class = self.context.abstract_syntax
        rq = c_move_rq(self.message_id, sop_class, destination or "") if self.kind == MOVE \
            else c_get_rq(self.message_id, sop_class)
        try:
            identifier = request.encode(self.context.transfer_syntax)
        except ValueError as error:
            raise DIMSEError(f"cannot encode the identifier: {error}") from None
        channel.send_message(self.context.context_id, rq, identifier)
        self.callbacks.on_request(operation)
        self.clock.restart()
        handler: MessageHandler | None = None
        response: Message | None = None
        data: list[bytes] | None = None
        while True:
            event = self._next(operation)
            if isinstance(event, CommandReceived):
                message = event.message
                if self._is_our_response(message):
                    response, data = message, ([] if event.has_dataset else None)
                else:
                    handler = self._request(event)
            elif isinstance(event, DatasetFragment):
                if response is not None and data is not None:
                    data.append(bytes(event.data))
                elif handler is not None:
                    handler.fragment(event.data, event.last)
            elif isinstance(event, MessageComplete):
                if response is not None:
                    final = self._response(operation, response, b"".join(data) if data is not None else None)
                    response, data = None, None
                    if final:
                        return
                elif handler is not None:
                    current, handler = handler, None
                    current.complete()
            elif isinstance(event, InvalidCommand):
                self._invalid(event)

    def _is_our_response(self, message: Message) -> bool:
        if not message.is_response:
            return False
        if message.command_field != self.response_field or message.message_id_being_responded_to != self.message_id:
            self.channel.abort()
            raise DIMSEError(f"unexpected {message.name} from the peer (expected a response to message {self.message_id})")
        return True

    def _next(self, operation: Operation) -> Any:
        """The next DIMSE event within the DIMSE timeout, the deadline, and the cancel time."""
        clock, channel = self.clock, self.channel
        while True:
            try:
                event = channel.next_event(clock.wait(not self.cancel_sent))
            except TimeoutExpired:
                now = time.monotonic()
                if clock.deadline_at is not None and now >= clock.deadline_at:
                    channel.abort()
                    raise TimeoutExpired(f"the retrieve did not finish within --deadline {clock.deadline:g} s; "
                                         f"association aborted") from None
                if not self.cancel_sent and clock.cancel_at is not None and now >= clock.cancel_at:
                    self._cancel(operation)
                    continue
                if clock.dimse_at is not None and now >= clock.dimse_at:
                    channel.abort()
                    raise TimeoutExpired(f"no DIMSE message from the peer within {clock.dimse:g} s (DIMSE timeout)") from None
                continue
            if event is None:
                raise AssociationAborted("the peer closed the connection during the retrieve")
            if isinstance(event, Aborted):
                raise AssociationAborted(event.message, event.source, event.reason)
            if isinstance(event, ReleaseRequested):
                channel.abort()
                raise AssociationAborted("the peer asked to release while a retrieve was outstanding")
            clock.restart()
            return event

    def _cancel(self, operation: Operation) -> None:
        self.channel.send_message(self.context.context_id, c_cancel_rq(self.message_id))
        self.cancel_sent = operation.cancel_sent = True
        if self.callbacks.log is not None:
            self.callbacks.log(f"sent C-CANCEL-RQ for message {self.message_id}")

    # ------------------------------------------------------------------ what the peer sends

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
        if data:
            self._identifier(operation, data)
        if final:
            operation.status = status
            operation.error_comment = message.error_comment
        else:
            operation.pending += 1
        self.callbacks.on_response(operation, message)
        return final

    def _identifier(self, operation: Operation, data: bytes) -> None:
        """The response identifier: only Failed SOP Instance UID List (0008,0058) matters (PS3.4 C.4.2.1.3.1).
        A malformed one is noted, never fatal: it is information about sub-operations, not a status."""
        from ..query import decode_identifier

        try:
            ds = decode_identifier(data, self.context.transfer_syntax)
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

    def _request(self, event: CommandReceived) -> MessageHandler:
        """A request from the peer on this association: C-STORE sub-operations during C-GET only."""
        message = event.message
        context = self.channel.assoc.contexts.get(event.context_id)
        if message.command_field == C_STORE_RQ and self.kind == GET and self.storage is not None:
            if context is not None and context.abstract_syntax == message.affected_sop_class_uid:
                from ..scp.storage import StoreHandler

                handler = StoreHandler(self.storage)
                handler.begin(self.channel, event.context_id, message, self.report)
                return handler
            self._answer(event.context_id, message, SOP_CLASS_NOT_SUPPORTED,
                         "SOP class differs from the presentation context's")
        else:
            self._answer(event.context_id, message, UNRECOGNIZED_OPERATION, None)
        return MessageHandler()  # discards the data set of what we already answered

    def _answer(self, context_id: int, message: Message, status: int, comment: str | None) -> None:
        if message.message_id is None:
            return
        if message.command_field == C_STORE_RQ:
            response = c_store_rsp(message.message_id, status, message.affected_sop_class_uid,
                                   message.affected_sop_instance_uid, comment)
            if self.storage is not None:
                self.storage.totals.add(False)
                self.storage.on_event({"event": "store-failed", "path": None, "peer": self.channel.peer,
                                       "sop_class_uid": message.affected_sop_class_uid,
                                       "sop_instance_uid": message.affected_sop_instance_uid, "bytes": 0,
                                       "status": f"0x{status:04X}", "detail": comment})
        else:
            response = Message(message.command_field | 0x8000, message_id_being_responded_to=message.message_id,
                               affected_sop_class_uid=message.affected_sop_class_uid, status=status)
        self.channel.send_message(context_id, response)

    def _invalid(self, event: InvalidCommand) -> None:
        """A malformed request gets a failure answer (as listen does); a malformed response ends the run."""
        error = event.error
        if error.command_field is not None and not error.command_field & 0x8000 and error.message_id is not None:
            response = Message((error.command_field | 0x8000) & 0xFFFF, message_id_being_responded_to=error.message_id,
                               status=CANNOT_UNDERSTAND, error_comment=str(error)[:64])
            self.channel.send_message(event.context_id, response)
            return
        self.channel.abort()
        raise DIMSEError(f"malformed response from the peer: {error}")


# ------------------------------------------------------------------ C-MOVE to ourselves (--store-port)


class StoreReceiver:
    """A Storage SCP on ``host:port`` served by a background thread for the length of a ``with`` block
    (the C-MOVE destination when it is this process). Stopped and joined on exit, never left behind."""

    def __init__(self, storage: "StorageSCP", contexts: Any, ae_title: str, host: str, port: int,
                 max_pdu: int = DEFAULT_MAX_PDU, on_event: Callable[[dict], None] = lambda e: None,
                 network_timeout: float | None = None, grace: float = 5.0, tls: Any = None) -> None:
        """``tls``: a server ``ssl.SSLContext`` to require TLS on the receiver (``move --store-tls``)."""
        from ..scp.entity import ListenerSettings, build_listener

        settings = ListenerSettings(ae_title, host, port, max_pdu, network_timeout=network_timeout, tls=tls)
        self.storage = storage
        self.grace = grace
        self.server = build_listener(settings, contexts, storage.handlers(), on_event)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> "StoreReceiver":
        self.server.bind()  # OSError (port in use) propagates to the caller before any thread exists
        self._thread = threading.Thread(target=self.server.serve_forever, name="dcmnet-store-receiver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(self.grace)
        if self._thread is not None:
            self._thread.join(self.grace + 5.0)
        self.storage.close(self.grace)


# ------------------------------------------------------------------ requests from ``find --json`` output

_KEY_TAGS = {"PatientID": "00100020", "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
             "SOPInstanceUID": "00080018"}
_LEVEL_TAG = "00080052"


def _json_value(obj: dict, tag: str) -> str | None:
    """The first value of ``tag`` in a DICOM JSON object (PS3.18 F.2), as text; None if absent."""
    entry = obj.get(tag, obj.get(tag.lower()))
    if not isinstance(entry, dict):
        return None
    values = entry.get("Value")
    if not isinstance(values, list) or not values or not isinstance(values[0], (str, int, float)):
        return None
    text = str(values[0]).strip()
    return text or None


def _deepest_level(obj: dict, levels: Sequence[str]) -> str | None:
    from ..query import UNIQUE_KEYS

    present = [level for level in levels if _json_value(obj, _KEY_TAGS[UNIQUE_KEYS[level]])]
    return present[-1] if present else None


def requests_from_ndjson(lines: Sequence[str], model: str, level: str | None) -> tuple[list[RetrieveRequest], list[str]]:
    """One request per distinct match printed by ``find --json`` (one DICOM JSON object per line).

    Each line is retrieved at its own QueryRetrieveLevel (0008,0052), else at ``level``, else at the
    deepest level whose unique key it carries; the identifier holds that level's unique key and those of
    the levels above it that the model requires (PS3.4 C.4.2.2.1). Returns the requests and one message
    per unusable line (exit 3 for those lines).
    """
    import json

    from ..query import HIGHER_KEYS, MODEL_LEVELS, UNIQUE_KEYS

    levels = MODEL_LEVELS[model]
    requests: list[RetrieveRequest] = []
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as error:
            problems.append(f"--from-json line {number}: not JSON ({error})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"--from-json line {number}: not a DICOM JSON object")
            continue
        raw_level = _json_value(obj, _LEVEL_TAG)
        line_level = (raw_level or level or _deepest_level(obj, levels) or "").upper()
        if line_level not in levels:
            problems.append(f"--from-json line {number}: level {line_level or '(none)'} is not in the {model} root model "
                            f"({', '.join(levels)})")
            continue
        keys = (*HIGHER_KEYS[model][line_level], UNIQUE_KEYS[line_level])
        values = {key: _json_value(obj, _KEY_TAGS[key]) for key in keys}
        missing = [key for key, value in values.items() if not value]
        if missing:
            problems.append(f"--from-json line {number}: a {line_level} retrieve needs {', '.join(missing)}")
            continue
        identity = (line_level, *(values[k] or "" for k in keys))
        if identity in seen:
            continue
        seen.add(identity)
        requests.append(_request_for(line_level, values))
    return requests, problems


def _request_for(level: str, values: dict[str, str | None]) -> RetrieveRequest:
    from pydicom import Dataset

    from ..query import UNIQUE_KEYS, encode_identifier

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return RetrieveRequest(lambda syntax, ds=ds: encode_identifier(ds, syntax), f"{level} {values[UNIQUE_KEYS[level]]}")


def request_for_dataset(ds: Any, level: str | None) -> RetrieveRequest:
    """The request for an identifier built from -k/-f (``QuerySpec.identifier``)."""
    from ..query import UNIQUE_KEYS, encode_identifier

    label = level or "?"
    key = UNIQUE_KEYS.get(level or "")
    value = ds.get(key) if key else None
    if value not in (None, ""):
        label += f" {value}"
    return RetrieveRequest(lambda syntax: encode_identifier(ds, syntax), label)
