"""DIMSE command sets: group-0000 elements in implicit VR little endian (PS3.7 §6.3, §9.3, Annex E).

Our own tiny codec instead of pydicom: a command set is a handful of fixed elements, it sits on the hot
path of every message, and ``dcmnet echo`` must start without importing pydicom. The element table is
data (PS3.7 Table E.1-1 plus the retired E.2-1 ones, which are only named, never produced).
"""

from __future__ import annotations

import struct

from ..ul.records import NamedTuple
from ..errors import RemoteDIMSEError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any, Final

VERIFICATION_SOP_CLASS: Final = "1.2.840.10008.1.1"

# Command Field values (PS3.7 §9.3, §10.3, Annex E).
C_STORE_RQ: Final = 0x0001
C_STORE_RSP: Final = 0x8001
C_GET_RQ: Final = 0x0010
C_GET_RSP: Final = 0x8010
C_FIND_RQ: Final = 0x0020
C_FIND_RSP: Final = 0x8020
C_MOVE_RQ: Final = 0x0021
C_MOVE_RSP: Final = 0x8021
C_ECHO_RQ: Final = 0x0030
C_ECHO_RSP: Final = 0x8030
C_CANCEL_RQ: Final = 0x0FFF

COMMAND_NAMES: Final[dict[int, str]] = {
    C_STORE_RQ: "C-STORE-RQ", C_STORE_RSP: "C-STORE-RSP", C_GET_RQ: "C-GET-RQ", C_GET_RSP: "C-GET-RSP",
    C_FIND_RQ: "C-FIND-RQ", C_FIND_RSP: "C-FIND-RSP", C_MOVE_RQ: "C-MOVE-RQ", C_MOVE_RSP: "C-MOVE-RSP",
    C_ECHO_RQ: "C-ECHO-RQ", C_ECHO_RSP: "C-ECHO-RSP", C_CANCEL_RQ: "C-CANCEL-RQ",
    0x0100: "N-EVENT-REPORT-RQ", 0x8100: "N-EVENT-REPORT-RSP", 0x0110: "N-GET-RQ", 0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ", 0x8120: "N-SET-RSP", 0x0130: "N-ACTION-RQ", 0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ", 0x8140: "N-CREATE-RSP", 0x0150: "N-DELETE-RQ", 0x8150: "N-DELETE-RSP",
}

# Command Data Set Type (0000,0800): 0x0101 means "no data set"; any other value means one follows.
NO_DATASET: Final = 0x0101
DATASET_PRESENT: Final = 0x0001

PRIORITY_MEDIUM: Final = 0x0000
PRIORITY_HIGH: Final = 0x0001
PRIORITY_LOW: Final = 0x0002

# (element number in group 0000, keyword, VR, Message field or None for retired/unused elements).
ELEMENTS: Final[tuple[tuple[int, str, str, str | None], ...]] = (
    (0x0000, "CommandGroupLength", "UL", None),
    (0x0001, "CommandLengthToEnd", "UL", None),
    (0x0002, "AffectedSOPClassUID", "UI", "affected_sop_class_uid"),
    (0x0003, "RequestedSOPClassUID", "UI", "requested_sop_class_uid"),
    (0x0010, "CommandRecognitionCode", "SH", None),
    (0x0100, "CommandField", "US", "command_field"),
    (0x0110, "MessageID", "US", "message_id"),
    (0x0120, "MessageIDBeingRespondedTo", "US", "message_id_being_responded_to"),
    (0x0200, "Initiator", "AE", None),
    (0x0300, "Receiver", "AE", None),
    (0x0400, "FindLocation", "AE", None),
    (0x0600, "MoveDestination", "AE", "move_destination"),
    (0x0700, "Priority", "US", "priority"),
    (0x0800, "CommandDataSetType", "US", "command_data_set_type"),
    (0x0850, "NumberOfMatches", "US", None),
    (0x0860, "ResponseSequenceNumber", "US", None),
    (0x0900, "Status", "US", "status"),
    (0x0901, "OffendingElement", "AT", "offending_element"),
    (0x0902, "ErrorComment", "LO", "error_comment"),
    (0x0903, "ErrorID", "US", "error_id"),
    (0x1000, "AffectedSOPInstanceUID", "UI", "affected_sop_instance_uid"),
    (0x1001, "RequestedSOPInstanceUID", "UI", "requested_sop_instance_uid"),
    (0x1002, "EventTypeID", "US", "event_type_id"),
    (0x1005, "AttributeIdentifierList", "AT", "attribute_identifier_list"),
    (0x1008, "ActionTypeID", "US", "action_type_id"),
    (0x1020, "NumberOfRemainingSuboperations", "US", "remaining"),
    (0x1021, "NumberOfCompletedSuboperations", "US", "completed"),
    (0x1022, "NumberOfFailedSuboperations", "US", "failed"),
    (0x1023, "NumberOfWarningSuboperations", "US", "warning"),
    (0x1030, "MoveOriginatorApplicationEntityTitle", "AE", "move_originator_aet"),
    (0x1031, "MoveOriginatorMessageID", "US", "move_originator_message_id"),
)
KEYWORDS: Final[dict[int, str]] = {elem: kw for elem, kw, _vr, _f in ELEMENTS}

