"""Assembler against hostile PDV sequences: scenarios E/F (28–36) of /work/shared/scenarios.md."""

from __future__ import annotations

import struct

import pytest
from wire import parse_pdata, receive_pdata
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmnet_cli.dimse import commandset as cs
from dcmnet_cli.dimse.assembler import (Assembler, CommandReceived, DatasetFragment, InvalidCommand,
                                        MessageComplete)
from dcmnet_cli.dimse.fragment import fragment_message, pdu_bytes
from dcmnet_cli.errors import AbortReason, RemoteProtocolError

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER
ECHO = cs.encode(cs.c_echo_rq(1))
STORE = cs.encode(cs.c_store_rq(5, "1.2.3", "1.2.3.4"))
CMD, DATA = 0x01, 0x00  # message control header bit 0
LAST = 0x02


def pdv(ctx: int, control: int, data: bytes) -> bytes:
    """One PDV item (PS3.8 §9.3.5.1): 4-byte length (2 + data), context ID, control header, data."""
    return struct.pack(">IBB", len(data) + 2, ctx, control) + data


def feed(asm: Assembler, *items: tuple[int, int, bytes]) -> list[object]:
    events: list[object] = []
    for ctx, control, data in items:
        events += asm.receive_pdv(ctx, control, memoryview(data))
    return events


