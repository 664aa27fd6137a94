"""The seven Upper Layer PDUs (PS3.8 §9.3) as immutable records, with their codec.

A PDU is ``type(1) reserved(1) length(4, big endian) body``. :func:`decode_pdu` takes the type and the
body (the framing reader has already checked the header and the length), validates every field that the
standard says to validate, and raises :class:`~dcmnet_cli.errors.PDUDecodeError` carrying the A-ABORT
reason otherwise. Reserved fields are neither tested on receipt nor echoed: PS3.8 §9.3.1 says so.
"""

from __future__ import annotations

import struct
from .records import NamedTuple

from ..errors import AbortReason, PDUDecodeError
from .items import (
    ItemType,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    decode_uid,
    encode_uid,
    item,
    iter_items,
)

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
HEADER = struct.Struct(">BBI")
_PDV_HEADER = struct.Struct(">IBB")
_new_tuple = tuple.__new__
_ASSOCIATE_FIXED = struct.Struct(">HH16s16s32s")
_FOUR = struct.Struct(">BBBB")


class PDUType:
    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07

    NAMES = {
        1: "A-ASSOCIATE-RQ",
        2: "A-ASSOCIATE-AC",
        3: "A-ASSOCIATE-RJ",
        4: "P-DATA-TF",
        5: "A-RELEASE-RQ",
        6: "A-RELEASE-RP",
        7: "A-ABORT",
    }


def encode_ae(title: str) -> bytes:
    """AE titles travel as 16 bytes, space padded; text is ours to encode (latin-1 keeps any byte)."""
    raw = title.encode("latin-1", errors="replace")[:16]
    return raw.ljust(16, b" ")


def decode_ae(raw: bytes) -> str:
    """Leading and trailing spaces are not significant (PS3.5 AE); the rest is kept, opaque."""
    return raw.decode("latin-1").strip(" ")


def _header(pdu_type: int, length: int) -> bytes:
    return HEADER.pack(pdu_type, 0, length)


class Valueless:
    """Base of PDUs and events that carry no value: all instances of one class are equal."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _encode_associate(pdu: AssociateRQ | AssociateAC, pdu_type: int) -> bytes:
    parts = [
        _ASSOCIATE_FIXED.pack(pdu.protocol_version, 0, encode_ae(pdu.called_ae), encode_ae(pdu.calling_ae), b"\x00" * 32),
        item(ItemType.APPLICATION_CONTEXT, encode_uid(pdu.application_context)),
    ]
    parts += [context.encode() for context in pdu.presentation_contexts]
    parts.append(pdu.user_info.encode())
    body = b"".join(parts)
    return _header(pdu_type, len(body)) + body


class AssociateRQ(NamedTuple):
    """A-ASSOCIATE-RQ (PS3.8 §9.3.2)."""

    called_ae: str
    calling_ae: str
    user_info: UserInformation
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1
    presentation_contexts: tuple[PresentationContextRQ, ...] = ()

    def encode(self) -> bytes:
        return _encode_associate(self, PDUType.ASSOCIATE_RQ)


class AssociateAC(NamedTuple):
    """A-ASSOCIATE-AC (PS3.8 §9.3.3); the AE fields echo the request's but are not tested."""

    called_ae: str
    calling_ae: str
    user_info: UserInformation
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1
    presentation_contexts: tuple[PresentationContextAC, ...] = ()

    def encode(self) -> bytes:
        return _encode_associate(self, PDUType.ASSOCIATE_AC)


class AssociateRJ(NamedTuple):
    """A-ASSOCIATE-RJ (PS3.8 §9.3.4): result 1 permanent / 2 transient, source 1–3, reason per source."""

    result: int
    source: int
    reason: int

    def encode(self) -> bytes:
        return _header(PDUType.ASSOCIATE_RJ, 4) + _FOUR.pack(0, self.result, self.source, self.reason)


class PDV(NamedTuple):
    """One presentation data value item (PS3.8 §9.3.5.1); ``control`` bit 0 = command, bit 1 = last."""

    context_id: int
    control: int
    data: bytes | memoryview

    @property
    def is_command(self) -> bool:
        return bool(self.control & 1)

    @property
    def is_last(self) -> bool:
        return bool(self.control & 2)


