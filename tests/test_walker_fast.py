"""The element walker's fast tiers (``dcmnet_cli.part10.walker``) against its general walk.

``listen`` walks every received object before it answers, so the walker takes the common case fast: a
lane for runs of plain elements, sequences and items walked without becoming levels (``_nest``), and
shortcuts in ``feed`` for a feed of plain top-level elements and for one inside a value it skips. They
must never change an answer. :class:`GeneralOnly` is the walker with those tiers turned off (every
element through the general loop, every sequence and item a level, as before they existed); each test
here compares the two however the bytes arrive, on built data sets and on random, mutated ones, and
checks that the fast tiers really are the ones taken.
"""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

from test_part10_walker import header

from dcmnet_cli.part10 import walker as walker_module
from dcmnet_cli.part10.sequence_tags import SEQUENCE_TAGS
from dcmnet_cli.part10.vr import ITEM, ITEM_END, PIXEL_DATA, SEQUENCE_END, UNDEFINED
from dcmnet_cli.part10.walker import Part10Error, Walker

ENCODINGS = {"implicit": (False, True), "explicit": (True, True), "big": (True, False)}  # (explicit, little)
WANTED = frozenset({0x00080016, 0x00080018, 0x00100010, 0x00100020, 0x00280010, 0xFFFCFFFC})


class GeneralOnly(Walker):
    """The reference: the same walker with its fast tiers turned off."""

    def _plain_explicit(self, buf: walker_module.Bytes, i: int, bound: int, wanted: frozenset[int]) -> int:
        return i

    def _plain_implicit(self, buf: walker_module.Bytes, i: int, bound: int, wanted: frozenset[int]) -> int:
        return i

    def _nest(self, buf: walker_module.Bytes, i: int, base: int, opened: tuple[int, int, int, int, int]) -> int:
        expect, end, _, tag, start = opened
        self._push(expect, end if end == walker_module._NO_END else base + end, tag, base + start,
                   self._explicit, self._little)
        return i


def outcome(cls: type[Walker], pieces: list[bytes], explicit: bool, little: bool, **options: object) -> tuple[object, ...]:
    """Everything a caller can see: the state after each feed, then the values, or the error and where."""
    walker = cls(explicit, little, **options)  # type: ignore[arg-type]
    seen = []
    try:
        for piece in pieces:
            walker.feed(memoryview(piece))
            seen.append((walker.offset, walker.depth, walker.skippable, walker.stopped, walker.stopped_at))
        walker.finish()
    except Part10Error as error:
        return type(error).__name__, str(error), seen, walker.values
    return "ok", walker.values, walker.offset, seen


def assert_same(pieces: list[bytes], explicit: bool, little: bool, **options: object) -> tuple[object, ...]:
    fast = outcome(Walker, pieces, explicit, little, **options)
    assert fast == outcome(GeneralOnly, pieces, explicit, little, **options)
    return fast


def splits(data: bytes, every_cut: bool = True) -> list[list[bytes]]:
    ways = [[data], [data[i:i + 1] for i in range(len(data))]]
    ways += [[data[i:i + size] for i in range(0, len(data), size)] for size in (3, 7, 13, 64, 100)]
    if every_cut:
        ways += [[data[:cut], data[cut:]] for cut in range(len(data) + 1)]
    return ways


# --------------------------------------------------------------------------- built data sets


def code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", f"meaning {value}"
    return item


def nested(undefined: bool) -> Dataset:
    """Sequences three deep, with empty ones and empty items, lengths all defined or all undefined."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    refs = []
    for k in range(3):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = f"1.2.3.{k}"
        ref.PurposeOfReferenceCodeSequence = Sequence([code(str(k))] + ([Dataset()] if k == 1 else []))
        if k == 2:
            ref.PurposeOfReferenceCodeSequence[0].ConceptCodeSequence = Sequence([code("deep")])
        refs.append(ref)
    ds.ReferencedImageSequence = Sequence(refs)
    ds.ProcedureCodeSequence = Sequence([code("121")])
    ds.ReferencedStudySequence = Sequence([])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = bytes(range(8))
    ds["PixelData"].VR = "OW"
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined
    return ds

def plain_data_set(explicit: bool, little: bool) -> bytes:
    """:func:`nested`'s data set without its sequences: only plain elements, all on the fast lane."""
    ds = nested(False)
    for keyword in ("ReferencedImageSequence", "ProcedureCodeSequence", "ReferencedStudySequence"):
        delattr(ds, keyword)
    return encode(ds, explicit, little)



