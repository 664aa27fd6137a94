"""The fast path of a C-FIND answer: the identifier's keys filled from a candidate, encoded straight to
bytes (PS3.5 §7.1, little endian, explicit or implicit VR) without building a pydicom response data set.

It gives what matching.response gives for identifiers without sequences (each key of the identifier,
filled from the candidate or zero-length, QueryRetrieveLevel, Specific Character Set as
find_handler._charset decides) and costs a fraction of it: at IMAGE level most of a query's time went
into building and writing pydicom elements. :func:`answer_bytes` returns None whenever it would differ
(a sequence key, an ISO 2022 character set with non-ASCII text, big endian, deflate): the caller then
takes the pydicom path.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping, NamedTuple

_SKIP = frozenset({0x00080005, 0x00080052})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_CODECS = {"ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4",
           "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6", "ISO_IR 126": "iso8859_7",
           "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9", "ISO_IR 192": "utf-8", "ISO_IR 166": "tis-620"}
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
_NUMBER_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_H = struct.Struct("<HH")
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


class Plan(NamedTuple):
    """One query's answer layout: (tag, VR, keyword) of each key in tag order, the level, the charset asked."""

    keys: tuple[tuple[int, str, str], ...]
    level: str
    asked: tuple[str, ...]
    implicit: bool


def plan(identifier: Any, level: str, asked: list[str], syntax: str) -> Plan | None:
    """The layout for ``identifier``, or None when the fast path cannot answer it."""
    if syntax not in (EXPLICIT_LE, IMPLICIT_LE) or len(asked) > 1 or (asked and asked[0] not in _CODECS):
        return None
    keys = []
    for element in identifier:
        tag = int(element.tag)
        if tag >> 16 in (0, 2) or tag in _SKIP:
            continue
        if element.VR == "SQ" or element.VR in _NUMBER_VRS and element.VR != "US":
            return None
        if not element.keyword:
            return None  # a private or unknown key: the pydicom path answers it
        keys.append((tag, element.VR, element.keyword))
    return Plan(tuple(keys), level, tuple(asked), syntax == IMPLICIT_LE)


def answer_bytes(plan: Plan, candidate: Mapping[str, str]) -> bytes | None:
    """The answer to one candidate, ``{keyword: DICOM string form}`` as search_attrs yields it (see the
    module docstring), or None for the pydicom path."""
    values: list[tuple[int, str, Any]] = []
    non_ascii = False
    for tag, vr, keyword in plan.keys:
        text = candidate.get(keyword) or ""
        if vr == "US":
            values.append((tag, "US", text))
            continue
        if not text.isascii():
            non_ascii = True
        values.append((tag, vr, text))
    charset = _charset(values, plan.asked, non_ascii)
    if charset is None:
        return None
    codec = _CODECS.get(charset, "ascii")
    values.append((0x00080052, "CS", plan.level))
    if charset:
        values.append((0x00080005, "CS", charset))
    out = bytearray()
    for tag, vr, value in sorted(values, key=lambda item: item[0]):
        _element(out, tag, vr, value, codec, plan.implicit)
    return bytes(out)


def _charset(values: list[tuple[int, str, Any]], asked: tuple[str, ...], non_ascii: bool) -> str | None:
    """'' (none), the charset asked, or ISO_IR 192; None when the asked set cannot be checked here."""
    if not non_ascii:
        return asked[0] if asked else ""
    if asked:
        try:
            for _tag, vr, text in values:
                if vr in _TEXT_VRS and isinstance(text, str):
                    text.encode(_CODECS[asked[0]])
            return asked[0]
        except UnicodeEncodeError:
            pass
    return "ISO_IR 192"


def _element(out: bytearray, tag: int, vr: str, value: Any, codec: str, implicit: bool) -> None:
    if vr == "US":
        numbers = [int(n) for n in value.split("\\") if n.strip()] if value else []
        data = struct.pack(f"<{len(numbers)}H", *numbers)
    else:
        data = value.encode(codec if vr in _TEXT_VRS else "ascii", "replace")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
    out += _H.pack(tag >> 16, tag & 0xFFFF)
    if implicit:
        out += struct.pack("<I", len(data))
    elif vr in _LONG_VRS:
        out += vr.encode("ascii") + b"\0\0" + struct.pack("<I", len(data))
    else:
        out += vr.encode("ascii") + struct.pack("<H", len(data))
    out += data
