"""The one element walker (``dcmnet_cli.part10.walker``): behaviour on golden data sets and hostile bytes.

Golden data sets are made by pydicom (deterministic) in implicit VR LE, explicit VR LE and explicit VR BE,
and walked in one feed, at every split point and one byte at a time: the answer must never depend on how
the bytes arrive. Hand-built bytes cover what pydicom will not write: truncation, lengths past the end,
unclosed sequences, 3 000 nested sequences, encapsulated fragments, UN of undefined length.
"""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

from dcmnet_cli.part10.vr import ITEM, ITEM_END, LONG_VRS, PIXEL_DATA, SEQUENCE_END, UNDEFINED
from dcmnet_cli.part10.walker import MAX_DEPTH, Part10Error, Truncated, Walker, walk

ENCODINGS = {"implicit": (False, True), "explicit": (True, True), "big": (True, False)}  # (explicit, little)
WANTED = frozenset({0x00080008, 0x00080018, 0x00100010, 0x00100020, 0x00280010})
PATIENT_NAME, PATIENT_ID, SEQUENCE = 0x00100010, 0x00100020, 0x00081115


# --------------------------------------------------------------------------- building bytes


def header(tag: int, vr: bytes, length: int, explicit: bool = True, little: bool = True) -> bytes:
    e = "<" if little else ">"
    group, element = tag >> 16, tag & 0xFFFF
    if not explicit or group == 0xFFFE:
        return struct.pack(e + "HHI", group, element, length)
    if vr in LONG_VRS:
        return struct.pack(e + "HH2sHI", group, element, vr, 0, length)
    return struct.pack(e + "HH2sH", group, element, vr, length)


def element(tag: int, vr: bytes, value: bytes, explicit: bool = True, little: bool = True) -> bytes:
    return header(tag, vr, len(value), explicit, little) + value


def open_sequence(tag: int = SEQUENCE, explicit: bool = True, little: bool = True) -> bytes:
    """An undefined-length sequence and its first undefined-length item."""
    return header(tag, b"SQ", UNDEFINED, explicit, little) + header(ITEM, b"", UNDEFINED, explicit, little)


def close_sequence(little: bool = True) -> bytes:
    return header(ITEM_END, b"", 0, little=little) + header(SEQUENCE_END, b"", 0, little=little)


