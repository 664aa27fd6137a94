"""What a sleeping read costs on this machine: a 20-byte ping-pong between two processes over loopback,
each side sleeping in ``recv`` (as DCMTK and a dcmnet read do) against each side polling with
``MSG_DONTWAIT`` (what transport/busy_poll.py does for up to its budget). The difference per round trip
is two wake-ups; one request at a time pays it once per object on each side.

    .venv/bin/python bench/wakeup.py            # 20 000 round trips each way, 3 runs
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def _recv(sock: socket.socket, poll: bool) -> bytes:
    if not poll:
        return sock.recv(64)
    while True:
        try:
            return sock.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass


def round_trip_us(count: int, poll: bool) -> float:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        pid = os.fork()
        if pid == 0:  # the peer: answers each message
            try:
                peer = socket.create_connection(("127.0.0.1", port))
                peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(count):
                    _recv(peer, poll)
                    peer.sendall(b"r" * 20)
            finally:
                os._exit(0)
        sock, _ = listener.accept()
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(count):
            sock.sendall(b"q" * 20)
            _recv(sock, poll)
        elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    return elapsed / count * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for poll in (False, True):
        runs = [round_trip_us(args.count, poll) for _ in range(args.runs)]
        print(f"{'polling' if poll else 'sleeping'} reads: {min(runs):6.1f} µs per round trip "
              f"(runs: {', '.join(f'{r:.1f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
