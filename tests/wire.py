"""Join two sans-IO associations by an in-memory wire (h11's tests/helpers.py idea)."""

from __future__ import annotations

from dcmnet_cli.ul.association import Association


def pump(a: Association, b: Association, chunk: int | None = None) -> None:
    """Move bytes both ways until neither side has anything to send; ``chunk`` splits deliveries."""
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = b"".join(bytes(x) for x in src.data_to_send())
            if not data:
                continue
            moved = True
            if chunk is None:
                dst.receive_data(data)
            else:
                for i in range(0, len(data), chunk):
                    dst.receive_data(data[i : i + chunk])


def events(assoc: Association) -> list:
    out = []
    while (event := assoc.next_event()) is not None:
        out.append(event)
    return out


def parse_pdata(body: memoryview) -> list[tuple[int, int, memoryview]]:
    """A P-DATA-TF body as (context ID, control, fragment) triples, through the one P-DATA parser (ul.pdu)."""
    from dcmnet_cli.ul.pdu import decode_pdata

    return [(p.context_id, p.control, p.data) for p in decode_pdata(memoryview(body)).pdvs]


def receive_pdata(assembler, body: memoryview) -> list:
    """Feed a whole P-DATA-TF body to an assembler; the events of all its PDVs in order."""
    events = []
    for context_id, control, data in parse_pdata(body):
        events.extend(assembler.receive_pdv(context_id, control, data))
    return events


# --------------------------------------------------------------------------- a whole SCU and SCP, no socket

import os as _os
import threading as _threading
from contextlib import contextmanager as _contextmanager


class Pipe:
    """One direction of an in-memory byte stream: writes never block, reads wait (with a deadline)."""

    def __init__(self) -> None:
        self._cond = _threading.Condition()
        self._data = bytearray()
        self._closed = False
        self.written = 0

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                raise BrokenPipeError("the other side closed")
            self._data += data
            self.written += len(data)
            self._cond.notify_all()

    def read_into(self, buf: bytearray, wait: float | None) -> int:
        from dcmnet_cli.transport.channel import LinkTimeout

        with self._cond:
            if not self._cond.wait_for(lambda: self._data or self._closed, wait):
                raise LinkTimeout()
            count = min(len(buf), len(self._data))
            buf[:count] = self._data[:count]
            del self._data[:count]
            return count

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _memory_driver_class():
    from dcmnet_cli.dimse.fragment import FileRegion
    from dcmnet_cli.transport.channel import Driver

    class MemoryDriver(Driver):
        """The socket driver's logic over two :class:`Pipe` objects (file regions read with pread)."""

        def __init__(self, conn, inbound: Pipe, outbound: Pipe, peer: str, **timeouts) -> None:
            super().__init__(conn, peer=peer, **timeouts)
            self.inbound, self.outbound = inbound, outbound

        def _read(self, wait):
            return self.inbound.read_into(self._buf, wait)

        def _send(self, buffers) -> int:
            total = 0
            for piece in buffers:
                if type(piece) is FileRegion:
                    piece = _os.pread(piece.fd, piece.length, piece.offset)
                self.outbound.write(bytes(piece))
                total += len(piece)
            return total

        def _close_link(self) -> None:
            self.outbound.close()

        def interrupt(self) -> None:
            self.inbound.close()
            self.outbound.close()

    return MemoryDriver


@_contextmanager
def memory_peer(entity, monkeypatch, *, network_timeout: float | None = 10.0):
    """Route every SCU association of the test to ``entity`` (an ApplicationEntity) over in-memory pipes:
    the SCU services and the SCP run exactly as over TCP, with no socket. Yields the acceptor threads'
    failures list (empty when every association ended cleanly)."""
    from dcmnet_cli.dimse.connection import AssociationRequested, DIMSEConnection, Role
    from dcmnet_cli.services.scu import association as scu_association
    from dcmnet_cli.transport.client import establish, requestor
    from dcmnet_cli.transport.server import answer_request

    MemoryDriver = _memory_driver_class()
    threads: list[_threading.Thread] = []
    failures: list[BaseException] = []

    def acceptor(inbound: Pipe, outbound: Pipe) -> None:
        conn = DIMSEConnection(Role.ACCEPTOR)
        conn.connection_made()
        driver = MemoryDriver(conn, inbound, outbound, "scu:1", network_timeout=network_timeout)
        try:
            event = driver.next_event(network_timeout)
            if isinstance(event, AssociationRequested) and answer_request(driver, entity, event.request):
                entity.serve(driver)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            failures.append(error)
        finally:
            driver.close()

    def open_memory(host, port, request, timeouts, max_receive=None, trace=None, tls=None):
        up, down = Pipe(), Pipe()
        thread = _threading.Thread(target=acceptor, args=(up, down), daemon=True)
        thread.start()
        threads.append(thread)
        driver = MemoryDriver(requestor(request, max_receive, trace), down, up, f"{host}:{port}",
                              network_timeout=timeouts.network)
        return establish(driver, timeouts.acse)

    monkeypatch.setattr(scu_association, "open_association", open_memory)
    try:
        yield failures
    finally:
        for thread in threads:
            thread.join(10)
        assert not any(t.is_alive() for t in threads), "an in-memory acceptor did not end"


BAD_PDATA_BODIES = [
    b"",  # no PDV at all
    b"\x00\x00\x00",  # truncated PDV header
    b"\x00\x00\x00\x01\x01",  # PDV length 1 (< 2)
    b"\x00\x00\x00\x00\x01\x03",  # PDV length 0
    b"\x00\x00\x00\x07\x01\x03abcd",  # PDV length past the end
    b"\xff\xff\xff\xff\x01\x03",  # PDV length near 2^32
    b"\x00\x00\x00\x02\x01\x03\x00\x00\x00\x09\x01\x03",  # second PDV does not add up
    b"\x00\x00\x00\x04\x01\x03ab\x00\x00",  # trailing bytes too short for a PDV header
]
"""P-DATA-TF bodies every P-DATA parser must refuse with reason 6 (scenario 28)."""