_RQ_COMMON = ("affected_sop_class_uid", "message_id", "command_data_set_type")
_RSP_COMMON = ("message_id_being_responded_to", "command_data_set_type", "status")
_QUERY_RQ = (*_RQ_COMMON, "priority")
# Mandatory elements per message (PS3.7 Tables 9.3-1 .. 9.3-13; "M" columns only).
REQUIRED: Final[dict[int, tuple[str, ...]]] = {
    C_STORE_RQ: (*_QUERY_RQ, "affected_sop_instance_uid"),
    C_STORE_RSP: _RSP_COMMON,
    C_FIND_RQ: _QUERY_RQ,
    C_FIND_RSP: _RSP_COMMON,
    C_GET_RQ: _QUERY_RQ,
    C_GET_RSP: _RSP_COMMON,
    C_MOVE_RQ: (*_QUERY_RQ, "move_destination"),
    C_MOVE_RSP: _RSP_COMMON,
    C_ECHO_RQ: _RQ_COMMON,
    C_ECHO_RSP: _RSP_COMMON,
    C_CANCEL_RQ: ("message_id_being_responded_to", "command_data_set_type"),
}


class CommandSetError(RemoteDIMSEError):
    """A received command set could not be decoded or lacks a mandatory element (PS3.7 §9.3, scenario 34):
    the peer's fault (exit 6 if it ends the run).

    Carries whatever was learnt before the failure so the caller can answer a failure status
    (if ``message_id`` is known) instead of aborting. ``message_id`` is the Message ID, or for a
    response lacking one, its Message ID Being Responded To.
    """

    def __init__(self, message: str, *, message_id: int | None = None, command_field: int | None = None,
                 has_dataset: bool | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.command_field = command_field
        self.has_dataset = has_dataset


class Message(NamedTuple):
    """One decoded DIMSE command set. ``None`` means the element is absent; ``extra`` keeps unknown
    group-0000 elements as raw ``(element, value)`` pairs so they survive a round trip. ``foreign`` keeps
    the elements outside group 0000 a peer put after its command elements, as ``(tag, raw value)`` pairs
    (Orthanc 1.10 sends (0008,0000) and (0008,0058) in a failed C-GET-RSP): read for logs and the Failed
    SOP Instance UID List, never encoded."""

    command_field: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    requested_sop_instance_uid: str | None = None
    move_destination: str | None = None
    priority: int | None = None
    command_data_set_type: int = NO_DATASET
    status: int | None = None
    offending_element: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    event_type_id: int | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    action_type_id: int | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None
    extra: tuple[tuple[int, bytes], ...] = ()
    foreign: tuple[tuple[int, bytes], ...] = ()

    @property
    def has_dataset(self) -> bool:
        """PS3.7 §9.3: any Command Data Set Type other than 0x0101 announces a data set."""
        return self.command_data_set_type != NO_DATASET

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & 0x8000)

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command_field, f"command 0x{self.command_field:04X}")

    def encode(self) -> bytes:
        return encode(self)


