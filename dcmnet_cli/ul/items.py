"""Variable items and user-information sub-items of the A-ASSOCIATE PDUs (PS3.8 §9.3.2–9.3.4, PS3.7 Annex D).

Every item is ``type(1) reserved(1) length(2, big endian) value``. Decoders take a memoryview and check
every length against what is really there before slicing, so a hostile length can neither over-read nor
make us allocate. Unknown item types are skipped as PS3.8 §9.3.1 asks; unknown user-information sub-items
are kept as :class:`RawSubItem` so that a request decodes and re-encodes to the same bytes.
"""

from __future__ import annotations

import struct

from .records import NamedTuple
from ..errors import AbortReason, PDUDecodeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_H = struct.Struct(">H")
_BBH = struct.Struct(">BBH")
_I = struct.Struct(">I")

MAX_UID_LENGTH = 64


class ItemType:
    """Item type codes (PS3.8 Tables 9-12, 9-13, 9-16; PS3.7 Annex D)."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPERATIONS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED = 0x56
    SOP_CLASS_COMMON_EXTENDED = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


def _bad(message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE) -> PDUDecodeError:
    return PDUDecodeError(message, reason)


def iter_items(data: memoryview, what: str) -> Iterator[tuple[int, memoryview]]:
    """Split ``data`` into (type, value) pairs, refusing any length that runs past the end."""
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 4:
            raise _bad(f"{what}: truncated item header at offset {offset}")
        item_type, _, length = _BBH.unpack_from(data, offset)
        offset += 4
        if length > end - offset:
            raise _bad(f"{what}: item 0x{item_type:02X} length {length} runs past the end")
        yield item_type, data[offset : offset + length]
        offset += length


def item(item_type: int, value: bytes) -> bytes:
    """Encode one item; lengths over 65535 cannot be represented and are a local bug."""
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} too long ({len(value)} bytes)")
    return _BBH.pack(item_type, 0, len(value)) + value


def decode_uid(value: memoryview, what: str) -> str:
    """UIDs are ASCII digits and dots; trailing NUL padding (seen from some peers) is tolerated."""
    if len(value) > MAX_UID_LENGTH:
        raise _bad(f"{what}: UID of {len(value)} bytes exceeds {MAX_UID_LENGTH}")
    raw = bytes(value).rstrip(b"\x00")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(f"{what}: UID is not ASCII") from None


def encode_uid(uid: str) -> bytes:
    return uid.encode("ascii")


def _uid_with_length(data: memoryview, offset: int, what: str) -> tuple[str, int]:
    """Read a ``length(2) UID`` pair used inside role selection and extended negotiation sub-items."""
    if len(data) - offset < 2:
        raise _bad(f"{what}: truncated UID length")
    (length,) = _H.unpack_from(data, offset)
    offset += 2
    if length > len(data) - offset:
        raise _bad(f"{what}: UID length {length} runs past the end")
    return decode_uid(data[offset : offset + length], what), offset + length


def _len_uid(uid: str) -> bytes:
    raw = encode_uid(uid)
    return _H.pack(len(raw)) + raw


# --------------------------------------------------------------------------- presentation contexts


class PresentationContextRQ(NamedTuple):
    """A proposed presentation context (PS3.8 §9.3.2.2): one abstract syntax, one or more transfer syntaxes."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    reserved: int = 0
    """The reserved third byte, kept only so that a decoded request re-encodes to the same bytes
    (DCMTK sends 0xFF there; the standard says not to test it)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PresentationContextRQ):
            return NotImplemented
        return self[:3] == other[:3]  # the reserved byte is not part of the value

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self[:3])

    def encode(self) -> bytes:
        body = [bytes((self.context_id, 0, self.reserved, 0)), item(ItemType.ABSTRACT_SYNTAX, encode_uid(self.abstract_syntax))]
        body += [item(ItemType.TRANSFER_SYNTAX, encode_uid(ts)) for ts in self.transfer_syntaxes]
        return item(ItemType.PRESENTATION_CONTEXT_RQ, b"".join(body))

    @classmethod
    def decode(cls, value: memoryview) -> PresentationContextRQ:
        if len(value) < 4:
            raise _bad("presentation context: shorter than its 4-byte header")
        abstract: str | None = None
        syntaxes: list[str] = []
        for sub_type, sub in iter_items(value[4:], "presentation context"):
            if sub_type == ItemType.ABSTRACT_SYNTAX:
                if abstract is not None:
                    raise _bad("presentation context: two abstract syntaxes", AbortReason.UNEXPECTED_PDU_PARAMETER)
                abstract = decode_uid(sub, "abstract syntax")
            elif sub_type == ItemType.TRANSFER_SYNTAX:
                syntaxes.append(decode_uid(sub, "transfer syntax"))
        if abstract is None:
            raise _bad("presentation context without an abstract syntax")
        return cls(value[0], abstract, tuple(syntaxes), value[2])


class ContextResult:
    """Presentation context result/reason (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

    MEANING = {
        0: "accepted",
        1: "rejected by the user",
        2: "rejected (no reason given)",
        3: "abstract syntax not supported",
        4: "transfer syntaxes not supported",
    }


class PresentationContextAC(NamedTuple):
    """The acceptor's answer for one context (PS3.8 §9.3.3.2); the syntax matters only when accepted."""

    context_id: int
    result: int
    transfer_syntax: str = ""

    def encode(self) -> bytes:
        body = bytes((self.context_id, 0, self.result, 0)) + item(
            ItemType.TRANSFER_SYNTAX, encode_uid(self.transfer_syntax)
        )
        return item(ItemType.PRESENTATION_CONTEXT_AC, body)

    @classmethod
    def decode(cls, value: memoryview) -> PresentationContextAC:
        if len(value) < 4:
            raise _bad("presentation context (AC): shorter than its 4-byte header")
        syntax = ""
        for sub_type, sub in iter_items(value[4:], "presentation context (AC)"):
            if sub_type == ItemType.TRANSFER_SYNTAX:
                syntax = decode_uid(sub, "transfer syntax")
        return cls(value[0], value[2], syntax)


# --------------------------------------------------------------------------- user information sub-items


class MaximumLength(NamedTuple):
    """Largest P-DATA-TF variable field the sender can receive; 0 means no limit (PS3.8 Annex D.1)."""

    value: int

    def encode(self) -> bytes:
        return item(ItemType.MAXIMUM_LENGTH, _I.pack(self.value))

    @classmethod
    def decode(cls, value: memoryview) -> MaximumLength:
        if len(value) != 4:
            raise _bad(f"maximum length sub-item of {len(value)} bytes (must be 4)")
        return cls(_I.unpack_from(value)[0])


class ImplementationClassUID(NamedTuple):
    uid: str

    def encode(self) -> bytes:
        return item(ItemType.IMPLEMENTATION_CLASS_UID, encode_uid(self.uid))

    @classmethod
    def decode(cls, value: memoryview) -> ImplementationClassUID:
        return cls(decode_uid(value, "implementation class UID"))


class ImplementationVersionName(NamedTuple):
    """1–16 characters of the default repertoire (PS3.7 D.3.3.2.3); kept as text, decoded losslessly."""

    name: str

    def encode(self) -> bytes:
        return item(ItemType.IMPLEMENTATION_VERSION_NAME, self.name.encode("latin-1"))

    @classmethod
    def decode(cls, value: memoryview) -> ImplementationVersionName:
        if len(value) > 16:
            raise _bad(f"implementation version name of {len(value)} bytes exceeds 16")
        return cls(bytes(value).decode("latin-1"))


class AsyncOperationsWindow(NamedTuple):
    """Maximum operations invoked/performed outstanding (PS3.7 D.3.3.3); 0 = unlimited."""

    invoked: int
    performed: int

    def encode(self) -> bytes:
        return item(ItemType.ASYNC_OPERATIONS_WINDOW, struct.pack(">HH", self.invoked, self.performed))

    @classmethod
    def decode(cls, value: memoryview) -> AsyncOperationsWindow:
        if len(value) != 4:
            raise _bad(f"asynchronous operations window of {len(value)} bytes (must be 4)")
        return cls(*struct.unpack_from(">HH", value))


class RoleSelection(NamedTuple):
    """SCP/SCU role selection for one SOP class (PS3.7 D.3.3.4): 1 = role proposed/accepted."""

    sop_class_uid: str
    scu_role: int
    scp_role: int

    def encode(self) -> bytes:
        return item(ItemType.ROLE_SELECTION, _len_uid(self.sop_class_uid) + bytes((self.scu_role, self.scp_role)))

    @classmethod
    def decode(cls, value: memoryview) -> RoleSelection:
        uid, offset = _uid_with_length(value, 0, "role selection")
        if len(value) - offset != 2:
            raise _bad("role selection: SCU/SCP role bytes missing or extra")
        return cls(uid, value[offset], value[offset + 1])


class SOPClassExtendedNegotiation(NamedTuple):
    """Service-class-specific application information, passed through untouched (PS3.7 D.3.3.5)."""

    sop_class_uid: str
    info: bytes

    def encode(self) -> bytes:
        return item(ItemType.SOP_CLASS_EXTENDED, _len_uid(self.sop_class_uid) + self.info)

    @classmethod
    def decode(cls, value: memoryview) -> SOPClassExtendedNegotiation:
        uid, offset = _uid_with_length(value, 0, "SOP class extended negotiation")
        return cls(uid, bytes(value[offset:]))


class SOPClassCommonExtendedNegotiation(NamedTuple):
    """SOP class, its service class and related general SOP classes (PS3.7 D.3.3.6, RQ only)."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()

    def encode(self) -> bytes:
        related = b"".join(_len_uid(uid) for uid in self.related_general_sop_classes)
        body = _len_uid(self.sop_class_uid) + _len_uid(self.service_class_uid) + _H.pack(len(related)) + related
        # The second header byte is the sub-item version (0), not a reserved byte.
        return _BBH.pack(ItemType.SOP_CLASS_COMMON_EXTENDED, 0, len(body)) + body

    @classmethod
    def decode(cls, value: memoryview) -> SOPClassCommonExtendedNegotiation:
        what = "SOP class common extended negotiation"
        sop, offset = _uid_with_length(value, 0, what)
        service, offset = _uid_with_length(value, offset, what)
        if len(value) - offset < 2:
            raise _bad(f"{what}: truncated related-classes length")
        (length,) = _H.unpack_from(value, offset)
        offset += 2
        if length != len(value) - offset:
            raise _bad(f"{what}: related-classes length {length} does not match the item")
        related = []
        while offset < len(value):
            uid, offset = _uid_with_length(value, offset, what)
            related.append(uid)
        return cls(sop, service, tuple(related))


class UserIdentityType:
    """User identity types (PS3.7 Table D.3-14, byte 5 of the sub-item)."""

    USERNAME = 1
    USERNAME_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5

    NAMES = {1: "username", 2: "username-passcode", 3: "kerberos", 4: "saml", 5: "jwt"}


MAX_IDENTITY_FIELD = 0xFFFF - 6
"""Primary plus secondary field bytes that fit one sub-item (its 2-byte item length minus the fixed 6)."""


class UserIdentityRQ(NamedTuple):
    """User identity negotiation request (PS3.7 D.3.3.7.1, Table D.3-14), after the 4-byte item header:

    ====  =========================  ====================================================================
    5     User-Identity-Type         1 username, 2 username and passcode, 3 Kerberos, 4 SAML, 5 JWT
    6     Positive-response-request  1 when the requestor wants a User Identity AC sub-item back, else 0
    7-8   Primary-field-length       big endian
    9-n   Primary-field              UTF-8 username (types 1, 2), Kerberos ticket, SAML assertion or JWT
    n+1   Secondary-field-length     2 bytes, big endian; non-zero only for type 2
    n+3-m Secondary-field            UTF-8 passcode (type 2 only)
    ====  =========================  ====================================================================

    The secrets (the passcode, and the primary field of types 3-5: a ticket, assertion or token) never
    appear in a repr, a log line, a trace or a traceback (scenario C.24): see :meth:`describe`.
    """

    identity_type: int
    positive_response_requested: bool
    primary: bytes
    secondary: bytes = b""

    def __repr__(self) -> str:
        return f"UserIdentityRQ({self.describe()})"

    @property
    def user(self) -> str | None:
        """The username of types 1 and 2 as text (undecodable bytes replaced), else None."""
        if self.identity_type not in (UserIdentityType.USERNAME, UserIdentityType.USERNAME_PASSCODE):
            return None
        return self.primary.decode("utf-8", "replace")

    def describe(self) -> str:
        """What may be logged: the type, the username (as a repr, so control characters are escaped) and
        the sizes of the secret fields, never their bytes."""
        kind = UserIdentityType.NAMES.get(self.identity_type, f"type {self.identity_type}")
        who = f" user {self.user[:64]!r}" if self.user is not None else f" ({len(self.primary)} bytes)"
        secret = ", passcode redacted" if self.secondary else ""
        asked = ", positive response requested" if self.positive_response_requested else ""
        return f"{kind}{who}{secret}{asked}"

    def encode(self) -> bytes:
        body = (
            bytes((self.identity_type, int(self.positive_response_requested)))
            + _H.pack(len(self.primary))
            + self.primary
            + _H.pack(len(self.secondary))
            + self.secondary
        )
        return item(ItemType.USER_IDENTITY_RQ, body)

    @classmethod
    def decode(cls, value: memoryview) -> UserIdentityRQ:
        """Lengths are checked against the item; the acceptor judges the values (an unknown type, or a
        secondary field with a type other than 2, is the policy's to refuse, not a malformed PDU)."""
        what = "user identity"
        if len(value) < 6:
            raise _bad(f"{what}: truncated ({len(value)} bytes, at least 6)")
        identity_type, response = value[0], value[1]
        (primary_length,) = _H.unpack_from(value, 2)
        offset = 4
        if primary_length > len(value) - offset - 2:
            raise _bad(f"{what}: primary field length {primary_length} runs past the end")
        primary = bytes(value[offset : offset + primary_length])
        offset += primary_length
        (secondary_length,) = _H.unpack_from(value, offset)
        offset += 2
        if secondary_length != len(value) - offset:
            raise _bad(f"{what}: secondary field length {secondary_length} does not match the item")
        return cls(identity_type, bool(response), primary, bytes(value[offset:]))


class UserIdentityAC(NamedTuple):
    """Positive user identity response (PS3.7 D.3.3.7.2, Table D.3-15), after the item header:
    Server-response-length (2 bytes, big endian, may be 0) and the Server-response (the Kerberos server
    ticket for type 3, the SAML response for type 4; empty for types 1 and 2). Sent only when the
    requestor asked for it and its identity was verified; the response bytes are never shown."""

    server_response: bytes = b""

    def __repr__(self) -> str:
        return f"UserIdentityAC(server_response=<{len(self.server_response)} bytes>)"

    def encode(self) -> bytes:
        return item(ItemType.USER_IDENTITY_AC, _H.pack(len(self.server_response)) + self.server_response)

    @classmethod
    def decode(cls, value: memoryview) -> UserIdentityAC:
        if len(value) < 2:
            raise _bad("user identity response: truncated")
        (length,) = _H.unpack_from(value)
        if length != len(value) - 2:
            raise _bad("user identity response: length does not match the item")
        return cls(bytes(value[2:]))


class RawSubItem(NamedTuple):
    """A user-information sub-item we do not know: kept so it re-encodes unchanged."""

    item_type: int
    value: bytes

    def encode(self) -> bytes:
        return item(self.item_type, self.value)


SubItem = (
    MaximumLength
    | ImplementationClassUID
    | ImplementationVersionName
    | AsyncOperationsWindow
    | RoleSelection
    | SOPClassExtendedNegotiation
    | SOPClassCommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
    | RawSubItem
)

_SUB_DECODERS: dict[int, Callable[[memoryview], SubItem]] = {
    ItemType.MAXIMUM_LENGTH: MaximumLength.decode,
    ItemType.IMPLEMENTATION_CLASS_UID: ImplementationClassUID.decode,
    ItemType.IMPLEMENTATION_VERSION_NAME: ImplementationVersionName.decode,
    ItemType.ASYNC_OPERATIONS_WINDOW: AsyncOperationsWindow.decode,
    ItemType.ROLE_SELECTION: RoleSelection.decode,
    ItemType.SOP_CLASS_EXTENDED: SOPClassExtendedNegotiation.decode,
    ItemType.SOP_CLASS_COMMON_EXTENDED: SOPClassCommonExtendedNegotiation.decode,
    ItemType.USER_IDENTITY_RQ: UserIdentityRQ.decode,
    ItemType.USER_IDENTITY_AC: UserIdentityAC.decode,
}


class UserInformation(NamedTuple):
    """The user information item (PS3.8 §9.3.2.3): sub-items in wire order, with typed accessors."""

    sub_items: tuple[SubItem, ...] = ()

    @classmethod
    def build(
        cls,
        max_length: int | None = None,
        implementation_class_uid: str | None = None,
        implementation_version_name: str | None = None,
        async_window: AsyncOperationsWindow | None = None,
        roles: tuple[RoleSelection, ...] = (),
        extended: tuple[SOPClassExtendedNegotiation, ...] = (),
        common_extended: tuple[SOPClassCommonExtendedNegotiation, ...] = (),
        user_identity: UserIdentityRQ | UserIdentityAC | None = None,
    ) -> UserInformation:
        """Sub-items in the order of PS3.7 D.3.3 (and of DCMTK, so captures compare byte for byte)."""
        subs: list[SubItem] = []
        if max_length is not None:
            subs.append(MaximumLength(max_length))
        if implementation_class_uid:
            subs.append(ImplementationClassUID(implementation_class_uid))
        if async_window is not None:
            subs.append(async_window)
        subs.extend(roles)
        if implementation_version_name:
            subs.append(ImplementationVersionName(implementation_version_name))
        subs.extend(extended)
        subs.extend(common_extended)
        if user_identity is not None:
            subs.append(user_identity)
        return cls(tuple(subs))

    def _first(self, kind: type) -> object | None:
        return next((s for s in self.sub_items if isinstance(s, kind)), None)

    @property
    def max_length(self) -> int | None:
        sub = self._first(MaximumLength)
        return sub.value if isinstance(sub, MaximumLength) else None

    @property
    def implementation_class_uid(self) -> str | None:
        sub = self._first(ImplementationClassUID)
        return sub.uid if isinstance(sub, ImplementationClassUID) else None

    @property
    def implementation_version_name(self) -> str | None:
        sub = self._first(ImplementationVersionName)
        return sub.name if isinstance(sub, ImplementationVersionName) else None

    @property
    def async_window(self) -> AsyncOperationsWindow | None:
        sub = self._first(AsyncOperationsWindow)
        return sub if isinstance(sub, AsyncOperationsWindow) else None

    @property
    def roles(self) -> tuple[RoleSelection, ...]:
        return tuple(s for s in self.sub_items if isinstance(s, RoleSelection))

    @property
    def extended(self) -> tuple[SOPClassExtendedNegotiation, ...]:
        return tuple(s for s in self.sub_items if isinstance(s, SOPClassExtendedNegotiation))

    @property
    def common_extended(self) -> tuple[SOPClassCommonExtendedNegotiation, ...]:
        return tuple(s for s in self.sub_items if isinstance(s, SOPClassCommonExtendedNegotiation))

    @property
    def user_identity(self) -> UserIdentityRQ | None:
        sub = self._first(UserIdentityRQ)
        return sub if isinstance(sub, UserIdentityRQ) else None

    @property
    def user_identity_response(self) -> UserIdentityAC | None:
        sub = self._first(UserIdentityAC)
        return sub if isinstance(sub, UserIdentityAC) else None

    def encode(self) -> bytes:
        return item(ItemType.USER_INFORMATION, b"".join(s.encode() for s in self.sub_items))

    @classmethod
    def decode(cls, value: memoryview) -> UserInformation:
        subs: list[SubItem] = []
        for sub_type, sub in iter_items(value, "user information"):
            decoder = _SUB_DECODERS.get(sub_type)
            subs.append(decoder(sub) if decoder else RawSubItem(sub_type, bytes(sub)))
        return cls(tuple(subs))
