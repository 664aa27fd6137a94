"""What the head of a DICOM file says, from its bytes alone (PS3.10 §7.1, PS3.5 §7): sans-IO.

``store`` needs three UIDs and one offset from each file: the SOP Class, the SOP Instance, the transfer
syntax, and where the data set starts. A Part-10 file has them in its File Meta group: the 128-byte
preamble, ``DICM``, then group 0002 in explicit VR little endian (PS3.10 §7.1). Files written without a
preamble or meta group (old "raw" data sets) are walked element by element (implicit VR little endian
assumed, explicit VR little endian tried next) only up to (0008,0018).

This module decides where to look (:func:`meta_start`), reads a plain File Meta group held in the first
bytes by index (:func:`meta_by_index`: same checks, same result; anything unusual is left to the walker),
configures the element walker for each case (:func:`meta_walker`, :func:`raw_walker`) and judges what
it found (:func:`meta_result`, :func:`raw_result`). Feeding the walker a file's bytes, and jumping over
the values it skips, is the caller's job (``services/dicomfiles.py``): nothing here reads a file.
Problems raise :class:`Part10Error` with the reason in words.
"""

from __future__ import annotations

import struct

from .syntaxes import EXPLICIT_LE, IMPLICIT_LE
from .vr import LONG_VRS, SHORT_VRS, VALID_VRS, tag_text
from .walker import Part10Error, Truncated, Walker

