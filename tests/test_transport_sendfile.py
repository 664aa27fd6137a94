"""``send_all`` with :class:`FileRegion` buffers: ``sendfile`` from the file, headers with ``MSG_MORE``.

Every case goes over a real TCP connection on 127.0.0.1 with a reader thread, and compares the bytes the
reader got with the same buffers joined in memory: partial writes (a tiny send buffer and a slow reader,
with and without a socket timeout), merged contiguous regions, the ``pread`` fallback, the copy through a
scratch buffer (what a peer on the same machine gets), a file that ends early (InputError) and a reader
that never reads (timeout).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dcmnet_cli.dimse.fragment import FileRegion, fragment_message
from dcmnet_cli.errors import InputError
from dcmnet_cli.transport.writes import send_all

from helpers.procs import LOOPBACK
from helpers.socket_checks import reader_that_never_reads


def payload(size: int, seed: int = 7) -> bytes:
    block = bytes((i * 31 + seed) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


@contextmanager
def connection(*, sndbuf: int | None = None, delay: float = 0.0) -> Iterator[tuple[socket.socket, bytearray, threading.Event]]:
    """(sender socket, bytes received so far, event set once the reader saw EOF). ``delay`` slows the reader."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        sender = socket.socket()
        if sndbuf is not None:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sender.connect(listener.getsockname())
        peer, _ = listener.accept()
    got = bytearray()
    done = threading.Event()

    def read() -> None:
        with peer:
            if sndbuf is not None:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            while True:
                data = peer.recv(8192)
                if not data:
                    break
                got.extend(data)
                if delay:
                    time.sleep(delay)
        done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield sender, got, done
    finally:
        sender.close()
        thread.join(10)


def finish(sender: socket.socket, done: threading.Event) -> None:
    sender.shutdown(socket.SHUT_WR)
    assert done.wait(20)


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = payload(5 * 1024 * 1024 + 3)
    path = tmp_path / "region.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data
    finally:
        os.close(fd)


SCRATCH = {"sendfile": None, "pread": None, "copy": 65536, "copy-uneven": 4099}
"""Each way of sending file regions: the scratch size for the copy (an uneven one cuts regions oddly)."""


