"""What ``store`` needs to know about a DICOM file, read without decoding it (PS3.10 §7.1, PS3.5 §7).

Only the File Meta group is parsed: the 128-byte preamble, ``DICM``, then group 0002 in explicit VR
little endian, for the Media Storage SOP Class/Instance UIDs and the Transfer Syntax UID, plus the byte
offset where the data set starts, from one read of the file's head (the whole file when it is small).
The data set itself is never decoded: a small one is sent as the bytes already read
(:func:`dataset_bytes`), a large one from an open descriptor (:func:`open_dataset`) that the transport
hands to ``sendfile``, so memory stays bounded by the PDU size whatever the object size
(:func:`iter_chunks` reads it in fresh chunks for drivers that need bytes). Files written without a
preamble or meta group (old "raw" data sets) are walked element by element (implicit VR little endian
assumed, explicit VR little endian tried next) only up to (0008,0018).

Every read is bounds-checked; anything wrong raises :class:`InputError` with the reason in words. No
pydicom import here: this is the hot path of ``dcmnet store``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from stat import S_ISDIR as _S_ISDIR
from typing import Iterator

from ..errors import InputError

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""SOP Class of a DICOMDIR (PS3.10 §8.6): never sent, its referenced files are."""

CHUNK_SIZE = 1 << 20
HEAD_SIZE = 8192
"""Bytes read at once when parsing: a File Meta group is a few hundred bytes, so one read is the rule."""
INLINE_MAX = 64 * 1024
"""Files up to this size are read whole in that one read (and may be kept for sending)."""
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
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
_IMPLICIT = struct.Struct("<HHI")

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
    identity: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    """``(st_dev, st_ino)``: the same file reached by two paths is sent once."""
    content: bytes | None = field(default=None, compare=False, repr=False)
    """The whole file when it was small enough to keep from the meta read (``read_meta(keep_content=True)``)."""

    @property
    def dataset_length(self) -> int:
        return self.size - self.offset

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class_uid == MEDIA_STORAGE_DIRECTORY