class PDataTF(NamedTuple):
    """P-DATA-TF (PS3.8 §9.3.5). Decoded PDVs are memoryview slices of the received body (no copy)."""

    pdvs: tuple[PDV, ...]

    def encode(self) -> bytes:
        parts = []
        for pdv in self.pdvs:
            parts.append(_PDV_HEADER.pack(len(pdv.data) + 2, pdv.context_id, pdv.control))
            parts.append(bytes(pdv.data))
        body = b"".join(parts)
        return _header(PDUType.P_DATA_TF, len(body)) + body


class ReleaseRQ(Valueless):
    """A-RELEASE-RQ (PS3.8 §9.3.6)."""

    def encode(self) -> bytes:
        return _header(PDUType.RELEASE_RQ, 4) + b"\x00" * 4


class ReleaseRP(Valueless):
    """A-RELEASE-RP (PS3.8 §9.3.7)."""

    def encode(self) -> bytes:
        return _header(PDUType.RELEASE_RP, 4) + b"\x00" * 4


class Abort(NamedTuple):
    """A-ABORT (PS3.8 §9.3.8): source 0 = service user, 2 = service provider (reason then significant)."""

    source: int = 0
    reason: int = 0

    def encode(self) -> bytes:
        return _header(PDUType.ABORT, 4) + _FOUR.pack(0, 0, self.source, self.reason)


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


def _decode_associate(pdu_type: int, body: memoryview) -> AssociateRQ | AssociateAC:
    name = PDUType.NAMES[pdu_type]
    if len(body) < _ASSOCIATE_FIXED.size:
        raise PDUDecodeError(f"{name} of {len(body)} bytes is shorter than its 68-byte fixed part")
    version, _, called, calling, _ = _ASSOCIATE_FIXED.unpack_from(body)
    application_context: str | None = None
    rq_contexts: list[PresentationContextRQ] = []
    ac_contexts: list[PresentationContextAC] = []
    user_info: UserInformation | None = None
    is_rq = pdu_type == PDUType.ASSOCIATE_RQ
    context_type = ItemType.PRESENTATION_CONTEXT_RQ if is_rq else ItemType.PRESENTATION_CONTEXT_AC
    for item_type, value in iter_items(body[_ASSOCIATE_FIXED.size :], name):
        if item_type == ItemType.APPLICATION_CONTEXT:
            if application_context is not None:
                raise PDUDecodeError(f"{name}: two application context items", AbortReason.UNEXPECTED_PDU_PARAMETER)
            application_context = decode_uid(value, "application context name")
        elif item_type == context_type:
            if is_rq:
                rq_contexts.append(PresentationContextRQ.decode(value))
            else:
                ac_contexts.append(PresentationContextAC.decode(value))
        elif item_type == ItemType.USER_INFORMATION:
            if user_info is not None:
                raise PDUDecodeError(f"{name}: two user information items", AbortReason.UNEXPECTED_PDU_PARAMETER)
            user_info = UserInformation.decode(value)
        # Any other item type is skipped (PS3.8 §9.3.1).
    if application_context is None:
        raise PDUDecodeError(f"{name} without an application context item", AbortReason.INVALID_PDU_PARAMETER_VALUE)
    # called_ae, calling_ae, user_info, application_context, protocol_version: the same for RQ and AC.
    fixed = (decode_ae(called), decode_ae(calling), user_info or UserInformation(), application_context, version)
    if is_rq:
        return AssociateRQ(*fixed, presentation_contexts=tuple(rq_contexts))
    return AssociateAC(*fixed, presentation_contexts=tuple(ac_contexts))


def decode_pdata(body: memoryview) -> PDataTF:
    """Split a P-DATA-TF body into PDVs; a PDV shorter than 2 or past the end is invalid (reason 6)."""
    end = len(body)
    unpack = _PDV_HEADER.unpack_from
    if end >= 6:
        length, context_id, control = unpack(body)
        if length == end - 4 and length >= 2:
            # One PDV fills the PDU (every PDU storescu and we send): built without the loop's list, and the
            # records without their Python-level __new__ (issue 13: two per C-STORE received).
            return _new_tuple(PDataTF, ((_new_tuple(PDV, (context_id, control, body[6:])),),))
    pdvs = []
    offset = 0
    if end == 0:
        raise PDUDecodeError("P-DATA-TF without any PDV")
    while offset < end:
        if end - offset < 6:
            raise PDUDecodeError(f"P-DATA-TF: truncated PDV header at offset {offset}")
        length, context_id, control = unpack(body, offset)
        if length < 2 or length > end - offset - 4:
            raise PDUDecodeError(f"P-DATA-TF: PDV length {length} is invalid at offset {offset}")
        pdvs.append(PDV(context_id, control, body[offset + 6 : offset + 4 + length]))
        offset += 4 + length
    return PDataTF(tuple(pdvs))


