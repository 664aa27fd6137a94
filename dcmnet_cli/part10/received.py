"""The check of a received data set as it streams to disk (PS3.5 §7, PS3.4 B.2.2, PS3.10 §7.1): sans-IO.

``listen`` (and the C-MOVE/C-GET receivers) feed every received fragment of a C-STORE data set to one
:class:`ReceivedDataset` on its way to the temporary file. One pass of the element walker
(:mod:`.walker`: structure only, nothing decoded, nesting bounded) does three things:

- it proves the data set whole: :meth:`ReceivedDataset.finish` raises :class:`Part10Error` (a one-line
  reason) unless the data ended exactly on an element boundary with every sequence, item and run of
  fragments closed, sequences and items of defined length checked too;
- it keeps the top-level SOP Class and Instance UIDs (:attr:`ReceivedDataset.uids`), which must match the
  command's (the caller answers 0xA900 otherwise);
- it finds File Meta elements (group 0002) at the start of the data set, which have no place there
  (PS3.10 §7.1: they belong to the file's own header): :meth:`ReceivedDataset.feed` returns the bytes to
  write without them (:attr:`ReceivedDataset.dropped` says how many were left out). They precede every
  other element, so only the first fragment (rarely a few) is looked at for them.

A deflated data set (PS3.5 §A.5) is inflated incrementally (``zlib.decompressobj``, at most
:data:`INFLATE_CHUNK` bytes at a time) and the walker sees the inflated stream; what is written stays the
deflated bytes, so File Meta elements inside a deflated data set cannot be cut out: they are an error.
"""

from __future__ import annotations

import zlib
from typing import Union

from .walker import MAX_DEPTH, Part10Error, Truncated, Walker

Bytes = Union[bytes, bytearray, memoryview]

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
UIDS = frozenset({SOP_CLASS_UID, SOP_INSTANCE_UID})
MAX_UID_VALUE = 1 << 16
"""A wanted element longer than this is malformed for our purpose (they are UIDs)."""
MAX_META = 1 << 16
"""File Meta elements at the start of a data set longer than this are refused (real groups: ~200 bytes)."""
INFLATE_CHUNK = 1 << 18
"""Inflated bytes produced per step: bounds the memory a highly compressed data set can make us spend."""
_META_SPAN = (0x00020000, 0x0002FFFF)