# --- codec -----------------------------------------------------------------------------------------

_HDR = struct.Struct("<HHI")  # group, element, value length (implicit VR LE, PS3.5 §7.1.3)
_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_GROUP_LENGTH_ELEM = struct.Struct("<HHII")
_FIELDS = tuple((elem, vr, f) for elem, _kw, vr, f in ELEMENTS if f is not None)
_BY_ELEM = {elem: (vr, f) for elem, vr, f in _FIELDS}
_STR_PAD = {"UI": b"\0", "AE": b" ", "LO": b" ", "SH": b" "}
_US_ELEMENT = struct.Struct("<HHIH")  # a whole US element: header and value in one pack
_ENCODING: Final = tuple((elem, vr, Message._fields.index(f)) for elem, vr, f in _FIELDS)
"""(element, VR, index in the Message tuple), in ascending element order: encode reads slots, not names."""


def _encode_value(vr: str, value: Any) -> bytes:
    """Encode one value; UI pads with NUL, text VRs with space, to even length (PS3.5 §6.2)."""
    if vr == "US":
        return _US.pack(value)
    if vr == "AT":
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in value)
    raw: bytes = value.encode("latin-1")
    return raw + _STR_PAD[vr] if len(raw) & 1 else raw


def encode(msg: Message) -> bytes:
    """Encode ``msg`` as a command set: ascending tags, group length first (PS3.7 §6.3.1, E.1)."""
    parts: list[bytes] = []
    us_element, header = _US_ELEMENT.pack, _HDR.pack
    try:
        for elem, vr, slot in _ENCODING:
            value = msg[slot]
            if value is None:
                continue
            if vr == "US":
                parts.append(us_element(0, elem, 2, value))
            else:
                raw = _encode_value(vr, value)
                parts.append(header(0, elem, len(raw)) + raw)
    except (struct.error, UnicodeEncodeError, TypeError) as exc:
        raise ValueError(f"cannot encode {msg.name}: {exc}") from exc
    if msg.extra:
        parts.extend(_HDR.pack(0, elem, len(raw)) + raw for elem, raw in msg.extra)
        parts.sort(key=lambda p: p[2:4][::-1])
    body = b"".join(parts)
    return _GROUP_LENGTH_ELEM.pack(0, 0, 4, len(body)) + body


def _decode_value(vr: str, raw: bytes, elem: int) -> Any:
    if vr == "US":
        if len(raw) != 2:
            raise CommandSetError(f"(0000,{elem:04X}) US value has length {len(raw)}, expected 2")
        return _US.unpack(raw)[0]
    if vr == "AT":
        if len(raw) & 3:
            raise CommandSetError(f"(0000,{elem:04X}) AT value length {len(raw)} is not a multiple of 4")
        return tuple((g << 16) | e for g, e in struct.iter_unpack("<HH", raw))
    text = raw.decode("latin-1").rstrip("\0 ")
    return text.lstrip(" ") if vr == "AE" else text  # AE leading spaces are insignificant (PS3.5 6.2)


def _split(buf: bytes) -> tuple[dict[int, bytes], list[tuple[int, bytes]], int]:
    """Split a command set into ``{element: raw value}``, checking every bound (PS3.7 §6.3.1).

    Elements of another group after the group-0000 ones are tolerated (as DCMTK and pynetdicom do) and
    returned apart as ``(tag, raw value)``; one before them means the bytes are no command set. Also
    returns the byte count of the group-0000 elements after the group length element."""
    items: dict[int, bytes] = {}
    foreign: list[tuple[int, bytes]] = []
    off, end, group0_end = 0, len(buf), 0
    unpack = _HDR.unpack_from
    while off < end:
        if end - off < 8:
            raise CommandSetError(f"truncated element header at offset {off}")
        group, elem, length = unpack(buf, off)
        off += 8
        if group != 0 and (not items or (foreign and (group << 16 | elem) <= foreign[-1][0])):
            raise CommandSetError(f"element ({group:04X},{elem:04X}) outside group 0000 in a command set")
        if length >= 0x80000000 or length > end - off:
            raise CommandSetError(f"({group:04X},{elem:04X}) length {length} runs past the command set end")
        if group != 0:
            foreign.append((group << 16 | elem, buf[off:off + length]))
        elif foreign:
            raise CommandSetError(f"element (0000,{elem:04X}) after elements of another group in a command set")
        elif elem in items:
            raise CommandSetError(f"duplicate element (0000,{elem:04X})")
        else:
            items[elem] = buf[off:off + length]
            group0_end = off + length
        off += length
    return items, foreign, group0_end


