"""Upper Layer PDU and item codec (PS3.8 §9.3, PS3.7 Annex D) and the framing reader.

Golden bytes below are written by hand from the standard's tables, one field per line, so a reader can
check each against PS3.8 Tables 9-11 to 9-26 and PS3.7 Tables D.3-1 to D.3-15 without running anything.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
from wire import BAD_PDATA_BODIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcmnet_cli.errors import AbortReason, PDUDecodeError
from dcmnet_cli.ul import items as it
from dcmnet_cli.ul.framing import ASSOCIATE_CAP, UNLIMITED_PDATA_CAP, PDUReader
from dcmnet_cli.ul.items import (
    AsyncOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RawSubItem,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dcmnet_cli.ul.pdu import (
    PDV,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PDUType,
    ReleaseRP,
    ReleaseRQ,
    decode_pdata,
    decode_pdu,
    decode_pdu_bytes,
)

# --------------------------------------------------------------------------- captures


def _find_captures() -> Path:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "captures"]
    if os.environ.get("DCMNET_SHARED"):
        candidates.append(Path(os.environ["DCMNET_SHARED"]) / "captures")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.txt")):
            return path
    # Fail at collection, never skip: without the captures the codec is untested against DCMTK.
    raise FileNotFoundError(f"captures not found in any of {[str(c) for c in candidates]} (set DCMNET_SHARED)")


CAPTURES = _find_captures()


def _load(name: str) -> list[tuple[str, str, bytes]]:
    """(direction, PDU name, bytes) for every PDU line of one capture file."""
    out = []
    for line in (CAPTURES / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, direction, pdu_name, hexdata = line.split()
        out.append((direction, pdu_name, bytes.fromhex(hexdata)))
    return out


CAPTURE_FILES = sorted(p.name for p in CAPTURES.glob("*.txt"))
ALL_PDUS = [(name, i, pdu_name, raw) for name in CAPTURE_FILES for i, (_, pdu_name, raw) in enumerate(_load(name))]
UNIQUE_PDUS = list({raw: (name, pdu_name, raw) for name, _, pdu_name, raw in ALL_PDUS}.values())
EXPECTED_FILES = {
    "abort.txt", "echo-128-contexts.txt", "echo.txt", "find.txt", "get.txt", "move-unknown.txt",
    "move.txt", "refused.txt", "store-identity.txt", "store.txt",
}


def _first(name: str, pdu_name: str) -> bytes:
    return next(raw for _, n, raw in _load(name) if n == pdu_name)


def test_all_capture_files_present():
    assert EXPECTED_FILES <= set(CAPTURE_FILES)


@pytest.mark.parametrize(
    "name,index,pdu_name,raw", ALL_PDUS, ids=[f"{n}:{i}:{p}" for n, i, p, _ in ALL_PDUS]
)
def test_capture_decodes_and_reencodes_identically(name, index, pdu_name, raw):
    pdu = decode_pdu_bytes(raw)
    assert PDUType.NAMES[raw[0]] == pdu_name
    assert pdu.encode() == raw


def test_echo_128_contexts():
    rq = decode_pdu_bytes(_first("echo-128-contexts.txt", "A-ASSOCIATE-RQ"))
    assert isinstance(rq, AssociateRQ)
    assert len(rq.presentation_contexts) == 128
    assert all(len(c.transfer_syntaxes) == 38 for c in rq.presentation_contexts)
    assert [c.context_id for c in rq.presentation_contexts] == list(range(1, 257, 2))
    ac = decode_pdu_bytes(_first("echo-128-contexts.txt", "A-ASSOCIATE-AC"))
    assert isinstance(ac, AssociateAC)
    assert len(ac.presentation_contexts) == 128
    # echoscu -ppc proposes Verification 128 times; storescp accepts every one (one abstract syntax, one
    # transfer syntax: explicit VR little endian), which is what "accepts one" in the README means.
    assert {c.abstract_syntax for c in rq.presentation_contexts} == {"1.2.840.10008.1.1"}
    assert {(c.result, c.transfer_syntax) for c in ac.presentation_contexts} == {(0, "1.2.840.10008.1.2.1")}


def test_store_identity_rq():
    rq = decode_pdu_bytes(_first("store-identity.txt", "A-ASSOCIATE-RQ"))
    identity = rq.user_info.user_identity
    assert isinstance(identity, UserIdentityRQ)
    assert identity.identity_type == 2
    assert identity.positive_response_requested is True
    assert identity.primary == b"alice"
    assert identity.secondary == b"secret"
    assert "secret" not in repr(identity)
    assert "secret" not in repr(rq)
    assert "secret" not in str(rq)


def test_get_rq_has_role_selection():
    rq = decode_pdu_bytes(_first("get.txt", "A-ASSOCIATE-RQ"))
    roles = rq.user_info.roles
    assert roles and all(isinstance(r, RoleSelection) for r in roles)
    # getscu proposes to act as SCP for the storage classes it wants to receive.
    assert any(r.scp_role == 1 for r in roles)
    abstract = {c.abstract_syntax for c in rq.presentation_contexts}
    assert {r.sop_class_uid for r in roles} <= abstract


def test_refused_rj_values():
    rj = decode_pdu_bytes(_first("refused.txt", "A-ASSOCIATE-RJ"))
    assert rj == AssociateRJ(result=1, source=1, reason=1)  # storescp --refuse: permanent, user, no reason


def test_abort_capture():
    ab = decode_pdu_bytes(_first("abort.txt", "A-ABORT"))
    assert ab == Abort(source=0, reason=0)  # echoscu --abort: service-user abort


def test_echo_capture_facts():
    pdus = [decode_pdu_bytes(raw) for _, _, raw in _load("echo.txt")]
    rq, ac = pdus[0], pdus[1]
    assert (rq.called_ae, rq.calling_ae) == ("STORESCP", "ECHOSCU")
    assert rq.application_context == "1.2.840.10008.3.1.1.1"
    assert rq.presentation_contexts[0].abstract_syntax == "1.2.840.10008.1.1"
    assert ac.presentation_contexts[0].result == 0
    assert isinstance(pdus[-2], ReleaseRQ) and isinstance(pdus[-1], ReleaseRP)


# --------------------------------------------------------------------------- golden items


def h(text: str) -> bytes:
    """Hex with comments: everything after '#' on a line is ignored."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


