"""Text values in ISO 2022 code extensions (PS3.5 §6.1.2.5, PS3.3 C.12.1.1.2), encoded the way the
standard's examples (PS3.5 Annex H, I, J) and DCMTK write them.

Why our own encoder: pydicom puts an escape sequence at the start of every segment it encodes, so
``*田中*`` with ``\\ISO 2022 IR 87`` becomes ``ESC ( B * ESC $ B … ESC ( B *`` and ``*김*`` with
``\\ISO 2022 IR 149`` becomes ``ESC $ ) C * …  *``. Both are legal, but an SCP that matches bytes (DCMTK's
dcmqrscp does) then finds nothing, because the stored values carry no escape before their first
ASCII character. The rules kept here:

- no escape sequence while the initial designations (value 1 of Specific Character Set) are in force:
  ASCII (JIS X 0201 Romaji for ISO 2022 IR 13) needs none;
- an escape sequence designating a set goes immediately before the first character that needs it,
  never earlier;
- G0 returns to its initial set before each delimiter (``^ = \\``, CR, LF, TAB, FF) and at the end of
  the value; after a delimiter the G1 designation is back to its initial one (PS3.5 §6.1.2.5.3), so a
  component that needs it again repeats its escape (as in the Korean example of PS3.5 Annex I).

Sans-IO, no pydicom: only Python's codecs.
"""

from __future__ import annotations

from ..ul.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence


class CharacterSet(NamedTuple):
    """One ISO 2022 character set: its designation escape, whether it is invoked in G0 (7-bit bytes) or
    G1 (bytes with the high bit set), and the Python codec that yields its bytes."""

    escape: bytes
    g0: bool
    codec: str


ASCII = CharacterSet(b"\x1b(B", True, "ascii")
ROMAJI = CharacterSet(b"\x1b(J", True, "ascii")  # JIS X 0201 Romaji: ASCII for our purposes

_G1_SINGLE = {"100": (b"A", "latin_1"), "101": (b"B", "iso8859_2"), "109": (b"C", "iso8859_3"),
              "110": (b"D", "iso8859_4"), "144": (b"L", "iso8859_5"), "127": (b"G", "iso8859_6"),
              "126": (b"F", "iso8859_7"), "138": (b"H", "iso8859_8"), "148": (b"M", "iso8859_9"),
              "166": (b"T", "tis_620"), "203": (b"b", "iso8859_15")}

SETS: dict[str, CharacterSet] = {
    "ISO 2022 IR 6": ASCII,
    "ISO 2022 IR 13": CharacterSet(b"\x1b)I", False, "jisx0201"),
    "ISO 2022 IR 87": CharacterSet(b"\x1b$B", True, "jisx0208"),
    "ISO 2022 IR 159": CharacterSet(b"\x1b$(D", True, "jisx0212"),
    "ISO 2022 IR 149": CharacterSet(b"\x1b$)C", False, "euc_kr"),
    "ISO 2022 IR 58": CharacterSet(b"\x1b$)A", False, "gb2312"),
    **{f"ISO 2022 IR {number}": CharacterSet(b"\x1b-" + final, False, codec)
       for number, (final, codec) in _G1_SINGLE.items()},
}

DELIMITERS = frozenset("^=\\\r\n\t\f")


def handles(charsets: Sequence[str]) -> bool:
    """Does ``charsets`` (the values of Specific Character Set) use ISO 2022 code extensions that this
    module encodes? (A single-valued or non-ISO-2022 set is pydicom's job: no escape sequences.)"""
    names = [_normal(name) for name in charsets]
    return len(names) > 1 and all(name in SETS for name in names)


def _normal(name: str) -> str:
    name = name.strip()
    return "ISO 2022 IR 6" if name == "" else name


def encode(value: str, charsets: Sequence[str]) -> bytes:
    """``value`` in the ISO 2022 character sets ``charsets`` (see the module rules).
    ValueError naming the character when no set can encode one."""
    sets = [SETS[_normal(name)] for name in charsets]
    first = sets[0]
    initial_g0 = ROMAJI if _normal(charsets[0]) == "ISO 2022 IR 13" else (first if first.g0 else ASCII)
    initial_g1 = None if first.g0 else first
    g0, g1 = initial_g0, initial_g1
    out = bytearray()
    for char in value:
        if char in DELIMITERS or char.isascii():
            if g0 is not initial_g0:
                out += initial_g0.escape
                g0 = initial_g0
            if char in DELIMITERS:
                g1 = initial_g1
            out += char.encode("ascii")
            continue
        charset, data = _encodable(char, sets)
        if charset.g0 and g0 is not charset:
            out += charset.escape
            g0 = charset
        elif not charset.g0 and g1 is not charset:
            out += charset.escape
            g1 = charset
        out += data
    if g0 is not initial_g0:
        out += initial_g0.escape
    return bytes(out)


def _encodable(char: str, sets: Sequence[CharacterSet]) -> tuple[CharacterSet, bytes]:
    """The first set (in Specific Character Set order) that can encode ``char``, and its bytes."""
    for charset in sets:
        data = _char_bytes(char, charset)
        if data is not None:
            return charset, data
    raise ValueError(f"{char!r} (U+{ord(char):04X}) is in none of the character sets given")


def _char_bytes(char: str, charset: CharacterSet) -> bytes | None:
    """``char`` as the bytes of ``charset`` (G0 sets: 7-bit; G1 sets: high bit set), or None."""
    codec = charset.codec
    try:
        if codec == "jisx0201":  # half-width katakana: Shift_JIS single bytes 0xA1..0xDF
            data = char.encode("shift_jis")
            return data if len(data) == 1 and 0xA1 <= data[0] <= 0xDF else None
        if codec == "jisx0208":  # EUC-JP two-byte codes are JIS X 0208 with the high bits set
            data = char.encode("euc_jp")
            return bytes(b & 0x7F for b in data) if len(data) == 2 and data[0] >= 0xA1 else None
        if codec == "jisx0212":  # EUC-JP SS3 (0x8F) + two bytes: JIS X 0212
            data = char.encode("euc_jp")
            return bytes(b & 0x7F for b in data[1:]) if len(data) == 3 and data[0] == 0x8F else None
        data = char.encode(codec)
    except UnicodeEncodeError:
        return None
    return data if all(b >= 0xA0 for b in data) else None
