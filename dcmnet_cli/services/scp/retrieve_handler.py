"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3; PS3.7 §9.1.3, §9.1.4): what ``listen`` sends back.

One request, start to end, in the association's own thread:

1. The identifier is decoded in its context's syntax and checked: a Query/Retrieve Level the model has
   (PS3.4 C.6) and the unique key of that level (PS3.4 C.4.2.2.1; the keys of the levels above, which
   hierarchical retrieve asks for, narrow the selection when present but are not required, as many SCUs
   leave out the Patient ID); else 0xA900. A C-MOVE whose Move Destination is not a known AE title gets
   0xA801 before anything is looked up. The archive's index lists the instances (:class:`Archive`); its
   failure is 0xC000.
2. Each instance is one C-STORE sub-operation, sent as the file holds it (its own transfer syntax,
   streamed from disk; converted only when the receiver accepted none of the contexts proposing it, see
   :mod:`..scu.store_plan`): over a new association to the destination for C-MOVE (:mod:`.retrieve_send`),
   on the requestor's own association for C-GET, where only classes it offered with the SCP role can go;
   the others are counted failed and the rest still go (PS3.4 C.4.3.3.1).
3. Pending responses (0xFF00) carry the remaining/completed/failed/warning counts: one after the first
   sub-operation, then at most every :data:`PENDING_INTERVAL` seconds. A C-CANCEL-RQ (noted by the
   :class:`~..session.Session`) stops before the next sub-operation: 0xFE00 with the counts.
4. The final status (PS3.4 C.4.2.1.5, C.4.3.1.4): 0x0000 when every sub-operation succeeded; 0xB000 when
   some failed or warned; 0xA702 when every one failed (or the destination could not be reached, the
   reason in the Error Comment); the Failed SOP Instance UID List (0008,0058) is the identifier whenever
   one failed. Each request answered is one :class:`RetrieveServed` event (listen -v, --json).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol, Sequence

from ...dimse.commandset import C_GET_RQ, C_MOVE_RQ, c_get_rsp, c_move_rsp
from ...dimse.status import CANCEL, CANNOT_UNDERSTAND, DATASET_MISMATCH, SUCCESS, Category, describe
from ...errors import DcmnetError
from ...part10.syntaxes import IMPLICIT_LE
from ...transport.client import Timeouts
from ..archive.index import StoredInstance
from ..archive.search import MODEL_LEVELS, UNIQUE_KEYS
from ..peer import Peer
from ..session import HandlerFactory, MessageHandler
from .retrieve_send import Sender, StoreOutcome, get_sender, move_sender

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

PENDING = 0xFF00
SUB_OPERATIONS_WARNING = 0xB000
UNABLE_TO_PERFORM = 0xA702
DESTINATION_UNKNOWN = 0xA801
PENDING_INTERVAL = 0.1
"""Seconds between two pending responses: one after the first sub-operation, then at most ten a second
(PS3.4 C.4.2.3.1, C.4.3.3.1: pending responses are optional; each costs both sides a message)."""

PATIENT, STUDY, PATIENT_STUDY = "patient", "study", "patient-study"
MOVE_CLASSES = {
    "1.2.840.10008.5.1.4.1.2.1.2": PATIENT,  # Patient Root Query/Retrieve Information Model - MOVE
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY,  # Study Root Query/Retrieve Information Model - MOVE
    "1.2.840.10008.5.1.4.1.2.3.2": PATIENT_STUDY,  # Patient/Study Only (retired) - MOVE
}
GET_CLASSES = {
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT,  # Patient Root Query/Retrieve Information Model - GET
    "1.2.840.10008.5.1.4.1.2.2.3": STUDY,  # Study Root Query/Retrieve Information Model - GET
    "1.2.840.10008.5.1.4.1.2.3.3": PATIENT_STUDY,  # Patient/Study Only (retired) - GET
}
RETRIEVE_CLASSES = {**MOVE_CLASSES, **GET_CLASSES}