def _check_group_length(items: dict[int, bytes], group0_end: int, total: int) -> None:
    """The group length must count the group-0000 bytes after it; a peer that appended other groups may
    have counted those too (both are accepted)."""
    raw = items.pop(0x0000, None)
    if raw is None:
        return
    if len(raw) != 4:
        raise CommandSetError(f"CommandGroupLength has length {len(raw)}, expected 4")
    value = _UL.unpack(raw)[0]
    if value not in (group0_end - 12, total - 12):
        raise CommandSetError(f"CommandGroupLength {value} does not match {group0_end - 12} bytes")


_SLOTS: Final = Message._fields
_SLOT_OF: Final[dict[int, tuple[str, int]]] = {elem: (vr, _SLOTS.index(f)) for elem, vr, f in _FIELDS}
_DST_SLOT: Final = _SLOTS.index("command_data_set_type")
_MID_SLOT, _MRT_SLOT = _SLOTS.index("message_id"), _SLOTS.index("message_id_being_responded_to")
_DECODING: Final[tuple[Any, ...]] = tuple(None for _ in _SLOTS)
"""Every field absent (None), Command Data Set Type included: :func:`decode` tells an absent one apart."""
_REQUIRED_SLOTS: Final[dict[int, tuple[int, ...]]] = {
    field: tuple(_SLOTS.index(n) for n in names) for field, names in REQUIRED.items()}


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode a whole command set; raise :class:`CommandSetError` on any defect (scenarios 34–36).

    Unknown group-0000 elements are kept in ``Message.extra``; retired ones likewise; trailing elements
    of other groups in ``Message.foreign``. Values go straight into their slot of the Message tuple (one
    dict lookup per element, US values read by index): this runs for every message received.
    """
    buf = bytes(data)
    store = _store_rq_values(buf)
    if store is None:
        store = _store_rsp_values(buf)
    if store is not None:
        return tuple.__new__(Message, store)  # whole by construction: every mandatory element is there
    values = _plain(buf)
    if values is None:
        values = _general(buf)
    command_field = values[0]
    dst = values[_DST_SLOT]
    if command_field is None or any(values[i] is None for i in _REQUIRED_SLOTS.get(command_field, ())):
        _missing(values)
    if dst is None:
        values[_DST_SLOT] = NO_DATASET
    return tuple.__new__(Message, values)


_SR_HEAD = struct.Struct("<IHHI")  # the group length value; the (0000,0002) UI header
_SR_TAIL = struct.Struct("<8xH8xH8xH8xH4xI")  # the values of four US elements; the (0000,1000) length
_SR_GROUP_LENGTH = _HDR.pack(0, 0, 4)
_SR_US = tuple(_HDR.pack(0, elem, 2) for elem in (0x0100, 0x0110, 0x0700, 0x0800))
_SR_INSTANCE = struct.pack("<HH", 0, 0x1000)
_SR_FIELDS: Final = ("command_field", "message_id", "message_id_being_responded_to", "affected_sop_class_uid",
                     "requested_sop_class_uid", "affected_sop_instance_uid", "requested_sop_instance_uid",
                     "move_destination", "priority", "command_data_set_type")
"""Message's first ten fields, in its order: :func:`_store_rq_values` builds its tuple from them and :data:`_SR_REST`."""
if _SLOTS[:len(_SR_FIELDS)] != _SR_FIELDS:
    raise ImportError("commandset: Message's fields moved; _store_rq_values lays its values out by position")
