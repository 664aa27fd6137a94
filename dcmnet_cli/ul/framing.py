"""Cut a byte stream into PDUs (PS3.8 §9.3.1), whatever the chunking.

The 6-byte header is checked before any body byte is buffered: an unknown type, a length over the cap for
its type, or a RELEASE/ABORT/RJ whose length is not 4 is refused at once, so a hostile length never makes
us allocate or wait for bytes that will not come.

Zero copy where possible: a PDU that lies whole inside the chunk just fed is handed out as a memoryview
of that chunk, valid until the next :meth:`PDUReader.feed` (the caller drains :meth:`next_pdu` to None
first, and the unconsumed tail is then copied aside). Only PDUs that straddle chunks are assembled, and
each of their bytes is copied once: a P-DATA-TF of up to :data:`ASSEMBLE_MAX` bytes goes straight into a
fresh buffer of its size as soon as its header is in, and is handed out as a memoryview of that buffer,
which nothing writes again (a buffer per PDU, never reused: zeroing 128 KiB costs ~3 µs, and a consumer
that keeps a view past the next feed still sees its bytes); other PDUs (and longer P-DATA-TF when nothing
streams them) grow a bytearray as their bytes arrive and are handed out as bytes.

Carrying (``carry_max``, what a socket driver asks for): a PDU that does not lie whole inside the chunk fed
and whose bytes there are at most ``carry_max`` is left in place (not yet streamed or assembled) rather than
copied aside; :meth:`PDUReader.tail` says how many bytes that is, and a driver that moves them to the start
of its buffer, reads after them and feeds the lot calls :meth:`PDUReader.drop_tail` first. The usual CT
case (a sender writes a P-DATA-TF's 12 header bytes, then its 128 KiB of data: two reads) is then whole
inside one chunk and handed out as a view, never assembled. A driver that does not carry loses nothing:
:meth:`PDUReader.feed` keeps an unread tail as before.

Streaming (``stream_above=N``, what the association uses): a P-DATA-TF longer than N bytes that does not
lie whole inside one chunk is never assembled (shorter ones are, as above: one copy of at most N bytes). :meth:`PDUReader.next_pdu` then returns ``(PDATA_START, length)`` once, at
its header, followed by ``(PDV_PIECE, PDV)`` for each run of PDV bytes as soon as it is in: views of the
chunk fed, with the PDV's context ID and its message control header, except that a piece that does not
end its PDV has the "last" bit cleared and an even length (one odd byte is carried to the next chunk).
Held aside between chunks: at most N bytes (or 5 of a PDU header, 5 of a PDV header and 1 odd byte),
whatever the PDU length the peer declares. Every PDV length is checked against what is left of its PDU as soon
as its header is in, so the malformed cases :func:`~.pdu.decode_pdata` refuses are refused here too.
"""

from __future__ import annotations

from ..errors import AbortReason, PDUDecodeError
from .pdu import _PDV_HEADER, HEADER, PDV, PDUType

ASSOCIATE_CAP = 1 << 20
"""A-ASSOCIATE-RQ/AC bodies above 1 MiB are refused: 128 contexts × 38 syntaxes is ~130 KiB."""

UNLIMITED_PDATA_CAP = 64 << 20
"""When we advertise 0 (no limit) we still refuse P-DATA-TF bodies over 64 MiB."""

STREAM_ABOVE = 256 << 10
"""The association assembles a P-DATA-TF that straddles reads only up to this length (our default 128 KiB
PDUs and DCMTK's 16 KiB ones keep arriving as one event); longer ones are streamed."""

ASSEMBLE_MAX = STREAM_ABOVE + 6
"""A straddling P-DATA-TF up to this size (header included, and within the maximum we advertised) is
assembled in a buffer allocated for its declared length once its header is in: a peer that declares a
length and stops makes us hold at most this much. A longer one grows only as its bytes arrive."""

PDATA_START = -1
"""Pseudo PDU type: a streamed P-DATA-TF begins; the body is its declared length (an int)."""
PDV_PIECE = -2
"""Pseudo PDU type: a piece of a streamed P-DATA-TF's PDV; the body is a :class:`~.pdu.PDV`."""

_LAST = 0x02
_P_DATA_TF = PDUType.P_DATA_TF
_FIXED_FOUR = (PDUType.ASSOCIATE_RJ, PDUType.RELEASE_RQ, PDUType.RELEASE_RP, PDUType.ABORT)
_EMPTY = memoryview(b"")

