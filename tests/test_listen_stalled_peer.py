"""Scenario H.49: a peer that stops reading while ``listen`` sends to it.

The peer floods C-ECHO-RQs and never reads a response, so the listener's socket send buffer fills and its
write blocks. With ``--network-timeout 1`` that association alone is aborted and closed; the listener keeps
serving everyone else. 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time

from helpers.procs import listen_server, run_dcmnet
from helpers.rawdicom import associate, echo_rq_bytes


def test_peer_that_stops_reading_is_cut_off_alone() -> None:
    with listen_server("--network-timeout", "1") as server:
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
            # Read nothing for a while: the listener's blocked write must time out (1 s) and it must drop
            # us. Only then drain what the kernel still holds for us, up to the end of the stream.
            time.sleep(3.0)
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