_SR_REST: Final[tuple[Any, ...]] = _DECODING[len(_SR_FIELDS):-2] + ((), ())
"""The rest of a C-STORE-RQ's Message: absent, and no extra or foreign elements."""


def _store_rq(buf: bytes) -> list[Any] | None:
    """:func:`_store_rq_values` as a list, the form :func:`_plain` and :func:`_general` give (what
    tests/test_store_perobject.py compares the three readings in)."""
    values = _store_rq_values(buf)
    return None if values is None else list(values)


def _store_rq_values(buf: bytes) -> tuple[Any, ...] | None:
    """A C-STORE-RQ laid out as SCUs send it (storescu, pynetdicom, ours): group length, Affected SOP
    Class, Command Field, Message ID, Priority, Command Data Set Type, Affected SOP Instance, and nothing
    else, read by index (:func:`_store_layout`; issue 13: one per object received). None for any other
    command set, which :func:`_plain` reads; both give the same Message for these bytes
    (tests/test_store_perobject.py)."""
    layout = _store_layout(buf, _SR_US)
    if layout is None:
        return None
    at, (field, message_id, priority, dataset_type, _length) = layout
    if field != C_STORE_RQ:
        return None
    # A tuple laid out as the Message, not a list filled by slot: tuple.__new__ then takes it without a copy
    # (~250 ns less per C-STORE received).
    return (field, message_id, None, buf[20:at].decode("latin-1").rstrip("\0 "), None,
            buf[at + 48:].decode("latin-1").rstrip("\0 "), None, None, priority, dataset_type) + _SR_REST


_SS_US = tuple(_HDR.pack(0, elem, 2) for elem in (0x0100, 0x0120, 0x0800, 0x0900))
_SS_REST: Final[tuple[Any, ...]] = _DECODING[len(_SR_FIELDS) + 1:-2] + ((), ())
"""The rest of a C-STORE-RSP's Message after its Status: absent, and no extra or foreign elements."""


def _store_rsp(buf: bytes) -> list[Any] | None:
    """:func:`_store_rsp_values` as a list (the form tests compare readings in)."""
    values = _store_rsp_values(buf)
    return None if values is None else list(values)


def _store_rsp_values(buf: bytes) -> tuple[Any, ...] | None:
    """A C-STORE-RSP laid out as storescp, pynetdicom and listen send it: group length, Affected SOP Class,
    Command Field, Message ID Being Responded To, Command Data Set Type, Status, Affected SOP Instance,
    and nothing else (no Error Comment, no Offending Element), read by index as a request is (issue 13:
    one per object ``store`` sends). None for any other command set."""
    layout = _store_layout(buf, _SS_US)
    if layout is None:
        return None
    at, (field, responded_to, dataset_type, status, _length) = layout
    if field != C_STORE_RSP:
        return None
    return (field, None, responded_to, buf[20:at].decode("latin-1").rstrip("\0 "), None,
            buf[at + 48:].decode("latin-1").rstrip("\0 "), None, None, None, dataset_type, status) + _SS_REST


def _store_layout(buf: bytes, headers: tuple[bytes, ...]) -> tuple[int, tuple[int, int, int, int, int]] | None:
    """The layout C-STORE requests and responses share: the group length, (0000,0002), four US elements
    with these ``headers``, (0000,1000), nothing else; each header compared as bytes, the values in two
    ``unpack_from``. Returns where the US elements start and their four values with the SOP Instance
    UID's length; None for any other layout."""
    end = len(buf)
    if end < 68 or buf[:8] != _SR_GROUP_LENGTH:
        return None
    group_length, group, element, class_length = _SR_HEAD.unpack_from(buf, 8)
    at = 20 + class_length
    if group or element != 2 or group_length != end - 12 or at + 48 > end:
        return None
    if buf[at:at + 8] != headers[0] or buf[at + 10:at + 18] != headers[1] or buf[at + 20:at + 28] != headers[2] \
            or buf[at + 30:at + 38] != headers[3] or buf[at + 40:at + 44] != _SR_INSTANCE:
        return None
    values = _SR_TAIL.unpack_from(buf, at)
    if at + 48 + values[4] != end:
        return None
    return at, values