def encode(ds: Dataset, explicit: bool, little: bool) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=not explicit, little_endian=little)
    return buffer.getvalue()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("undefined", [False, True])
@pytest.mark.parametrize("descend", [False, True])
def test_nested_sequences_any_split(encoding: str, undefined: bool, descend: bool) -> None:
    explicit, little = ENCODINGS[encoding]
    data = encode(nested(undefined), explicit, little)
    for pieces in splits(data):
        result = assert_same(pieces, explicit, little, wanted=WANTED, descend=descend)
        assert result[0] == "ok" and set(result[1]) == {0x00080016, 0x00080018, 0x00100010, 0x00100020, 0x00280010}  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_depth_bound_inside_walked_sequences(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    data = encode(nested(True), explicit, little)  # (0008,1140) > (0040,A170) > (0040,A168) on the last item
    for max_depth in (0, 1, 2, 3, None):
        for pieces in splits(data, every_cut=False):
            result = assert_same(pieces, explicit, little, descend=True, max_depth=max_depth)
            assert (result[0] == "ok") == (max_depth is None or max_depth >= 3)


def test_encapsulated_pixel_data_and_padding_any_split() -> None:
    lead = header(0x00280010, b"US", 2) + b"\x02\x00"
    pixels = header(PIXEL_DATA, b"OB", UNDEFINED) + encapsulate([b"\xff\xd8" + bytes(98), bytes(52)], has_bot=True)
    data = lead + pixels + header(SEQUENCE_END, b"", 0) + header(0xFFFCFFFC, b"OB", 4) + b"pad!"
    for pieces in splits(data):
        assert assert_same(pieces, True, True, wanted=WANTED, descend=True)[0] == "ok"


def test_un_of_undefined_length_in_big_endian_any_split() -> None:
    """PS3.5 §6.2.2: its items are implicit VR little endian, which the fast tiers leave to the general walk."""
    item = header(0x00091001, b"", 4, False) + b"abcd"
    un = (header(0x00091010, b"UN", UNDEFINED, True, False) + header(ITEM, b"", len(item)) + item
          + header(ITEM, b"", UNDEFINED) + item + header(ITEM_END, b"", 0) + header(SEQUENCE_END, b"", 0))
    data = header(0x00080018, b"UI", 4, True, False) + b"1.2\0" + un + header(0x00280010, b"US", 2, True, False) + b"\x00\x02"
    for pieces in splits(data):
        assert assert_same(pieces, True, False, wanted=WANTED, descend=True)[0] == "ok"


@pytest.mark.parametrize("case, message", [
    (header(0x00080016, b"UI", 2) + b"12" + b"\x08\x00\x18\x00zz\x02\x00ab", "invalid VR b'zz'"),
    (header(0x00100010, b"PN", 200) + b"x" * 200, "200 bytes, more than the 64 expected"),
    (header(0x00081115, b"SQ", UNDEFINED) + header(ITEM, b"", UNDEFINED) + header(0x00080100, b"SH", 2) + b"12"
     + header(SEQUENCE_END, b"", 0), "unexpected (FFFE,E0DD) at byte 30 in the item at byte 12"),
    (header(0x00081115, b"SQ", 20) + header(ITEM, b"", 16) + header(0x00080100, b"SH", 4) + b"1234",
     "item at byte 12 (16 bytes) runs past the end of sequence (0008,1115) from byte 0"),
    (header(0x00081115, b"SQ", 20) + header(ITEM, b"", UNDEFINED) + header(0x00080100, b"SH", 4) + b"1234"
     + header(ITEM_END, b"", 0), "the item at byte 12 is not closed at byte 32"),
    (header(0x00081115, b"SQ", UNDEFINED) + header(ITEM, b"", 12) + header(0x00080100, b"OB", UNDEFINED),
     "element (0008,0100) (OB) at byte 20 has an undefined length, which only SQ"),
    (header(0x00081115, b"SQ", UNDEFINED) + header(ITEM, b"", UNDEFINED) + header(0x00081115, b"SQ", 4)
     + header(ITEM, b"", 0), "sequences nested deeper than 1 at byte 20 ((0008,1115))"),
    (header(0x00081115, b"SQ", UNDEFINED) + header(ITEM, b"", 16) + header(0x00081115, b"SQ", 12) + header(ITEM, b"", 4)
     + b"abcd" + header(ITEM_END, b"", 0) + header(SEQUENCE_END, b"", 0),
     "element (0008,1115) at byte 20 (12 bytes) runs past the end of the item at byte 12, at byte 36"),
    (header(0x00081115, b"SQ", UNDEFINED) + header(ITEM, b"", 24) + header(0x00081115, b"SQ", UNDEFINED)
     + header(ITEM, b"", UNDEFINED) + header(0x00080100, b"SH", 4) + b"1234" + header(ITEM_END, b"", 0),
     "element (0008,0100) at byte 40 (4 bytes) runs past the end of the item at byte 32, at byte 44"),
])
def test_where_the_fast_tiers_stop_the_general_walk_gives_the_same_error(case: bytes, message: str) -> None:
    for pieces in splits(case):
        result = assert_same(pieces, True, True, wanted=frozenset({0x00100010}), max_value=64, descend=True,
                             max_depth=1 if "nested deeper" in message else 4)
        assert result[0] != "ok" and message in str(result[1])


def test_implicit_wanted_value_over_its_bound() -> None:
    data = header(0x00080018, b"", 4, False) + b"1.2\0" + header(0x00100010, b"", 200, False) + b"x" * 200
    for pieces in splits(data):
        result = assert_same(pieces, False, True, wanted=WANTED, max_value=64)
        assert result[:2] == ("Part10Error", "element (0010,0010) at byte 12 has 200 bytes, more than the 64 expected")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encapsulated_pixel_data_inside_an_item(encoding: str) -> None:
    """An icon image with compressed pixels: in an item, (7FE0,0010) of undefined length is fragments."""
    explicit, little = ENCODINGS[encoding]
    pixels = header(PIXEL_DATA, b"OB", UNDEFINED, explicit, little) + header(ITEM, b"", 0, little=little) \
        + header(ITEM, b"", 6, little=little) + b"\xff\xd8abcd" + header(SEQUENCE_END, b"", 0, little=little)
    item = header(0x00280010, b"US", 2, explicit, little) + b"\x00\x02" + pixels
    for undefined in (False, True):
        body = (header(ITEM, b"", UNDEFINED, little=little) + item + header(ITEM_END, b"", 0, little=little)) if undefined \
            else header(ITEM, b"", len(item), little=little) + item
        data = header(0x00880200, b"SQ", len(body), explicit, little) + body + header(0x00100010, b"PN", 4, explicit, little) + b"Doe^"
        for pieces in splits(data):
            assert assert_same(pieces, explicit, little, wanted=WANTED, descend=True)[:2] == ("ok", {0x00100010: b"Doe^"})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_span_and_order_are_checked_on_plain_elements(encoding: str) -> None:
    """A span or an order to check keeps the top level off the fast lane, in one feed as in many."""
    explicit, little = ENCODINGS[encoding]
    data = plain_data_set(explicit, little)
    for pieces in splits(data):
        result = assert_same(pieces, explicit, little, wanted=WANTED, span=(0, 0x0010001F))
        assert result[0] == "ok" and set(result[1]) == {0x00080016, 0x00080018, 0x00100010}  # type: ignore[arg-type]
    swapped = data[:-20] + data[-10:] + data[-20:-10]  # (7FE0,0010) cut, its last 10 bytes before the 10 ahead
    assert assert_same([swapped], explicit, little, ordered=True)[0] != "ok"
    first = header(0x00100010, b"PN", 4, explicit, little) + b"Doe^"
    backwards = first + header(0x00080018, b"UI", 4, explicit, little) + b"1.2\0"
    for pieces in splits(backwards):
        assert "out of order at byte 12" in str(assert_same(pieces, explicit, little, ordered=True)[1])


# --------------------------------------------------------------------------- random data sets


def _elements(r: random.Random, explicit: bool, little: bool, depth: int) -> bytes:
    out, tag = b"", 0x00080005 if depth == 0 else 0x00080100
    for _ in range(r.randint(0, 8 if depth == 0 else 4)):
        tag += r.randint(1, 0x30000)
        kind = r.random()
        if kind < 0.25 and depth < 4:
            sq_tag = r.choice(_SEQUENCES) if not explicit or r.random() < 0.8 else 0x00091010
            body = b"".join(_item(r, explicit, little, depth + 1) for _ in range(r.randint(0, 3)))
            if r.random() < 0.5:
                out += header(sq_tag, b"SQ", UNDEFINED, explicit, little) + body + header(SEQUENCE_END, b"", 0, little=little)
            else:
                out += header(sq_tag, b"SQ", len(body), explicit, little) + body
        elif kind < 0.3 and depth == 0:
            fragments = b"".join(header(ITEM, b"", n, little=little) + bytes(n) for n in (r.choice([0, 4]), r.randint(0, 40)))
            out += header(PIXEL_DATA, b"OB", UNDEFINED, explicit, little) + fragments + header(SEQUENCE_END, b"", 0, little=little)
        else:
            vr = r.choice([b"UI", b"LO", b"US", b"OB", b"OW", b"UN", b"CS", b"UT", b"PN"])
            length = r.choice([0, 2, 4, 10, 64, r.randint(0, 300)])
            value_tag = tag if r.random() < 0.85 else r.choice(sorted(WANTED))
            out += header(value_tag, vr, length, explicit, little) + r.randbytes(length)
    return out


def _item(r: random.Random, explicit: bool, little: bool, depth: int) -> bytes:
    body = _elements(r, explicit, little, depth)
    if r.random() < 0.5:
        return header(ITEM, b"", UNDEFINED, little=little) + body + header(ITEM_END, b"", 0, little=little)
    return header(ITEM, b"", len(body), little=little) + body


_SEQUENCES = sorted(SEQUENCE_TAGS)[:40]


def _mutated(r: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(r.choice([0, 0, 1, 2, 4])):
        if not out:
            break
        at, how = r.randrange(len(out)), r.random()
        if how < 0.4:
            out[at] = r.randrange(256)
        elif how < 0.6:
            del out[at:]
        elif how < 0.8:
            out[at:at] = r.randbytes(r.randint(1, 12))
        else:
            out[at] = r.choice([0xFF, 0xFE, 0xE0, 0x00, 0xDD, 0x0D])
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(sorted(ENCODINGS)))
def test_random_mutated_data_sets_any_split(seed: int, encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    r = random.Random(seed)
    data = _mutated(r, _elements(r, explicit, little, 0))
    options: dict[str, object] = {"wanted": WANTED if r.random() < 0.8 else frozenset(), "max_value": r.choice([64, 1 << 16]),
                                  "descend": r.random() < 0.7, "max_depth": r.choice([None, 256, 256, 2, 1])}
    if r.random() < 0.15:
        options["span"] = (0, r.choice([0x00100010, PIXEL_DATA - 1]))
    if r.random() < 0.1:
        options["ordered"] = True
    cuts = sorted(r.sample(range(len(data) + 1), min(len(data) + 1, r.randint(1, 6))))
    ways = [[data], [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])],
            [data[i:i + 11] for i in range(0, len(data), 11)]]
    if len(data) < 300:
        ways.append([data[i:i + 1] for i in range(len(data))])
    for pieces in ways:
        assert_same(pieces, explicit, little, **options)