class Archive(Protocol):
    """The part of the index a retrieve needs (``services.archive.index.Index``)."""

    def instances(self, model: str, level: str, identifier: "Dataset") -> Sequence[StoredInstance]:
        """Every stored instance below the entities the identifier names, in study/series/instance order."""


@dataclass
class RetrieveSCP:
    """What the C-MOVE/C-GET handlers share: the archive, our AE title, where C-MOVE may send, timeouts."""

    archive: Archive
    ae_title: str
    destinations: Callable[[str], Peer | None] = lambda aet: None
    """The Peer of a Move Destination AE title (``--move-destination``, config nodes), None if unknown."""
    timeouts: Timeouts = Timeouts()
    max_pdu: int = 16382 * 8
    on_event: Callable[[Any], None] | None = None
    """Gets a :class:`RetrieveServed` record per request (listen's event log: a JSON line, a -v line)."""


class RetrieveServed(NamedTuple):
    """One C-MOVE/C-GET request answered (a listener event, see services/scp/events.py)."""

    event: str  # "retrieve"
    peer: str
    calling_ae: str
    service: str  # "C-MOVE" or "C-GET"
    destination: str | None
    status: str
    completed: int
    failed: int
    warning: int
    detail: str


class RetrieveRefused(Exception):
    """The request is refused before any sub-operation: answered with this status and comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status, self.comment = status, comment[:64]


@dataclass
class Counts:
    """The sub-operation counts of one retrieve (PS3.7 Tables 9.3-5, 9.3-7)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, sop_instance_uid: str, outcome: StoreOutcome) -> None:
        self.remaining -= 1
        category = None if outcome.status is None else describe(outcome.status, "store").category
        if category is Category.SUCCESS:
            self.completed += 1
        elif category is Category.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def fail_rest(self, rest: Sequence[Any]) -> None:
        self.failed += len(rest)
        self.remaining -= len(rest)
        self.failed_uids.extend(item.sop_instance_uid for item in rest)

    def final_status(self) -> int:
        if not self.failed and not self.warning:
            return SUCCESS
        if self.failed and not self.completed and not self.warning:
            return UNABLE_TO_PERFORM
        return SUB_OPERATIONS_WARNING


