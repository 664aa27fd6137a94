"""What ``store`` needs to know about a DICOM file, read without decoding it (PS3.10 §7.1, PS3.5 §7).

Only the File Meta group is parsed: the 128-byte preamble, ``DICM``, then group 0002 in explicit VR
little endian, for the Media Storage SOP Class/Instance UIDs and the Transfer Syntax UID, plus the byte
offset where the data set starts. The data set itself is never decoded: :func:`iter_chunks` streams its
bytes from disk in fresh, immutable chunks so memory stays bounded by the chunk size whatever the object
size. Files written without a preamble or meta group (old "raw" data sets) are walked element by element
(implicit VR little endian assumed, explicit VR little endian tried next) only up to (0008,0018).

Every read is bounds-checked; anything wrong raises :class:`InputError` with the reason in words. No
pydicom import here: this is the hot path of ``dcmnet store``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..errors import InputError

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""SOP Class of a DICOMDIR (PS3.10 §8.6): never sent, its referenced files are."""

CHUNK_SIZE = 1 << 20
PREAMBLE = 128
MAX_META_LENGTH = 1 << 16
"""A File Meta group larger than this is refused: real ones are a few hundred bytes."""
MAX_RAW_ELEMENTS = 10_000
"""Elements walked in a file without meta before giving up on finding (0008,0018)."""

# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
VALID_VRS = LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS",
     b"ST", b"TM", b"UI", b"UL", b"US"}
)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

SOP_CLASS_TAG = 0x00080016
SOP_INSTANCE_TAG = 0x00080018


@dataclass(frozen=True)
class DicomFile:
    """One file ready to send: where its data set starts and what it is."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    offset: int
    size: int
    has_meta: bool = True

    @property
    def dataset_length(self) -> int:
        return self.size - self.offset

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class_uid == MEDIA_STORAGE_DIRECTORY


def read_meta(path: str | os.PathLike[str]) -> DicomFile:
    """Parse the File Meta group of ``path`` (or the first elements of a meta-less file)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if os.path.isdir(name):
                raise InputError(f"{name}: is a folder")
            return _parse(name, handle, size)
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder") from None
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None


def _parse(name: str, handle: BinaryIO, size: int) -> DicomFile:
    head = handle.read(PREAMBLE + 4)
    if len(head) == PREAMBLE + 4 and head[PREAMBLE:] == b"DICM":
        return _parse_meta(name, _Reader(handle, size, PREAMBLE + 4, name), size)
    if len(head) >= 4 and head[:4] == b"DICM":  # no preamble but the magic (seen in the wild)
        return _parse_meta(name, _Reader(handle, size, 4, name), size)
    if len(head) >= 8 and _TAG.unpack_from(head)[0] == 0x0002 and head[4:6] in VALID_VRS:
        return _parse_meta(name, _Reader(handle, size, 0, name), size)  # meta group without preamble
    if size < 8:
        raise InputError(f"{name}: not a DICOM file ({size} bytes, too short)")
    return _parse_raw(name, handle, size)


def _parse_meta(name: str, reader: "_Reader", size: int) -> DicomFile:
    """Group 0002, always explicit VR little endian (PS3.10 §7.1)."""
    start = reader.pos
    values: dict[int, bytes] = {}
    end: int | None = None
    while reader.pos < size and (end is None or reader.pos < end):
        if reader.pos - start > MAX_META_LENGTH:
            raise InputError(f"{name}: File Meta group longer than {MAX_META_LENGTH} bytes: not a valid DICOM file")
        group = _U16.unpack(reader.peek(2))[0]
        if group != 0x0002:
            break
        tag, value_length, _vr = reader.explicit_header()
        if value_length == UNDEFINED:
            raise InputError(f"{name}: undefined length in the File Meta group (element {_tag_text(tag)})")
        if value_length > MAX_META_LENGTH:
            raise InputError(f"{name}: File Meta element {_tag_text(tag)} claims {value_length} bytes")
        value = reader.read(value_length)
        values[tag] = value
        if tag == 0x00020000 and len(value) == 4:
            end = reader.pos + _U32.unpack(value)[0]
            if end > size:
                raise InputError(f"{name}: truncated: File Meta group length points past the end of the file")
    if end is not None and reader.pos != end:
        raise InputError(f"{name}: File Meta group length ({end - start} bytes) does not match its elements")
    syntax = _uid(values.get(0x00020010))
    sop_class = _uid(values.get(0x00020002))
    sop_instance = _uid(values.get(0x00020003))
    if not syntax:
        raise InputError(f"{name}: the File Meta group has no Transfer Syntax UID (0002,0010)")
    if not sop_class or not sop_instance:
        missing = "Media Storage SOP Class UID (0002,0002)" if not sop_class else "Media Storage SOP Instance UID (0002,0003)"
        raise InputError(f"{name}: the File Meta group has no {missing}")
    return DicomFile(name, sop_class, sop_instance, syntax, reader.pos, size, has_meta=True)


def _parse_raw(name: str, handle: BinaryIO, size: int) -> DicomFile:
    """A data set without meta: walk it to (0008,0018), implicit VR LE first, then explicit VR LE."""
    reasons = []
    for explicit in (False, True):
        try:
            sop_class, sop_instance = _walk_raw(_Reader(handle, size, 0, name), size, explicit)
        except InputError as error:
            reasons.append(str(error).removeprefix(f"{name}: "))
            continue
        return DicomFile(name, sop_class, sop_instance, EXPLICIT_LE if explicit else IMPLICIT_LE, 0, size, has_meta=False)
    raise InputError(f"{name}: not a DICOM file (no 'DICM' File Meta header, and as a bare data set: {reasons[0]})")