class ReceivedDataset:
    """One received data set, fed fragment by fragment; see the module docstring.

    ``implicit``/``little``/``deflated``: its transfer syntax (:func:`.syntaxes.encoding_of`).
    ``max_depth``: the deepest nesting of sequences accepted (None: unbounded, still no recursion).
    ``wanted``: more top-level tags whose raw values to keep (:attr:`values`) during the same walk, e.g.
    the attributes ``listen`` indexes (each at most :data:`MAX_UID_VALUE` bytes, else Part10Error).
    """

    def __init__(self, implicit: bool, little: bool, deflated: bool, max_depth: int | None = MAX_DEPTH,
                 wanted: frozenset[int] = frozenset()) -> None:
        self.walker = Walker(not implicit, little, _with_uids(wanted), MAX_UID_VALUE, max_depth=max_depth, descend=True)
        self.little = little
        self._explicit = not implicit
        self._meta: Walker | None = None  # made only when the data set may start with group 0002 (rare)
        self.dropped: int | None = None  # bytes of File Meta elements left out; None until known
        self._pending = bytearray()  # the first bytes, while it is not known where group 0002 ends
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None

    @property
    def uids(self) -> tuple[str, str] | None:
        """(SOP Class UID, SOP Instance UID) once both were walked past, else None."""
        values = self.walker.values
        if SOP_CLASS_UID not in values or SOP_INSTANCE_UID not in values:
            return None
        return _text(values[SOP_CLASS_UID]), _text(values[SOP_INSTANCE_UID])

    @property
    def has_uids(self) -> bool:
        """Both SOP UIDs were walked past (:attr:`uids` is not None), told without decoding them."""
        values = self.walker.values
        return SOP_CLASS_UID in values and SOP_INSTANCE_UID in values

    def uid(self, tag: int) -> str | None:
        """The text of one kept value (a SOP UID), None when the walk did not pass it."""
        raw = self.walker.values.get(tag)
        return None if raw is None else _text(raw)

    @property
    def values(self) -> dict[int, bytes]:
        """The raw top-level values of the UIDs and of the ``wanted`` tags walked past so far."""
        return self.walker.values

    def found(self) -> dict[int, str]:
        """The wanted values walked past so far (text)."""
        return {tag: _text(value) for tag, value in self.walker.values.items()}

    def feed(self, data: Bytes) -> Bytes:
        """Walk the next fragment; returns what of it (and of earlier held-back bytes) to write.
        Raises :class:`Part10Error` at the first malformed header."""
        if self._inflater is not None:
            self._inflate(data)
            return data
        self.walker.feed(data)
        if self.dropped is not None:
            return data
        return self._strip(data)

    @property
    def skippable(self) -> int:
        """Bytes coming next that the walk passes over and :meth:`feed` would return unchanged, so a caller may
        write them without feeding them (then :meth:`skip`): 0 for a deflated data set (walked inflated) and
        while File Meta elements at the start may still be cut out."""
        if self._inflater is not None or self.dropped is None:
            return 0
        return self.walker.skippable

    def skip(self, count: int) -> None:
        """``count`` bytes (at most :attr:`skippable`) went to the file without being fed."""
        self.walker.skip(count)

    def finish(self) -> None:
        """The data set ended: raises :class:`Part10Error` unless it is whole (see the module docstring)."""
        if self._inflater is not None:
            if not self._inflater.eof:
                raise Truncated("the deflated data set ends before its compressed stream")
        self.walker.finish()
        if self.dropped is None:  # nothing but group 0002 elements (finish above proved them whole)
            self.dropped, self._pending = len(self._pending), bytearray()

    # ------------------------------------------------------------------------------------ internals

    def _strip(self, data: Bytes) -> Bytes:
        """Hold back the start of the data set until it is known where its group 0002 elements end.

        The common case costs two byte reads: a data set whose first tag's group (read in its byte order)
        is not 0002 has no File Meta element to leave out, as they could only come first."""
        meta = self._meta
        if meta is None:
            if not self._pending and len(data) >= 2:
                group = data[0] | data[1] << 8 if self.little else data[0] << 8 | data[1]
                if group != 0x0002:
                    self.dropped = 0
                    return data
            meta = self._meta = Walker(self._explicit, self.little, span=_META_SPAN, max_depth=0)
        meta.feed(data)
        if not meta.stopped:
            self._pending += data
            if len(self._pending) > MAX_META:
                raise Part10Error(f"File Meta elements (group 0002) longer than {MAX_META} bytes in the data set")
            return b""
        end = meta.stopped_at or 0
        self.dropped = end
        if self._pending:  # rare: the first fragment ended inside group 0002
            whole = bytes(self._pending) + bytes(data)
            self._pending = bytearray()
            return memoryview(whole)[end:]
        return data[end:] if end else data

    def _inflate(self, data: Bytes) -> None:
        inflater = self._inflater
        assert inflater is not None
        if inflater.eof:
            return  # bytes after the end of the compressed stream (padding): not part of the data set
        try:
            chunk = inflater.decompress(data, INFLATE_CHUNK)
            while True:
                self._walk_inflated(chunk)
                if not inflater.unconsumed_tail or inflater.eof:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK)
        except zlib.error as error:
            raise Part10Error(f"deflated data set does not inflate: {error}") from None

    def _walk_inflated(self, chunk: bytes) -> None:
        self.walker.feed(chunk)
        if self.dropped is None:
            if self._meta is None:
                self._meta = Walker(self._explicit, self.little, span=_META_SPAN, max_depth=0)
            meta = self._meta
            meta.feed(chunk)
            if meta.stopped or meta.offset:
                if meta.offset or meta.stopped_at:
                    raise Part10Error("File Meta elements (group 0002) in a deflated data set")
                self.dropped = 0


_WANTED: dict[frozenset[int], frozenset[int]] = {}


def _with_uids(wanted: frozenset[int]) -> frozenset[int]:
    """``UIDS | wanted``, made once per distinct ``wanted`` (one per listener) rather than per object."""
    both = _WANTED.get(wanted)
    if both is None:
        both = UIDS | wanted
        if len(_WANTED) < 64:
            _WANTED[wanted] = both
    return both


def _text(value: bytes) -> str:
    return value.decode("latin-1").rstrip("\0 ")