@pytest.mark.parametrize("way", list(SCRATCH))
def test_regions_and_headers_arrive_in_order(big_file: tuple[int, bytes], way: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fd, data = big_file
    region = FileRegion(fd, 0, len(data), "region.bin")
    buffers = [b"head", region[10:100_000], region[100_000:2_000_000], b"", b"mid", memoryview(b"dle"),
               region[3_000_000:], b"tail"]
    expected = b"head" + data[10:2_000_000] + b"middle" + data[3_000_000:] + b"tail"
    size = SCRATCH[way]
    scratch = bytearray(size) if size else None
    reads: list[int] = []
    real = os.preadv

    def counting(fd: int, views: list, offset: int) -> int:
        reads.append(sum(len(v) for v in views))
        return real(fd, views, offset)

    monkeypatch.setattr(os, "preadv", counting)
    with connection() as (sender, got, done):
        assert send_all(sender, buffers, use_sendfile=way == "sendfile", scratch=scratch) == len(expected)
        finish(sender, done)
    assert bytes(got) == expected
    if size:  # a piece at a time, never more than the scratch holds
        regions = (2_000_000 - 10, len(data) - 3_000_000)
        assert len(reads) == sum(-(-n // size) for n in regions) and max(reads) == size
    else:
        assert not reads


def test_copied_pieces_go_out_as_read_and_headers_with_the_first(big_file: tuple[int, bytes]) -> None:
    """The headers before a region leave in the same ``sendmsg`` as its first piece (no tiny segment of
    their own), and each piece is written before the next is read (one scratch buffer, reused). The
    region is larger than GATHER_REGION_MAX (smaller ones are read whole and gathered)."""
    fd, data = big_file
    events: list[tuple] = []

    class Recording(socket.socket):
        def sendmsg(self, buffers, *args):  # type: ignore[no-untyped-def,override]
            events.append(("send", [bytes(b) for b in buffers]))
            return super().sendmsg(buffers, *args)

    real = os.preadv

    def reading(fd: int, views: list, offset: int) -> int:
        events.append(("read", offset))
        return real(fd, views, offset)

    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        sender = Recording()
        sender.connect(listener.getsockname())
        peer, _ = listener.accept()
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(_read_to_eof(peer)), daemon=True)
        reader.start()
        try:
            os_preadv, os.preadv = os.preadv, reading
            try:
                send_all(sender, [b"P", b"V", FileRegion(fd, 0, 400_000)], use_sendfile=False,
                         scratch=bytearray(150_000))
            finally:
                os.preadv = os_preadv
            sender.shutdown(socket.SHUT_WR)
            reader.join(20)
        finally:
            sender.close()
            peer.close()
    assert bytes(got) == b"PV" + data[:400_000]
    assert [e[0] for e in events] == ["read", "send", "read", "send", "read", "send"]
    assert events[1][1] == [b"P", b"V", data[:150_000]]
    assert events[3][1] == [data[150_000:300_000]] and events[5][1] == [data[300_000:400_000]]


def _read_to_eof(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(65536):
        out += data
    return bytes(out)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_partial_writes_with_a_tiny_send_buffer(big_file: tuple[int, bytes], timeout: float | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 KiB send buffer and a reader that naps: sendfile moves a little at a time (EAGAIN in timeout mode)."""
    fd, data = big_file
    size = 600_000
    calls: list[int] = []
    real = os.sendfile

    def counting(out: int, in_fd: int, offset: int, count: int) -> int:
        try:
            sent = real(out, in_fd, offset, count)
        except BlockingIOError:
            calls.append(-1)
            raise
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counting)
    buffers = [b"H" * 10, FileRegion(fd, 5, size), b"T"]
    with connection(sndbuf=4096, delay=0.0005) as (sender, got, done):
        sender.settimeout(timeout)
        assert send_all(sender, buffers) == size + 11
        finish(sender, done)
    assert bytes(got) == b"H" * 10 + data[5:5 + size] + b"T"
    assert sum(c for c in calls if c > 0) == size
    if timeout is not None:  # non-blocking underneath: partial writes and EAGAIN waits
        assert len(calls) > 2 and -1 in calls, calls[:20]


def test_fragmented_message_from_a_file_matches_the_bytes_path(big_file: tuple[int, bytes]) -> None:
    """The same message fragmented from a FileRegion and from bytes puts the same bytes on the wire."""
    fd, data = big_file
    command = b"\x00" * 40
    chunks = list(FileRegion(fd, 0, len(data)).split(1 << 20))
    from_file = [piece for pdu in fragment_message(1, command, iter(chunks), 16384) for piece in pdu]
    from_memory = b"".join(b for pdu in fragment_message(1, command, data, 16384) for b in pdu)
    assert any(isinstance(p, FileRegion) for p in from_file)
    with connection() as (sender, got, done):
        send_all(sender, from_file)
        finish(sender, done)
    assert bytes(got) == from_memory


@pytest.mark.parametrize("way", list(SCRATCH))
def test_a_file_shorter_than_its_region_raises_input_error(tmp_path: Path, way: str) -> None:
    """A region larger than GATHER_REGION_MAX (so each way is taken), of which the file holds half."""
    path = tmp_path / "short.bin"
    path.write_bytes(payload(300_000))
    fd = os.open(path, os.O_RDONLY)
    scratch = bytearray(SCRATCH[way]) if SCRATCH[way] else None
    try:
        with connection() as (sender, _got, _done):
            with pytest.raises(InputError, match="^" + re.escape(f"{path}: the file shrank while it was being sent (300000 bytes missing)") + "$"):
                send_all(sender, [b"hdr", FileRegion(fd, 0, 600_000, str(path))], use_sendfile=way == "sendfile",
                         scratch=scratch)
    finally:
        os.close(fd)


def test_a_region_that_cannot_be_read_raises_input_error(tmp_path: Path) -> None:
    """A descriptor open for writing only: the copy's read fails with the file named, nothing is sent."""
    path = tmp_path / "write-only.bin"
    path.write_bytes(payload(300_000))
    fd = os.open(path, os.O_WRONLY)
    try:
        with connection() as (sender, got, done):
            with pytest.raises(InputError, match="^" + re.escape(f"{path}: cannot read: Bad file descriptor") + "$"):
                send_all(sender, [b"hdr", FileRegion(fd, 0, 300_000, str(path))], use_sendfile=False,
                         scratch=bytearray(65536))
            finish(sender, done)
        assert bytes(got) == b""
    finally:
        os.close(fd)


def test_a_reader_that_never_reads_times_out(big_file: tuple[int, bytes]) -> None:
    fd, data = big_file
    with reader_that_never_reads() as sender:
        sender.settimeout(0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            send_all(sender, [b"x", FileRegion(fd, 0, len(data))])
        assert time.monotonic() - started < 5


def test_file_region_slicing() -> None:
    region = FileRegion(3, 100, 50)
    assert len(region) == 50
    assert region[10:20] == FileRegion(3, 110, 10)
    assert region[40:] == FileRegion(3, 140, 10) and region[:] == region
    assert region[60:70] == FileRegion(3, 150, 0)
    assert list(region.split(20)) == [FileRegion(3, 100, 20), FileRegion(3, 120, 20), FileRegion(3, 140, 10)]
    with pytest.raises(TypeError):
        region[::2]
    with pytest.raises(ValueError):
        FileRegion(3, -1, 5)
