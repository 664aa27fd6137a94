"""A :class:`~dcmnet_cli.transport.channel.Driver` over no socket: its reads return scripted chunks in turn
(then the end of the stream), its writes are kept; for tests of the receive path cut at chosen bytes."""

from __future__ import annotations

from dcmnet_cli.dimse.connection import DIMSEConnection
from dcmnet_cli.transport.channel import Driver


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
