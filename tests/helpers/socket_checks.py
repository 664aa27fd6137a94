"""Socket set-ups and checks several transport tests share."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .procs import LOOPBACK


@contextmanager
def connected_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server): two ends of one loopback TCP connection, both closed at the end."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


@contextmanager
def reader_that_never_reads() -> Iterator[socket.socket]:
    """A connected sender with a 4 KiB send buffer whose peer never reads: writes soon block."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        with socket.socket() as sender:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sender.connect(listener.getsockname())
            peer, _ = listener.accept()
            with peer:
                yield sender


def kept_shorter_timeout_waits_out_the_rest(chan, server: socket.socket, monkeypatch, channel_module) -> None:
    """A read times out at 0.2 s; a 5 s read then keeps that timeout (a wide slack), runs it out and waits
    the rest, returning the 4 bytes that arrive after 0.28 s."""
    # A wide slack keeps 0.2 for a 5 s wait: the data comes well after 0.2 s and long before 5 s, however
    # late a loaded machine runs the timer.
    monkeypatch.setattr(channel_module, "_slack", lambda seconds: seconds * 0.99)
    with pytest.raises(channel_module.LinkTimeout):
        chan._read(0.2)  # the timeout is now 0.2
    timer = threading.Timer(0.28, server.sendall, (b"late",))
    timer.start()
    try:
        started = time.monotonic()
        assert chan._read(5.0) == 4  # 0.2 is kept: it runs out first, then the rest of the wait
        assert time.monotonic() - started >= 0.22
    finally:
        timer.cancel()


def delayed_acks() -> int:
    """The kernel's count of ACKs it sent late (its delayed-ACK timer fired), for this network namespace
    (Linux: ``TcpExt: DelayedACKs`` in /proc/net/netstat). tests/test_nagle_peers.py says why."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["DelayedACKs"])
    raise AssertionError("no TcpExt DelayedACKs in /proc/net/netstat")