A = lambda s: s.encode("ascii").hex()  # noqa: E731  ASCII text as hex, for readability of goldens

# Application context item (PS3.8 Table 9-12): type 10H, reserved, length 21, "1.2.840.10008.3.1.1.1"
GOLD_APP_CONTEXT = h(f"10 00 0015 {A('1.2.840.10008.3.1.1.1')}")
# Abstract syntax sub-item (Table 9-14): type 30H, length 17, Verification SOP Class
GOLD_ABSTRACT = h(f"30 00 0011 {A('1.2.840.10008.1.1')}")
# Transfer syntax sub-item (Table 9-15): type 40H, length 17, Implicit VR Little Endian
GOLD_TRANSFER = h(f"40 00 0011 {A('1.2.840.10008.1.2')}")
# Presentation context item, RQ (Table 9-13): type 20H, length 4+21+21=46, ID 1, 3 reserved, AS, TS
GOLD_PCTX_RQ = h(
    f"""20 00 002E   # type, reserved, length 46
    01 00 00 00      # context ID 1, reserved x3
    30 00 0011 {A('1.2.840.10008.1.1')}
    40 00 0011 {A('1.2.840.10008.1.2')}"""
)
# Presentation context item, AC (Table 9-18): type 21H, length 4+21=25, ID 1, reserved, result 0, reserved, TS
GOLD_PCTX_AC = h(
    f"""21 00 0019      # type, reserved, length 25
    01 00 00 00         # context ID 1, reserved, result 0 (acceptance), reserved
    40 00 0011 {A('1.2.840.10008.1.2')}"""
)
# Presentation context item, AC rejected with result 3 (abstract syntax not supported): empty TS sub-item
GOLD_PCTX_AC_REJECTED = h("21 00 0008  03 00 03 00  40 00 0000")
# Maximum length sub-item (PS3.8 Annex D.1, Table D.1-1): type 51H, length 4, 16384
GOLD_MAX_LENGTH = h("51 00 0004 00004000")
# Implementation class UID sub-item (PS3.7 Table D.3-1): type 52H, length 7, "1.2.3.4"
GOLD_IMPL_UID = h(f"52 00 0007 {A('1.2.3.4')}")
# Implementation version name sub-item (PS3.7 Table D.3-3): type 55H, length 10, "DCMNET_010"
GOLD_VERSION = h(f"55 00 000A {A('DCMNET_010')}")
# Asynchronous operations window sub-item (PS3.7 Table D.3-7): type 53H, length 4, invoked 5, performed 1
GOLD_ASYNC = h("53 00 0004 0005 0001")
# SCP/SCU role selection sub-item (PS3.7 Table D.3-9): type 54H, length 2+5+2, UID length 5, UID, SCU 1, SCP 0
GOLD_ROLE = h(f"54 00 0009  0005 {A('1.2.3')}  01 00")
# SOP class extended negotiation sub-item (PS3.7 Table D.3-11): type 56H, length 2+5+3, UID, info 01 02 03
GOLD_EXTENDED = h(f"56 00 000A  0005 {A('1.2.3')}  010203")
# SOP class common extended negotiation sub-item (PS3.7 Table D.3-12): type 57H, version 0, length 21:
# SOP class UID (len 5), service class UID (len 3), related general SOP classes length 7 = one (len 5) UID
GOLD_COMMON_EXTENDED = h(
    f"""57 00 0015
    0005 {A('1.2.3')}
    0003 {A('1.4')}
    0007  0005 {A('1.2.5')}"""
)
# User identity negotiation sub-item, RQ (PS3.7 Table D.3-14): type 58H, length 17, type 2 (username +
# passcode), positive response requested 1, primary length 5 "alice", secondary length 6 "secret"
GOLD_IDENTITY_RQ = h(f"58 00 0011  02 01  0005 {A('alice')}  0006 {A('secret')}")
# User identity negotiation sub-item, RQ type 1 (username only): empty secondary field
GOLD_IDENTITY_RQ_USERNAME = h(f"58 00 0009  01 00  0003 {A('bob')}  0000")
# User identity negotiation sub-item, AC (PS3.7 Table D.3-15): type 59H, length 2, server response length 0
GOLD_IDENTITY_AC = h("59 00 0002 0000")
# ... and with a 3-byte server response (Kerberos/SAML/JWT)
GOLD_IDENTITY_AC_RESPONSE = h(f"59 00 0005 0003 {A('abc')}")
# User information item (PS3.8 Table 9-16): type 50H, length 8+11+14=33: max length, impl UID, version
GOLD_USER_INFO = h(
    f"""50 00 0021
    51 00 0004 00004000
    52 00 0007 {A('1.2.3.4')}
    55 00 000A {A('DCMNET_010')}"""
)

USER_INFO = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4"), ImplementationVersionName("DCMNET_010")))

