"""Encoding a lean :class:`~.dataset_codec.DataSet` (PS3.5 §7) and its DICOM JSON form (PS3.18 F).

The encoder writes what ``find`` sends: explicit or implicit VR, little or big endian, elements in tag
order, sequences and items of defined length (as pydicom writes them), values padded to even length
(UI with NUL, the other strings with a space, binary values with NUL; PS3.5 §6.2). Text in the
character-set VRs is encoded with the data set's Specific Character Set: ISO 2022 code extensions by
:mod:`.iso2022` (the way byte-matching SCPs store them), single-valued sets by Python's codecs.

Errors are :class:`EncodeError` (a ValueError) naming the element and why, on one line: a number out of
its VR's range, a value too long for a 16-bit length, a character its character set cannot hold. A
multi-valued character set without ISO 2022 code extensions is :class:`~.dataset_codec.Unsupported`.
Sans-IO; standard library only.
"""

from __future__ import annotations

import struct

from .dataset_codec import BYTES_VRS, CHARSET_VRS, CODECS, NUMBER_FORMATS, DataSet, Element, Unsupported
from .vr import ITEM, LONG_VRS, tag_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

RANGES = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
          "UV": (0, 0xFFFFFFFFFFFFFFFF), "SV": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF)}
_LONG = frozenset(vr.decode("ascii") for vr in LONG_VRS)


class EncodeError(ValueError):
    """A value that cannot be encoded: ``(gggg,eeee) Keyword: why``."""


def encode(ds: DataSet, implicit: bool, little: bool) -> bytes:
    """``ds`` as bytes (see the module docstring); EncodeError / Unsupported otherwise."""
    out = bytearray()
    _write(out, ds, implicit, "<" if little else ">", ds.charsets())
    return bytes(out)


def _write(out: bytearray, ds: DataSet, implicit: bool, prefix: str, charsets: list[str] | None) -> None:
    own = ds.charsets()
    charsets = own if own is not None else charsets
    for element in ds.in_order():
        if element.VR == "SQ":
            body = bytearray()
            for item in element.items:
                data = bytearray()
                _write(data, item, implicit, prefix, charsets)
                body += struct.pack(prefix + "HHL", ITEM >> 16, ITEM & 0xFFFF, len(data)) + data
            _header(out, element, len(body), implicit, prefix)
            out += body
            continue
        value = _value_bytes(element, prefix, charsets)
        _header(out, element, len(value), implicit, prefix)
        out += value


def _header(out: bytearray, element: Element, length: int, implicit: bool, prefix: str) -> None:
    tag, vr = element.tag, element.VR
    if implicit:
        out += struct.pack(prefix + "HHL", tag >> 16, tag & 0xFFFF, length)
    elif vr in _LONG:
        out += struct.pack(prefix + "HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)
    elif length > 0xFFFF:
        raise EncodeError(f"{_name(tag)}: a value of {length} bytes is too long for VR {vr} in explicit VR "
                          f"(at most 65534)")
    else:
        out += struct.pack(prefix + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)


def _name(tag: int) -> str:
    from .dataset_codec import keyword_of

    keyword = keyword_of(tag)
    return tag_text(tag) + (f" {keyword}" if keyword else "")


def _value_bytes(element: Element, prefix: str, charsets: list[str] | None) -> bytes:
    vr, value = element.VR, element.value
    if isinstance(value, bytes):
        return value + b"\0" if len(value) % 2 else value
    if not value:
        return b""
    if vr in NUMBER_FORMATS:
        return _numbers(element, prefix)
    if vr == "AT":
        try:
            return b"".join(struct.pack(prefix + "HH", t >> 16, t & 0xFFFF) for t in value)
        except (struct.error, TypeError):
            raise EncodeError(f"{_name(element.tag)}: {value!r} are not tags") from None
    text = "\\".join(str(v) for v in value)
    data = _text_bytes(element, text, charsets) if vr in CHARSET_VRS else _ascii_bytes(element, text)
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def _numbers(element: Element, prefix: str) -> bytes:
    vr, code = element.VR, NUMBER_FORMATS[element.VR]
    for number in element.value:
        low, high = RANGES.get(vr, (None, None))
        if low is not None and (not isinstance(number, int) or not low <= number <= high):  # type: ignore[operator]
            raise EncodeError(f"{_name(element.tag)}: {number!r} does not fit VR {vr} ({low}..{high})")
    try:
        return struct.pack(f"{prefix}{len(element.value)}{code}", *element.value)
    except (struct.error, OverflowError, TypeError) as error:
        raise EncodeError(f"{_name(element.tag)}: {element.value!r} does not fit VR {vr} ({error})") from None


def _ascii_bytes(element: Element, text: str) -> bytes:
    try:
        return text.encode("latin_1")
    except UnicodeEncodeError as error:
        raise EncodeError(f"{_name(element.tag)}: {text[error.start]!r} is not allowed in VR {element.VR}") from None


def _text_bytes(element: Element, text: str, charsets: list[str] | None) -> bytes:
    if text.isascii():
        return text.encode("ascii")
    from . import iso2022  # only for non-ASCII text

    names = [name.strip() for name in charsets or [""]]
    try:
        if iso2022.handles(names):
            return iso2022.encode(text, names)
        if len(names) > 1:
            raise Unsupported(f"Specific Character Set {names!r}")
        if names[0] not in CODECS:
            raise Unsupported(f"Specific Character Set {names[0]!r}")
        return text.encode(CODECS[names[0]])
    except UnicodeEncodeError as error:
        raise EncodeError(f"{_name(element.tag)}: {text[error.start]!r} is not in the character set "
                          f"{names[0] or 'ISO_IR 6'} (set SpecificCharacterSet, e.g. ISO_IR 192)") from None
    except ValueError as error:
        raise EncodeError(f"{_name(element.tag)}: {error}") from None


# ------------------------------------------------------------------------------------ JSON

def to_json_dict(ds: DataSet) -> dict[str, Any]:
    """The DICOM JSON model of ``ds`` (PS3.18 F.2), as pydicom's ``Dataset.to_json_dict`` writes it."""
    out: dict[str, Any] = {}
    for element in ds:
        out[f"{element.tag:08X}"] = _json_element(element)
    return out


def _json_element(element: Element) -> dict[str, Any]:
    vr, value = element.VR, element.value
    entry: dict[str, Any] = {"vr": vr}
    if vr == "SQ":
        entry["Value"] = [to_json_dict(item) for item in element.items]
    elif isinstance(value, bytes) or vr in BYTES_VRS:
        if value:
            import base64

            entry["InlineBinary"] = base64.b64encode(bytes(value)).decode("ascii")
    elif not value:
        pass
    elif vr == "PN":
        entry["Value"] = [_person_name(v) for v in value]
    elif vr == "AT":
        entry["Value"] = [format(v, "08X") for v in value]
    elif vr in ("IS", "DS", "FL", "FD"):
        entry["Value"] = [_number(vr, v) for v in value]
    else:
        entry["Value"] = list(value)
    return entry


def _number(vr: str, value: Any) -> Any:
    """IS as an int, DS/FL/FD as a float; a malformed IS/DS a peer sent (that pydicom read) stays text."""
    try:
        return int(value) if vr == "IS" else float(value)
    except (TypeError, ValueError):
        return str(value)


def _person_name(text: str) -> dict[str, str]:
    groups = text.split("=")
    names = {"Alphabetic": groups[0]}
    if len(groups) > 1:
        names["Ideographic"] = groups[1]
    if len(groups) > 2:
        names["Phonetic"] = groups[2]
    return names
