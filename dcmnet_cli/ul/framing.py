"""Cut a byte stream into PDUs (PS3.8 §9.3.1), whatever the chunking.

The 6-byte header is checked before any body byte is buffered: an unknown type, a length over the cap for
its type, or a RELEASE/ABORT/RJ whose length is not 4 is refused at once, so a hostile length never makes
us allocate or wait for bytes that will not come. Bodies are handed out as ``bytes`` copied once from the
receive buffer: one memcpy per PDU, and the buffer can then be compacted freely.
"""

from __future__ import annotations

from ..errors import AbortReason, PDUDecodeError
from .pdu import HEADER, PDUType

ASSOCIATE_CAP = 1 << 20
"""A-ASSOCIATE-RQ/AC bodies above 1 MiB are refused: 128 contexts × 38 syntaxes is ~350 KiB."""

UNLIMITED_PDATA_CAP = 64 << 20
"""When we advertise 0 (no limit) we still refuse P-DATA-TF bodies over 64 MiB."""

_FIXED_FOUR = (PDUType.ASSOCIATE_RJ, PDUType.RELEASE_RQ, PDUType.RELEASE_RP, PDUType.ABORT)


class PDUReader:
    """Accumulates received bytes and yields ``(pdu_type, body)`` for each whole PDU."""

    __slots__ = ("_buf", "max_pdata")

    def __init__(self, max_pdata: int = 0) -> None:
        self._buf = bytearray()
        self.max_pdata = max_pdata or UNLIMITED_PDATA_CAP

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

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

    def next_pdu(self) -> tuple[int, bytes] | None:
        """Return the next whole PDU, or None if more bytes are needed."""
        buf = self._buf
        if len(buf) < 6:
            return None
        pdu_type, _, length = HEADER.unpack_from(buf)
        self.check_header(pdu_type, length)
        end = 6 + length
        if len(buf) < end:
            return None
        body = bytes(buf[6:end])
        del buf[:end]  # CPython trims a bytearray's head in O(1)
        return pdu_type, body

    def needed(self) -> int:
        """Bytes still missing for the PDU being received (at least 1), to size the next read."""
        buf = self._buf
        if len(buf) < 6:
            return 6 - len(buf)
        _, _, length = HEADER.unpack_from(buf)
        return max(1, 6 + length - len(buf))