PREAMBLE = 128
MAGIC = b"DICM"
MAX_META_LENGTH = 1 << 16
"""A File Meta group larger than this is refused: real ones are a few hundred bytes."""
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""SOP Class of a DICOMDIR (PS3.10 §8.6): never sent, its referenced files are."""

GROUP_LENGTH, MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE, TRANSFER_SYNTAX = 0x00020000, 0x00020002, 0x00020003, 0x00020010
SOP_CLASS_TAG, SOP_INSTANCE_TAG = 0x00080016, 0x00080018
_META_SPAN = (0x00020000, 0x0002FFFF)
_META_WANTED = frozenset({GROUP_LENGTH, MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE, TRANSFER_SYNTAX})
_RAW_WANTED = frozenset({SOP_CLASS_TAG, SOP_INSTANCE_TAG})
_MAX_UID = 64  # PS3.5 §9.1
_U32 = struct.Struct("<I")
_GROUP = struct.Struct("<H")
_EXPLICIT = struct.Struct("<HH2sH")
_MAX_META_VALUE = 1024


class FileHead:
    """What a file's first bytes say: its identity and syntax, and where its data set starts.

    A plain slotted class, not a dataclass: ``store`` builds one per file and a dataclass would put
    :mod:`dataclasses` (and its class construction) on its start-up path."""

    __slots__ = ("sop_class_uid", "sop_instance_uid", "transfer_syntax", "offset", "has_meta")

    def __init__(self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, offset: int,
                 has_meta: bool) -> None:
        self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax = sop_class_uid, sop_instance_uid, transfer_syntax
        self.offset, self.has_meta = offset, has_meta

    def __repr__(self) -> str:
        return (f"FileHead({self.sop_class_uid!r}, {self.sop_instance_uid!r}, {self.transfer_syntax!r}, "
                f"{self.offset}, has_meta={self.has_meta})")


def meta_start(head: bytes | memoryview, size: int) -> int | None:
    """Where the File Meta group starts in a file of ``size`` bytes beginning with ``head`` (at least its
    first 132 bytes, or all of it), or None when the file has no meta group (a bare data set)."""
    if len(head) >= PREAMBLE + 4 and head[PREAMBLE:PREAMBLE + 4] == MAGIC:
        return PREAMBLE + 4
    if head[:4] == MAGIC:  # no preamble but the magic (seen in the wild)
        return 4
    if len(head) >= 8 and _GROUP.unpack_from(head)[0] == 0x0002 and bytes(head[4:6]) in VALID_VRS:
        return 0  # a meta group without preamble or magic
    if size < 8:
        raise Part10Error(f"not a DICOM file ({size} bytes, too short)")
    return None


def meta_walker() -> Walker:
    """A walker over group 0002 (explicit VR little endian, PS3.10 §7.1), stopping where the group ends."""
    return Walker(True, True, _META_WANTED, max_value=_MAX_META_VALUE, span=_META_SPAN, max_depth=0)


def meta_by_index(head: bytes, start: int, size: int) -> FileHead | None:
    """The File Meta group read in place from ``head`` (the first bytes of a file of ``size`` bytes) when
    the whole group lies in it and is plain: every element of group 0002 with a valid VR and a defined
    length inside ``head``, the wanted values at most 1 KiB. None for anything else (a group cut by the
    end of ``head``, an undefined length, an invalid VR, ...): the caller then walks the file with
    :func:`meta_walker`, which reads on or names the fault. Where both run they agree, by construction:
    this is the walker's loop for one flat group, without its generality, and the result is judged by
    the same checks (:func:`meta_result`). It is the per-file cost of ``dcmnet store``.
    """
    n, i = len(head), start
    values: dict[int, bytes] = {}
    unpack, long_vrs, short_vrs = _EXPLICIT.unpack_from, LONG_VRS, SHORT_VRS
    while True:
        if n - i < 8:
            if i == n == size:
                break  # the file ends with its meta group
            return None
        group, element, vr, length = unpack(head, i)
        if group != 0x0002:
            break  # where the walker stops too: the first element outside the group's span
        if vr in long_vrs:
            if n - i < 12:
                return None
            length, header = _U32.unpack_from(head, i + 8)[0], 12
        elif vr in short_vrs:
            header = 8
        else:
            return None
        end = i + header + length
        if length == 0xFFFFFFFF or end > n:
            return None
        tag = 0x00020000 | element
        if tag in _META_WANTED:
            if length > _MAX_META_VALUE:
                return None
            values[tag] = head[i + header:end]
        i = end
    return _meta_judged(values, i - start, start, size)


def meta_result(walker: Walker, start: int, size: int) -> FileHead:
    """The File Meta group walked from ``start``: its UIDs and where the data set starts (PS3.10 §7.1)."""
    length = walker.stopped_at if walker.stopped_at is not None else walker.offset
    return _meta_judged(walker.values, length, start, size)


def _meta_judged(values: dict[int, bytes], length: int, start: int, size: int) -> FileHead:
    """The checks of a File Meta group of ``length`` bytes from ``start`` with these wanted ``values``."""
    group_length = values.get(GROUP_LENGTH)
    if group_length is not None and len(group_length) == 4:
        declared = _U32.unpack(group_length)[0]
        if start + 12 + declared > size:
            raise Truncated("File Meta group length points past the end of the file")
        if declared != length - 12:
            raise Part10Error(f"File Meta group length ({declared} bytes) does not match its elements ({length - 12} bytes)")
    syntax, sop_class, sop_instance = (uid_text(values.get(tag)) for tag in (TRANSFER_SYNTAX, MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE))
    if not syntax:
        raise Part10Error("the File Meta group has no Transfer Syntax UID (0002,0010)")
    if not sop_class:
        raise Part10Error("the File Meta group has no Media Storage SOP Class UID (0002,0002)")
    if not sop_instance:
        raise Part10Error("the File Meta group has no Media Storage SOP Instance UID (0002,0003)")
    return FileHead(sop_class, sop_instance, syntax, start + length, has_meta=True)


def raw_walker(explicit: bool) -> Walker:
    """A walker over a bare data set up to (0008,0018), in increasing tag order (the test that it is one)."""
    return Walker(explicit, True, _RAW_WANTED, max_value=_MAX_UID, span=(0, SOP_INSTANCE_TAG), ordered=True)


def raw_result(walker: Walker, explicit: bool) -> FileHead:
    """The SOP UIDs found by :func:`raw_walker`; Part10Error unless both are there and look like UIDs."""
    sop_class, sop_instance = (uid_text(walker.values.get(tag)) for tag in (SOP_CLASS_TAG, SOP_INSTANCE_TAG))
    if not looks_like_uid(sop_class) or not looks_like_uid(sop_instance):
        raise Part10Error(f"no SOP Class UID {tag_text(SOP_CLASS_TAG)} and SOP Instance UID {tag_text(SOP_INSTANCE_TAG)} found")
    return FileHead(sop_class, sop_instance, EXPLICIT_LE if explicit else IMPLICIT_LE, 0, has_meta=False)


def uid_text(value: bytes | None) -> str:
    """A UI value as text: trailing NUL padding (PS3.5 §9.1) and stray spaces removed."""
    if not value:
        return ""
    return value.rstrip(b"\0 ").decode("ascii", "replace").strip()


def looks_like_uid(text: str) -> bool:
    return 0 < len(text) <= _MAX_UID and not text.strip("0123456789.")  # nothing but digits and dots