class RetrieveHandler(MessageHandler):
    """One C-MOVE-RQ or C-GET-RQ: the identifier is collected whole, then :meth:`complete` runs it."""

    def __init__(self, scp: RetrieveSCP) -> None:
        self.scp = scp

    def complete(self, dataset: bytes | None) -> None:
        message = self.message
        self.is_move = message.command_field == C_MOVE_RQ
        context = self.session.contexts.get(self.context_id)
        self.syntax = context.transfer_syntax if context is not None else IMPLICIT_LE
        try:
            destination = self._destination() if self.is_move else None
            instances = self._instances(dataset)
        except RetrieveRefused as refused:
            self._report(refused.status, Counts(0), f"refused: {refused.comment}")
            self._respond(refused.status, Counts(0), comment=refused.comment, final=True, with_counts=False)
            return
        counts = Counts(len(instances))
        if not instances:
            self._respond(SUCCESS, counts, final=True)
            return
        scp = self.scp
        sender = get_sender(self.session, scp.timeouts.dimse) if destination is None else move_sender(
            scp.ae_title, scp.timeouts, scp.max_pdu, destination, instances, message, self.session.report.calling_ae)
        self._run(sender, instances, counts)

    # ------------------------------------------------------------------ the request

    def _destination(self) -> Peer:
        aet = (self.message.move_destination or "").strip()
        peer = self.scp.destinations(aet) if aet else None
        if peer is None:
            raise RetrieveRefused(DESTINATION_UNKNOWN, f"move destination unknown: {aet!r}")
        return peer

    def _instances(self, dataset: bytes | None) -> Sequence[Any]:
        from ..query import decode_identifier

        model = RETRIEVE_CLASSES.get(self.message.affected_sop_class_uid or "")
        if model is None:
            raise RetrieveRefused(DATASET_MISMATCH, "not a Query/Retrieve MOVE or GET SOP class")
        if not dataset:
            raise RetrieveRefused(DATASET_MISMATCH, "no identifier")
        try:
            identifier = decode_identifier(dataset, self.syntax)
        except DcmnetError as error:
            raise RetrieveRefused(DATASET_MISMATCH, f"undecodable identifier: {error}") from None
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in MODEL_LEVELS[model]:
            raise RetrieveRefused(DATASET_MISMATCH, f"Query/Retrieve Level {level or '(none)'!r} not in this model")
        key = UNIQUE_KEYS[level][0]
        if not str(identifier.get(key, "") or "").strip():
            raise RetrieveRefused(DATASET_MISMATCH, f"no {key} (the unique key of level {level})")
        try:
            return list(self.scp.archive.instances(model, level, identifier))
        except (ValueError, KeyError, TypeError) as error:
            raise RetrieveRefused(DATASET_MISMATCH, f"identifier not usable: {error}") from None
        except Exception as error:  # the index's own failure (a locked or broken database)
            raise RetrieveRefused(CANNOT_UNDERSTAND, f"index: {type(error).__name__}: {error}") from None

    # ------------------------------------------------------------------ the sub-operations

    def _run(self, sender: Sender, instances: Sequence[Any], counts: Counts) -> None:
        message_id = self.message.message_id
        session = self.session
        cancelled, next_pending, stopped = False, 0.0, None
        try:
            for index, instance in enumerate(instances):
                if self.is_move:
                    session.serve_arrived("C-MOVE response")
                if message_id in session.cancelled:
                    cancelled = True
                    break
                outcome = sender.send(instance)
                counts.record(instance.sop_instance_uid, outcome)
                if outcome.fatal:  # the destination's association is gone: nothing more can be sent
                    counts.fail_rest(instances[index + 1:])
                    stopped = outcome.detail
                    break
                if counts.remaining and (now := time.monotonic()) >= next_pending:
                    self._respond(PENDING, counts)
                    next_pending = now + PENDING_INTERVAL
        finally:
            sender.close()
        session.cancelled.discard(message_id or -1)
        status = CANCEL if cancelled else counts.final_status()
        self._report(status, counts, stopped or "")
        self._respond(status, counts, final=True, comment=stopped[:64] if stopped else None)

    # ------------------------------------------------------------------ responses

    def _respond(self, status: int, counts: Counts, *, comment: str | None = None, final: bool = False,
                 with_counts: bool = True) -> None:
        """A pending or final C-MOVE-RSP/C-GET-RSP; the Failed SOP Instance UID List as its identifier."""
        message = self.message
        assert message.message_id is not None
        identifier = None
        if final and counts.failed_uids and status != SUCCESS:
            identifier = _failed_list(counts.failed_uids, self.syntax)
        remaining = counts.remaining if status in (PENDING, CANCEL) else None
        build = c_move_rsp if message.command_field == C_MOVE_RQ else c_get_rsp
        if with_counts:
            response = build(message.message_id, status, message.affected_sop_class_uid, remaining=remaining,
                             completed=counts.completed, failed=counts.failed, warning=counts.warning,
                             has_dataset=identifier is not None, error_comment=comment)
        else:
            response = build(message.message_id, status, message.affected_sop_class_uid, error_comment=comment)
        self.session.send(self.context_id, response, identifier)

    def _report(self, status: int, counts: Counts, why: str) -> None:
        self.session.report.retrievals += 1
        if self.scp.on_event is None:
            return
        service = "C-MOVE" if self.is_move else "C-GET"
        destination = self.message.move_destination if self.is_move else None
        text = f"{service}{' to ' + str(destination) if destination else ''}: {counts.completed} completed, " \
               f"{counts.failed} failed, {counts.warning} warning, status 0x{status:04X}{': ' + why if why else ''}"
        self.scp.on_event(RetrieveServed("retrieve", self.session.driver.peer, self.session.report.calling_ae, service,
                                         destination, f"0x{status:04X}", counts.completed, counts.failed,
                                         counts.warning, text))


