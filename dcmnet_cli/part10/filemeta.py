"""Part-10 file header (PS3.10 §7.1) and a peek at the first elements of a data set, without pydicom.

``listen`` writes received data sets as they arrive, behind a header built here from the C-STORE command
and the presentation context: a 128-byte preamble, ``DICM`` and the File Meta Information group (0002) in
explicit VR little endian with its group length. :func:`peek_elements` reads just the first elements of a
received data set (SOP Class and Instance UID, PS3.4 B.2.2 / scenario F.37) in any binary transfer syntax,
with the one element walker (:mod:`.walker`).

``listen`` itself now checks received data sets with :class:`.received.ReceivedDataset` (one walk of the
whole data set: structure, SOP UIDs, File Meta elements inside it); :class:`HeadCheck`,
:func:`peek_elements` and :func:`read_prefix` remain for their unit tests and any caller that only needs
the first elements.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from typing import Callable

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from .vr import LONG_VRS
from .walker import Part10Error, Walker

PREAMBLE = bytes(128) + b"DICM"
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
_PAD = {b"UI": b"\0", b"OB": b"\0"}
PEEK_MAX_VALUE = 1 << 16
"""A peeked element longer than this is malformed for our purpose (they are UIDs, names, IDs)."""


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
    group = b"".join((
        _VERSION,
        _element(0x0002, 0x0002, b"UI", _text(sop_class_uid)),
        _element(0x0002, 0x0003, b"UI", _text(sop_instance_uid)),
        _tail(transfer_syntax, implementation_class_uid, implementation_version, source_ae),
    ))
    return PREAMBLE + _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(group))) + group


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


# ------------------------------------------------------------------------------------------ peeking

def peek_elements(buf: bytes | bytearray | memoryview, implicit: bool, little: bool,
                  wanted: frozenset[int] = frozenset({SOP_CLASS_UID, SOP_INSTANCE_UID}),
                  complete: bool = True) -> dict[int, str] | None:
    """Values (text, trailing NUL/space stripped) of the ``wanted`` top-level elements found in ``buf``.

    Stops at the first tag past the largest wanted one. Returns None when ``buf`` is only the start of a
    longer data set (``complete`` false) and ends before the answer is known; raises Part10Error on a
    malformed encoding, or when a ``complete`` data set ends inside an element or a sequence.
    """
    walker = Walker(not implicit, little, wanted, PEEK_MAX_VALUE, span=(0, max(wanted, default=0xFFFFFFFF)))
    walker.feed(buf)
    if complete or walker.stopped:
        walker.finish()
    elif len(walker.values) < len(wanted):
        return None
    return {tag: value.decode("latin-1").rstrip("\0 ") for tag, value in walker.values.items()}


def read_prefix(read_at: Callable[[int, int], bytes], start: int, deflated: bool, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the data set that starts at ``start`` (inflated if deflated); also
    whether that is the whole data set."""
    if not deflated:
        data = read_at(limit + 1, start)
        return data[:limit], len(data) <= limit
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    offset = start
    while len(out) < limit:
        chunk = read_at(65536, offset)
        if not chunk:
            return bytes(out), True
        offset += len(chunk)
        try:
            out += inflater.decompress(chunk, limit + 1 - len(out))
        except zlib.error as error:
            raise Part10Error(f"deflated data set does not inflate: {error}") from None
        if inflater.eof:
            return bytes(out[:limit]), len(out) <= limit
    return bytes(out[:limit]), False


class HeadCheck:
    """The ``wanted`` first elements of a data set, found in its fragments as they arrive (no read-back).

    :meth:`feed` takes each received fragment (inflating the start of a deflated data set) and keeps a copy
    of at most ``limit`` + 1 bytes, only while the answer is unknown: usually the first fragment decides
    it without any copy. Once :attr:`decided`, :attr:`found` is the element values, or None when they are
    not within the first ``limit`` bytes (the same answer :func:`read_prefix` + :func:`peek_elements`
    give on the finished file). Raises Part10Error on a malformed or truncated start.
    """

    def __init__(self, implicit: bool, little: bool, deflated: bool, limit: int,
                 wanted: frozenset[int] = frozenset({SOP_CLASS_UID, SOP_INSTANCE_UID})) -> None:
        self.implicit, self.little, self.limit, self.wanted = implicit, little, limit, wanted
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
        self.buf = bytearray()
        self.decided = False
        self.found: dict[int, str] | None = None

    def feed(self, data: bytes | memoryview, last: bool) -> bool:
        """Take the next fragment (``last``: the data set ends with it); True once decided."""
        if self.decided:
            return True
        if self.inflater is not None:
            if not self.inflater.eof:
                try:
                    self.buf += self.inflater.decompress(data, self.limit + 1 - len(self.buf))
                except zlib.error as error:
                    raise Part10Error(f"deflated data set does not inflate: {error}") from None
            return self._try(self.buf, last or self.inflater.eof)
        if self.buf:
            self.buf += data[:self.limit + 1 - len(self.buf)]
            return self._try(self.buf, last)
        if self._try(data, last):
            return True
        self.buf += data[:self.limit + 1]
        return False

    def _try(self, src: bytes | bytearray | memoryview, ended: bool) -> bool:
        whole = ended and len(src) <= self.limit
        try:
            found = peek_elements(src[:self.limit] if len(src) > self.limit else src, self.implicit, self.little,
                                  self.wanted, complete=whole)
        except Part10Error:
            self.decided, self.buf = True, bytearray()
            raise
        if found is None and not ended and len(src) < self.limit:
            return False
        self.decided, self.found, self.buf = True, found, bytearray()
        return True