def read_meta(path: str | os.PathLike[str], keep_content: bool = False) -> DicomFile:
    """Parse the File Meta group of ``path`` (or the first elements of a meta-less file).

    One ``open``, one ``fstat`` and, for the usual file, one ``read``: the first :data:`HEAD_SIZE` bytes
    (the whole file when it is at most :data:`INLINE_MAX`) are parsed in memory; more is read only for a
    meta group or a bare data set that runs past them. With ``keep_content`` a whole small file is kept
    in :attr:`DicomFile.content`, so sending it needs no second open.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None
    try:
        st = os.fstat(fd)
        if _S_ISDIR(st.st_mode):
            raise InputError(f"{name}: is a folder")
        size = st.st_size
        head = os.read(fd, size if size <= INLINE_MAX else HEAD_SIZE)
        meta = _parse(name, _Reader(fd, size, 0, name, head), size)
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder") from None
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    content = head if keep_content and len(head) == size and size <= INLINE_MAX else None
    return DicomFile(meta.path, meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax, meta.offset, size,
                     meta.has_meta, (st.st_dev, st.st_ino), content)


def _parse(name: str, reader: "_Reader", size: int) -> DicomFile:
    head = reader.first(PREAMBLE + 4)
    if len(head) == PREAMBLE + 4 and head[PREAMBLE:] == b"DICM":
        reader.pos = PREAMBLE + 4
        return _parse_meta(name, reader, size)
    if len(head) >= 4 and head[:4] == b"DICM":  # no preamble but the magic (seen in the wild)
        reader.pos = 4
        return _parse_meta(name, reader, size)
    if len(head) >= 8 and _TAG.unpack_from(head)[0] == 0x0002 and head[4:6] in VALID_VRS:
        return _parse_meta(name, reader, size)  # meta group without preamble
    if size < 8:
        raise InputError(f"{name}: not a DICOM file ({size} bytes, too short)")
    return _parse_raw(name, reader, size)


def _parse_meta(name: str, reader: "_Reader", size: int) -> DicomFile:
    """Group 0002, always explicit VR little endian (PS3.10 §7.1)."""
    start = reader.pos
    values: dict[int, bytes] = {}
    end: int | None = None
    while reader.pos < size and (end is None or reader.pos < end):
        if reader.pos - start > MAX_META_LENGTH:
            raise InputError(f"{name}: File Meta group longer than {MAX_META_LENGTH} bytes: not a valid DICOM file")
        if reader.peek_u16() != 0x0002:
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


def _parse_raw(name: str, reader: "_Reader", size: int) -> DicomFile:
    """A data set without meta: walk it to (0008,0018), implicit VR LE first, then explicit VR LE."""
    reasons = []
    for explicit in (False, True):
        reader.pos = 0
        try:
            sop_class, sop_instance = _walk_raw(reader, size, explicit)
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
    """Bounds-checked reads through an in-memory window over an open file.

    The window starts as the bytes :func:`read_meta` already read; a read past it fetches the next
    :data:`HEAD_SIZE` bytes (or more if asked) with one ``pread``. Skipping moves the position only.
    """

    __slots__ = ("fd", "size", "pos", "name", "_buf", "_start")

    def __init__(self, fd: int, size: int, pos: int, name: str, window: bytes = b"") -> None:
        self.fd, self.size, self.pos, self.name = fd, size, pos, name
        self._buf, self._start = window, 0

    def _at(self, n: int) -> int:
        """Index in the window of ``n`` bytes at ``pos``, reading them first if needed."""
        pos = self.pos
        index = pos - self._start
        if index >= 0 and index + n <= len(self._buf) and pos + n <= self.size and n >= 0:
            return index
        if n < 0 or pos + n > self.size:
            raise InputError(f"{self.name}: truncated: needs {n} bytes at offset {pos}, the file has {self.size}")
        data = os.pread(self.fd, max(n, HEAD_SIZE), pos)
        if len(data) < n:
            raise InputError(f"{self.name}: truncated: short read at offset {pos}")
        self._buf, self._start = data, pos
        return 0

    def first(self, n: int) -> bytes:
        """The file's first ``n`` bytes (fewer if it is shorter): always in the initial window."""
        return self._buf[:n]

    def read(self, n: int) -> bytes:
        index = self._at(n)
        self.pos += n
        return self._buf[index:index + n]

    def peek_u16(self) -> int:
        index = self._at(2)  # first: it may replace the window
        return _U16.unpack_from(self._buf, index)[0]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise InputError(f"{self.name}: truncated: an element of {n} bytes runs past the end of the file")
        self.pos += n

    def implicit_header(self) -> tuple[int, int, bytes]:
        index = self._at(8)  # first: it may replace the window
        group, element, length = _IMPLICIT.unpack_from(self._buf, index)
        self.pos += 8
        return group << 16 | element, length, b""

    def explicit_header(self) -> tuple[int, int, bytes]:
        """Tag, length and VR of an explicit VR element (PS3.5 §7.1.2); items and delimiters have no VR."""
        index = self._at(8)
        buf = self._buf
        group, element = _TAG.unpack_from(buf, index)
        tag = group << 16 | element
        if group == 0xFFFE:
            self.pos += 8
            return tag, _U32.unpack_from(buf, index + 4)[0], b""
        vr = buf[index + 4:index + 6]
        if vr not in VALID_VRS:
            raise InputError(f"{self.name}: invalid VR {vr!r} for element {_tag_text(tag)} at byte {self.pos + 4}")
        self.pos += 8
        if vr in LONG_VRS:  # 2 reserved bytes, then a 4-byte length
            index = self._at(4)
            length = _U32.unpack_from(self._buf, index)[0]
            self.pos += 4
            return tag, length, vr
        return tag, _U16.unpack_from(buf, index + 6)[0], vr

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


def dataset_bytes(file: DicomFile) -> bytes | memoryview:
    """The whole data set of a small file in memory: the content kept by :func:`read_meta`, or one ``pread``.

    Raises :class:`InputError` if the file no longer holds it (nothing has been sent yet).
    """
    length = file.dataset_length
    if file.content is not None:
        return memoryview(file.content)[file.offset:]
    fd = open_dataset(file)
    try:
        data = os.pread(fd, length, file.offset)
    except OSError as error:
        raise InputError(f"{file.path}: cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) != length:
        raise InputError(f"{file.path}: the file shrank before it was sent ({length - len(data)} bytes missing)")
    return data


def open_dataset(file: DicomFile) -> int:
    """A read-only descriptor of ``file``, checked to still be as long as when its meta was read.

    The caller closes it. Raises :class:`InputError` (nothing sent yet) if it cannot be opened or shrank.
    """
    try:
        fd = os.open(file.path, os.O_RDONLY | _O_CLOEXEC)
    except OSError as error:
        raise InputError(f"{file.path}: cannot read: {error.strerror or error}") from None
    try:
        size = os.fstat(fd).st_size
    except OSError as error:
        os.close(fd)
        raise InputError(f"{file.path}: cannot read: {error.strerror or error}") from None
    if size < file.size:
        os.close(fd)
        raise InputError(f"{file.path}: the file shrank before it was sent ({file.size - size} bytes missing)")
    return fd
