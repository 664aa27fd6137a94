"""Fragmenter ↔ assembler round trips (PS3.8 §9.3.5, Annex D.1/E) and their wire format."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator

import pytest
from wire import parse_pdata, receive_pdata
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmnet_cli.dimse import commandset as cs
from dcmnet_cli.dimse.assembler import (Assembler, CommandReceived, DatasetFragment, Event, MessageComplete)
from dcmnet_cli.dimse.fragment import UNLIMITED_PDU_CAP, Buffer, fragment_message, pdu_bytes

ECHO_CMD = cs.encode(cs.c_echo_rq(1))
STORE_CMD = cs.encode(cs.c_store_rq(3, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"))


def pdus(context_id: int, command: bytes, dataset: object, max_pdu: int) -> list[bytes]:
    return [pdu_bytes(b) for b in fragment_message(context_id, command, dataset, max_pdu)]  # type: ignore[arg-type]


def check_wire(pdu: bytes, max_pdu: int) -> list[tuple[int, int, memoryview]]:
    """Check one P-DATA-TF against PS3.8 §9.3.5: type 4, length field, body within the peer's limit."""
    assert pdu[0] == 0x04 and pdu[1] == 0
    assert struct.unpack(">I", pdu[2:6])[0] == len(pdu) - 6 <= (max_pdu or UNLIMITED_PDU_CAP)
    pdvs = parse_pdata(memoryview(pdu)[6:])
    for _ctx, control, data in pdvs:
        assert len(data) % 2 == 0 or control & 2, "non-final fragments are even"
    return pdvs


def round_trip(command: bytes, dataset: object, max_pdu: int, context_id: int = 1) -> tuple[list[Event], bytes]:
    asm = Assembler(valid_context_ids={context_id})
    events: list[Event] = []
    received = bytearray()
    for pdu in pdus(context_id, command, dataset, max_pdu):
        check_wire(pdu, max_pdu)
        for ev in receive_pdata(asm, memoryview(pdu)[6:]):
            events.append(ev)
            if isinstance(ev, DatasetFragment):
                received += ev.data  # consume before the next PDU, as documented
    assert asm.idle
    return events, bytes(received)


def test_echo_golden_matches_dcmtk() -> None:
    # echo.txt, DCMTK echoscu: P-DATA-TF (0x04), length 0x4A, one PDV of length 0x46 on context 1 with
    # control 0x03 (command, last), then the 0x44-byte C-ECHO-RQ command set.
    expected = bytes.fromhex("04000000004a00000046" "0103") + ECHO_CMD
    assert pdus(1, ECHO_CMD, None, 16384) == [expected]


def test_command_and_dataset_share_a_pdu() -> None:
    [pdu] = pdus(3, STORE_CMD, b"\x08\x00" * 10, 16384)
    pdvs = check_wire(pdu, 16384)
    assert [(c, ctl, bytes(d)) for c, ctl, d in pdvs] == [(3, 3, STORE_CMD), (3, 2, b"\x08\x00" * 10)]


def test_tiny_max_pdu_gives_two_byte_fragments() -> None:
    for max_pdu in (8, 9):
        out = pdus(1, ECHO_CMD, b"abcdef", max_pdu)
        assert len(out) == len(ECHO_CMD) // 2 + 3
        assert all(len(p) == 14 for p in out)  # 6 header + 4 length + 2 ids + 2 data
    assert pdus(1, ECHO_CMD, b"abc", 8)[-1][-7:] == b"\x00\x00\x00\x03\x01\x02c"  # odd total: last is odd


def test_unlimited_max_pdu_uses_cap() -> None:
    out = pdus(1, STORE_CMD, bytes(3 * UNLIMITED_PDU_CAP), 0)
    assert len(out) == 4 and all(len(p) - 6 <= UNLIMITED_PDU_CAP for p in out)


@pytest.mark.parametrize("max_pdu", [-1, 0.5, 1, 7])
def test_bad_max_pdu(max_pdu: int) -> None:
    with pytest.raises((ValueError, TypeError)):
        pdus(1, ECHO_CMD, None, max_pdu)


@pytest.mark.parametrize("context_id", [0, 2, 256, -1])
def test_bad_context_id(context_id: int) -> None:
    with pytest.raises(ValueError):
        pdus(context_id, ECHO_CMD, None, 16384)


def test_empty_dataset_sends_empty_last_fragment() -> None:
    [pdu] = pdus(1, STORE_CMD, b"", 16384)
    assert pdu.endswith(b"\x00\x00\x00\x02\x01\x02")  # PDV length 2, context 1, control "last, data set"
    events, data = round_trip(STORE_CMD, [], 16384)
    assert data == b"" and isinstance(events[-1], MessageComplete)


