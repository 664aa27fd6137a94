"""A lean data set (PS3.5 §7) for query identifiers: the model, the data dictionary look-ups, and the decoder.

Why not pydicom: ``import pydicom`` costs 82-140 ms (it pulls urllib, http, ssl, numpy) and decoding a
C-FIND identifier through it ~130 µs; ``find`` needs neither. This codec reads the uncompressed transfer
syntaxes (explicit and implicit VR little endian, explicit VR big endian; deflate is the caller's
``zlib``), sequences of defined and undefined length, and the single-valued Specific Character Sets
through Python's codecs. Values come out as pydicom would show them (the differential tests in
``tests/test_dataset_codec.py`` compare both), so what ``find`` prints does not depend on who decoded.

Two errors, on purpose different:

- :class:`DecodeError`: the bytes are malformed (a length past the end, a bad VR, an item outside a
  sequence): the peer's fault, whoever decodes;
- :class:`Unsupported`: well-formed but outside what this reader does exactly like pydicom (ISO 2022
  code extensions, an unknown character set, an ambiguous VR in implicit VR, a value pydicom would
  convert in its own way). The caller then decodes with pydicom, so nothing is lost, only time.

Values (:class:`Element`.value): a list of ``str`` for the string VRs (one item for ST, LT, UT, UR;
PN, IS and DS as text too), a list of numbers for US SS UL SL UV SV FL FD, a list of tags for AT,
``bytes`` for OB OD OF OL OV OW UN, a list of :class:`DataSet` for SQ; an empty value is ``[]`` (``b""``).
Sans-IO; no imports beyond the standard library and this package.
"""

from __future__ import annotations

import struct

from .dictionary import ENTRIES, REPEATERS
from .vr import ITEM, ITEM_END, LONG_VRS, SEQUENCE_END, SHORT_VRS, UNDEFINED

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    Value = list[Any] | bytes

NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
BYTES_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))
CHARSET_VRS = frozenset(("PN", "SH", "LO", "UC", "ST", "LT", "UT"))
"""The VRs whose text is in the Specific Character Set (PS3.5 §6.1.2.3); the others are ASCII."""
SINGLE_VALUED = frozenset(("ST", "LT", "UT", "UR"))
SPECIFIC_CHARACTER_SET = 0x00080005
_PLAIN = frozenset(("CS", "UI", "DA", "TM", "AS", "DT"))

CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 13": "shift_jis", "ISO_IR 100": "latin_1",
          "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4",
          "ISO_IR 126": "iso8859_7", "ISO_IR 127": "iso8859_6", "ISO_IR 138": "iso8859_8",
          "ISO_IR 144": "iso8859_5", "ISO_IR 148": "iso8859_9", "ISO_IR 166": "tis_620",
          "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk"}
"""Single-valued Specific Character Sets (PS3.3 C.12.1.1.2) and the Python codec of each (pydicom's
choices; no value means the default repertoire, which pydicom reads as Latin-1). ISO_IR 203 is left
out on purpose: pydicom 3.0 does not know it, and the fallback keeps the output what it was."""


class DecodeError(ValueError):
    """Malformed bytes: the message names what and where."""


class Unsupported(Exception):
    """Well-formed, but to be decoded by pydicom (see the module docstring)."""


# ------------------------------------------------------------------------------------ dictionary

_VR_CACHE: dict[int, tuple[str, str] | None] = {}
_KEYWORDS: dict[str, int] = {}


def entry(tag: int) -> tuple[str, str] | None:
    """``(VR, keyword)`` of a public tag (repeating groups included), None when the dictionary lacks it."""
    try:
        return _VR_CACHE[tag]
    except KeyError:
        pass
    found: tuple[str, str] | None = None
    at = ENTRIES.find(f"\n{tag:08X}\t")
    if at >= 0:
        line = ENTRIES[at + 10:ENTRIES.index("\n", at + 10)]
        vr, _, keyword = line.partition("\t")
        found = (vr, keyword)
    else:
        for mask, value, vr, keyword in REPEATERS:
            if tag & mask == value:
                found = (vr, keyword)
                break
    _VR_CACHE[tag] = found
    return found


