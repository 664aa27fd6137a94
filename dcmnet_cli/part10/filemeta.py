"""Part-10 file header (PS3.10 §7.1), without pydicom.

``listen`` writes received data sets as they arrive, behind a header built here from the C-STORE command
and the presentation context: a 128-byte preamble, ``DICM`` and the File Meta Information group (0002) in
explicit VR little endian with its group length. The received data set itself is checked by
:class:`.received.ReceivedDataset` (one walk of the whole data set: structure, SOP UIDs, File Meta
elements inside it).
"""

from __future__ import annotations

import struct
from functools import lru_cache

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from .vr import LONG_VRS
from .walker import Part10Error

PREAMBLE = bytes(128) + b"DICM"
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
_PAD = {b"UI": b"\0", b"OB": b"\0"}


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element, value padded to even length (PS3.5 §7.1.2)."""
    if len(value) & 1:
        value += _PAD.get(vr, b" ")
    if vr in LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    if len(value) > 0xFFFE:
        raise Part10Error(f"({group:04X},{elem:04X}) value of {len(value)} bytes is too long for {vr.decode()}")
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _text(value: str) -> bytes:
    return value.encode("latin-1", "replace")


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str | None = None,
              implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
              implementation_version: str = IMPLEMENTATION_VERSION_NAME) -> bytes:
    """Preamble, ``DICM`` and the File Meta group for one received object (PS3.10 Table 7.1-1)."""
    head, tail = _around_instance(sop_class_uid, transfer_syntax, implementation_class_uid, implementation_version,
                                  source_ae)
    instance = _element(0x0002, 0x0003, b"UI", _text(sop_instance_uid))
    return b"".join((_START, struct.pack("<I", len(head) + len(instance) + len(tail)), head, instance, tail))


_START = PREAMBLE + struct.pack("<HH2sH", 0x0002, 0x0000, b"UL", 4)
"""Everything before the group length's value."""


@lru_cache(maxsize=64)
def _around_instance(sop_class_uid: str, transfer_syntax: str, implementation_class_uid: str,
                     implementation_version: str, source_ae: str | None) -> tuple[bytes, bytes]:
    """The File Meta elements before and after (0002,0003): the same for every object of a SOP class in
    an association, so built once (issue 13: only the instance UID is encoded per object)."""
    head = _VERSION + _element(0x0002, 0x0002, b"UI", _text(sop_class_uid))
    return head, _tail(transfer_syntax, implementation_class_uid, implementation_version, source_ae)


_VERSION = _element(0x0002, 0x0001, b"OB", b"\x00\x01")


@lru_cache(maxsize=64)
def _tail(transfer_syntax: str, implementation_class_uid: str, implementation_version: str, source_ae: str | None) -> bytes:
    """(0002,0010)-(0002,0016): the same for every object of an association, so built once."""
    body = [
        _element(0x0002, 0x0010, b"UI", _text(transfer_syntax)),
        _element(0x0002, 0x0012, b"UI", _text(implementation_class_uid)),
        _element(0x0002, 0x0013, b"SH", _text(implementation_version[:16])),
    ]
    if source_ae and source_ae.strip():
        body.append(_element(0x0002, 0x0016, b"AE", _text(source_ae.strip()[:16])))
    return b"".join(body)
