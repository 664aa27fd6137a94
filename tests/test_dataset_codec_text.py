"""The lean codec's text readers (part10/dataset_codec.py), one VR at a time: padding, separators, the
character set, and the values it leaves to pydicom (Unsupported), in explicit and implicit VR little endian
(the first takes the decoder's inlined path, the second its general one)."""

from __future__ import annotations

import struct

import pytest

from dcmnet_cli.part10.dataset_codec import Unsupported, decode

CHARSET = (0x00080005, b"CS", b"ISO_IR 192")
CASES = [
    # (tag, VR, raw value, expected value or Unsupported)
    (0x00080054, b"AE", b" STORE1 \\ AE2 ", ["STORE1", "AE2"]),
    (0x00080054, b"AE", b"", []),
    (0x00081190, b"UR", b"http://x/a b  ", ["http://x/a b"]),
    (0x00200013, b"IS", b" 12 ", ["12"]),
    (0x00200013, b"IS", b"1\\-2\\+3 ", ["1", "-2", "+3"]),
    (0x00200013, b"IS", b"1.5 ", Unsupported),
    (0x00200013, b"IS", b"12\\ ", Unsupported),
    (0x00180050, b"DS", b"2.5\\-1e3", ["2.5", "-1e3"]),
    (0x00180050, b"DS", b"abc ", Unsupported),
    (0x00100020, b"LO", b"ID 1 \\ID2\0", ["ID 1", "ID2"]),
    (0x00100020, b"LO", b"M\xc3\xbcller ", ["Müller"]),
    (0x00080050, b"SH", b"  ", []),
    (0x00204000, b"LT", b"a\\b \r\n\0\0", ["a\\b \r\n"]),
    (0x00204000, b"LT", b"\0 \0 ", []),
    (0x00080081, b"ST", b"x\\y  ", ["x\\y"]),
    (0x0040A160, b"UT", b"unlimited\\text \0", ["unlimited\\text"]),
    (0x00160008, b"UC", b"one \\two", ["one", "two"]),
    (0x00100010, b"PN", b"Doe^John\\Roe^Jane ", ["Doe^John", "Roe^Jane"]),
    (0x00100010, b"PN", b"Yamada^Tarou=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83\x8e=x\0", ["Yamada^Tarou=山田^太郎=x"]),
    (0x00100010, b"PN", b"a=b=c=d ", Unsupported),
    (0x00100010, b"PN", b"", []),
]


def _element(tag: int, vr: bytes, raw: bytes, implicit: bool) -> bytes:
    raw = raw + (b" " if len(raw) % 2 else b"")
    if implicit:
        return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(raw)) + raw
    if vr in (b"UR", b"UT", b"UC"):  # 4-byte lengths (PS3.5 Table 7.1-1)
        return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr, len(raw)) + raw
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(raw)) + raw


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[1].decode()}-{c[2][:12]!r}" for c in CASES])
def test_text_values(case, implicit: bool) -> None:
    tag, vr, raw, expected = case
    data = _element(*CHARSET, implicit) + _element(tag, vr, raw, implicit)
    if expected is Unsupported:
        with pytest.raises(Unsupported):
            decode(data, implicit, True)
        return
    element = decode(data, implicit, True)[tag]
    assert (element.VR, element.value) == (vr.decode(), expected)
