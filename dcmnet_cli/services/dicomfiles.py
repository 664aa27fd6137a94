"""DICOM files on disk for ``store``: their head read once, their data set handed on undecoded.

:func:`read_meta` opens a file, reads its first :data:`HEAD_SIZE` bytes (the whole file when it is
small) and reads a plain File Meta group in them by index (:func:`..part10.filehead.meta_by_index`, the
per-file cost of ``store``); anything else (a group running past those bytes, an unusual element, a file
without meta) goes to the element walker configured by :mod:`..part10.filehead`, which reads on with
``pread`` and jumps over the values it skips, never reading them.
The data set itself is never decoded: a small one is sent as the bytes already read
(:func:`dataset_bytes`), a large one from an open descriptor (:func:`open_dataset`) that the transport
hands to ``sendfile``, so memory stays bounded by the PDU size whatever the object size
(:func:`iter_chunks` reads it in fresh chunks for drivers that need bytes).

Anything wrong raises :class:`InputError` naming the file and the reason. No pydicom import here: this
is the hot path of ``dcmnet store``.
"""

from __future__ import annotations

import os
from stat import S_ISDIR as _S_ISDIR, S_ISREG as _S_ISREG
from collections.abc import Iterator

from ..errors import InputError
from ..part10 import filehead
from ..part10.walker import Part10Error, Truncated, Walker
from ..transport.inputfiles import OPEN_FLAGS

CHUNK_SIZE = 1 << 20
HEAD_SIZE = 8192
"""Bytes read at once when parsing: a File Meta group is a few hundred bytes, so one read is the rule."""
INLINE_MAX = 64 * 1024
"""Files up to this size are read whole in that one read (and may be kept for sending)."""
MAX_RAW_WALK = 16 << 20
"""Bytes of a file without meta walked (most of them skipped, not read) looking for (0008,0018)."""


class DicomFile:
    """One file ready to send: where its data set starts and what it is.

    Immutable, compared and hashed by what it is (path, UIDs, syntax, offset, size, has_meta), not by
    ``identity`` or ``content``. A slotted class rather than a frozen dataclass: one is built per file on
    ``store``'s hot path, and :mod:`dataclasses` stays off its start-up path.
    """

    __slots__ = ("path", "sop_class_uid", "sop_instance_uid", "transfer_syntax", "offset", "size", "has_meta",
                 "identity", "content")
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    offset: int
    size: int
    has_meta: bool
    identity: tuple[int, int] | None
    """``(st_dev, st_ino)``: the same file reached by two paths is sent once."""
    content: bytes | None
    """The whole file when it was small enough to keep from the meta read (``read_meta(keep_content=True)``)."""

    def __init__(self, path: str, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, offset: int,
                 size: int, has_meta: bool = True, identity: tuple[int, int] | None = None,
                 content: bytes | None = None) -> None:
        setter = object.__setattr__
        setter(self, "path", path)
        setter(self, "sop_class_uid", sop_class_uid)
        setter(self, "sop_instance_uid", sop_instance_uid)
        setter(self, "transfer_syntax", transfer_syntax)
        setter(self, "offset", offset)
        setter(self, "size", size)
        setter(self, "has_meta", has_meta)
        setter(self, "identity", identity)
        setter(self, "content", content)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"DicomFile is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"DicomFile is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[object, ...]:
        return (self.path, self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax, self.offset, self.size,
                self.has_meta)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not DicomFile:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"DicomFile(path={self.path!r}, sop_class_uid={self.sop_class_uid!r}, "
                f"sop_instance_uid={self.sop_instance_uid!r}, transfer_syntax={self.transfer_syntax!r}, "
                f"offset={self.offset!r}, size={self.size!r}, has_meta={self.has_meta!r})")

    @property
    def dataset_length(self) -> int:
        return self.size - self.offset

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class_uid == filehead.MEDIA_STORAGE_DIRECTORY


