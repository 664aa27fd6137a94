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
            sock.settimeout(0.2)
            sent = 0
            started = time.monotonic()
            # Keep writing until the listener stops reading us (its own writes are stuck) or drops us.
            while time.monotonic() - started < 15:
                try:
                    sock.sendall(request * 64)
                    sent += 64
                except (socket.timeout, TimeoutError):
                    break
                except OSError:
                    break
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