Framed = tuple[int, "bytes | memoryview | int | PDV"]


class PDUReader:
    """Yields ``(pdu_type, body)`` for each whole PDU in the bytes fed so far (and streamed P-DATA pieces)."""

    __slots__ = ("_buf", "_view", "_pos", "max_pdata", "stream_above", "_pdu_left", "_pdv_left",
                 "_pdv_ctx", "_pdv_ctl", "_pdv_head", "_odd", "_pdu_len", "_asm", "_asm_fill", "_asm_need",
                 "carry_max", "streamed_last")

    def __init__(self, max_pdata: int = 0, *, stream_above: int | None = None) -> None:
        self._buf = bytearray()
        self._view = _EMPTY
        self._pos = 0
        self.max_pdata = max_pdata or UNLIMITED_PDATA_CAP
        self.stream_above = stream_above
        """Stream a straddling P-DATA-TF longer than this (None: never stream)."""
        self._pdu_left = 0  # body bytes of the streamed P-DATA-TF not yet read (0: not streaming)
        self._pdu_len = 0
        self._pdv_left = 0  # data bytes of the current PDV not yet read (0: at a PDV header)
        self._pdv_ctx = 0
        self._pdv_ctl = 0
        self._pdv_head = bytearray()  # a PDV header split between chunks (< 6 bytes)
        self._odd: bytes | None = None  # one byte of a PDV held back to keep non-final pieces even
        self._asm = _EMPTY  # the straddling P-DATA-TF being assembled (header included), when _asm_need
        self._asm_fill = 0
        self._asm_need = 0  # its total size (0: none)
        self.carry_max = 0
        """Leave a partial PDU of at most this many bytes in the chunk (0: never), see :meth:`tail`."""
        self.streamed_last = 0
        """The length of the last straddling P-DATA-TF if it was streamed, 0 if it was assembled (see :meth:`bulk`)."""

    def tail(self) -> int:
        """Bytes at the end of the chunk last fed that no PDU has taken (a PDU's first bytes, left in place
        when :attr:`carry_max` allows, once :meth:`next_pdu` returned None)."""
        return len(self._view) - self._pos

    def drop_tail(self) -> None:
        """Forget :meth:`tail`'s bytes: the caller feeds them again at the start of its next chunk."""
        self._pos = len(self._view)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos < len(self._view):
            self._buf += self._view[self._pos :]  # the caller did not drain: keep the tail safe
        self._view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._asm_fill + len(self._view) - self._pos

    @property
    def streaming(self) -> bool:
        """True while the body of a streamed P-DATA-TF is being read."""
        return self._pdu_left > 0 or self._pdv_left != 0

    def check_header(self, pdu_type: int, length: int) -> None:
        """Refuse a PDU from its header alone (scenarios B.8, B.9, B.11)."""
        if pdu_type == PDUType.P_DATA_TF:
            if length > self.max_pdata:
                raise PDUDecodeError(
                    f"P-DATA-TF of {length} bytes exceeds our maximum of {self.max_pdata}",
                    AbortReason.INVALID_PDU_PARAMETER_VALUE,
                )
        elif pdu_type in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC):
            if length > ASSOCIATE_CAP:
                raise PDUDecodeError(f"A-ASSOCIATE PDU of {length} bytes exceeds the {ASSOCIATE_CAP}-byte cap")
        elif pdu_type in _FIXED_FOUR:
            if length != 4:
                raise PDUDecodeError(f"{PDUType.NAMES[pdu_type]} with length {length} (must be 4)")
        else:
            raise PDUDecodeError(f"unrecognised PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)

    def next_pdu(self) -> Framed | None:
        """Return the next whole PDU (or streamed piece), or None if more bytes are needed."""
        if self._pdu_left or self._pdv_left:
            return self._next_piece()
        if self._asm_need:
            return self._assemble()
        view, pos, buf = self._view, self._pos, self._buf
        if not buf:
            available = len(view) - pos
            if available >= 6:
                pdu_type, _, length = HEADER.unpack_from(view, pos)
                if pdu_type != _P_DATA_TF or length > self.max_pdata:  # a P-DATA-TF within bounds needs no call
                    self.check_header(pdu_type, length)
                end = pos + 6 + length
                if end <= len(view):
                    self._pos = end
                    return pdu_type, view[pos + 6 : end]
                if available <= self.carry_max:
                    return None  # left in place for the driver to carry (tail)
                if pdu_type == PDUType.P_DATA_TF:
                    if self._streams(length):
                        self._pos = pos + 6
                        return self._start_stream(length)
                    if length <= ASSEMBLE_MAX - 6:
                        self._start_assembly(6 + length)
                        return self._assemble()
            elif available <= self.carry_max:
                return None  # a split header: carried too
            buf += view[pos:]
            self._pos = len(view)
            return None
        return self._from_buffer()

    def _from_buffer(self) -> Framed | None:
        """Complete a PDU that straddles chunks, taking only the bytes it needs from the view."""
        buf = self._buf
        if len(buf) < 6:
            self._take(6 - len(buf))
            if len(buf) < 6:
                return None
        pdu_type, _, length = HEADER.unpack_from(buf)
        self.check_header(pdu_type, length)
        if pdu_type == PDUType.P_DATA_TF:
            if self._streams(length):
                buf.clear()
                return self._start_stream(length)
            if length <= ASSEMBLE_MAX - 6 and len(buf) <= 6 + length:
                self._start_assembly(6 + length)
                return self._assemble()
        self._take(6 + length - len(buf))
        if len(buf) < 6 + length:
            return None
        body = bytes(memoryview(buf)[6:])  # the temporary view dies before clear()
        buf.clear()
        return pdu_type, body

    def _start_assembly(self, need: int) -> None:
        """Assemble a straddling P-DATA-TF of ``need`` bytes in a buffer of its own, moving in what ``_buf``
        holds of it (its header's first bytes, if it was split)."""
        self.streamed_last = 0
        asm = self._asm = memoryview(bytearray(need))
        held = self._buf
        fill = len(held)
        if fill:
            asm[:fill] = held
            held.clear()
        self._asm_fill, self._asm_need = fill, need

    def _assemble(self) -> Framed | None:
        """Copy what the chunk holds of the P-DATA-TF being assembled (once); the PDU when whole."""
        fill, need, pos, view = self._asm_fill, self._asm_need, self._pos, self._view
        count = min(need - fill, len(view) - pos)
        if count:
            self._asm[fill : fill + count] = view[pos : pos + count]
            fill = self._asm_fill = fill + count
            self._pos = pos + count
        if fill < need:
            return None
        asm, self._asm = self._asm, _EMPTY  # the reader keeps no reference: the PDU's buffer lives as its views do
        self._asm_need = self._asm_fill = 0
        return PDUType.P_DATA_TF, asm[6:need]

    def _take(self, count: int) -> None:
        pos = self._pos
        end = min(len(self._view), pos + count)
        if end > pos:
            self._buf += self._view[pos:end]
            self._pos = end

    # ------------------------------------------------------------------ streamed P-DATA-TF

    def _streams(self, length: int) -> bool:
        above = self.stream_above
        return above is not None and length > above

    def _start_stream(self, length: int) -> Framed:
        if length == 0:
            raise PDUDecodeError("P-DATA-TF without any PDV")
        self._pdu_left = self._pdu_len = self.streamed_last = length
        self._pdv_left = 0
        self._pdv_head.clear()
        self._odd = None
        return PDATA_START, length

    def _next_piece(self) -> Framed | None:
        """The next piece of the streamed P-DATA-TF, or None when the chunk fed is used up."""
        while self._pdu_left or self._pdv_left:
            if self._pdv_left == 0:
                if not self._pdv_header():
                    return None
                continue
            piece = self._pdv_bytes()
            if piece is None:
                return None
            if piece is not True:
                return PDV_PIECE, piece
        return None

    def _pdv_header(self) -> bool:
        """Read (part of) the next PDV header; True once it is whole and checked."""
        head, view, pos = self._pdv_head, self._view, self._pos
        offset = self._pdu_len - self._pdu_left - len(head)  # where this PDV starts in the PDU body
        if self._pdu_left + len(head) < 6:
            raise PDUDecodeError(f"P-DATA-TF: truncated PDV header at offset {offset}")
        if not head and len(view) - pos >= 6:
            length, ctx, ctl = _PDV_HEADER.unpack_from(view, pos)
            self._pos = pos + 6
            self._pdu_left -= 6
        else:
            taken = view[pos : pos + 6 - len(head)]
            head += taken
            self._pos = pos + len(taken)
            self._pdu_left -= len(taken)
            if len(head) < 6:
                return False
            length, ctx, ctl = _PDV_HEADER.unpack_from(head)
            head.clear()
        return self._pdv_checked(length, ctx, ctl, offset, self._pdu_left + 2)

    def _pdv_checked(self, length: int, ctx: int, ctl: int, offset: int, room: int) -> bool:
        """``room``: the PDU bytes left after the PDV's 4-byte length field (what its length may cover)."""
        if length < 2 or length > room:
            raise PDUDecodeError(f"P-DATA-TF: PDV length {length} is invalid at offset {offset}")
        self._pdv_left, self._pdv_ctx, self._pdv_ctl = length - 2, ctx, ctl
        if length == 2:  # an empty PDV: hand it out at once
            self._pdv_left = -1
        return True

    def _pdv_bytes(self) -> PDV | bool | None:
        """The next piece of the current PDV's data; True when only internal state moved; None: need bytes."""
        left, view, pos = self._pdv_left, self._view, self._pos
        if left < 0:  # the empty PDV
            self._pdv_left = 0
            return PDV(self._pdv_ctx, self._pdv_ctl, _EMPTY)
        available = len(view) - pos
        if available == 0:
            return None
        odd = self._odd
        if odd is not None:
            self._odd = None
            return self._emit(memoryview(odd + bytes(view[pos : pos + 1])), 1)
        count = min(available, left)
        if count < left and count & 1:
            count -= 1
            if count == 0:
                self._odd = bytes(view[pos : pos + 1])
                self._consume(1)
                return True
        return self._emit(view[pos : pos + count], count)

    def _emit(self, data: bytes | memoryview, consumed: int) -> PDV:
        self._consume(consumed)
        control = self._pdv_ctl if self._pdv_left == 0 else self._pdv_ctl & ~_LAST
        return PDV(self._pdv_ctx, control, data)

    def _consume(self, count: int) -> None:
        self._pos += count
        self._pdv_left -= count
        self._pdu_left -= count

    # ------------------------------------------------------------------ bulk: bytes the driver moves itself

    def bulk(self) -> tuple[int, int] | None:
        """(context ID, byte count) when the streamed P-DATA-TF is inside a data-set PDV none of whose remaining
        data was fed yet: the driver may move up to that many of its next bytes past us (``splice`` into a
        file) and call :meth:`skip`. The count is even and leaves at least two bytes, so the PDV still ends
        through :meth:`next_pdu`, with its "last" bit. None otherwise (a command PDV, bytes of the chunk
        still unread, a header or odd byte held)."""
        left = self._pdv_left
        if left <= 2 or self._pdv_ctl & 0x01 or self._pos < len(self._view) or self._odd is not None \
                or self._pdv_head or self._buf:
            return None
        count = (left - 2) & ~1
        return (self._pdv_ctx, count) if count else None

    def bulk_read_size(self) -> int:
        """For a peer sending large (streamed) P-DATA-TF, with every byte fed taken: how many bytes to read so
        the read ends just after the next PDU's and PDV's headers (the rest of this PDU, and 12), after which
        :meth:`bulk` offers that PDU's data. 0 otherwise."""
        if not self.streamed_last or self._asm_need or self._buf or self._pos < len(self._view):
            return 0
        return self._pdu_left + 12

    def skip(self, count: int) -> None:
        """``count`` bytes of the current PDV (at most what :meth:`bulk` offered) were read by the driver. An
        odd count is fine (a wait ran out after an odd byte): the pieces after it are kept even as always."""
        if count < 0 or count > self._pdv_left - 2:
            raise ValueError(f"cannot skip {count} of {self._pdv_left} PDV bytes")
        self._pdv_left -= count
        self._pdu_left -= count

    def needed(self) -> int:
        """Bytes still missing for the PDU being received (at least 1), to size the next read."""
        if self._pdu_left:
            return self._pdu_left
        if self._asm_need:
            return max(1, self._asm_need - self._asm_fill - (len(self._view) - self._pos))
        head = bytes(self._buf[:6]) + bytes(self._view[self._pos : self._pos + 6])
        if len(head) < 6:
            return 6 - len(head)
        length: int
        _, _, length = HEADER.unpack_from(head)
        return max(1, 6 + length - self.buffered)