def _plain(buf: bytes) -> list[Any] | None:
    """The values of a plain command set, read in one pass: group 0000 only, each known element once,
    every value well formed, the group length right. None for anything else, which :func:`_general`
    then reads (and names the defect): the two agree on every plain command set by construction."""
    values: list[Any] = list(_DECODING)
    slot_of, unpack = _SLOT_OF, _HDR.unpack_from
    off, end, group_length = 0, len(buf), -1
    while off < end:
        if end - off < 8:
            return None
        group, elem, length = unpack(buf, off)
        off += 8
        if group or length > end - off:
            return None
        start, off = off, off + length
        spec = slot_of.get(elem)
        if spec is None:
            if elem or group_length >= 0 or length != 4:
                return None
            group_length = buf[start] | buf[start + 1] << 8 | buf[start + 2] << 16 | buf[start + 3] << 24
            continue
        vr, slot = spec
        if values[slot] is not None:
            return None
        if vr == "US":
            if length != 2:
                return None
            values[slot] = buf[start] | buf[start + 1] << 8
        elif vr == "AT":
            return None
        else:
            text = buf[start:off].decode("latin-1").rstrip("\0 ")
            values[slot] = text.lstrip(" ") if vr == "AE" else text
    if group_length >= 0 and group_length != end - 12:
        return None
    values[-2], values[-1] = (), ()
    return values


def _general(buf: bytes) -> list[Any]:
    """Any command set: unknown and foreign elements kept, every defect a :class:`CommandSetError`."""
    items, foreign, group0_end = _split(buf)
    _check_group_length(items, group0_end, len(buf))
    values: list[Any] = list(_DECODING)
    extra: list[tuple[int, bytes]] = []
    slot_of = _SLOT_OF
    for elem, raw in items.items():
        spec = slot_of.get(elem)
        if spec is None:
            extra.append((elem, raw))
        elif spec[0] == "US" and len(raw) == 2:
            values[spec[1]] = raw[0] | raw[1] << 8
        else:
            values[spec[1]] = _decode_value(spec[0], raw, elem)
    values[-2], values[-1] = tuple(sorted(extra)) if extra else (), tuple(foreign)
    return values


def _missing(values: list[Any]) -> None:
    """Raise the error for a command set without its Command Field or a mandatory element, carrying what
    is known (Message ID, Command Field, whether a data set follows) so a request can still be answered."""
    field_value = values[0]
    message_id = values[_MID_SLOT] if values[_MID_SLOT] is not None else values[_MRT_SLOT]
    dst = values[_DST_SLOT]
    has_ds = None if dst is None else dst != NO_DATASET
    if field_value is None:
        raise CommandSetError("command set has no CommandField (0000,0100)", message_id=message_id,
                              has_dataset=has_ds)
    missing = [_SLOTS[i] for i in _REQUIRED_SLOTS.get(field_value, ()) if values[i] is None]
    name = COMMAND_NAMES.get(field_value, f"0x{field_value:04X}")
    raise CommandSetError(f"{name} lacks mandatory {', '.join(missing)}", message_id=message_id,
                          command_field=field_value, has_dataset=has_ds)


# --- convenience constructors (PS3.7 §9.3) -------------------------------------------------------

def _ds(flag: bool) -> int:
    return DATASET_PRESENT if flag else NO_DATASET


def c_echo_rq(message_id: int, sop_class_uid: str = VERIFICATION_SOP_CLASS) -> Message:
    return Message(C_ECHO_RQ, message_id=message_id, affected_sop_class_uid=sop_class_uid)


def c_echo_rsp(message_id_being_responded_to: int, status: int = 0,
               sop_class_uid: str = VERIFICATION_SOP_CLASS) -> Message:
    return Message(C_ECHO_RSP, message_id_being_responded_to=message_id_being_responded_to,
                   affected_sop_class_uid=sop_class_uid, status=status)