def _failed_list(uids: list[str], syntax: str) -> bytes:
    """An identifier holding only Failed SOP Instance UID List (0008,0058) (PS3.4 C.4.2.1.3.1)."""
    from pydicom import Dataset

    from ..query import encode_identifier

    ds = Dataset()
    ds.FailedSOPInstanceUIDList = uids if len(uids) > 1 else uids[0]
    return encode_identifier(ds, syntax)


def retrieve_handlers(scp: RetrieveSCP) -> dict[int, HandlerFactory]:
    """The requests a Q/R retrieve SCP serves (added to ``listen``'s handlers with an index)."""

    def factory() -> MessageHandler:
        return RetrieveHandler(scp)

    return {C_MOVE_RQ: factory, C_GET_RQ: factory}


def storage_role(uid: str) -> bool:
    """``AcceptorPolicy.scp_roles``: we accept a C-GET requestor acting as Storage SCP for any class but the
    Q/R and Verification ones (PS3.7 D.3.3.4): the C-STORE sub-operations of a C-GET need it."""
    return uid not in RETRIEVE_CLASSES and uid != "1.2.840.10008.1.1"



RETRIEVE_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
"""Transfer syntaxes accepted for the MOVE/GET contexts: explicit LE preferred, implicit, explicit BE, deflated."""


def with_retrieve_contexts(contexts: Any) -> Callable[[str], Any]:
    """The negotiation callable ``contexts`` plus the Query/Retrieve MOVE and GET classes (with an index)."""

    def negotiate(abstract_syntax: str) -> Any:
        if abstract_syntax in RETRIEVE_CLASSES:
            return RETRIEVE_SYNTAXES
        if contexts is None:
            return None
        return contexts(abstract_syntax) if callable(contexts) else contexts.get(abstract_syntax)

    return negotiate


HELD_SYNTAXES_SQL = ("SELECT sop_class_uid, transfer_syntax, COUNT(*) FROM instance "
                     "GROUP BY sop_class_uid, transfer_syntax")


HELD_TTL = 1.0
"""Seconds one look at the index serves the C-GET association requests that follow (the GROUP BY reads
every instance row: 100-300 ms at 100 000 instances without an index on (sop_class_uid, transfer_syntax),
~20 ms with one). A class stored in a new syntax within that second is, at worst, converted once."""


def held_syntaxes(ref: Any, ttl: float = HELD_TTL) -> Callable[[], dict[str, tuple[str, ...]]]:
    """``AcceptorPolicy.held_syntaxes`` over the index: per SOP class, the transfer syntaxes its stored
    objects are in, the most common first (asked only by C-GET association requests, see
    ``ul.negotiation.sender_preferences``; one query per ``ttl`` seconds per process, the concurrent requests
    waiting for it). An index that cannot answer gives {}: the requestor's order."""
    from ...transport.threads import Lock

    lock = Lock()
    cached: list[Any] = [float("-inf"), {}]  # (valid until, the map)

    def held() -> dict[str, tuple[str, ...]]:
        with lock:
            if time.monotonic() < cached[0]:
                return cached[1]
            try:
                index = ref.get()
                with index.reader() as conn:
                    rows = list(conn.execute(index.sql(HELD_SYNTAXES_SQL)))
            except Exception:  # a locked or broken index must not refuse the association
                return {}
            found: dict[str, list[tuple[int, str]]] = {}
            for sop_class, syntax, count in rows:
                if syntax:
                    found.setdefault(sop_class, []).append((-int(count), syntax))
            cached[:] = [time.monotonic() + ttl, {uid: tuple(s for _, s in sorted(pairs)) for uid, pairs in found.items()}]
            return cached[1]

    return held


class IndexArchive:
    """An :class:`Archive` over the index reference ``listen`` keeps (one open index per process)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def instances(self, model: str, level: str, identifier: "Dataset") -> Sequence[Any]:
        return self.ref.get().instances(model, level, identifier)