def _walk_raw(reader: "_Reader", size: int, explicit: bool) -> tuple[str, str]:
    found: dict[int, str] = {}
    previous = -1
    for _ in range(MAX_RAW_ELEMENTS):
        if reader.pos >= size:
            break
        tag, length, vr = reader.explicit_header() if explicit else reader.implicit_header()
        if tag <= previous or tag >> 16 == 0xFFFE or tag >> 16 < 0x0008 and tag >> 16 not in (0x0000, 0x0002, 0x0004):
            raise InputError(f"{reader.name}: element {_tag_text(tag)} out of order at byte {reader.pos}")
        previous = tag
        if tag > SOP_INSTANCE_TAG:
            break
        if length == UNDEFINED:
            if explicit and vr not in (b"SQ", b"UN") or not explicit and tag >> 16 != 0x0008:
                raise InputError(f"{reader.name}: undefined length on element {_tag_text(tag)}")
            reader.skip_undefined_sequence(explicit)
            continue
        if tag in (SOP_CLASS_TAG, SOP_INSTANCE_TAG):
            if length > 64:
                raise InputError(f"{reader.name}: {_tag_text(tag)} has length {length}: not a UID")
            found[tag] = _uid(reader.read(length))
        else:
            reader.skip(length)
    sop_class, sop_instance = found.get(SOP_CLASS_TAG), found.get(SOP_INSTANCE_TAG)
    if not sop_class or not sop_instance or not _looks_like_uid(sop_class) or not _looks_like_uid(sop_instance):
        raise InputError(f"{reader.name}: no SOP Class UID (0008,0016) and SOP Instance UID (0008,0018) found")
    return sop_class, sop_instance


class _Reader:
    """Bounds-checked reads from an open file; never reads more than asked."""

    def __init__(self, handle: BinaryIO, size: int, pos: int, name: str) -> None:
        self.handle, self.size, self.pos, self.name = handle, size, pos, name
        handle.seek(pos)

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise InputError(f"{self.name}: truncated: needs {n} bytes at offset {self.pos}, the file has {self.size}")
        data = self.handle.read(n)
        if len(data) != n:
            raise InputError(f"{self.name}: truncated: short read at offset {self.pos}")
        self.pos += n
        return data

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        self.pos -= n
        self.handle.seek(self.pos)
        return data

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise InputError(f"{self.name}: truncated: an element of {n} bytes runs past the end of the file")
        self.pos += n
        self.handle.seek(self.pos)

    def implicit_header(self) -> tuple[int, int, bytes]:
        group, element, length = struct.unpack("<HHI", self.read(8))
        return group << 16 | element, length, b""

    def explicit_header(self) -> tuple[int, int, bytes]:
        group, element = _TAG.unpack(self.read(4))
        tag = group << 16 | element
        if tag >> 16 == 0xFFFE:  # item and delimiters carry no VR
            return tag, _U32.unpack(self.read(4))[0], b""
        vr = self.read(2)
        if vr not in VALID_VRS:
            raise InputError(f"{self.name}: invalid VR {vr!r} for element {_tag_text(tag)} at byte {self.pos - 2}")
        if vr in LONG_VRS:
            self.read(2)
            return tag, _U32.unpack(self.read(4))[0], vr
        return tag, _U16.unpack(self.read(2))[0], vr

    def skip_undefined_sequence(self, explicit: bool, depth: int = 0) -> None:
        """Skip items up to the Sequence Delimitation Item (PS3.5 §7.5), nested sequences included."""
        if depth > 16:
            raise InputError(f"{self.name}: sequences nested too deep")
        while True:
            tag, length, _ = self.implicit_header()
            if tag == SEQUENCE_END:
                return
            if tag != ITEM:
                raise InputError(f"{self.name}: expected an item in a sequence at byte {self.pos - 8}")
            if length != UNDEFINED:
                self.skip(length)
                continue
            while True:  # an item of undefined length: its elements up to the Item Delimitation Item
                tag, length, vr = self.explicit_header() if explicit else self.implicit_header()
                if tag == ITEM_END:
                    break
                if length == UNDEFINED:
                    self.skip_undefined_sequence(explicit, depth + 1)
                else:
                    self.skip(length)


def _uid(value: bytes | None) -> str:
    if not value:
        return ""
    return value.rstrip(b"\0 ").decode("ascii", "replace").strip()


def _looks_like_uid(text: str) -> bool:
    return 0 < len(text) <= 64 and all(c in "0123456789." for c in text)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def iter_chunks(path: str, offset: int, length: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The data set bytes from disk in fresh ``bytes`` chunks (each handed over, never reused).

    Raises :class:`InputError` if the file is shorter than ``length`` by the time it is read (it changed
    since its meta was read): a short data set must never be sent as if it were whole.
    """
    remaining = length
    try:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(offset)
            while remaining > 0:
                chunk = handle.read(min(chunk_size, remaining))
                if not chunk:
                    raise InputError(f"{path}: the file shrank while it was being sent ({remaining} bytes missing)")
                remaining -= len(chunk)
                yield chunk
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