def keyword_of(tag: int) -> str:
    """The tag's keyword, "" for a private or unknown tag."""
    found = entry(tag)
    return found[1] if found else ""


def tag_for_keyword(keyword: str) -> int | None:
    """The tag of a keyword (exact case), None when there is none."""
    if not keyword or "\t" in keyword or "\n" in keyword:
        return None
    if keyword in _KEYWORDS:
        return _KEYWORDS[keyword]
    at = ENTRIES.find(f"\t{keyword}\n")
    if at < 0:
        return None
    start = ENTRIES.rindex("\n", 0, at) + 1
    tag = int(ENTRIES[start:start + 8], 16)
    _KEYWORDS[keyword] = tag
    return tag


def all_keywords() -> dict[str, int]:
    """Every keyword and its tag (for suggestions on an error path: builds the whole map)."""
    found: dict[str, int] = {}
    for line in ENTRIES.split("\n"):
        if line:
            tag, _vr, keyword = line.split("\t")
            if keyword:
                found[keyword] = int(tag, 16)
    return found


# ------------------------------------------------------------------------------------ the model

class Element:
    """One data element: ``tag`` (int), ``VR`` and ``value`` (see the module docstring)."""

    __slots__ = ("tag", "VR", "value")

    def __init__(self, tag: int, vr: str, value: Value) -> None:
        self.tag, self.VR, self.value = tag, vr, value

    @property
    def VM(self) -> int:  # noqa: N802 (pydicom's name, so renderers read both)
        if isinstance(self.value, bytes):
            return 1 if self.value else 0
        return len(self.value)

    @property
    def keyword(self) -> str:
        return keyword_of(self.tag)

    @property
    def items(self) -> "list[DataSet]":
        """A sequence's items ([] for any other VR)."""
        value = self.value
        return value if self.VR == "SQ" and isinstance(value, list) else []

    def text(self) -> str:
        """The value as one line of text, as pydicom's ``str`` shows it ("" when empty)."""
        value = self.value
        if isinstance(value, bytes):
            return f"<{len(value)} bytes>" if value else ""
        if self.VR == "SQ":  # an empty sequence too ("0 items"), as find always showed it
            return f"{len(value)} item" + ("" if len(value) == 1 else "s")
        if not value:
            return ""
        if self.VR == "AT":
            return "\\".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in value)
        return "\\".join(value) if self.VR not in NUMBER_FORMATS else "\\".join(str(v) for v in value)

    def __repr__(self) -> str:
        return f"Element(0x{self.tag:08X}, {self.VR!r}, {self.value!r})"


class DataSet:
    """Elements by tag. Iterated in the order they were added (a decoded data set: the wire's order,
    which pydicom's JSON keeps too); :meth:`in_order` sorts by tag (PS3.5 §7.1), as encoding does."""

    __slots__ = ("elements",)

    def __init__(self, elements: dict[int, Element] | None = None) -> None:
        self.elements: dict[int, Element] = elements if elements is not None else {}

    def __iter__(self) -> Iterator[Element]:
        return iter(self.elements.values())

    def in_order(self) -> list[Element]:
        """The elements in ascending tag order."""
        elements = self.elements
        return [elements[tag] for tag in sorted(elements)]

    def __len__(self) -> int:
        return len(self.elements)

    def __contains__(self, key: object) -> bool:
        return _tag(key) in self.elements

    def __getitem__(self, key: int | str) -> Element:
        return self.elements[_tag(key)]

    def add(self, element: Element) -> None:
        self.elements[element.tag] = element

    def remove(self, tag: int) -> None:
        self.elements.pop(tag, None)

    def get(self, key: int | str, default: Any = None) -> Any:
        """The value of ``key`` (a tag or keyword) as text, or ``default`` when absent."""
        element = self.elements.get(_tag(key))
        return default if element is None else element.text()

    def __getattr__(self, name: str) -> str:
        """``ds.PatientName``: a keyword's value as text (AttributeError when absent), as pydicom reads."""
        tag = tag_for_keyword(name) if name[:1].isupper() else None
        element = None if tag is None else self.elements.get(tag)
        if element is None:
            raise AttributeError(name)
        return element.text()

    def charsets(self) -> list[str] | None:
        """The values of Specific Character Set, None when absent."""
        element = self.elements.get(SPECIFIC_CHARACTER_SET)
        return None if element is None else [str(v) for v in element.value]

    def __repr__(self) -> str:
        return f"DataSet({self.in_order()!r})"


