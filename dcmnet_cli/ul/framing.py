"""Cut a byte stream into PDUs (PS3.8 §9.3.1), whatever the chunking.

The 6-byte header is checked before any body byte is buffered: an unknown type, a length over the cap for
its type, or a RELEASE/ABORT/RJ whose length is not 4 is refused at once, so a hostile length never makes
us allocate or wait for bytes that will not come.

Zero copy where possible: a PDU that lies whole inside the chunk just fed is handed out as a memoryview
of that chunk, valid until the next :meth:`PDUReader.feed` (the caller drains :meth:`next_pdu` to None
first, and the unconsumed tail is then copied aside). Only PDUs that straddle chunks are assembled in
an internal buffer.
"""

from __future__ import annotations

from ..errors import AbortReason, PDUDecodeError
from .pdu import HEADER, PDUType

ASSOCIATE_CAP = 1 << 20
"""A-ASSOCIATE-RQ/AC bodies above 1 MiB are refused: 128 contexts × 38 syntaxes is ~130 KiB."""

UNLIMITED_PDATA_CAP = 64 << 20
"""When we advertise 0 (no limit) we still refuse P-DATA-TF bodies over 64 MiB."""

_FIXED_FOUR = (PDUType.ASSOCIATE_RJ, PDUType.RELEASE_RQ, PDUType.RELEASE_RP, PDUType.ABORT)
_EMPTY = memoryview(b"")


class PDUReader:
    """Yields ``(pdu_type, body)`` for each whole PDU in the bytes fed so far."""

    __slots__ = ("_buf", "_view", "_pos", "max_pdata")

    def __init__(self, max_pdata: int = 0) -> None:
        self._buf = bytearray()
        self._view = _EMPTY
        self._pos = 0
        self.max_pdata = max_pdata or UNLIMITED_PDATA_CAP

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos < len(self._view):
            self._buf += self._view[self._pos :]  # the caller did not drain: keep the tail safe
        self._view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._view) - self._pos

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

    def next_pdu(self) -> tuple[int, bytes | memoryview] | None:
        """Return the next whole PDU, or None if more bytes are needed (the tail is then kept)."""
        view, pos, buf = self._view, self._pos, self._buf
        if not buf:
            available = len(view) - pos
            if available >= 6:
                pdu_type, _, length = HEADER.unpack_from(view, pos)
                self.check_header(pdu_type, length)
                end = pos + 6 + length
                if end <= len(view):
                    self._pos = end
                    return pdu_type, view[pos + 6 : end]
            buf += view[pos:]
            self._pos = len(view)
            return None
        return self._from_buffer()

    def _from_buffer(self) -> tuple[int, bytes] | None:
        """Complete a PDU that straddles chunks, taking only the bytes it needs from the view."""
        buf = self._buf
        if len(buf) < 6:
            self._take(6 - len(buf))
            if len(buf) < 6:
                return None
        pdu_type, _, length = HEADER.unpack_from(buf)
        self.check_header(pdu_type, length)
        self._take(6 + length - len(buf))
        if len(buf) < 6 + length:
            return None
        body = bytes(memoryview(buf)[6:])  # the temporary view dies before clear()
        buf.clear()
        return pdu_type, body

    def _take(self, count: int) -> None:
        pos = self._pos
        end = min(len(self._view), pos + count)
        if end > pos:
            self._buf += self._view[pos:end]
            self._pos = end

    def needed(self) -> int:
        """Bytes still missing for the PDU being received (at least 1), to size the next read."""
        head = bytes(self._buf[:6]) + bytes(self._view[self._pos : self._pos + 6])
        if len(head) < 6:
            return 6 - len(head)
        length: int
        _, _, length = HEADER.unpack_from(head)
        return max(1, 6 + length - self.buffered)