def c_store_rq(message_id: int, sop_class: str, sop_instance: str, priority: int = PRIORITY_MEDIUM,
               move_originator_aet: str | None = None, move_originator_id: int | None = None) -> Message:
    return Message(C_STORE_RQ, message_id=message_id, affected_sop_class_uid=sop_class,
                   affected_sop_instance_uid=sop_instance, priority=priority,
                   command_data_set_type=DATASET_PRESENT, move_originator_aet=move_originator_aet,
                   move_originator_message_id=move_originator_id)


def c_store_rsp(message_id_being_responded_to: int, status: int, sop_class: str | None = None,
                sop_instance: str | None = None, error_comment: str | None = None,
                offending_element: tuple[int, ...] | None = None) -> Message:
    return Message(C_STORE_RSP, message_id_being_responded_to=message_id_being_responded_to,
                   affected_sop_class_uid=sop_class, affected_sop_instance_uid=sop_instance, status=status,
                   error_comment=error_comment, offending_element=offending_element)


def c_find_rq(message_id: int, sop_class: str, priority: int = PRIORITY_MEDIUM) -> Message:
    return Message(C_FIND_RQ, message_id=message_id, affected_sop_class_uid=sop_class, priority=priority,
                   command_data_set_type=DATASET_PRESENT)


def c_find_rsp(message_id_being_responded_to: int, status: int, sop_class: str | None = None,
               has_dataset: bool = False, error_comment: str | None = None) -> Message:
    return Message(C_FIND_RSP, message_id_being_responded_to=message_id_being_responded_to,
                   affected_sop_class_uid=sop_class, status=status, command_data_set_type=_ds(has_dataset),
                   error_comment=error_comment)


def c_move_rq(message_id: int, sop_class: str, move_destination: str,
              priority: int = PRIORITY_MEDIUM) -> Message:
    return Message(C_MOVE_RQ, message_id=message_id, affected_sop_class_uid=sop_class, priority=priority,
                   move_destination=move_destination, command_data_set_type=DATASET_PRESENT)


def c_get_rq(message_id: int, sop_class: str, priority: int = PRIORITY_MEDIUM) -> Message:
    return Message(C_GET_RQ, message_id=message_id, affected_sop_class_uid=sop_class, priority=priority,
                   command_data_set_type=DATASET_PRESENT)


def _retrieve_rsp(command_field: int, message_id_being_responded_to: int, status: int, sop_class: str | None,
                  counts: tuple[int | None, ...], has_dataset: bool, error_comment: str | None) -> Message:
    remaining, completed, failed, warning = counts
    return Message(command_field, message_id_being_responded_to=message_id_being_responded_to,
                   affected_sop_class_uid=sop_class, status=status, command_data_set_type=_ds(has_dataset),
                   remaining=remaining, completed=completed, failed=failed, warning=warning,
                   error_comment=error_comment)


def c_move_rsp(message_id_being_responded_to: int, status: int, sop_class: str | None = None, *,
               remaining: int | None = None, completed: int | None = None, failed: int | None = None,
               warning: int | None = None, has_dataset: bool = False,
               error_comment: str | None = None) -> Message:
    """C-MOVE-RSP with sub-operation counts (PS3.7 §9.3.4.2); failed-UID lists go in the data set."""
    return _retrieve_rsp(C_MOVE_RSP, message_id_being_responded_to, status, sop_class,
                         (remaining, completed, failed, warning), has_dataset, error_comment)


def c_get_rsp(message_id_being_responded_to: int, status: int, sop_class: str | None = None, *,
              remaining: int | None = None, completed: int | None = None, failed: int | None = None,
              warning: int | None = None, has_dataset: bool = False,
              error_comment: str | None = None) -> Message:
    """C-GET-RSP with sub-operation counts (PS3.7 §9.3.3.2)."""
    return _retrieve_rsp(C_GET_RSP, message_id_being_responded_to, status, sop_class,
                         (remaining, completed, failed, warning), has_dataset, error_comment)


def c_cancel_rq(message_id_being_responded_to: int) -> Message:
    """C-CANCEL-RQ (PS3.7 §9.3.2.3): only the ID of the operation being cancelled."""
    return Message(C_CANCEL_RQ, message_id_being_responded_to=message_id_being_responded_to)