ITEM_GOLDENS = [
    ("presentation-context-rq", PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)), GOLD_PCTX_RQ),
    ("presentation-context-ac", PresentationContextAC(1, 0, "1.2.840.10008.1.2"), GOLD_PCTX_AC),
    ("presentation-context-ac-rejected", PresentationContextAC(3, 3, ""), GOLD_PCTX_AC_REJECTED),
    ("max-length", MaximumLength(16384), GOLD_MAX_LENGTH),
    ("implementation-class-uid", ImplementationClassUID("1.2.3.4"), GOLD_IMPL_UID),
    ("implementation-version-name", ImplementationVersionName("DCMNET_010"), GOLD_VERSION),
    ("async-operations-window", AsyncOperationsWindow(5, 1), GOLD_ASYNC),
    ("role-selection", RoleSelection("1.2.3", 1, 0), GOLD_ROLE),
    ("sop-class-extended", SOPClassExtendedNegotiation("1.2.3", b"\x01\x02\x03"), GOLD_EXTENDED),
    ("sop-class-common-extended", SOPClassCommonExtendedNegotiation("1.2.3", "1.4", ("1.2.5",)), GOLD_COMMON_EXTENDED),
    ("user-identity-rq", UserIdentityRQ(2, True, b"alice", b"secret"), GOLD_IDENTITY_RQ),
    ("user-identity-rq-username", UserIdentityRQ(1, False, b"bob"), GOLD_IDENTITY_RQ_USERNAME),
    ("user-identity-ac", UserIdentityAC(), GOLD_IDENTITY_AC),
    ("user-identity-ac-response", UserIdentityAC(b"abc"), GOLD_IDENTITY_AC_RESPONSE),
    ("user-information", USER_INFO, GOLD_USER_INFO),
]


@pytest.mark.parametrize("obj,golden", [(o, g) for _, o, g in ITEM_GOLDENS], ids=[n for n, _, _ in ITEM_GOLDENS])
def test_item_golden(obj, golden):
    assert obj.encode() == golden
    # decode() takes the value (after the 4-byte item header), as the PDU decoder hands it over
    assert struct.unpack(">H", golden[2:4])[0] == len(golden) - 4
    assert type(obj).decode(memoryview(golden)[4:]) == obj


def test_application_abstract_transfer_goldens():
    assert it.item(it.ItemType.APPLICATION_CONTEXT, b"1.2.840.10008.3.1.1.1") == GOLD_APP_CONTEXT
    assert it.item(it.ItemType.ABSTRACT_SYNTAX, b"1.2.840.10008.1.1") == GOLD_ABSTRACT
    assert it.item(it.ItemType.TRANSFER_SYNTAX, b"1.2.840.10008.1.2") == GOLD_TRANSFER
    assert it.decode_uid(memoryview(GOLD_ABSTRACT)[4:], "x") == "1.2.840.10008.1.1"


def test_user_information_all_sub_items_golden():
    ui = UserInformation.build(
        max_length=16384,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="DCMNET_010",
        async_window=AsyncOperationsWindow(5, 1),
        roles=(RoleSelection("1.2.3", 1, 0),),
        extended=(SOPClassExtendedNegotiation("1.2.3", b"\x01\x02\x03"),),
        common_extended=(SOPClassCommonExtendedNegotiation("1.2.3", "1.4", ("1.2.5",)),),
        user_identity=UserIdentityRQ(2, True, b"alice", b"secret"),
    )
    # PS3.7 D.3.3 order: max length, impl UID, async window, roles, version name, extended, common ext, identity
    body = GOLD_MAX_LENGTH + GOLD_IMPL_UID + GOLD_ASYNC + GOLD_ROLE + GOLD_VERSION + GOLD_EXTENDED
    body += GOLD_COMMON_EXTENDED + GOLD_IDENTITY_RQ
    golden = bytes((0x50, 0)) + struct.pack(">H", len(body)) + body
    assert ui.encode() == golden
    decoded = UserInformation.decode(memoryview(golden)[4:])
    assert decoded == ui
    assert decoded.max_length == 16384
    assert decoded.implementation_class_uid == "1.2.3.4"
    assert decoded.implementation_version_name == "DCMNET_010"
    assert decoded.async_window == AsyncOperationsWindow(5, 1)
    assert decoded.roles == (RoleSelection("1.2.3", 1, 0),)
    assert decoded.extended == (SOPClassExtendedNegotiation("1.2.3", b"\x01\x02\x03"),)
    assert decoded.common_extended == (SOPClassCommonExtendedNegotiation("1.2.3", "1.4", ("1.2.5",)),)
    assert decoded.user_identity == UserIdentityRQ(2, True, b"alice", b"secret")
    assert decoded.user_identity_response is None


# --------------------------------------------------------------------------- golden PDUs

