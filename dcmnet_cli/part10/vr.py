"""The encoding tables every PS3.5 byte reader shares: VRs, lengths and the item/delimiter tags.

Defined once here so the element walker, the File Meta writer and anything else that meets raw element
headers agree on them. Pure data: no imports.
"""

from __future__ import annotations

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
"""Explicit VRs with 2 reserved bytes then a 4-byte value length (PS3.5 §7.1.2, Table 7.1-1)."""

SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
                       b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
"""Explicit VRs with a 2-byte value length (PS3.5 §7.1.2, Table 7.1-2)."""

VALID_VRS = LONG_VRS | SHORT_VRS
"""Every VR of PS3.5 §6.2: an explicit VR element with any other two bytes there is malformed."""

UNDEFINED = 0xFFFFFFFF
"""The Undefined Length of sequences, items and encapsulated Pixel Data (PS3.5 §7.1.1, §7.5)."""

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
"""Item, Item Delimitation Item and Sequence Delimitation Item (PS3.5 §7.5, Table 7.5-1): a tag and a
4-byte length, never a VR, in every transfer syntax."""

PIXEL_DATA = 0x7FE00010
"""The one element whose undefined length means encapsulated fragments, not a sequence (PS3.5 §A.4)."""


def tag_text(tag: int) -> str:
    """``(GGGG,EEEE)``: how the standard and every toolkit print a tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
