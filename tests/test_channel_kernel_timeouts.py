"""The socket driver over a plain TCP socket (issue 13): the socket stays blocking and every deadline is
given to the kernel (SO_RCVTIMEO / SO_SNDTIMEO), so a read or a write is one syscall, no ``poll`` first.
The deadlines must stay exactly what they were with Python's socket timeouts:

- a read waits for its deadline and then times out (LinkTimeout), never sooner, never forever;
- a due deadline (a wait of 0) is a non-blocking read: data already there is returned, else a timeout;
- a kept SO_RCVTIMEO a little shorter than the wait is waited out, and steady waits do not reset it;
- a write to a peer that stopped reading times out, in memory or from a file (copied to a peer on this
  machine, ``sendfile`` to another), and the socket reads with its deadlines again afterwards;
- a batch the kernel takes only in part (more than a socket buffer, more buffers than IOV_MAX) arrives
  whole and in order; ``interrupt`` still wakes a blocked read.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from dcmnet_cli.dimse.connection import DIMSEConnection, Role
from dcmnet_cli.dimse.fragment import FileRegion
from dcmnet_cli.transport import channel as channel_module
from dcmnet_cli.transport.channel import Channel, LinkTimeout

from helpers.socket_checks import connected_pair, kept_shorter_timeout_waits_out_the_rest


@pytest.fixture
def pair():
    with connected_pair() as (client, server):
        chan = Channel(client, DIMSEConnection(Role.REQUESTOR))
        try:
            yield chan, server
        finally:
            chan.close()


def _rcvtimeo(sock: socket.socket) -> float:
    sec, usec = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("@ll")))
    return sec + usec / 1e6


def test_a_plain_socket_is_blocking_with_kernel_deadlines(pair) -> None:
    chan, server = pair
    assert chan.sock.gettimeout() is None  # no poll before each call
    server.sendall(b"abc")
    assert chan._read(59.99) == 3 and bytes(chan._buf[:3]) == b"abc"
    assert _rcvtimeo(chan.sock) == pytest.approx(59.99, abs=0.01)
    for wait in (59.98, 59.95):  # every deadline's remaining wait is a new float: within 2 %, kept
        server.sendall(b"x")
        assert chan._read(wait) == 1
    assert _rcvtimeo(chan.sock) == pytest.approx(59.99, abs=0.01)


def test_a_read_times_out_at_its_deadline(pair) -> None:
    chan, _server = pair
    started = time.monotonic()
    with pytest.raises(LinkTimeout):
        chan._read(0.3)
    assert 0.25 <= time.monotonic() - started < 3.0


def test_a_due_deadline_is_one_non_blocking_read(pair) -> None:
    chan, server = pair
    timer = threading.Timer(1.0, server.sendall, (b"late",))  # a blocking read would get this and return
    timer.start()
    try:
        started = time.monotonic()
        with pytest.raises(LinkTimeout):
            chan._read(0.0)
        assert time.monotonic() - started < 0.5
    finally:
        timer.cancel()
    server.sendall(b"now")
    deadline = time.monotonic() + 5
    while True:  # loopback delivery is immediate in practice; do not depend on it
        try:
            assert chan._read(0.0) == 3
            break
        except LinkTimeout:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_a_kept_shorter_timeout_waits_out_the_rest(pair, monkeypatch) -> None:
    chan, server = pair
    kept_shorter_timeout_waits_out_the_rest(chan, server, monkeypatch, channel_module)  # SO_RCVTIMEO 0.2
    assert _rcvtimeo(chan.sock) < 1.0


def test_no_deadline_blocks_until_interrupted(pair) -> None:
    chan, _server = pair
    threading.Timer(0.3, chan.interrupt).start()
    started = time.monotonic()
    assert chan._read(None) == 0  # woken by the shutdown: the connection's end
    assert 0.2 <= time.monotonic() - started < 5.0


def _stalled(chan: Channel) -> None:
    chan.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chan.network_timeout = 0.3


def test_a_write_to_a_peer_that_stopped_reading_times_out(pair) -> None:
    chan, _server = pair
    _stalled(chan)
    started = time.monotonic()
    with pytest.raises(LinkTimeout):
        chan._send([bytes(64 << 20)])
    assert time.monotonic() - started < 10.0


@pytest.fixture(params=[False, True], ids=["same host: copied", "another host: sendfile"])
def either_pair(request, monkeypatch):
    """:func:`pair`, its peer on this machine (large file regions copied) or taken for one on another
    (``sendfile``): tests reach only 127.0.0.1."""
    if request.param:
        monkeypatch.setattr(channel_module, "same_host", lambda sock: False)
    with connected_pair() as (client, server):
        chan = Channel(client, DIMSEConnection(Role.REQUESTOR))
        try:
            assert chan._sendfile is request.param
            yield chan, server
        finally:
            chan.close()


def test_a_file_region_to_a_stalled_peer_times_out_and_the_socket_blocks_again(either_pair, tmp_path) -> None:
    chan, server = either_pair
    path = tmp_path / "big"
    path.write_bytes(bytes(32 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        _stalled(chan)
        started = time.monotonic()
        with pytest.raises(LinkTimeout):
            chan._send([b"head", FileRegion(fd, 0, 32 << 20)])
        assert time.monotonic() - started < 10.0
    finally:
        os.close(fd)
    assert chan.sock.gettimeout() is None
    with pytest.raises(LinkTimeout):
        chan._read(0.2)


def test_small_file_regions_to_a_stalled_peer_time_out_on_the_blocking_socket(pair, tmp_path) -> None:
    """Regions of a few KB (small files, small PDUs) are read and gathered into ``sendmsg``: no socket
    timeout is set for them (two syscalls per object saved), and SO_SNDTIMEO still bounds the write."""
    chan, _server = pair
    path = tmp_path / "many"
    path.write_bytes(bytes(16 << 20))
    fd = os.open(path, os.O_RDONLY)
    set_to: list = []
    try:
        _stalled(chan)
        regions = [FileRegion(fd, at, 8192) for at in range(0, 16 << 20, 8192)]
        original = chan.sock.settimeout
        chan.sock = _Recording(chan.sock, set_to)
        started = time.monotonic()
        with pytest.raises(LinkTimeout):
            chan._send([b"head", *regions])
        assert time.monotonic() - started < 10.0
        assert set_to == [] and original is not None
    finally:
        os.close(fd)


class _Recording:
    """A socket whose settimeout calls are noted (a real socket's attributes cannot be patched)."""

    def __init__(self, sock: socket.socket, calls: list) -> None:
        self._sock, self._calls = sock, calls

    def settimeout(self, value) -> None:
        self._calls.append(value)
        self._sock.settimeout(value)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


@pytest.mark.parametrize("count", [10, 700])  # fewer and more buffers than IOV_MAX
def test_a_batch_taken_in_parts_arrives_whole_and_in_order(pair, count) -> None:
    chan, server = pair
    chan.network_timeout = 30.0
    pieces: list = [bytes([i & 0xFF]) * (1 + i % 7) for i in range(count)]
    pieces.append(os.urandom(4 << 20))  # more than the socket buffers hold
    if count > 512:  # (a view whose len() is not its size goes the general way too)
        pieces.append(memoryview(struct.pack("<4H", 1, 2, 3, 4)).cast("H"))  # len() 4, 8 bytes
    pieces.append(b"tail")
    expected = b"".join(bytes(p) for p in pieces)
    got = bytearray()

    def drain() -> None:
        while len(got) < len(expected):
            chunk = server.recv(1 << 16)
            if not chunk:
                return
            got.extend(chunk)
            time.sleep(0.001)  # a slow reader: the writer sees partial writes

    reader = threading.Thread(target=drain)
    reader.start()
    assert chan._send(pieces) == len(expected)
    reader.join(30)
    assert bytes(got) == expected


@pytest.mark.parametrize("split", [1, 4096 + 3])
def test_a_response_batch_in_memory_is_sent_whole(pair, split) -> None:
    chan, server = pair
    chan.network_timeout = 30.0
    data = os.urandom(9000)
    assert chan._send([data[:split], memoryview(data)[split:]]) == 9000
    got = b""
    while len(got) < 9000:
        got += server.recv(9000)
    assert got == data


def test_a_write_the_kernel_cuts_short_goes_on_from_where_it_stopped(pair) -> None:
    """A blocking ``sendmsg`` returns early only when SO_SNDTIMEO runs out after some progress: the reader
    pauses longer than the network timeout mid-batch, then reads on; everything arrives, in order."""
    chan, server = pair
    chan.network_timeout = 1.0
    pieces: list = [b"head", os.urandom(8 << 20), b"middle", os.urandom(1 << 20), b"tail"]
    expected = b"".join(pieces)
    got = bytearray()

    def drain() -> None:
        paused = False
        while len(got) < len(expected):
            if not paused and len(got) >= 1 << 20:
                paused = True
                time.sleep(1.4)
            chunk = server.recv(1 << 16)
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    assert chan._send(pieces) == len(expected)
    reader.join(30)
    assert bytes(got) == expected


def test_what_is_left_after_a_partial_write() -> None:
    pieces = [b"ab", memoryview(b"cdef"), b"", b"gh"]
    for sent in range(9):
        assert b"".join(bytes(p) for p in channel_module._after(pieces, sent)) == b"abcdefgh"[sent:]