# A-ASSOCIATE-RQ (PS3.8 Table 9-11): body = 68 fixed + 25 app ctx + 50 pres ctx + 37 user info = 180 (B4H)
GOLD_ASSOCIATE_RQ = h(
    f"""01 00 000000B4                     # PDU type 1, reserved, length 180
    0001 0000                               # protocol version 1, reserved
    {A('STORESCP        ')}                 # called AE title, 16 bytes space padded
    {A('ECHOSCU         ')}                 # calling AE title
    {'00' * 32}                             # 32 reserved bytes
    10 00 0015 {A('1.2.840.10008.3.1.1.1')} # application context item
    20 00 002E 01 00 00 00                  # presentation context 1
      30 00 0011 {A('1.2.840.10008.1.1')}   #   abstract syntax: Verification
      40 00 0011 {A('1.2.840.10008.1.2')}   #   transfer syntax: implicit VR LE
    50 00 0021                              # user information, 33 bytes
      51 00 0004 00004000                   #   max length 16384
      52 00 0007 {A('1.2.3.4')}             #   implementation class UID
      55 00 000A {A('DCMNET_010')}          #   implementation version name
    """
)
OBJ_ASSOCIATE_RQ = AssociateRQ(
    called_ae="STORESCP",
    calling_ae="ECHOSCU",
    user_info=USER_INFO,
    presentation_contexts=(PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
)

# A-ASSOCIATE-AC (PS3.8 Table 9-17): body = 68 + 25 + 29 + 37 = 159 (9FH)
GOLD_ASSOCIATE_AC = h(
    f"""02 00 0000009F                     # PDU type 2, reserved, length 159
    0001 0000                               # protocol version 1, reserved
    {A('STORESCP        ')}                 # called AE (echoed, not tested)
    {A('ECHOSCU         ')}                 # calling AE (echoed, not tested)
    {'00' * 32}                             # 32 reserved bytes
    10 00 0015 {A('1.2.840.10008.3.1.1.1')} # application context item
    21 00 0019 01 00 00 00                  # presentation context 1, result 0 (acceptance)
      40 00 0011 {A('1.2.840.10008.1.2')}   #   transfer syntax: implicit VR LE
    50 00 0021                              # user information, 33 bytes
      51 00 0004 00004000
      52 00 0007 {A('1.2.3.4')}
      55 00 000A {A('DCMNET_010')}
    """
)
OBJ_ASSOCIATE_AC = AssociateAC(
    called_ae="STORESCP",
    calling_ae="ECHOSCU",
    user_info=USER_INFO,
    presentation_contexts=(PresentationContextAC(1, 0, "1.2.840.10008.1.2"),),
)

PDU_GOLDENS = [
    ("associate-rq", OBJ_ASSOCIATE_RQ, GOLD_ASSOCIATE_RQ),
    ("associate-ac", OBJ_ASSOCIATE_AC, GOLD_ASSOCIATE_AC),
    # A-ASSOCIATE-RJ (Table 9-21): type 3, length 4, reserved, result 1 permanent, source 1 user, reason 7
    ("associate-rj", AssociateRJ(1, 1, 7), h("03 00 00000004  00 01 01 07")),
    # P-DATA-TF (Table 9-22) with one PDV item (Table 9-23): PDV length 6 = ctx ID + header + 4 data bytes;
    # message control header 03 = command, last fragment
    ("p-data-tf", PDataTF((PDV(1, 3, b"\xde\xad\xbe\xef"),)), h("04 00 0000000A  00000006 01 03 DEADBEEF")),
    # P-DATA-TF with two PDVs: a dataset fragment (00) and an empty last dataset fragment (02, scenario E.32)
    (
        "p-data-tf-two-pdvs",
        PDataTF((PDV(3, 0, b"ab"), PDV(3, 2, b""))),
        h(f"04 00 0000000E  00000004 03 00 {A('ab')}  00000002 03 02"),
    ),
    # A-RELEASE-RQ (Table 9-24): type 5, length 4, 4 reserved bytes
    ("release-rq", ReleaseRQ(), h("05 00 00000004 00000000")),
    # A-RELEASE-RP (Table 9-25): type 6, length 4, 4 reserved bytes
    ("release-rp", ReleaseRP(), h("06 00 00000004 00000000")),
    # A-ABORT (Table 9-26): type 7, length 4, 2 reserved, source 2 (provider), reason 6 (invalid parameter)
    ("abort", Abort(2, 6), h("07 00 00000004  00 00 02 06")),
    # A-ABORT from the service user: source 0, reason 0
    ("abort-user", Abort(), h("07 00 00000004  00 00 00 00")),
]


@pytest.mark.parametrize("obj,golden", [(o, g) for _, o, g in PDU_GOLDENS], ids=[n for n, _, _ in PDU_GOLDENS])
def test_pdu_golden(obj, golden):
    assert obj.encode() == golden
    assert decode_pdu_bytes(golden) == obj
    assert decode_pdu(golden[0], memoryview(golden)[6:]) == obj


def test_associate_rq_golden_fields():
    rq = decode_pdu_bytes(GOLD_ASSOCIATE_RQ)
    assert rq.protocol_version == 1
    assert rq.application_context == "1.2.840.10008.3.1.1.1"
    assert rq.user_info.max_length == 16384


def test_pdv_flags():
    assert PDV(1, 3, b"").is_command and PDV(1, 3, b"").is_last
    assert not PDV(1, 0, b"").is_command and not PDV(1, 0, b"").is_last
    assert PDV(1, 2, b"").is_last and not PDV(1, 2, b"").is_command


# --------------------------------------------------------------------------- reserved fields, unknown items


def test_reserved_bytes_nonzero_accepted():
    """Scenario B.12: reserved fields are not tested on receipt (PS3.8 §9.3.1)."""
    raw = bytearray(GOLD_ASSOCIATE_RQ)
    raw[1] = 0xFF  # PDU header reserved
    raw[8:10] = b"\xAB\xCD"  # reserved after the protocol version
    raw[6 + 36 : 6 + 68] = b"\x55" * 32  # 32 reserved bytes
    raw[6 + 68 + 1] = 0x77  # application context item reserved byte
    pctx = 6 + 68 + 25
    raw[pctx + 1] = 0x11  # presentation context item reserved
    raw[pctx + 5] = 0x22  # reserved after the context ID
    raw[pctx + 6] = 0xFF  # reserved (DCMTK sends FF here)
    raw[pctx + 7] = 0x33
    assert decode_pdu_bytes(bytes(raw)) == OBJ_ASSOCIATE_RQ
    for golden, obj in (
        (h("03 FF 00000004  EE 01 01 07"), AssociateRJ(1, 1, 7)),
        (h("05 01 00000004 FFFFFFFF"), ReleaseRQ()),
        (h("06 01 00000004 01020304"), ReleaseRP()),
        (h("07 09 00000004 AB CD 02 01"), Abort(2, 1)),
        (h("04 FF 00000006  00000002 01 03"), PDataTF((PDV(1, 3, b""),))),
    ):
        assert decode_pdu_bytes(golden) == obj
    ac = bytearray(GOLD_ASSOCIATE_AC)
    ac[6 + 68 + 25 + 5] = 0x99  # reserved in the AC presentation context
    ac[6 + 68 + 25 + 7] = 0x99
    assert decode_pdu_bytes(bytes(ac)) == OBJ_ASSOCIATE_AC


def test_pctx_rq_reserved_kept_for_reencode():
    raw = bytearray(GOLD_PCTX_RQ)
    raw[6] = 0xFF
    decoded = PresentationContextRQ.decode(memoryview(bytes(raw))[4:])
    assert decoded == PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))
    assert decoded.encode() == bytes(raw)