# --------------------------------------------------------------------------- the fast tiers are taken


class Counting(Walker):
    """Counts what the fast tiers exist to avoid: general walks and levels."""

    walks = pushes = 0

    def _walk(self, buf: walker_module.Bytes, i: int, base: int) -> None:
        self.walks += 1
        super()._walk(buf, i, base)

    def _push(self, expect: int, end: int, tag: int, start: int, explicit: bool, little: bool) -> None:
        self.pushes += 1
        super()._push(expect, end, tag, start, explicit, little)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_whole_plain_data_set_takes_one_lane_run(encoding: str) -> None:
    explicit, little = ENCODINGS[encoding]
    data = plain_data_set(explicit, little)
    walker = Counting(explicit, little, WANTED, descend=True)
    walker.feed(memoryview(data))
    walker.finish()
    assert (walker.walks, walker.pushes, walker.offset) == (0, 0, len(data))
    assert walker.values[0x00100010] == b"Doe^Jane" and walker.values[0x00080018] == b"1.2.3.4.5.6\0"
    cut = Counting(explicit, little, WANTED, descend=True)  # the last value cut: the general walk takes it
    cut.feed(memoryview(data)[:-3])
    assert cut.walks == 1 and cut.skippable == 3


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("undefined", [False, True])
def test_sequences_whole_in_a_feed_open_no_level(encoding: str, undefined: bool) -> None:
    explicit, little = ENCODINGS[encoding]
    data = encode(nested(undefined), explicit, little)
    walker = Counting(explicit, little, WANTED, descend=True)
    walker.feed(data)
    walker.finish()
    assert walker.pushes == 0
    start = data.index(struct.pack("<HH" if little else ">HH", 0x0008, 0x1140))  # ReferencedImageSequence
    split = Counting(explicit, little, WANTED, descend=True)
    split.feed(data[:start + 40])  # inside its first item: the levels open there are made, no others
    reference = GeneralOnly(explicit, little, WANTED, descend=True)
    reference.feed(data[:start + 40])
    assert split.pushes == split.depth + 1 == 2 and split._levels == reference._levels