def _tag(key: object) -> int:
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        tag = tag_for_keyword(key)
        return -1 if tag is None else tag
    return -1


# ------------------------------------------------------------------------------------ decoding

class _Reader:
    """The state of one decode: the bytes, the encoding, and the character set in force."""

    __slots__ = ("data", "implicit", "little", "prefix")

    def __init__(self, data: bytes, implicit: bool, little: bool) -> None:
        self.data, self.implicit, self.little = data, implicit, little
        self.prefix = "<" if little else ">"


def decode(data: bytes, implicit: bool, little: bool) -> DataSet:
    """The data set in ``data``; :class:`DecodeError` when malformed, :class:`Unsupported` when it is
    pydicom's to read (see the module docstring)."""
    reader = _Reader(bytes(data), implicit, little)
    ds, end = _dataset(reader, 0, len(reader.data), None, False)
    if end != len(reader.data):  # pragma: no cover - _dataset consumes to the end or raises
        raise DecodeError(f"{len(reader.data) - end} bytes left after the data set")
    return ds


def _header(reader: _Reader, at: int, end: int) -> tuple[int, str | None, int, int]:
    """``(tag, VR or None, value length, value offset)`` of the element header at ``at``."""
    data = reader.data
    if at + 8 > end:
        raise DecodeError(f"an element header at byte {at} runs past the end ({end - at} bytes left)")
    if reader.little:
        group, elem = data[at] | data[at + 1] << 8, data[at + 2] | data[at + 3] << 8
    else:
        group, elem = data[at] << 8 | data[at + 1], data[at + 2] << 8 | data[at + 3]
    tag = group << 16 | elem
    if reader.implicit or group == 0xFFFE:
        (length,) = struct.unpack_from(reader.prefix + "L", data, at + 4)
        return tag, None, length, at + 8
    raw_vr = data[at + 4:at + 6]
    if raw_vr in SHORT_VRS:
        (length,) = struct.unpack_from(reader.prefix + "H", data, at + 6)
        return tag, raw_vr.decode("ascii"), length, at + 8
    if raw_vr in LONG_VRS:
        if at + 12 > end:
            raise DecodeError(f"an element header at byte {at} runs past the end")
        (length,) = struct.unpack_from(reader.prefix + "L", data, at + 8)
        return tag, raw_vr.decode("ascii"), length, at + 12
    raise DecodeError(f"({group:04X},{elem:04X}) has an invalid VR {raw_vr!r} at byte {at + 4}")


_SHORT_HEADER = struct.Struct("<HH2sH").unpack_from
_SHORT_NAMES = {vr: vr.decode("ascii") for vr in SHORT_VRS}