def _rq_with_extra(extra_items: bytes, user_info_extra: bytes = b"") -> bytes:
    """The golden RQ with extra items appended after the presentation context and inside user info."""
    body = bytes(GOLD_ASSOCIATE_RQ[6 : 6 + 68 + 25 + 50]) + extra_items
    ui = GOLD_USER_INFO[4:] + user_info_extra
    body += bytes((0x50, 0)) + struct.pack(">H", len(ui)) + ui
    return bytes((1, 0)) + struct.pack(">I", len(body)) + body


def test_unknown_item_and_sub_item_skipped():
    """Scenario C.17: unknown item types are skipped; unknown sub-items kept and re-encoded unchanged."""
    unknown_item = h("99 00 0003 010203")
    unknown_sub = h("7F 00 0002 ABCD")
    raw = _rq_with_extra(unknown_item, unknown_sub)
    rq = decode_pdu_bytes(raw)
    assert rq.presentation_contexts == OBJ_ASSOCIATE_RQ.presentation_contexts
    assert rq.user_info.sub_items[-1] == RawSubItem(0x7F, b"\xab\xcd")
    assert rq.user_info.max_length == 16384
    # The unknown sub-item survives a re-encode; the unknown item is dropped.
    assert rq.encode() == _rq_with_extra(b"", unknown_sub)
    # An AC presentation context item (21H) inside an RQ is an unknown item there too.
    rq2 = decode_pdu_bytes(_rq_with_extra(GOLD_PCTX_AC))
    assert rq2.presentation_contexts == OBJ_ASSOCIATE_RQ.presentation_contexts
    # Unknown sub-items inside a presentation context (not 30H/40H) are skipped.
    pctx = h(f"20 00 002C 05 00 00 00  30 00 0011 {A('1.2.840.10008.1.1')}  88 00 0001 00  40 00 0011 {A('1.2.840.10008.1.2')}")
    pctx = pctx[:2] + struct.pack(">H", len(pctx) - 4) + pctx[4:]
    decoded = PresentationContextRQ.decode(memoryview(pctx)[4:])
    assert decoded == PresentationContextRQ(5, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))


def test_raw_sub_item_encode():
    assert RawSubItem(0x7F, b"\x01").encode() == h("7F 00 0001 01")


# --------------------------------------------------------------------------- decode errors


def _err(fn, *args) -> PDUDecodeError:
    with pytest.raises(PDUDecodeError) as info:
        fn(*args)
    return info.value


def test_uid_over_64_bytes_refused():
    uid65 = "1." + "2" * 63
    assert len(uid65) == 65
    assert _err(ImplementationClassUID.decode, memoryview(uid65.encode())).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    uid64 = uid65[:64]
    assert ImplementationClassUID.decode(memoryview(uid64.encode())).uid == uid64
    # inside a whole RQ: an abstract syntax of 65 bytes
    bad = PresentationContextRQ(1, uid65, ("1.2.840.10008.1.2",))
    rq = AssociateRQ("A", "B", USER_INFO, presentation_contexts=(bad,))
    assert _err(decode_pdu_bytes, rq.encode()).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    # and in a role selection and an application context
    assert isinstance(_err(RoleSelection.decode, memoryview(RoleSelection(uid65, 1, 1).encode())[4:]), PDUDecodeError)
    rq = AssociateRQ("A", "B", USER_INFO, application_context=uid65)
    assert isinstance(_err(decode_pdu_bytes, rq.encode()), PDUDecodeError)


def test_non_ascii_uid_refused():
    assert isinstance(_err(it.decode_uid, memoryview(b"1.2\xff"), "x"), PDUDecodeError)


def test_uid_trailing_nul_tolerated():
    assert it.decode_uid(memoryview(b"1.2.3\x00"), "x") == "1.2.3"


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00\x00\x40", b"\x00\x00\x40\x00\x00"])
def test_max_length_not_4_bytes(value):
    assert _err(MaximumLength.decode, memoryview(value)).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    # also through the user information item
    sub = bytes((0x51, 0)) + struct.pack(">H", len(value)) + value
    assert isinstance(_err(UserInformation.decode, memoryview(sub)), PDUDecodeError)


@pytest.mark.parametrize("cut", range(1, len(GOLD_ROLE) - 4))
def test_truncated_role_selection(cut):
    value = GOLD_ROLE[4 : len(GOLD_ROLE) - cut]
    assert isinstance(_err(RoleSelection.decode, memoryview(value)), PDUDecodeError)


def test_role_selection_extra_bytes():
    assert isinstance(_err(RoleSelection.decode, memoryview(GOLD_ROLE[4:] + b"\x00")), PDUDecodeError)


def test_async_window_not_4_bytes():
    assert isinstance(_err(AsyncOperationsWindow.decode, memoryview(b"\x00\x01\x00")), PDUDecodeError)


