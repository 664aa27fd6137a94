"""Scenario H.49: a peer that stops reading while ``listen`` sends to it.

The peer floods C-ECHO-RQs and never reads a response, so the listener's socket send buffer fills and its
write blocks. While it is blocked, another client is served (checked while the listener still holds the
stalled connection, by its socket inode in /proc); after ``--network-timeout`` that association alone is
aborted and closed. 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import time

from helpers.procs import listen_server, run_dcmnet
from helpers.rawdicom import associate, echo_rq_bytes


NETWORK_TIMEOUT = 6.0  # long enough that an echo fits inside the stall even on a busy machine


def _held_by(pid: int, sock: socket.socket, server_port: int) -> bool:
    """Whether process ``pid`` still has the listener's end of ``sock``'s connection open."""
    ours = sock.getsockname()[1]
    wanted = f"0100007F:{server_port:04X} 0100007F:{ours:04X}"
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 9 and f"{fields[1]} {fields[2]}" == wanted:
                inode = fields[9]
    if inode is None or inode == "0":
        return False
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


def test_peer_that_stops_reading_is_cut_off_alone() -> None:
    with listen_server("--network-timeout", str(NETWORK_TIMEOUT)) as server:
        sock, _ac = associate(server.port)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            request = echo_rq_bytes()
            sock.settimeout(0.5)
            sent = 0
            stalled_since: float | None = None
            started = time.monotonic()
            # Keep writing until the listener has accepted nothing for 2 s (its own writes are stuck, so it
            # stopped reading us) or drops us. A slow listener on a busy machine is not a stall: any byte
            # accepted restarts the clock, so the test never stops pushing before the listener is blocked.
            burst = request * 64
            pending = memoryview(burst)
            while time.monotonic() - started < 60:
                try:
                    accepted = sock.send(pending)  # the rest of a burst first: PDUs stay whole on the wire
                except (socket.timeout, TimeoutError, BlockingIOError):
                    accepted = 0
                except OSError:
                    break
                if accepted:
                    sent += accepted
                    pending = pending[accepted:] or memoryview(burst)
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 2.0:
                    break
            sent //= len(request)
            assert sent > 64, "the listener never pushed back"
            # The listener is blocked writing to us: another client is served meanwhile, and we are
            # still held (the echo really happened during the stall, not after the cut-off).
            assert _held_by(server.pid, sock, server.port), "dropped before the check: " + server.stderr()[-2000:]
            rc, _out, err = run_dcmnet("echo", "127.0.0.1", str(server.port))
            assert rc == 0, err
            assert _held_by(server.pid, sock, server.port), "the echo was served only after the stall ended"
            # Read nothing: the listener's blocked write must time out and it must drop us (waited on, not
            # slept). Only then drain what the kernel still holds for us, up to the end of the stream.
            deadline = time.monotonic() + NETWORK_TIMEOUT + 10
            while _held_by(server.pid, sock, server.port):
                assert time.monotonic() < deadline, "the listener kept the stalled association open"
                time.sleep(0.05)
            deadline = time.monotonic() + 10
            closed = False
            while time.monotonic() < deadline:
                try:
                    sock.settimeout(1.0)
                    if not sock.recv(1 << 20):
                        closed = True
                        break
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    closed = True
                    break
            assert closed, "the listener kept the stalled association open: " + server.stderr()[-2000:]
        finally:
            sock.close()
        rc, out, err = run_dcmnet("echo", "127.0.0.1", str(server.port))
        assert rc == 0, err
        assert server.alive()