def test_zero_copy_slices() -> None:
    data = bytes(range(256)) * 1000
    for bufs in fragment_message(1, STORE_CMD, data, 16384):
        for b in bufs[1:]:
            if isinstance(b, memoryview):
                assert b.obj is data or b.obj is STORE_CMD


def test_streaming_holds_at_most_one_chunk_ahead() -> None:
    chunk, max_pdu, taken = 100_000, 16384, [0]

    def source() -> Iterator[bytes]:
        for _ in range(50):
            taken[0] += chunk
            yield bytes(chunk)

    sent = 0
    for bufs in fragment_message(1, STORE_CMD, source(), max_pdu):
        sent += sum(len(b) for b in bufs)
        assert taken[0] - sent <= chunk + max_pdu


def test_five_megabyte_dataset() -> None:
    data = bytes(range(256)) * (5 * 1024 * 1024 // 256) + b"xy"
    for max_pdu in (8192, 16384, 16383, 1 << 20, 0):
        chunks = [memoryview(data)[i:i + 65537] for i in range(0, len(data), 65537)]
        for dataset in (data, chunks):
            events, got = round_trip(STORE_CMD, dataset, max_pdu)
            assert got == data
            assert isinstance(events[0], CommandReceived) and events[0].message.affected_sop_instance_uid == "1.2.3.4.5"
            assert isinstance(events[-1], MessageComplete)


def split(data: bytes, cuts: list[int]) -> list[Buffer]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [memoryview(data)[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 200_000),
    max_pdu=st.one_of(st.integers(8, 64), st.integers(8, 1 << 20), st.sampled_from([0, 16384, 16383])),
    cuts=st.lists(st.integers(0, 200_000), max_size=8),
    context_id=st.integers(0, 127).map(lambda n: 2 * n + 1),
    with_dataset=st.booleans(),
)
def test_round_trip_property(size: int, max_pdu: int, cuts: list[int], context_id: int,
                             with_dataset: bool) -> None:
    if max_pdu < 64:
        size = min(size, 3000)  # keep the 2-byte-fragment cases quick
    data = bytes((i * 7) & 0xFF for i in range(size))
    msg = cs.c_store_rq(9, "1.2.3", "4.5.6") if with_dataset else cs.c_echo_rq(9)
    events, got = round_trip(cs.encode(msg), split(data, cuts) if with_dataset else None, max_pdu, context_id)
    assert events[0] == CommandReceived(context_id, msg, with_dataset)
    assert events[-1] == MessageComplete(context_id, msg)
    assert got == (data if with_dataset else b"")


def test_throughput() -> None:
    chunk = memoryview(bytes(1 << 20))
    total = 256
    for max_pdu in (16384, 262144):  # CPU time of this thread: a loaded machine does not make it longer
        start = time.thread_time()
        asm = Assembler({1})
        n = 0
        for bufs in fragment_message(1, STORE_CMD, (chunk for _ in range(total)), max_pdu):
            for ev in receive_pdata(asm, memoryview(pdu_bytes(bufs))[6:]):
                if isinstance(ev, DatasetFragment):
                    n += len(ev.data)
        elapsed = time.thread_time() - start
        assert n == total << 20
        assert elapsed < 2.0, f"{total} MiB at max PDU {max_pdu}: {elapsed:.2f}s"


def many_messages(count: int) -> Iterable[bytes]:
    for i in range(count):
        yield from pdus(1, cs.encode(cs.c_store_rq(i, "1.2", "1.3")), bytes(i * 11), 64)


def test_assembler_many_messages() -> None:
    asm = Assembler({1})
    completes = [ev for p in many_messages(20) for ev in receive_pdata(asm, memoryview(p)[6:])
                 if isinstance(ev, MessageComplete)]
    assert [m.message.message_id for m in completes] == list(range(20))


@pytest.mark.parametrize("max_pdu", [16, 1001, 16384, 0])
@pytest.mark.parametrize("chunked", [False, True])
def test_file_region_data_set_fragments_like_bytes(max_pdu: int, chunked: bool) -> None:
    """A FileRegion data set is sliced, never read: resolving each slice against the file's bytes gives
    exactly the PDUs of the same data set passed as bytes."""
    from dcmnet_cli.dimse.fragment import FileRegion

    data = bytes(range(256)) * 40 + b"x"
    region = FileRegion(9, 100, len(data))
    dataset = iter(region.split(777)) if chunked else region
    resolved = []
    for pdu in fragment_message(1, STORE_CMD, dataset, max_pdu):
        parts = []
        for piece in pdu:
            if isinstance(piece, FileRegion):
                assert piece.fd == 9 and len(piece) > 0
                parts.append(data[piece.offset - 100:piece.offset - 100 + piece.length])
            else:
                parts.append(bytes(piece))
        resolved.append(b"".join(parts))
    assert resolved == pdus(1, STORE_CMD, data, max_pdu)