def test_version_name_over_16_bytes():
    assert isinstance(_err(ImplementationVersionName.decode, memoryview(b"A" * 17)), PDUDecodeError)


@pytest.mark.parametrize(
    "value",
    [
        b"\x02\x01\x00",  # truncated header
        b"\x02\x01\x00\x05ali",  # primary runs past the end
        b"\x02\x01\x00\x05alice",  # no secondary length
        b"\x02\x01\x00\x05alice\x00",  # half a secondary length
        b"\x02\x01\x00\x05alice\x00\x07secret",  # secondary too long
        b"\x02\x01\x00\x05alice\x00\x05secret",  # secondary too short (extra byte)
        b"\x02\x01\xff\xff\x00\x00",  # 16-bit length near the wrap
    ],
)
def test_user_identity_rq_bad_lengths(value):
    assert isinstance(_err(UserIdentityRQ.decode, memoryview(value)), PDUDecodeError)


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00\x01", b"\x00\x00\x00", b"\xff\xff"])
def test_user_identity_ac_bad_lengths(value):
    assert isinstance(_err(UserIdentityAC.decode, memoryview(value)), PDUDecodeError)


@pytest.mark.parametrize(
    "value",
    [
        GOLD_COMMON_EXTENDED[4:-1],  # related UID truncated
        GOLD_COMMON_EXTENDED[4:-7],  # related classes length says 7, nothing follows
        GOLD_COMMON_EXTENDED[4:16],  # truncated related-classes length
        GOLD_COMMON_EXTENDED[4:] + b"\x00",  # one byte more than the related length says
        b"\x00\x05" + b"1.2.3" + b"\xff\xff",  # service class UID length runs past the end
    ],
)
def test_common_extended_bad_lengths(value):
    assert isinstance(_err(SOPClassCommonExtendedNegotiation.decode, memoryview(value)), PDUDecodeError)


def test_extended_truncated_uid():
    assert isinstance(_err(SOPClassExtendedNegotiation.decode, memoryview(b"\x00\x09" + b"1.2")), PDUDecodeError)


def test_sixteen_bit_length_wrap():
    """Scenario C.15: a 16-bit item length pointing past the end (0xFFFF, or wrapped) never over-reads."""
    # user information item claiming 0xFFFF bytes at the end of the RQ
    body = bytes(GOLD_ASSOCIATE_RQ[6 : 6 + 68 + 25 + 50]) + h("50 00 FFFF 51 00 0004 00004000")
    raw = bytes((1, 0)) + struct.pack(">I", len(body)) + body
    assert _err(decode_pdu_bytes, raw).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    # a sub-item length that would wrap a 16-bit offset (0xFFFC + 4 == 0x10000) inside a short item
    assert isinstance(_err(UserInformation.decode, memoryview(h("51 00 FFFC 00004000"))), PDUDecodeError)
    # sub-item length 0xFFFF inside a presentation context
    value = h(f"01 00 00 00  30 00 FFFF {A('1.2.840.10008.1.1')}")
    assert isinstance(_err(PresentationContextRQ.decode, memoryview(value)), PDUDecodeError)
    # truncated item header (fewer than 4 bytes left)
    assert isinstance(_err(UserInformation.decode, memoryview(h("51 00 00"))), PDUDecodeError)
    # encoding refuses what 16 bits cannot hold rather than wrapping
    with pytest.raises(ValueError):
        it.item(0x50, b"\x00" * 0x10000)
    assert len(it.item(0x50, b"\x00" * 0xFFFF)) == 0xFFFF + 4


def test_associate_structure_errors():
    # shorter than the 68-byte fixed part
    assert isinstance(_err(decode_pdu, 1, memoryview(b"\x00" * 67)), PDUDecodeError)
    assert isinstance(_err(decode_pdu, 2, memoryview(b"")), PDUDecodeError)
    # no application context item
    fixed = bytes(GOLD_ASSOCIATE_RQ[6 : 6 + 68])
    assert isinstance(_err(decode_pdu, 1, memoryview(fixed)), PDUDecodeError)
    # two application context items, two user information items
    two_app = fixed + GOLD_APP_CONTEXT + GOLD_APP_CONTEXT
    assert _err(decode_pdu, 1, memoryview(two_app)).reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    two_ui = fixed + GOLD_APP_CONTEXT + GOLD_USER_INFO + GOLD_USER_INFO
    assert _err(decode_pdu, 1, memoryview(two_ui)).reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    # presentation context without abstract syntax, with two abstract syntaxes, shorter than 4 bytes
    assert isinstance(_err(PresentationContextRQ.decode, memoryview(b"\x01\x00\x00\x00")), PDUDecodeError)
    two_as = b"\x01\x00\x00\x00" + GOLD_ABSTRACT + GOLD_ABSTRACT
    assert _err(PresentationContextRQ.decode, memoryview(two_as)).reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    assert isinstance(_err(PresentationContextRQ.decode, memoryview(b"\x01\x00")), PDUDecodeError)
    assert isinstance(_err(PresentationContextAC.decode, memoryview(b"\x01\x00")), PDUDecodeError)


@pytest.mark.parametrize("body", BAD_PDATA_BODIES)
def test_pdata_bad_pdvs(body):
    assert _err(decode_pdata, memoryview(body)).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 3, 5, 8])
def test_fixed_four_wrong_length_decode(pdu_type, length):
    assert _err(decode_pdu, pdu_type, memoryview(b"\x00" * length)).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("pdu_type", [0, 8, 9, 0x10, 0x7F, 0xFF])
def test_unknown_pdu_type_decode(pdu_type):
    assert _err(decode_pdu, pdu_type, memoryview(b"\x00" * 4)).reason == AbortReason.UNRECOGNIZED_PDU