def _dataset(reader: _Reader, at: int, end: int, charsets: list[str] | None,
             in_item: bool) -> tuple[DataSet, int]:
    """Elements from ``at`` to ``end`` (or to an Item Delimitation Item when ``in_item`` and the item
    has undefined length); returns the data set and the offset after it. Explicit VR little endian
    elements with a 2-byte length (nearly every element of an identifier) take an inlined fast path."""
    elements: dict[int, Element] = {}
    data = reader.data
    fast = not reader.implicit and reader.little
    last = -1
    while at < end:
        if fast and at + 8 <= end:
            group, elem, raw_vr, length = _SHORT_HEADER(data, at)
            vr = _SHORT_NAMES.get(raw_vr)
            if vr is not None:
                tag = group << 16 | elem
                start, at = at + 8, at + 8 + length
                if at > end or tag == SPECIFIC_CHARACTER_SET or tag <= last:
                    at = start - 8  # the general path below reports or handles it
                elif vr in _PLAIN:  # (the commonest: UI, CS, DA, TM) inlined from _value
                    values = data[start:at].decode("latin_1").rstrip(" \0").split("\\")
                    elements[tag] = Element(tag, vr, [] if values == [""] else values)
                    last = tag
                    continue
                else:  # text (AE, IS, LO, PN, SH...) straight to its reader, the rest through _value
                    read, raw = _TEXT_READERS.get(vr), data[start:at]
                    elements[tag] = Element(tag, vr, read(raw, charsets) if read else _value(reader, tag, vr, raw, charsets))
                    last = tag
                    continue
        tag, vr, length, start = _header(reader, at, end)
        if tag == ITEM_END and in_item:
            return DataSet(elements), start
        if tag in (ITEM, ITEM_END, SEQUENCE_END):
            raise DecodeError(f"an item tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) outside a sequence at byte {at}")
        if tag <= last:  # PS3.5 §7.1 wants ascending tags; pydicom keeps the wire order in its JSON
            raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) out of order")
        last = tag
        vr = _implicit_vr(tag, length) if vr is None else vr
        if vr == "SQ":
            items, at = _sequence(reader, tag, length, start, end, charsets)
            elements[tag] = Element(tag, "SQ", items)
            continue
        if length == UNDEFINED:
            raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} of undefined length")
        at = start + length
        if at > end:
            raise DecodeError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr}: its length {length} runs past the end "
                              f"({end - start} bytes left)")
        if tag == SPECIFIC_CHARACTER_SET:
            charsets = _charsets(reader.data[start:at])
        elements[tag] = Element(tag, vr, _value(reader, tag, vr, reader.data[start:at], charsets))
    if in_item:
        raise DecodeError("an item of undefined length without its Item Delimitation Item")
    return DataSet(elements), at


def _implicit_vr(tag: int, length: int) -> str:
    """The VR of an implicit VR element, from the data dictionary (PS3.5 §7.1.3)."""
    found = entry(tag)
    if found is not None:
        vr = found[0]
        if " " in vr or vr == "NONE":
            raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has the ambiguous VR {vr}")
        return vr
    if tag & 0xFFFF == 0:
        return "UL"  # group length
    if length == UNDEFINED:
        return "SQ"  # pydicom's reading of an unknown element of undefined length
    if (tag >> 16) & 1:
        return "LO" if 0x10 <= tag & 0xFFFF <= 0xFF else "UN"  # private creator / private element
    raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the data dictionary")


def _sequence(reader: _Reader, tag: int, length: int, start: int, end: int,
              charsets: list[str] | None) -> tuple[list[DataSet], int]:
    """The items of a sequence (PS3.5 §7.5) and the offset after it."""
    stop = end if length == UNDEFINED else start + length
    if stop > end:
        raise DecodeError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) SQ: its length {length} runs past the end")
    items: list[DataSet] = []
    at = start
    while at < stop:
        item_tag, _vr, item_length, item_start = _header(reader, at, stop)
        if item_tag == SEQUENCE_END and length == UNDEFINED:
            return items, item_start
        if item_tag != ITEM:
            raise DecodeError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) SQ: expected an item at byte {at}, "
                              f"found ({item_tag >> 16:04X},{item_tag & 0xFFFF:04X})")
        if item_length == UNDEFINED:
            item, at = _dataset(reader, item_start, stop, charsets, True)
        else:
            if item_start + item_length > stop:
                raise DecodeError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) SQ: an item's length runs past the end")
            item, at = _dataset(reader, item_start, item_start + item_length, charsets, False)
        items.append(item)
    if length == UNDEFINED:
        raise DecodeError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) SQ of undefined length without its delimiter")
    return items, at


def _charsets(raw: bytes) -> list[str]:
    """The Specific Character Set this reader decodes, as a one-item list; Unsupported otherwise."""
    values = [v.strip() for v in raw.decode("latin_1").rstrip(" \0").split("\\")]
    if len(values) != 1 or values[0] not in CODECS:
        raise Unsupported(f"Specific Character Set {values!r}")
    return values


