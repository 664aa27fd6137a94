"""One association's DIMSE service, sans-IO: DIMSE composed over the Upper Layer (PS3.7 §6, PS3.8 §9.3.5).

The model is wsproto over h11. A :class:`DIMSEConnection` owns one :class:`~dcmnet_cli.ul.association.Association`
and nothing else: no socket, no clock, no thread. Its rules:

- The driver feeds received bytes (:meth:`receive_data`), reports the transport (:meth:`connection_made`,
  :meth:`connection_lost`, :meth:`artim_expired`) and writes what :meth:`data_to_send` returns until it
  returns nothing: bytes, and :class:`~.fragment.FileRegion` slices it may ``sendfile``.
- The user reads one stream of typed events from :meth:`next_event`: the association's own events
  (requested, accepted, rejected, release requested/confirmed, aborted) and the DIMSE ones (a command
  received, data set fragments as they arrive, a message complete, a malformed command). P-DATA never
  reaches the user as such.
- One message collector: data sets of the messages ``collect`` selects (by default every message but a
  C-STORE-RQ: responses and identifiers are small) arrive whole in :class:`MessageComplete`, up to
  ``max_collected_bytes`` (64 MiB by default; a bigger one aborts the association, naming the message and
  the cap); the others stream as :class:`DatasetFragment` views of the received bytes, never copied, even
  from a P-DATA-TF of gigabytes (the UL hands its PDVs on in pieces as they arrive, see ``ul.framing``).
- One context check and one place that ends an association on a protocol error above the UL: a PDV on
  a context that was not accepted, a fragment out of order, an undecodable command set. The association
  is aborted (A-ABORT source 2 with the error's reason) and the user sees exactly one :class:`Aborted`.
- Sending a message on an association that has ended raises :class:`AssociationAborted` naming what ended
  it; the data set is pulled lazily, a batch per :meth:`data_to_send` call, so memory stays bounded by
  the batch, never by the object.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from ..ul.typenames import Final, NamedTuple, Protocol, Union, cast  # typing's names, typing not imported

from ..errors import AssociationAborted, RemoteProtocolError
from ..ul.association import (
    Aborted,
    Association,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from ..ul.negotiation import DEFAULT_MAX_PDU, MIN_MAX_PDU, AcceptedContext
from ..ul.pdu import AssociateAC, AssociateRJ, AssociateRQ
from ..ul.statemachine import Role, State
from .assembler import Assembler, CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from .commandset import C_STORE_RQ, Message
from .fragment import CONTROL_COMMAND, CONTROL_LAST, PDV_HEADER_LEN, Dataset, Piece, effective_max_pdu, fragment_message
from .status import SOP_CLASS_NOT_SUPPORTED

__all__ = [
    "DIMSEConnection", "Event", "Aborted", "AssociationAccepted", "AssociationRejected", "AssociationRequested",
    "ReleaseConfirmed", "ReleaseRequested", "CommandReceived", "DatasetFragment", "InvalidCommand",
    "MessageComplete", "RequestRefused", "Role", "collect_all_but_store", "Command",
]

BATCH_BYTES: Final = 1 << 20
"""At most this many bytes of whole PDUs per :meth:`DIMSEConnection.data_to_send` batch (one gathered write)."""
MAX_COLLECTED_BYTES: Final = 64 << 20
"""Default cap on a data set collected whole (responses, identifiers, a C-ECHO-RQ's stray data set): the
peer chooses its size and we hold all of it, so without a cap one message could take gigabytes."""
_PDU_LENGTH: Final = struct.Struct(">I")
_PDU_AND_PDV: Final = struct.Struct(">BBIIBB")  # a P-DATA-TF header and its first PDV header, as fragment.py packs them
_COMMAND_LAST: Final = CONTROL_COMMAND | CONTROL_LAST
BATCH_BUFFERS: Final = 512
"""At most this many buffers per batch: the kernel's IOV_MAX for one ``sendmsg``."""
_ENDED: Final = (State.STA1, State.STA13, State.STA2)
"""The states a send raises in, bound once (an Enum member read off its class costs ~65 ns on CPython 3.11)."""



class RequestRefused(NamedTuple):
    """A request the DIMSE layer refuses before any service sees it: answer it with ``status``; its data
    set, if any, is swallowed. Today: the request's SOP class does not fit its presentation context."""

    context_id: int
    message: Message
    status: int
    reason: str


Event = Union[
    AssociationRequested, AssociationAccepted, AssociationRejected, ReleaseRequested, ReleaseConfirmed, Aborted,
    CommandReceived, DatasetFragment, InvalidCommand, MessageComplete, RequestRefused,
]


class Command(Protocol):
    """What :meth:`DIMSEConnection.send_message` sends: a :class:`~.commandset.Message`, or anything that
    encodes to a command set's bytes (a response built from a template, a test's raw bytes)."""

    def encode(self) -> bytes: ...


def collect_all_but_store(message: Message) -> bool:
    """The default collector: a C-STORE-RQ's data set streams (it may be gigabytes); all else is collected."""
    return message.command_field != C_STORE_RQ


class DIMSEConnection:
    """The DIMSE side of one association. Not thread-safe: one thread drives it."""

    def __init__(
        self,
        role: Role,
        max_receive: int = DEFAULT_MAX_PDU,
        *,
        max_dataset_bytes: int | None = None,
        collect: Callable[[Message], bool] = collect_all_but_store,
        max_collected_bytes: int | None = MAX_COLLECTED_BYTES,
    ) -> None:
        self.association = Association(role, max_receive)
        assoc = self.association
        # The association replaces its contexts dict once negotiated: look it up at each check.
        self._assembler = Assembler(valid_context_ids=lambda cid: cid in assoc.contexts,
                                    max_dataset_bytes=max_dataset_bytes, collect=collect,
                                    max_collected_bytes=max_collected_bytes)
        self._events: deque[Event] = deque()
        self._sending: Iterator[list[Piece]] | list[Piece] | None = None
        """The PDUs of the message being sent: a generator, or (a command alone that fits one PDU: every
        response) that one PDU's buffers, put out by a single :meth:`data_to_send`."""
        self._message_id = 0
        self._refused = False  # swallowing the rest of a refused request
        self.ended: Aborted | None = None
        """The event that ended the association abnormally, once one has (for the error a late send raises)."""

    @property
    def max_collected_bytes(self) -> int | None:
        """The largest data set collected whole (see ``collect``); a bigger one aborts the association
        (A-ABORT source 2, reason 6) and the user sees one :class:`Aborted` naming the message and the cap.
        Settable at any time (a C-FIND SCU sets its ``--max-identifier`` once associated)."""
        return self._assembler.max_collected_bytes

    @max_collected_bytes.setter
    def max_collected_bytes(self, value: int | None) -> None:
        self._assembler.max_collected_bytes = value

    # ------------------------------------------------------------------ association, user side

    @property
    def role(self) -> Role:
        return self.association.role

    @property
    def state(self) -> State:
        return self.association.state

    @property
    def contexts(self) -> dict[int, AcceptedContext]:
        return self.association.contexts

    @property
    def is_established(self) -> bool:
        return self.association.state is State.STA6

    def request(self, rq: AssociateRQ) -> None:
        self.association.request(rq)

    def accept(self, ac: AssociateAC) -> None:
        self.association.accept(ac)

    def reject(self, rj: AssociateRJ) -> None:
        self.association.reject(rj)

    def release(self) -> None:
        self.association.release()

    def release_response(self) -> None:
        self.association.release_response()

    def abort(self, source: int = 0, reason: int = 0) -> None:
        self._sending = None
        self.association.abort(source, reason)

    def next_message_id(self) -> int:
        """Message IDs 1..65535, wrapping (PS3.7 §9.3.1.1: unique among the outstanding ones)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def send_message(self, context_id: int, message: Command, dataset: Dataset = None) -> None:
        """Queue one DIMSE message; its PDUs come out of :meth:`data_to_send` a batch at a time.

        ``dataset`` is bytes, a :class:`~.fragment.FileRegion`, or an iterable of either, pulled lazily
        (a generator may meter the rate between chunks). Chunks must not be reused once handed over.
        """
        self._raise_if_ended()
        if self._sending is not None:
            raise RuntimeError("send_message() while the previous message is still being sent: drain data_to_send()")
        command = message.encode()
        peer_max = self.association.peer_max_pdu
        size = len(command) + PDV_HEADER_LEN
        if dataset is None and 1 <= context_id <= 255 and context_id & 1 and (peer_max == 0 or peer_max >= MIN_MAX_PDU) \
                and size <= effective_max_pdu(peer_max):
            # A command alone that fits one PDU (every response): that PDU at once, the bytes fragment_message
            # would make (tests/test_request_path.py), held whole rather than as a generator to resume
            # twice per response (issue 13). Anything else, an invalid context ID included, takes the generator.
            self._sending = [_PDU_AND_PDV.pack(0x04, 0, size, len(command) + 2, context_id, _COMMAND_LAST), command]
            return
        self._sending = fragment_message(context_id, command, dataset, peer_max)

    # ------------------------------------------------------------------ driver side

    def connection_made(self) -> None:
        self.association.connection_made()

    def connection_lost(self) -> None:
        self._sending = None
        self.association.connection_lost()

    def artim_expired(self) -> None:
        self.association.artim_expired()

    @property
    def artim_starts(self) -> int:
        """Counts ARTIM (re)starts, so a driver tells a restart from a running timer."""
        return self.association.artim_starts

    @property
    def artim_running(self) -> bool:
        return self.association.artim_running

    @property
    def close_requested(self) -> bool:
        return self.association.close_requested

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed received bytes. Data set fragments handed out later are views of ``data``: the driver must
        not reuse its buffer until :meth:`next_event` has returned None."""
        self.association.receive_data(data)

    def carry_tails(self, limit: int) -> None:
        """A driver that moves a read's unframed tail to the start of its buffer (see :mod:`..ul.framing`)."""
        self.association.carry_tails(limit)

    def tail(self) -> int:
        """Bytes at the end of the data last fed that no PDU has taken yet (0 unless :meth:`carry_tails`)."""
        return self.association.tail()

    def drop_tail(self) -> None:
        """The driver feeds :meth:`tail`'s bytes again, at the start of its next chunk."""
        self.association.drop_tail()

    def bulk(self) -> int:
        """Bytes of the streamed data set in progress the driver may move straight to its handler's file,
        bypassing framing and events (none of them fed yet, an even count, never the data set's last
        bytes: those still end it as a fragment with the "last" bit); 0 when there are none. Only once no
        event is waiting: a handler sees its fragments and the bulk bytes in stream order."""
        if self._refused or self.events_waiting:
            return 0
        found = self.association.bulk()
        if found is None:
            return 0
        return self._assembler.streamable(found[0], found[1]) & ~1

    def bulk_read_size(self) -> int:
        """While a streamed data set comes in large (streamed) PDUs and nothing is waiting: the size of a read
        that ends just after the next PDU's headers, so a driver whose handler takes bulk bytes can then
        move that PDU's data (:meth:`bulk`); 0 otherwise."""
        if self._refused or not self._assembler.streaming or self.events_waiting:
            return 0
        return self.association.bulk_read_size()

    def skip_bulk(self, count: int) -> None:
        """The driver moved ``count`` bytes :meth:`bulk` offered."""
        self.association.skip_bulk(count)
        self._assembler.skipped(count)

    def data_to_send(self) -> list[Piece]:
        """The next batch of buffers to write, in order; empty when nothing is waiting."""
        assoc = self.association
        out: list[Piece] = assoc.data_to_send()  # a fresh list, ours
        sending = self._sending
        if sending is None:
            return out
        if isinstance(sending, list):  # one PDU, whole (send_message): the batch takes it whatever its size
            assoc.send_pdata(sending)
            self._sending = None
            out += assoc.data_to_send()
            return out
        size = sum(len(b) for b in out)
        length = _PDU_LENGTH.unpack_from
        for pdu in sending:
            assoc.send_pdata(pdu)
            queued = assoc.data_to_send()
            out += queued
            # Whole PDUs: a P-DATA-TF's size is in its header (the first buffer); the table may add others.
            head = pdu[0]
            if len(queued) == len(pdu) and queued[0] is head:
                size += length(cast(bytes, head), 2)[0] + 6
            else:
                size += sum(len(b) for b in queued)
            if size >= BATCH_BYTES or len(out) >= BATCH_BUFFERS:
                return out
        self._sending = None
        return out

    @property
    def sending(self) -> bool:
        """True while a message's PDUs are still to come out of :meth:`data_to_send`."""
        return self._sending is not None

    @property
    def events_waiting(self) -> bool:
        """True when bytes already received wait to be turned into events (decoded or not yet taken):
        :meth:`next_event` may then return one without more bytes."""
        return bool(self._events) or self.association.events_waiting

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive."""
        events = self._events
        while not events:
            event = self.association.next_event()
            if event is None:
                return None
            if type(event) is DataReceived:
                self._pdata(event)
                continue
            if type(event) is Aborted:
                self.ended = event
                self._sending = None
            return event  # type: ignore[return-value]
        return events.popleft()

    # ------------------------------------------------------------------ internals

    def _pdata(self, event: DataReceived) -> None:
        receive, events = self._assembler.receive_pdv, self._events
        try:
            for context_id, control, data in event.pdata.pdvs:
                # PDV data are views of the received PDU (ul.pdu.decode_pdata slices a memoryview).
                for item in receive(context_id, control, data):  # type: ignore[arg-type]
                    kind = type(item)
                    if self._refused:
                        if kind is MessageComplete:
                            self._refused = False
                        continue
                    # A request (Message.is_response inlined: this runs for every command received).
                    if kind is CommandReceived and not item.message.command_field & 0x8000:  # type: ignore[union-attr]
                        refusal = self._refusal(item)  # type: ignore[arg-type]
                        if refusal is not None:
                            events.append(refusal)
                            self._refused = True
                            continue
                    events.append(item)
        except RemoteProtocolError as error:
            # Nothing of a broken message reaches the user: only why the association ended.
            events.clear()
            self._sending = None
            self.association.abort_for(error)

    def _refusal(self, event: CommandReceived) -> RequestRefused | None:
        """PS3.7 §9.1: a request's Affected SOP Class must be its context's abstract syntax (a CT C-STORE
        on the Verification context, a C-ECHO on a CT context): refused 0x0122, for every role."""
        sop_class = event.message.affected_sop_class_uid
        context = self.association.contexts.get(event.context_id)
        if sop_class is None or context is None or context.abstract_syntax == sop_class:
            return None
        return RequestRefused(event.context_id, event.message, SOP_CLASS_NOT_SUPPORTED,
                              f"SOP class {sop_class} does not fit presentation context {event.context_id} "
                              f"({context.abstract_syntax})")

    def _raise_if_ended(self) -> None:
        """Sending on an association that ended (an A-ABORT read with the AC, a closed transport) raises
        what ended it (exit 6), not a LocalProtocolError from the state table."""
        if self.association.state not in _ENDED:
            return
        while (event := self.association.next_event()) is not None:  # a pending abort explains why
            if type(event) is Aborted:
                self.ended = event
        ended = self.ended
        if ended is not None:
            raise AssociationAborted(ended.message, ended.source, ended.reason)
        raise AssociationAborted("the association ended before the message could be sent")