def aborts(reason: AbortReason, asm: Assembler, *items: tuple[int, int, bytes]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        feed(asm, *items)
    assert info.value.reason == reason


# --- 28: PDV framing -----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"",  # P-DATA-TF with no PDVs
    struct.pack(">IBB", 0, 1, 3),  # PDV length 0 (< 2)
    struct.pack(">I", 1) + b"\x01",  # PDV length 1
    pdv(1, 3, ECHO)[:-1],  # past the PDU end
    struct.pack(">IBB", 0xFFFFFFFF, 1, 3) + ECHO,  # near 2^32
    struct.pack(">IBB", 0xFFFFFFFE, 1, 3),
    pdv(1, 3, ECHO) + b"\x00\x00",  # lengths not adding up: trailing bytes
    pdv(1, 3, ECHO) + b"\x00\x00\x00\x02\x01",
])
def test_pdata_framing_aborts(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive_pdata(Assembler(), memoryview(body))
    assert info.value.reason == INVALID


def test_bad_last_pdv_rejects_whole_pdu_before_any_event() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_pdata(memoryview(pdv(1, 3, ECHO) + struct.pack(">IBB", 9, 1, 3)))


# --- 29: context IDs -----------------------------------------------------------------------------

@pytest.mark.parametrize("ctx", [3, 0, 2, 4, 255])
def test_unaccepted_or_even_context(ctx: int) -> None:
    aborts(INVALID, Assembler(valid_context_ids={1, 5, 255} - {ctx}), (ctx, CMD | LAST, ECHO))


def test_context_check_callable_and_default() -> None:
    assert feed(Assembler(valid_context_ids=lambda c: c == 7), (7, CMD | LAST, ECHO))
    aborts(INVALID, Assembler(valid_context_ids=lambda c: c == 7), (9, CMD | LAST, ECHO))
    aborts(INVALID, Assembler(), (2, CMD | LAST, ECHO))  # even IDs are never valid


# --- 30: fragment sequencing -----------------------------------------------------------------------

def test_command_fragments_on_two_contexts() -> None:
    aborts(UNEXPECTED, Assembler(), (1, CMD, STORE[:20]), (3, CMD | LAST, STORE[20:]))


def test_dataset_fragments_on_two_contexts() -> None:
    aborts(UNEXPECTED, Assembler(), (1, CMD | LAST, STORE), (1, DATA, b"ab"), (3, DATA | LAST, b"cd"))


def test_odd_non_final_fragment() -> None:
    aborts(INVALID, Assembler(), (1, CMD, STORE[:21]))
    aborts(INVALID, Assembler(), (1, CMD | LAST, STORE), (1, DATA, b"abc"))
    asm = Assembler(allow_odd_fragments=True)
    assert feed(asm, (1, CMD, STORE[:21]), (1, CMD | LAST, STORE[21:]), (1, DATA, b"abc"))


def test_dataset_before_command_complete() -> None:
    aborts(UNEXPECTED, Assembler(), (1, CMD, STORE[:20]), (1, DATA | LAST, b"ab"))


def test_dataset_with_no_command() -> None:
    aborts(UNEXPECTED, Assembler(), (1, DATA | LAST, b"ab"))


def test_dataset_when_command_said_none() -> None:
    aborts(UNEXPECTED, Assembler(), (1, CMD | LAST, ECHO), (1, DATA | LAST, b"ab"))


def test_command_while_dataset_outstanding() -> None:
    aborts(UNEXPECTED, Assembler(), (1, CMD | LAST, STORE), (1, DATA, b"ab"), (1, CMD | LAST, ECHO))


# --- 31: caps and quotas ---------------------------------------------------------------------------

def test_command_never_last_is_capped() -> None:
    asm = Assembler()
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            asm.receive_pdv(1, CMD, memoryview(bytes(1024)))
    assert info.value.reason == INVALID and asm._cmd_len <= 65 * 1024


def test_dataset_quota() -> None:
    asm = Assembler(max_dataset_bytes=10)
    feed(asm, (1, CMD | LAST, STORE), (1, DATA, b"0123456789"))
    aborts(INVALID, asm, (1, DATA, b"ab"))
    ok = Assembler(max_dataset_bytes=10)
    assert isinstance(feed(ok, (1, CMD | LAST, STORE), (1, DATA | LAST, b"0123456789"))[-1], MessageComplete)


# --- 32: empty final fragment ---------------------------------------------------------------------

def test_empty_final_fragments_are_valid() -> None:
    asm = Assembler()
    events = feed(asm, (1, CMD, STORE), (1, CMD | LAST, b""), (1, DATA, b"ab"), (1, DATA | LAST, b""))
    assert [type(e) for e in events] == [CommandReceived, DatasetFragment, DatasetFragment, MessageComplete]
    assert events[-2] == DatasetFragment(1, memoryview(b""), True) and asm.idle
    body = pdv(1, CMD | LAST, ECHO)
    assert [type(e) for e in receive_pdata(Assembler(), memoryview(body))] == [CommandReceived, MessageComplete]


# --- 33 is the service layer's job (asynchronous window); the assembler just delivers in order. -----

def test_back_to_back_requests_are_delivered_in_order() -> None:
    events = feed(Assembler(), (1, CMD | LAST, ECHO), (1, CMD | LAST, cs.encode(cs.c_echo_rq(2))))
    assert [e.message.message_id for e in events if isinstance(e, MessageComplete)] == [1, 2]


# --- 34–36: command set contents ------------------------------------------------------------------

def test_missing_required_with_message_id_is_an_event_and_dataset_discarded() -> None:
    bad = cs.encode(cs.Message(cs.C_STORE_RQ, message_id=8, affected_sop_class_uid="1.2", priority=0,
                               command_data_set_type=cs.DATASET_PRESENT))  # no Affected SOP Instance UID
    asm = Assembler()
    events = feed(asm, (1, CMD | LAST, bad), (1, DATA, b"ab"), (1, DATA | LAST, b"cd"))
    assert len(events) == 1 and isinstance(events[0], InvalidCommand)
    assert events[0].error.message_id == 8 and events[0].error.command_field == cs.C_STORE_RQ
    assert asm.idle and isinstance(feed(asm, (1, CMD | LAST, ECHO))[-1], MessageComplete)


def test_missing_data_set_type_then_next_command() -> None:
    body = cs.encode(cs.Message(cs.C_ECHO_RQ, message_id=4, affected_sop_class_uid="1.2"))[12:]
    body = body[: body.index(struct.pack("<HH", 0, 0x0800))]  # drop Command Data Set Type
    asm = Assembler()
    assert isinstance(feed(asm, (1, CMD | LAST, body))[0], InvalidCommand)
    assert isinstance(feed(asm, (3, CMD | LAST, ECHO))[-1], MessageComplete)  # no data set followed


def test_missing_message_id_aborts() -> None:
    no_id = cs.encode(cs.Message(cs.C_ECHO_RQ, affected_sop_class_uid="1.2"))
    aborts(INVALID, Assembler(), (1, CMD | LAST, no_id))


def test_unknown_command_field_is_delivered() -> None:
    raw = cs.encode(cs.Message(0x0042, message_id=3))
    events = feed(Assembler(), (1, CMD | LAST, raw))
    assert isinstance(events[0], CommandReceived) and events[0].message.command_field == 0x0042


def test_echo_with_dataset_is_delivered_for_the_service_to_refuse() -> None:
    raw = cs.encode(cs.Message(cs.C_ECHO_RQ, message_id=3, affected_sop_class_uid="1.2",
                               command_data_set_type=0x0000))
    events = feed(Assembler(), (1, CMD | LAST, raw), (1, DATA | LAST, b"xx"))
    assert events[0] == CommandReceived(1, events[0].message, True) and isinstance(events[-1], MessageComplete)


def test_element_outside_group_0000_aborts_or_is_set_aside() -> None:
    """Scenario 36, as peers really bend it: a command set of another group only is undecodable (abort);
    elements of other groups after the group-0000 ones (Orthanc's failed C-GET-RSP carries (0008,0000)
    and (0008,0058)) are set aside in ``Message.foreign`` and the command is read, as DCMTK and
    pynetdicom read it."""
    aborts(INVALID, Assembler(), (1, CMD | LAST, struct.pack("<HHI", 8, 0x16, 2) + b"ab"))
    raw = ECHO + struct.pack("<HHI", 0x0008, 0x0016, 2) + b"ab"
    events = Assembler().receive_pdv(1, CMD | LAST, memoryview(raw))
    assert isinstance(events[0], CommandReceived)
    assert events[0].message.command_field == cs.C_ECHO_RQ and events[0].message.foreign == ((0x00080016, b"ab"),)


# --- fuzz: any byte soup → only RemoteProtocolError ---------------------------------------------

VALID_PDUS = [pdu_bytes(b) for b in fragment_message(1, STORE, b"0123456789" * 4, 40)]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, len(VALID_PDUS)), st.binary(max_size=40))
def test_mutated_streams_only_raise_protocol_errors(edits: list[tuple[int, int]], drop: int,
                                                    junk: bytes) -> None:
    stream = bytearray(b"".join(p[6:] for p in VALID_PDUS[:drop] + VALID_PDUS[drop + 1:]) + junk)
    for pos, value in edits:
        if stream:
            stream[pos % len(stream)] = value
    asm = Assembler(valid_context_ids={1})
    try:
        receive_pdata(asm, memoryview(bytes(stream)))
    except RemoteProtocolError:
        pass
