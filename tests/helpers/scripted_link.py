"""A :class:`~dcmnet_cli.transport.channel.Driver` over no socket: its reads return scripted chunks in turn
(then the end of the stream), its writes are kept; for tests of the receive path cut at chosen bytes."""

from __future__ import annotations

from dcmnet_cli.dimse.commandset import C_STORE_RSP, decode
from dcmnet_cli.dimse.connection import DIMSEConnection
from dcmnet_cli.transport.channel import Driver
from dcmnet_cli.ul.framing import PDUReader
from dcmnet_cli.ul.pdu import decode_pdata


class ScriptedLink(Driver):
    """Reads return ``chunks`` in turn, written where the socket link writes them (``self._into``: the
    buffer, or after a carried tail when the subclass :attr:`carries`); writes are kept in ``sent``."""

    def __init__(self, conn: DIMSEConnection, chunks: list) -> None:
        super().__init__(conn, peer="127.0.0.1:104")
        self.chunks, self.sent = list(chunks), bytearray()

    def _read(self, wait: float | None) -> int:
        if not self.chunks:
            return 0
        chunk = self._next_chunk()
        assert len(chunk) <= len(self._into)
        self._into[:len(chunk)] = chunk
        return len(chunk)

    def _next_chunk(self) -> bytes:
        return bytes(self.chunks.pop(0))

    def _send(self, buffers: list) -> int:
        for piece in buffers:
            self.sent += bytes(piece)
        return sum(len(piece) for piece in buffers)

    def _close_link(self) -> None:
        pass

    def interrupt(self) -> None:
        pass


def store_answers(sent: bytes) -> list:
    """What the sender reads from ``sent``: (PDU type, None) per PDU, and for P-DATA (0x04) the C-STORE-RSPs it
    carries as [(Message ID being responded to, status, Affected SOP Instance UID), ...] (each a whole
    command in one PDV)."""
    reader = PDUReader()
    reader.feed(sent)
    out = []
    while (framed := reader.next_pdu()) is not None:
        kind, body = framed
        if kind == 0x04:
            pdvs = decode_pdata(memoryview(body)).pdvs
            assert all(p.control == 0x03 for p in pdvs)
            answers = [decode(bytes(p.data)) for p in pdvs]
            assert all(a.command_field == C_STORE_RSP for a in answers)
            out.append((kind, [(a.message_id_being_responded_to, a.status, a.affected_sop_instance_uid)
                               for a in answers]))
        else:
            out.append((kind, None))
    return out
