"""The sans-IO half of bulk receive (transport/bulk.py): what the framing and the assembler let a driver
move past them, and that the stream stays in step after it did."""

from __future__ import annotations

import struct

import pytest

from dcmnet_cli.dimse.assembler import Assembler, DatasetFragment, MessageComplete
from dcmnet_cli.dimse.commandset import c_store_rq
from dcmnet_cli.ul.framing import PDATA_START, PDV_PIECE, PDUReader

STREAM_ABOVE = 256 << 10


def headers(length: int, control: int, context: int = 1) -> bytes:
    """A P-DATA-TF header and its one PDV's header, for ``length`` data bytes."""
    return struct.pack(">BBIIBB", 0x04, 0, length + 6, length + 2, context, control)


def started(length: int, control: int = 0x02) -> PDUReader:
    reader = PDUReader(8 << 20, stream_above=STREAM_ABOVE)
    reader.feed(headers(length, control))
    assert reader.next_pdu() == (PDATA_START, length + 6)
    assert reader.next_pdu() is None
    return reader


def test_a_data_pdv_unread_is_offered_less_its_last_two_bytes_which_still_end_it() -> None:
    reader = started(1_000_001)
    assert reader.bulk() == (1, 999_998)  # even, and two bytes (here three) left for the usual path
    reader.skip(999_997)  # an odd count: a splice cut short by a timeout
    assert reader.bulk() == (1, 2)  # four left: two may go (the driver moves nothing this small)
    reader.feed(b"wxyz")
    kind, piece = reader.next_pdu()
    assert kind == PDV_PIECE and bytes(piece.data) == b"wxyz" and piece.control == 0x02  # with the "last" bit
    assert reader.next_pdu() is None and not reader.streaming


def test_nothing_is_offered_for_a_command_pdv_or_while_fed_bytes_wait() -> None:
    assert started(1_000_000, control=0x03).bulk() is None
    reader = started(1_000_000)
    reader.feed(b"ab")  # fed, not yet taken by next_pdu: the driver must not read past them
    assert reader.bulk() is None
    kind, piece = reader.next_pdu()
    assert kind == PDV_PIECE and bytes(piece.data) == b"ab" and piece.control == 0x00
    assert reader.bulk() == (1, 1_000_000 - 2 - 2)


def test_skipping_more_than_offered_is_refused() -> None:
    reader = started(1_000_000)
    with pytest.raises(ValueError):
        reader.skip(999_999)  # the last two bytes are never the driver's


def test_a_read_that_ends_after_the_next_headers_is_sized_only_for_a_peer_sending_large_pdus() -> None:
    reader = started(1_000_000)
    assert reader.bulk_read_size() == 1_000_000 + 12  # the rest of this PDU, then the next one's headers
    small = PDUReader(8 << 20, stream_above=STREAM_ABOVE)
    small.feed(headers(100_000, 0x00))
    assert small.next_pdu() is None  # assembled, not streamed
    assert small.bulk_read_size() == 0


def test_the_assembler_offers_only_a_streamed_data_set_within_its_quota() -> None:
    command = c_store_rq(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3").encode()
    assembler = Assembler(max_dataset_bytes=5_000)
    assert assembler.streamable(1, 1_000) == 0  # no message yet
    assembler.receive_pdv(1, 0x03, memoryview(command))
    assert assembler.streaming and assembler.streamable(3, 1_000) == 0  # another context
    assert assembler.streamable(1, 10_000) == 5_000
    assembler.skipped(4_000)
    assert assembler.streamable(1, 10_000) == 1_000
    events = assembler.receive_pdv(1, 0x02, memoryview(b"ab"))
    assert [type(e) for e in events] == [DatasetFragment, MessageComplete] and not assembler.streaming

    collecting = Assembler(collect=lambda message: True)
    collecting.receive_pdv(1, 0x03, memoryview(command))
    assert not collecting.streaming and collecting.streamable(1, 1_000) == 0  # held whole: never bypassed