def _decode_four(pdu_type: int, body: memoryview) -> tuple[int, int, int, int]:
    if len(body) != 4:
        raise PDUDecodeError(f"{PDUType.NAMES[pdu_type]} with length {len(body)} (must be 4)")
    return _FOUR.unpack_from(body)


def decode_pdu(pdu_type: int, body: memoryview) -> PDU:
    """Decode one PDU body; raises PDUDecodeError (reason 1 for an unknown type, else 6)."""
    if pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC):
        return _decode_associate(pdu_type, body)
    if pdu_type == PDUType.P_DATA_TF:
        return decode_pdata(body)
    if pdu_type == PDUType.ASSOCIATE_RJ:
        _, result, source, reason = _decode_four(pdu_type, body)
        return AssociateRJ(result, source, reason)
    if pdu_type == PDUType.RELEASE_RQ:
        _decode_four(pdu_type, body)
        return ReleaseRQ()
    if pdu_type == PDUType.RELEASE_RP:
        _decode_four(pdu_type, body)
        return ReleaseRP()
    if pdu_type == PDUType.ABORT:
        _, _, source, reason = _decode_four(pdu_type, body)
        return Abort(source, reason)
    raise PDUDecodeError(f"unrecognised PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)


def summarize(pdu: PDU) -> str:
    """One line describing a PDU, for ``--debug`` traces (never the user identity passcode)."""
    name = PDUType.NAMES[TYPE_CODES[type(pdu)]]
    if isinstance(pdu, AssociateRQ):
        identity = pdu.user_info.user_identity  # its describe() redacts the passcode and tokens
        return (f"{name} {pdu.calling_ae!r} -> {pdu.called_ae!r}, {_contexts(len(pdu.presentation_contexts))}, "
                f"max PDU {pdu.user_info.max_length}, implementation {pdu.user_info.implementation_class_uid}"
                + (f", user identity {identity.describe()}" if identity is not None else ""))
    if isinstance(pdu, AssociateAC):
        accepted = sum(1 for c in pdu.presentation_contexts if c.result == 0)
        answer = ", user identity confirmed" if pdu.user_info.user_identity_response is not None else ""
        return f"{name} {accepted}/{len(pdu.presentation_contexts)} contexts accepted, max PDU {pdu.user_info.max_length}{answer}"
    if isinstance(pdu, AssociateRJ):
        return f"{name} result {pdu.result}, source {pdu.source}, reason {pdu.reason}"
    if isinstance(pdu, PDataTF):
        size = sum(len(p.data) + 6 for p in pdu.pdvs)
        kinds = ",".join(f"{'C' if p.is_command else 'D'}{'L' if p.is_last else ''}@{p.context_id}" for p in pdu.pdvs)
        return f"{name} {len(pdu.pdvs)} PDV(s) [{kinds}], {size} bytes"
    if isinstance(pdu, Abort):
        return f"{name} source {pdu.source}, reason {pdu.reason}"
    return name


def decode_pdu_bytes(data: bytes) -> PDU:
    """Decode one whole PDU (header included); for tests and tools, not the hot path."""
    if len(data) < 6:
        raise PDUDecodeError("PDU shorter than its 6-byte header")
    pdu_type, _, length = HEADER.unpack_from(data)
    if length != len(data) - 6:
        raise PDUDecodeError(f"PDU length {length} does not match the {len(data) - 6} bytes given")
    return decode_pdu(pdu_type, memoryview(data)[6:])


TYPE_CODES = {
    AssociateRQ: PDUType.ASSOCIATE_RQ,
    AssociateAC: PDUType.ASSOCIATE_AC,
    AssociateRJ: PDUType.ASSOCIATE_RJ,
    PDataTF: PDUType.P_DATA_TF,
    ReleaseRQ: PDUType.RELEASE_RQ,
    ReleaseRP: PDUType.RELEASE_RP,
    Abort: PDUType.ABORT,
}


def _contexts(count: int) -> str:
    return f"{count} context" if count == 1 else f"{count} contexts"