def read_meta(path: str | os.PathLike[str], keep_content: bool = False) -> DicomFile:
    """Parse the File Meta group of ``path`` (or the first elements of a meta-less file).

    One ``open``, one ``fstat`` and, for the usual file, one ``read``: the first :data:`HEAD_SIZE` bytes
    (the whole file when it is at most :data:`INLINE_MAX`) are parsed in memory; more is read only for a
    meta group or a bare data set that runs past them. With ``keep_content`` a whole small file is kept
    in :attr:`DicomFile.content`, so sending it needs no second open.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, OPEN_FLAGS)  # a FIFO must not make it wait: refused once open
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
        if not _S_ISREG(st.st_mode):
            raise _not_regular(name)
        size = st.st_size
        head = os.read(fd, size if size <= INLINE_MAX else HEAD_SIZE)
        meta = _parse(name, fd, size, head)
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder") from None
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    content = head if keep_content and len(head) == size and size <= INLINE_MAX else None
    return DicomFile(name, meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax, meta.offset, size,
                     meta.has_meta, (st.st_dev, st.st_ino), content)


def _parse(name: str, fd: int, size: int, head: bytes) -> filehead.FileHead:
    """The meta group if there is one, else the file as a bare data set (implicit, then explicit VR)."""
    try:
        start = filehead.meta_start(head, size)
        if start is not None:
            found = filehead.meta_by_index(head, start, size)
            if found is not None:
                return found
            walker = filehead.meta_walker()
            _feed(walker, fd, size, start, head, filehead.MAX_META_LENGTH,
                  f"File Meta group longer than {filehead.MAX_META_LENGTH} bytes: not a valid DICOM file")
            return filehead.meta_result(walker, start, size)
    except Part10Error as error:
        raise InputError(f"{name}: {_reason(error)}") from None
    reasons = []
    for explicit in (False, True):
        walker = filehead.raw_walker(explicit)
        try:
            _feed(walker, fd, size, 0, head, MAX_RAW_WALK, f"no SOP Instance UID in the first {MAX_RAW_WALK} bytes")
            return filehead.raw_result(walker, explicit)
        except Part10Error as error:
            reasons.append(_reason(error))
    raise InputError(f"{name}: not a DICOM file (no 'DICM' File Meta header, and as a bare data set: {reasons[0]})")


def _feed(walker: Walker, fd: int, size: int, pos: int, head: bytes, most: int, too_long: str) -> None:
    """Feed ``walker`` the file from ``pos``: what ``head`` holds, then :data:`HEAD_SIZE` windows read
    with ``pread``, jumping over the values it skips, until it stops or the file ends."""
    window: bytes | memoryview = memoryview(head)[pos:] if pos < len(head) else os.pread(fd, HEAD_SIZE, pos)
    while True:
        walker.feed(window)
        pos += len(window)
        if walker.stopped:
            return
        jump = min(walker.skippable, size - pos)
        if jump:
            walker.skip(jump)
            pos += jump
        if walker.offset > most:
            raise Part10Error(too_long)
        if pos >= size:
            walker.finish()
            return
        window = os.pread(fd, HEAD_SIZE, pos)
        if not window:
            raise Truncated(f"short read at offset {pos} (the file shrank)")


def _reason(error: Part10Error) -> str:
    return f"truncated: {error}" if isinstance(error, Truncated) else str(error)


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
        fd = os.open(file.path, OPEN_FLAGS)
    except OSError as error:
        raise InputError(f"{file.path}: cannot read: {error.strerror or error}") from None
    try:
        st = os.fstat(fd)
    except OSError as error:
        os.close(fd)
        raise InputError(f"{file.path}: cannot read: {error.strerror or error}") from None
    if not _S_ISREG(st.st_mode):  # replaced since its meta was read
        os.close(fd)
        raise _not_regular(file.path)
    size = st.st_size
    if size < file.size:
        os.close(fd)
        raise InputError(f"{file.path}: the file shrank before it was sent ({file.size - size} bytes missing)")
    return fd


def _not_regular(name: str) -> InputError:
    return InputError(f"{name}: not a regular file (a FIFO, device or socket): only files are sent")