def test_decode_pdu_bytes_length_mismatch():
    assert isinstance(_err(decode_pdu_bytes, b"\x05\x00\x00\x00"), PDUDecodeError)
    assert isinstance(_err(decode_pdu_bytes, h("05 00 00000004 000000")), PDUDecodeError)
    assert isinstance(_err(decode_pdu_bytes, h("05 00 00000004 0000000000")), PDUDecodeError)


# --------------------------------------------------------------------------- robustness: truncation, mutation


def _decode_safely(raw: bytes) -> None:
    """decode_pdu_bytes must either succeed or raise PDUDecodeError: any other exception fails the test."""
    try:
        pdu = decode_pdu_bytes(raw)
    except PDUDecodeError as error:
        assert isinstance(error.reason, AbortReason)
        return
    # A PDU that decodes must also re-encode without blowing up (or with a clean ValueError, never a crash).
    try:
        pdu.encode()
    except (ValueError, UnicodeEncodeError, struct.error):
        pass


def _prefix_points(n: int) -> list[int]:
    if n <= 2048:
        return list(range(n))
    step = max(1, n // 1500)
    return sorted(set(range(0, 512)) | set(range(0, n, step)) | set(range(n - 256, n)))


@pytest.mark.parametrize("name,pdu_name,raw", UNIQUE_PDUS, ids=[f"{n}:{p}:{len(r)}" for n, p, r in UNIQUE_PDUS])
def test_truncation_never_crashes(name, pdu_name, raw):
    # every raw prefix: the header length no longer matches
    for n in range(len(raw)):
        with pytest.raises(PDUDecodeError):
            decode_pdu_bytes(raw[:n])
    # prefixes with the header length fixed up, so the body itself is truncated
    for n in _prefix_points(len(raw) - 6):
        truncated = raw[:2] + struct.pack(">I", n) + raw[6 : 6 + n]
        _decode_safely(truncated)


def test_every_prefix_through_reader():
    for _, _, raw in UNIQUE_PDUS:
        reader = PDUReader()
        for i, byte in enumerate(raw):
            reader.feed(bytes((byte,)))
            result = reader.next_pdu()
            if i < len(raw) - 1:
                assert result is None
        assert result == (raw[0], raw[6:])
        assert reader.buffered == 0


SMALL_SEEDS = [raw for _, _, raw in UNIQUE_PDUS if len(raw) < 5000] + [g for _, _, g in PDU_GOLDENS]


def test_random_mutation_never_crashes():
    rng = random.Random(0xDC3)
    count = 0
    for round_ in range(4000):
        raw = bytearray(rng.choice(SMALL_SEEDS))
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            pos = rng.randrange(len(raw))
            if kind < 0.6:
                raw[pos] = rng.randrange(256)
            elif kind < 0.8:
                raw[pos] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x40, 0x41))
            elif kind < 0.9:
                del raw[pos : pos + rng.randint(1, 8)]
            else:
                raw[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.7 and len(raw) >= 6:  # keep the header consistent so the body gets parsed
            raw[2:6] = struct.pack(">I", len(raw) - 6)
        _decode_safely(bytes(raw))
        count += 1
    assert count == 4000


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SMALL_SEEDS), st.data())
def test_hypothesis_mutation_never_crashes(seed, data):
    raw = bytearray(seed)
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=6))
    for pos, value in edits:
        raw[pos] = value
    raw[2:6] = struct.pack(">I", len(raw) - 6)
    _decode_safely(bytes(raw))


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_hypothesis_random_bodies_never_crash(pdu_type, body):
    _decode_safely(bytes((pdu_type, 0)) + struct.pack(">I", len(body)) + body)


# --------------------------------------------------------------------------- property round trips

_AE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ae_titles = st.text(_AE_CHARS, min_size=1, max_size=16).filter(lambda s: s == s.strip(" ") and s != "")


@st.composite
def uids(draw) -> str:
    parts = draw(st.lists(st.integers(0, 10**12), min_size=1, max_size=12))
    uid = ".".join(str(p) for p in parts)
    return uid[:64].rstrip(".") or "1"


transfer_syntaxes = st.lists(uids(), max_size=5).map(tuple)
pctx_rq = st.builds(PresentationContextRQ, st.integers(0, 255), uids(), transfer_syntaxes, reserved=st.just(0))
pctx_ac = st.builds(PresentationContextAC, st.integers(0, 255), st.integers(0, 255), uids() | st.just(""))
version_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=16)
_KNOWN_SUB = {0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59}
sub_items = st.one_of(
    st.builds(MaximumLength, st.integers(0, 2**32 - 1)),
    st.builds(ImplementationClassUID, uids()),
    st.builds(ImplementationVersionName, version_names),
    st.builds(AsyncOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(RoleSelection, uids(), st.integers(0, 1), st.integers(0, 1)),
    st.builds(SOPClassExtendedNegotiation, uids(), st.binary(max_size=40)),
    st.builds(SOPClassCommonExtendedNegotiation, uids(), uids(), st.lists(uids(), max_size=4).map(tuple)),
    st.builds(UserIdentityRQ, st.integers(1, 5), st.booleans(), st.binary(max_size=40), st.binary(max_size=40)),
    st.builds(UserIdentityAC, st.binary(max_size=40)),
    st.builds(RawSubItem, st.integers(0, 255).filter(lambda t: t not in _KNOWN_SUB), st.binary(max_size=20)),
)
user_infos = st.lists(sub_items, max_size=8).map(lambda s: UserInformation(tuple(s)))

associate_rqs = st.builds(
    AssociateRQ,
    called_ae=ae_titles,
    calling_ae=ae_titles,
    user_info=user_infos,
    application_context=uids(),
    protocol_version=st.integers(0, 0xFFFF),
    presentation_contexts=st.lists(pctx_rq, max_size=6).map(tuple),
)
associate_acs = st.builds(
    AssociateAC,
    called_ae=ae_titles,
    calling_ae=ae_titles,
    user_info=user_infos,
    application_context=uids(),
    protocol_version=st.integers(0, 0xFFFF),
    presentation_contexts=st.lists(pctx_ac, max_size=6).map(tuple),
)
pdvs = st.builds(PDV, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=100))
pdus = st.one_of(
    associate_rqs,
    associate_acs,
    st.builds(AssociateRJ, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.builds(PDataTF, st.lists(pdvs, min_size=1, max_size=5).map(tuple)),
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, st.integers(0, 255), st.integers(0, 255)),
)


