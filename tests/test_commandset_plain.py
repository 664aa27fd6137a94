"""Command sets read in one pass (``dimse.commandset._plain``) against the general reader.

``decode`` reads a plain command set (group 0000 only, known elements once each, well-formed values) in
one pass and hands anything else to the general reader, which keeps unknown and foreign elements and
names every defect. A peer must see the same outcome either way: the same Message, or the same
CommandSetError (message, Message ID, Command Field, data set flag).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmnet_cli.dimse import commandset
from dcmnet_cli.dimse.commandset import (
    CommandSetError,
    Message,
    c_cancel_rq,
    c_echo_rq,
    c_find_rsp,
    c_get_rsp,
    c_move_rq,
    c_store_rq,
    c_store_rsp,
    decode,
)

SAMPLES = [
    c_store_rq(7, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5", move_originator_aet="MOVER", move_originator_id=3),
    c_store_rsp(7, 0xB000, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5", "odd comment", offending_element=(0x00100010,)),
    c_find_rsp(3, 0xFF00, "1.2.840.10008.5.1.4.1.2.2.1", True),
    c_get_rsp(4, 0xFF00, "1.2.840.10008.5.1.4.1.2.2.3", remaining=3, completed=1, failed=0, warning=0),
    c_move_rq(9, "1.2.840.10008.5.1.4.1.2.2.2", "DEST"),
    c_echo_rq(1),
    c_cancel_rq(3),
    Message(0x8030, message_id_being_responded_to=1, status=0, extra=((0x0850, b"\x01\x00"),)),
]


def _outcome(raw: bytes, general: bool) -> object:
    saved = commandset._plain
    if general:
        commandset._plain = lambda buf: None  # type: ignore[assignment]
    try:
        return ("ok", tuple(decode(raw)))
    except CommandSetError as error:
        return ("error", str(error), error.message_id, error.command_field, error.has_dataset)
    finally:
        commandset._plain = saved


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.name)
def test_round_trip_and_both_readers_agree(message: Message) -> None:
    raw = message.encode()
    assert decode(raw) == message
    assert _outcome(raw, False) == _outcome(raw, True)


def test_plain_command_sets_take_the_one_pass_reader() -> None:
    assert commandset._plain(SAMPLES[0].encode()) is not None
    assert commandset._plain(SAMPLES[2].encode()) is not None
    assert commandset._plain(SAMPLES[1].encode()) is None  # an AT value: the general reader
    assert commandset._plain(SAMPLES[-1].encode()) is None  # an unknown element: kept in extra


def _element(elem: int, value: bytes, group: int = 0) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


HANDMADE = {
    "duplicate": _element(0x0100, b"\x30\x80") + _element(0x0100, b"\x30\x80") + _element(0x0120, b"\x01\x00")
    + _element(0x0800, b"\x01\x01") + _element(0x0900, b"\0\0"),
    "bad group length": _element(0x0000, b"\x07\0\0\0") + c_echo_rq(1).encode()[12:],
    "short US": c_echo_rq(1).encode()[12:] + _element(0x0700, b"\x01"),
    "foreign after": c_store_rsp(7, 0).encode() + _element(0x0058, b"1.2\0", group=0x0008),
    "no command field": _element(0x0110, b"\x05\x00") + _element(0x0800, b"\x01\x00"),
    "missing mandatory": _element(0x0100, b"\x01\x00") + _element(0x0110, b"\x05\x00") + _element(0x0800, b"\x01\x00"),
    "truncated header": c_echo_rq(1).encode()[:-3],
    "length past the end": c_echo_rq(1).encode()[:-1],
}


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_defects_read_the_same(name: str) -> None:
    raw = HANDMADE[name]
    assert _outcome(raw, False) == _outcome(raw, True)


@settings(max_examples=400, deadline=None)
@given(index=st.integers(min_value=0, max_value=len(SAMPLES) - 1), flips=st.lists(
    st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255)), max_size=3),
    cut=st.integers(min_value=0, max_value=8))
def test_damaged_command_sets_read_the_same(index: int, flips: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(SAMPLES[index].encode())
    for at, byte in flips:
        if at < len(raw):
            raw[at] = byte
    data = bytes(raw[:len(raw) - cut])
    assert _outcome(data, False) == _outcome(data, True)