def _value(reader: _Reader, tag: int, vr: str, raw: bytes, charsets: list[str] | None) -> Value:
    """One element's value as the module docstring describes, pydicom's way."""
    if vr in _PLAIN:  # CS, UI, DA, TM, AS, DT: ASCII, trailing padding off, split on backslashes
        values = raw.decode("latin_1").rstrip(" \0").split("\\")
        return [] if values == [""] else values
    if vr in NUMBER_FORMATS:
        return _numbers(reader, tag, vr, raw)
    if vr in BYTES_VRS:
        if vr == "UN" and entry(tag) is not None:
            raise Unsupported("UN for a tag the dictionary knows (pydicom reads it as its VR)")
        return raw
    if vr == "AT":
        if len(raw) % 4:
            raise Unsupported("AT of odd length")
        numbers = struct.unpack(f"{reader.prefix}{len(raw) // 2}H", raw)
        return [numbers[i] << 16 | numbers[i + 1] for i in range(0, len(numbers), 2)]
    return _TEXT_READERS.get(vr, _other)(raw, charsets)


def _numbers(reader: _Reader, tag: int, vr: str, raw: bytes) -> list[Any]:
    code = NUMBER_FORMATS[vr]
    size = struct.calcsize("<" + code)
    if len(raw) % size:
        raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} of length {len(raw)}")
    return list(struct.unpack(f"{reader.prefix}{len(raw) // size}{code}", raw))


def _multi(raw: bytes, charsets: list[str] | None) -> list[str]:
    """SH, LO, UC: text in the character set, each value without trailing spaces and NULs."""
    values = [v.rstrip("\0 ") for v in _decoded(raw, charsets).split("\\")]
    return [] if values == [""] else values


def _single(raw: bytes, charsets: list[str] | None) -> list[str]:
    """ST, LT, UT: one value in the character set (backslashes are text), trailing spaces and NULs off."""
    text = _decoded(raw, charsets).rstrip("\0 ")
    return [text] if text else []


def _person(raw: bytes, charsets: list[str] | None) -> list[str]:
    """PN: values of up to three component groups (more: pydicom's to read)."""
    values = _decoded(raw.rstrip(b"\0 "), charsets).split("\\")
    if any(v.count("=") > 2 for v in values):
        raise Unsupported("PN with more than three component groups")
    return [] if values == [""] else values


def _ae(raw: bytes, charsets: list[str] | None) -> list[str]:
    """AE: ASCII, each value without leading and trailing spaces."""
    values = [v.strip() for v in raw.decode("latin_1").split("\\")]
    return [] if values == [""] else values


def _ur(raw: bytes, charsets: list[str] | None) -> list[str]:
    """UR: one ASCII value, trailing spaces off."""
    text = raw.decode("latin_1").rstrip()
    return [text] if text else []


def _is(raw: bytes, charsets: list[str] | None) -> list[str]:
    return _number_strings("IS", raw)


def _ds(raw: bytes, charsets: list[str] | None) -> list[str]:
    return _number_strings("DS", raw)


def _number_strings(vr: str, raw: bytes) -> list[str]:
    """IS, DS: ASCII numbers; values that do not read as numbers are pydicom's to decide."""
    values = raw.decode("latin_1").strip().rstrip(" \0").split("\\")
    if values == [""]:
        return []
    _check_number(vr, values)
    return values


def _other(raw: bytes, charsets: list[str] | None) -> list[str]:
    """Any other VR read as text: ASCII, trailing spaces and NULs off, split on backslashes."""
    values = raw.decode("latin_1").rstrip(" \0").split("\\")
    return [] if values == [""] else values


_TEXT_READERS = {"SH": _multi, "LO": _multi, "UC": _multi, "ST": _single, "LT": _single, "UT": _single,
                 "PN": _person, "AE": _ae, "UR": _ur, "IS": _is, "DS": _ds}
"""The text VRs and their readers (PS3.5 §6.2, pydicom's ways): those of the character-set VRs decode
with the Specific Character Set in force, the others are ASCII (Latin-1 as pydicom reads them)."""


def _decoded(raw: bytes, charsets: list[str] | None) -> str:
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode(CODECS[charsets[0] if charsets else ""])
    except UnicodeDecodeError:
        raise Unsupported("text its character set cannot decode") from None


def _check_number(vr: str, values: list[str]) -> None:
    """IS and DS values must read as numbers, as pydicom reads them (else pydicom decides)."""
    for value in values:
        if value != value.strip() or not value:
            raise Unsupported(f"{vr} value {value!r}")
        try:
            int(value) if vr == "IS" else float(value)
        except ValueError:
            raise Unsupported(f"{vr} value {value!r}") from None