def test_feeds_inside_a_skipped_value_pass_it_by_arithmetic() -> None:
    value = bytes(range(256)) * 40
    data = header(0x00081115, b"SQ", 8 + 12 + len(value)) + header(ITEM, b"", 12 + len(value)) \
        + header(PIXEL_DATA, b"OB", len(value)) + value
    walker = Walker(True, True, descend=True)
    walker.feed(data[:40])
    assert (walker.skippable, walker.depth) == (len(data) - 40, 1)
    for at in range(40, len(data) - 100, 1000):
        walker.feed(data[at:min(at + 1000, len(data) - 100)])
        assert walker.offset == min(at + 1000, len(data) - 100) and walker.skippable == len(data) - walker.offset
    walker.feed(data[-100:])  # the value ends with this feed: the item and the sequence close now
    assert (walker.depth, walker.skippable, walker.offset) == (0, 0, len(data))
    walker.finish()


def test_a_skipped_value_ending_with_a_feed_closes_levels_in_that_feed() -> None:
    """The sequence ends where the value does, inside an item of undefined length: an error in that very
    feed, not a truncation found at finish."""
    value = bytes(300)
    data = header(0x00081115, b"SQ", 8 + 12 + len(value)) + header(ITEM, b"", UNDEFINED) \
        + header(PIXEL_DATA, b"OB", len(value)) + value + header(ITEM_END, b"", 0)
    walker = Walker(True, True, descend=True)
    walker.feed(data[:50])
    with pytest.raises(Part10Error, match=r"the item at byte 12 is not closed at byte 332"):
        walker.feed(data[50:332])


def test_a_wanted_value_across_feeds_is_gathered_not_skipped() -> None:
    value = b"1.2.840.10008." + b"9" * 50
    data = header(0x00080018, b"UI", len(value)) + value + header(0x00100010, b"PN", 4) + b"Doe^"
    for size in (1, 5, 9, 30):
        pieces = [data[i:i + size] for i in range(0, len(data), size)]
        result = assert_same(pieces, True, True, wanted=WANTED)
        assert result[1] == {0x00080018: value, 0x00100010: b"Doe^"}