@settings(max_examples=400, deadline=None)
@given(pdus)
def test_pdu_round_trip(pdu):
    raw = pdu.encode()
    decoded = decode_pdu_bytes(raw)
    assert decoded == pdu
    assert decoded.encode() == raw


@settings(max_examples=300, deadline=None)
@given(sub_items)
def test_sub_item_round_trip(sub):
    raw = sub.encode()
    decoded = UserInformation.decode(memoryview(raw))
    assert decoded.sub_items == (sub,)


@settings(max_examples=200, deadline=None)
@given(ae_titles)
def test_ae_title_round_trip(title):
    rq = AssociateRQ(title, title, UserInformation())
    decoded = decode_pdu_bytes(rq.encode())
    assert decoded.called_ae == title and decoded.calling_ae == title


@settings(max_examples=100, deadline=None)
@given(st.lists(pdus, min_size=1, max_size=6), st.integers(1, 50))
def test_framing_any_chunking_same_pdus(pdu_list, chunk):
    stream = b"".join(p.encode() for p in pdu_list)
    reader = PDUReader()
    got = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        while (framed := reader.next_pdu()) is not None:
            got.append(decode_pdu(framed[0], memoryview(framed[1])))
    assert got == pdu_list


# --------------------------------------------------------------------------- framing


def _frame_all(stream: bytes, chunk: int | None) -> list[tuple[int, bytes]]:
    reader = PDUReader()
    out = []
    pieces = [stream] if chunk is None else [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    for piece in pieces:
        reader.feed(piece)
        while (framed := reader.next_pdu()) is not None:
            out.append(framed)
    assert reader.buffered == 0
    return out


@pytest.mark.parametrize("name", [n for n in CAPTURE_FILES if n != "echo-128-contexts.txt"] + ["echo-128-contexts.txt"])
def test_framing_chunking_equivalence(name):
    raws = [raw for _, _, raw in _load(name)]
    stream = b"".join(raws)
    expected = [(r[0], r[6:]) for r in raws]
    assert _frame_all(stream, None) == expected  # several PDUs in one chunk
    assert _frame_all(stream, 7) == expected
    if len(stream) < 50_000:
        assert _frame_all(stream, 1) == expected  # one byte at a time
    else:
        assert _frame_all(stream, 13) == expected


def test_framing_needed():
    reader = PDUReader()
    assert reader.needed() == 6
    reader.feed(b"\x05\x00")
    assert reader.needed() == 4
    reader.feed(b"\x00\x00\x00\x04")
    assert reader.next_pdu() is None
    assert reader.needed() == 4
    reader.feed(b"\x00\x00")
    assert reader.needed() == 2
    reader.feed(b"\x00\x00")
    assert reader.next_pdu() == (5, b"\x00" * 4)


@pytest.mark.parametrize("pdu_type", [1, 2, 4])
def test_length_ffffffff_refused_from_header(pdu_type):
    reader = PDUReader()
    reader.feed(bytes((pdu_type, 0)) + b"\xff\xff\xff\xff")
    assert reader.buffered == 6  # nothing beyond the header was needed to decide
    error = _err(reader.next_pdu)
    assert error.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert reader.buffered == 6


def test_pdata_over_max_refused():
    reader = PDUReader(max_pdata=16384)
    reader.check_header(4, 16384)  # exactly the maximum is fine
    assert _err(reader.check_header, 4, 16385).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    reader.feed(b"\x04\x00" + struct.pack(">I", 16385))
    assert _err(reader.next_pdu).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_pdata_unlimited_cap():
    reader = PDUReader(max_pdata=0)
    assert reader.max_pdata == UNLIMITED_PDATA_CAP
    reader.check_header(4, UNLIMITED_PDATA_CAP)
    assert _err(reader.check_header, 4, UNLIMITED_PDATA_CAP + 1).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("pdu_type", [1, 2])
def test_associate_over_cap_refused(pdu_type):
    reader = PDUReader()
    reader.check_header(pdu_type, ASSOCIATE_CAP)
    assert ASSOCIATE_CAP == 1 << 20
    assert _err(reader.check_header, pdu_type, ASSOCIATE_CAP + 1).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 2, 3, 5, 6, 0xFFFFFFFF])
def test_fixed_four_wrong_length_refused_from_header(pdu_type, length):
    reader = PDUReader()
    reader.feed(bytes((pdu_type, 0)) + struct.pack(">I", length))
    assert _err(reader.next_pdu).reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("pdu_type", [0, 8, 0x10, 0x99, 0xFF])
def test_unknown_type_refused_from_header(pdu_type):
    reader = PDUReader()
    reader.feed(bytes((pdu_type, 0)) + struct.pack(">I", 4))
    assert _err(reader.next_pdu).reason == AbortReason.UNRECOGNIZED_PDU


def test_short_header_waits():
    reader = PDUReader()
    for i in range(5):
        reader.feed(b"\x07")
        assert reader.next_pdu() is None