def golden() -> Dataset:
    """Multi-valued strings, an undefined-length sequence holding an undefined-length item with a nested
    sequence and an empty item, an empty sequence, binary numbers, and pixel data."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5"
    code = Dataset()
    code.CodeValue = "121"
    code.CodingSchemeDesignator = "DCM"
    inner = Dataset()
    inner.CodeMeaning = "inner"
    code.ConceptCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([code, Dataset()])
    ds["ProcedureCodeSequence"].is_undefined_length = True
    ds.ProcedureCodeSequence[0].is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = bytes(range(8))
    ds["PixelData"].VR = "OW"
    return ds


def encode(ds: Dataset, explicit: bool, little: bool) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=not explicit, little_endian=little)
    return buffer.getvalue()


def expected_values(little: bool) -> dict[int, bytes]:
    return {0x00080008: b"ORIGINAL\\PRIMARY", 0x00080018: b"1.2.3.4.5\0", PATIENT_NAME: b"Doe^Jane",
            PATIENT_ID: b"P1", 0x00280010: struct.pack("<H" if little else ">H", 2)}


def walk_in(pieces: list[bytes], explicit: bool, little: bool, **options: object) -> Walker:
    walker = Walker(explicit, little, **options)  # type: ignore[arg-type]
    for piece in pieces:
        walker.feed(memoryview(piece))
    walker.finish()
    return walker


def error_of(data: bytes, explicit: bool = True, little: bool = True, **options: object) -> Part10Error:
    with pytest.raises(Part10Error) as caught:
        walk_in([data], explicit, little, **options)
    return caught.value


# --------------------------------------------------------------------------- golden data sets


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("descend", [False, True])
def test_golden_data_set_in_one_feed_every_split_and_bytewise(encoding: str, descend: bool) -> None:
    explicit, little = ENCODINGS[encoding]
    data = encode(golden(), explicit, little)
    expected = expected_values(little)
    whole = walk_in([data], explicit, little, wanted=WANTED, descend=descend)
    assert whole.values == expected and whole.offset == len(data) and whole.depth == 0
    for cut in range(len(data) + 1):
        assert walk_in([data[:cut], data[cut:]], explicit, little, wanted=WANTED, descend=descend).values == expected
    bytewise = walk_in([data[i:i + 1] for i in range(len(data))], explicit, little, wanted=WANTED, descend=descend)
    assert bytewise.values == expected and bytewise.offset == len(data)


@pytest.mark.parametrize("size", [5, 11, 64])
def test_fed_buffers_may_be_reused_at_once(size: int) -> None:
    """A receiver reads every fragment into the same buffer: the walker must copy what it keeps."""
    explicit, little = ENCODINGS["explicit"]
    data = encode(golden(), explicit, little)
    scratch = bytearray(size)
    walker = Walker(explicit, little, WANTED)
    for k in range(0, len(data), size):
        piece = data[k:k + size]
        scratch[:len(piece)] = piece
        walker.feed(memoryview(scratch)[:len(piece)])
        scratch[:] = b"\xff" * size  # the next read overwrites it
    walker.finish()
    assert walker.values == expected_values(little)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_span_stops_exactly_where_pydicom_puts_the_first_element_outside(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    ds = golden()
    data = encode(ds, explicit, little)
    boundary = len(encode(ds[:PATIENT_NAME], explicit, little))  # everything before (0010,0010)
    for pieces in ([data], [data[:boundary + 4], data[boundary + 4:]], [data[i:i + 3] for i in range(0, len(data), 3)]):
        walker = Walker(explicit, little, WANTED, span=(0, PATIENT_NAME - 1))
        for piece in pieces:
            walker.feed(piece)
        walker.finish()
        assert walker.stopped and walker.stopped_at == boundary == walker.offset
        assert set(walker.values) == {0x00080008, 0x00080018}


def test_walk_checks_defined_length_sequences_only_when_asked() -> None:
    broken_item = header(ITEM, b"", 10) + element(0x00080100, b"SH", b"12345678")  # item says 10, holds 16
    data = header(SEQUENCE, b"SQ", len(broken_item)) + broken_item + element(PATIENT_NAME, b"PN", b"Doe^")
    assert walk_in([data], True, True, wanted=frozenset({PATIENT_NAME})).values == {PATIENT_NAME: b"Doe^"}
    assert str(error_of(data, descend=True)) == ("element (0008,0100) at byte 20 (8 bytes) runs past the end of "
                                                 "the item at byte 12, at byte 30")


# --------------------------------------------------------------------------- truncation


def test_truncated_value_names_the_element_and_what_is_present() -> None:
    lead = element(0x00080018, b"UI", b"1.2.3.4\0")
    data = lead + header(PIXEL_DATA, b"OB", 4000) + bytes(3000)
    with pytest.raises(Truncated) as caught:
        walk_in([data], True, True)
    assert str(caught.value) == f"element (7FE0,0010) at byte {len(lead)} declares 4000 bytes, 3000 present"
    walker = Walker(True, True)
    walker.feed(data)  # fed, not finished: nothing wrong yet, 1000 bytes to go
    assert walker.skippable == 1000


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_length_past_the_end_is_truncation_not_a_crash(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    data = header(0x00091010, b"OB", 0xFFFFFFF0, explicit, little) + b"abcd"
    walker = Walker(explicit, little, frozenset({0x00091010}), max_value=1 << 32)
    walker.feed(data)
    assert walker.skippable == 0  # a wanted value is gathered, never skipped unseen
    with pytest.raises(Truncated, match=r"^element \(0009,1010\) at byte 0 declares 4294967280 bytes, 4 present$"):
        walker.finish()
    with pytest.raises(Truncated, match="declares 4294967280 bytes, 4 present"):
        walk(data, explicit, little)


def test_data_ending_inside_a_header() -> None:
    with pytest.raises(Truncated, match=r"inside an element header at byte 0 \(6 bytes of it\)"):
        walk_in([b"\x08\x00\x18\x00U", b"I"], True, True)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unclosed_sequences_and_items(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    inside_item = open_sequence(explicit=explicit, little=little) + element(0x00080100, b"SH", b"12", explicit, little)
    with pytest.raises(Truncated, match=r"inside the item at byte \d+ \(2 levels open\)"):
        walk(inside_item, explicit, little)
    item_closed = inside_item + header(ITEM_END, b"", 0, little=little)
    with pytest.raises(Truncated, match=r"inside sequence \(0008,1115\) from byte 0 \(1 level open\)"):
        walk(item_closed, explicit, little)
    assert walk(item_closed + header(SEQUENCE_END, b"", 0, little=little), explicit, little) == {}


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_3000_nested_undefined_length_sequences(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    depth = 3000
    nest = (open_sequence(explicit=explicit, little=little) * depth
            + element(PATIENT_NAME, b"PN", b"deep", explicit, little) + close_sequence(little) * depth)
    data = nest + element(PATIENT_ID, b"LO", b"after!", explicit, little)
    wanted = frozenset({PATIENT_NAME, PATIENT_ID})
    error = error_of(data, explicit, little)  # the default bound: a clean error, no RecursionError
    assert f"nested deeper than {MAX_DEPTH}" in str(error) and not isinstance(error, Truncated)
    for pieces in ([data], [data[i:i + 7] for i in range(0, len(data), 7)]):
        walker = walk_in(pieces, explicit, little, wanted=wanted, max_depth=None)
        assert walker.values == {PATIENT_ID: b"after!"}  # (0010,0010) is 3000 levels down, not top level
    opened = nest[:depth * len(open_sequence(explicit=explicit, little=little))]
    with pytest.raises(Truncated, match=r"inside the item at byte \d+ \(6000 levels open\)"):
        walk_in([opened], explicit, little, max_depth=None)


# --------------------------------------------------------------------------- encapsulated pixel data


def test_encapsulated_fragments_are_skipped_to_the_sequence_delimiter() -> None:
    lead = element(0x00280010, b"US", b"\x02\x00")
    pixels = header(PIXEL_DATA, b"OB", UNDEFINED) + encapsulate([b"\xff\xd8" + bytes(98), bytes(52)], has_bot=True)
    trailing = element(0xFFFCFFFC, b"OB", b"pad!")  # Data Set Trailing Padding: after the pixel data
    data = lead + pixels + header(SEQUENCE_END, b"", 0) + trailing
    wanted = frozenset({0xFFFCFFFC})
    for cut in range(len(data) + 1):
        assert walk_in([data[:cut], data[cut:]], True, True, wanted=wanted).values == {0xFFFCFFFC: b"pad!"}
    with pytest.raises(Truncated, match=r"inside encapsulated fragments \(7FE0,0010\) from byte 10 \(1 level open\)$"):
        walk(lead + pixels, True, True)
    last = len(lead) + len(pixels) - 52 - 8
    with pytest.raises(Truncated, match=rf"^element \(FFFE,E000\) at byte {last} declares 52 bytes, 20 present$"):
        walk(data[:last + 8 + 20], True, True)


def test_fragments_must_be_items_of_defined_length() -> None:
    start = header(PIXEL_DATA, b"OB", UNDEFINED)
    assert "undefined length" in str(error_of(start + header(ITEM, b"", UNDEFINED)))
    assert "needs an item" in str(error_of(start + element(0x00080018, b"UI", b"12")))


# --------------------------------------------------------------------------- encodings


def test_big_endian_items_are_big_endian() -> None:
    data = open_sequence(explicit=True, little=False) + close_sequence(little=False)
    assert walk(data, True, False) == {}
    little_items = header(SEQUENCE, b"SQ", UNDEFINED, True, False) + header(ITEM, b"", UNDEFINED, little=True)
    assert "needs an item" in str(error_of(little_items, True, False))


def test_implicit_vr_undefined_length_is_a_sequence() -> None:
    item = element(0x00080100, b"", b"121\0", explicit=False) + element(0x00080102, b"", b"DCM\0", explicit=False)
    data = (header(0x00081032, b"", UNDEFINED, explicit=False)
            + header(ITEM, b"", len(item)) + item
            + header(ITEM, b"", UNDEFINED) + item + header(ITEM_END, b"", 0)
            + header(SEQUENCE_END, b"", 0) + element(PATIENT_NAME, b"", b"Doe^", explicit=False))
    for cut in range(len(data) + 1):
        assert walk_in([data[:cut], data[cut:]], False, True, wanted=frozenset({PATIENT_NAME})).values == {PATIENT_NAME: b"Doe^"}


def test_un_of_undefined_length_holds_implicit_vr_little_endian() -> None:
    """PS3.5 §6.2.2: an SQ sent as UN, in an explicit VR big endian data set."""
    implicit_item = element(0x00091001, b"", b"abcd", explicit=False)
    data = (header(0x00091010, b"UN", UNDEFINED, True, False)
            + header(ITEM, b"", len(implicit_item)) + implicit_item
            + header(ITEM, b"", UNDEFINED) + implicit_item + header(ITEM_END, b"", 0)
            + header(SEQUENCE_END, b"", 0) + element(0x00280010, b"US", b"\x00\x02", True, False))
    assert walk(data, True, False, frozenset({0x00280010})) == {0x00280010: b"\x00\x02"}


# --------------------------------------------------------------------------- malformed and API


@pytest.mark.parametrize("data, message", [
    (b"\x08\x00\x16\x00zz\x02\x00ab", "invalid VR b'zz' for element (0008,0016) at byte 0"),
    (header(ITEM_END, b"", 0), "(FFFE,E00D) at byte 0 outside any sequence"),
    (header(SEQUENCE, b"SQ", UNDEFINED) + element(0x00080018, b"UI", b"12"), "(0008,0018) at byte 12 where sequence"),
    (header(0x00020001, b"OB", UNDEFINED), "undefined length, which only SQ, UN and encapsulated Pixel Data"),
    (header(SEQUENCE, b"SQ", UNDEFINED) + header(ITEM, b"", 4) + element(0x00080100, b"SH", b"12"),
     "runs past the end of the item at byte 12"),
    (header(SEQUENCE, b"SQ", 8) + header(ITEM, b"", 2) + b"ab" + header(ITEM, b"", 0), "runs past the end of sequence"),
    (header(SEQUENCE, b"SQ", 8) + header(SEQUENCE_END, b"", 0), "(FFFE,E0DD) at byte 12 where sequence"),
    (header(SEQUENCE, b"SQ", UNDEFINED) + header(ITEM, b"", 8) + header(ITEM_END, b"", 0),
     "unexpected (FFFE,E00D) at byte 20 in the item at byte 12"),
])
def test_malformed_structure_is_one_clear_line(data: bytes, message: str) -> None:
    error = error_of(data, descend=True)
    assert message in str(error) and "\n" not in str(error)


def test_an_error_is_final() -> None:
    walker = Walker(True, True)
    with pytest.raises(Part10Error) as first:
        walker.feed(b"\x08\x00\x16\x00zz\x02\x00ab")
    with pytest.raises(Part10Error) as again:
        walker.feed(element(0x00080018, b"UI", b"12"))
    assert again.value is first.value
    with pytest.raises(Part10Error):
        walker.finish()


def test_skip_lets_a_file_reader_jump_over_values() -> None:
    pixels = bytes(range(256)) * 40
    data = element(0x00080018, b"UI", b"1.2\0") + element(PIXEL_DATA, b"OW", pixels) + element(0xFFFCFFFC, b"OB", b"zz")
    cut = 12 + 12 + 10  # the UID, the pixel data header and ten pixel bytes fed; the rest jumped over
    walker = Walker(True, True, frozenset({0x00080018, 0xFFFCFFFC}))
    walker.feed(data[:cut])
    assert walker.skippable == len(pixels) - 10
    with pytest.raises(ValueError):
        walker.skip(walker.skippable + 1)
    walker.skip(walker.skippable)
    walker.feed(data[cut + len(pixels) - 10:])
    walker.finish()
    assert walker.values == {0x00080018: b"1.2\0", 0xFFFCFFFC: b"zz"} and walker.offset == len(data)


def test_wanted_values_are_bounded() -> None:
    data = element(PATIENT_NAME, b"PN", b"x" * 200)
    assert "200 bytes, more than the 64 expected" in str(error_of(data, wanted=frozenset({PATIENT_NAME}), max_value=64))
    assert walk_in([data], True, True, max_value=64).values == {}  # not wanted: any length


def test_ordered_refuses_what_cannot_be_a_data_set() -> None:
    a, b = element(0x00080016, b"UI", b"12"), element(0x00080018, b"UI", b"34")
    assert walk_in([a + b], True, True, ordered=True).values == {}
    assert "out of order at byte 10" in str(error_of(b + a, ordered=True))
    assert "out of order" in str(error_of(element(0x00030010, b"LO", b"ab"), ordered=True))
    walk_in([b + a], True, True)  # order is not checked unless asked


# --------------------------------------------------------------------------- any bytes, any split


def _outcome(pieces: list[bytes], explicit: bool, little: bool) -> tuple[str, object]:
    walker = Walker(explicit, little, frozenset({0x00080018, PATIENT_NAME}), max_value=64, span=(0, 0x7FE00010),
                    max_depth=8, descend=True)
    try:
        for piece in pieces:
            walker.feed(piece)
        walker.finish()
    except Part10Error as error:
        return type(error).__name__, str(error)
    return "ok", (walker.values, walker.stopped_at, walker.offset)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ENCODINGS)), st.binary(max_size=200), st.data())
def test_any_bytes_any_split_gives_the_same_answer(encoding: str, junk: bytes, data: st.DataObject) -> None:
    explicit, little = ENCODINGS[encoding]
    lead = data.draw(st.sampled_from([b"", element(0x00080018, b"UI", b"1.2\0", explicit, little),
                                      open_sequence(explicit=explicit, little=little)]))
    blob = lead + junk
    cut = data.draw(st.integers(0, len(blob)))
    whole = _outcome([blob], explicit, little)
    assert _outcome([blob[:cut], blob[cut:]], explicit, little) == whole
    assert _outcome([blob[i:i + 1] for i in range(len(blob))], explicit, little) == whole


# --------------------------------------------------------------------------- implicit VR: sequences by tag


REFERENCED_IMAGES, CONTENT = 0x00081140, 0x0040A730  # SQ in the data dictionary
PRIVATE = 0x00091010


def _defined_sequence(tag: int, items: list[bytes], explicit: bool) -> bytes:
    body = b"".join(header(ITEM, b"", len(item)) + item for item in items)
    return header(tag, b"SQ", len(body), explicit) + body


def _nested_implicit_sequences(explicit: bool, overrun: int = 0) -> bytes:
    """(0040,A730) of defined length > an item of defined length > (0008,1140) of defined length > an item
    of undefined length and one of defined length (``overrun`` bytes longer than what it holds)."""
    code = element(0x00080100, b"SH", b"C1", explicit)
    inner_items = header(ITEM, b"", UNDEFINED) + code + header(ITEM_END, b"", 0) \
        + header(ITEM, b"", len(code) + overrun) + code
    inner = header(REFERENCED_IMAGES, b"SQ", len(inner_items), explicit) + inner_items
    outer_item = inner + element(0x00080100, b"SH", b"C2", explicit)
    return (element(0x00080016, b"UI", b"1.2.3\0", explicit) + _defined_sequence(CONTENT, [outer_item], explicit)
            + element(PATIENT_NAME, b"PN", b"Doe^", explicit))


@pytest.mark.parametrize("explicit", [False, True])
def test_defined_length_sequences_are_descended_in_both_vrs(explicit: bool) -> None:
    good = _nested_implicit_sequences(explicit)
    for size in (1, 7, len(good)):
        pieces = [good[i:i + size] for i in range(0, len(good), size)]
        assert walk_in(pieces, explicit, True, wanted=frozenset({PATIENT_NAME}), descend=True).values == \
            {PATIENT_NAME: b"Doe^"}
    bad = _nested_implicit_sequences(explicit, overrun=4)
    message = str(error_of(bad, explicit, descend=True))
    first, item = (34, 72) if explicit else (30, 64)  # explicit VR: SQ has a 12-byte header
    assert message == f"item at byte {item} (14 bytes) runs past the end of sequence (0008,1140) from byte {first}"
    for size in (1, 5):  # the same answer however the bytes arrive
        with pytest.raises(Part10Error, match="runs past the end of sequence"):
            walk_in([bad[i:i + size] for i in range(0, len(bad), size)], explicit, True, descend=True)
    assert walk_in([bad], explicit, True, wanted=frozenset({PATIENT_NAME})).values == {PATIENT_NAME: b"Doe^"}


def test_implicit_sequence_item_overrunning_its_sequence_is_an_error() -> None:
    item = header(ITEM, b"", 0x0800004A, False) + element(0x00080100, b"SH", b"C1", False)  # the fuzz finding
    data = element(0x00080016, b"UI", b"1.2.3\0", False) + header(REFERENCED_IMAGES, b"", len(item), False) + item
    with pytest.raises(Part10Error) as caught:
        walk(data, False, True)
    assert str(caught.value) == ("item at byte 22 (134217802 bytes) runs past the end of sequence (0008,1140) "
                                 "from byte 14")
    item = header(ITEM, b"", 10, False) + element(0x00080100, b"SH", b"C1", False)
    whole = element(0x00080016, b"UI", b"1.2.3\0", False) + header(REFERENCED_IMAGES, b"", len(item), False) + item
    assert walk(whole, False, True) == {}
    assert isinstance(error_of(whole[:-2], False, descend=True), Truncated)  # cut short: truncation


@pytest.mark.parametrize("tag", [PRIVATE, 0x00081141, 0x7FE00010])
def test_implicit_private_and_unknown_tags_stay_opaque(tag: int) -> None:
    looks_like_items = header(ITEM, b"", 0x100, False) + b"\0" * 8  # would be a bad item if it were a sequence
    data = element(tag, b"", looks_like_items, False)
    assert walk(data, False, True) == {}


def test_implicit_repeating_group_sequence_is_known() -> None:
    item = header(ITEM, b"", 100, False) + b"\0" * 8
    with pytest.raises(Part10Error, match=r"sequence \(5002,2600\)"):
        walk(element(0x50022600, b"", item, False), False, True)


def test_pydicom_defined_length_implicit_sequences_walk_whole() -> None:
    ds = golden()
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = False
            for item in elem.value:
                item.is_undefined_length_sequence_item = False
    data = encode(ds, False, True)
    assert walk(data, False, True, wanted=frozenset({PATIENT_NAME})) == {PATIENT_NAME: b"Doe^Jane"}
    seq = data.index(struct.pack("<HH", 0xFFFE, 0xE000)) - 8  # the first sequence, of defined length
    assert struct.unpack_from("<I", data, seq + 4)[0] != UNDEFINED
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, seq + 12, struct.unpack_from("<I", data, seq + 12)[0] + 2)  # its first item
    with pytest.raises(Part10Error):
        walk(bytes(corrupt), False, True)
