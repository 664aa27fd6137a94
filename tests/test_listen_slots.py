"""No peer can starve ``listen``: idle and slow (slowloris) connections wait in the accept loop's selector,
hold no thread, are closed by ARTIM, and a real client gets through meanwhile.

Every server binds a free port on 127.0.0.1 and is stopped by the test (helpers.procs).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from helpers.procs import LOOPBACK, find_dcmtk, listen_server, run_dcmnet, run_tool, serving, wait_until
from helpers.rawdicom import connect, make_rq, read_pdu, reject_of

from dcmnet_cli.services.scp.entity import ApplicationEntity
from dcmnet_cli.transport.notices import ConnectionsDropped
from dcmnet_cli.transport.server import Server
from dcmnet_cli.ul.negotiation import AcceptorPolicy


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settle(pid: int, target: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = _fds(pid)
        if count <= target or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


class Slowloris:
    """Connections sending an A-ASSOCIATE-RQ one byte at a time, every ``pause`` seconds."""

    def __init__(self, port: int, count: int, pause: float = 0.5) -> None:
        self.socks = [connect(port) for _ in range(count)]
        self.data = make_rq().encode()
        self.pause = pause
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for index in range(len(self.data)):
            for sock in self.socks:
                try:
                    sock.send(self.data[index:index + 1])
                except OSError:
                    pass
            if self.stop.wait(self.pause):
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def test_echo_gets_through_500_idle_and_20_slowloris():
    with listen_server("--verify-only", "--artim-timeout", "30") as srv:
        assert run_dcmnet("echo", LOOPBACK, str(srv.port))[0] == 0  # the accept loop is up (selector, wake pair)
        time.sleep(0.2)
        threads_before, fds_before = _threads(srv.pid), _fds(srv.pid)
        idle: list[socket.socket] = []
        slow = None
        try:
            idle = [connect(srv.port) for _ in range(500)]
            slow = Slowloris(srv.port, 20)
            # all accepted (a loaded machine may take more than a moment), and none dropped meanwhile
            assert wait_until(lambda: _fds(srv.pid) >= fds_before + 520, 20), (_fds(srv.pid), fds_before)
            started = time.monotonic()
            rc, out, err = run_dcmnet("echo", "-ta", "5", LOOPBACK, str(srv.port))
            elapsed = time.monotonic() - started
            assert rc == 0, (out, err)
            assert elapsed < 5.0, elapsed
            dcmtk, missing = find_dcmtk(("echoscu",))
            if not missing:
                started = time.monotonic()
                rc, out, err = run_tool([dcmtk["echoscu"], "-to", "5", LOOPBACK, str(srv.port)])
                assert rc == 0, (out, err)
                assert time.monotonic() - started < 5.0
            assert _threads(srv.pid) <= threads_before + 2, "a pending connection holds a thread"
        finally:
            for sock in idle:
                sock.close()
            if slow is not None:
                slow.close()
        assert _settle(srv.pid, fds_before) <= fds_before, "descriptors did not return to the baseline"
        assert srv.alive()
        assert "Traceback" not in srv.stderr()


def test_idle_connections_closed_by_artim_and_logged_once():
    with listen_server("--verify-only", "--artim-timeout", "1") as srv:
        socks = [connect(srv.port) for _ in range(30)]
        try:
            # every one closed by ARTIM (waited for: a loaded machine may run it late)
            assert wait_until(lambda: all(_state(sock) == "closed" for sock in socks), 20), \
                [_state(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert srv.wait_for_stderr(" closed: no whole A-ASSOCIATE-RQ"), srv.stderr()
        # rate-limited: far fewer lines than connections
        assert srv.stderr().count("dropped:") <= 3, srv.stderr()
        srv.proc.terminate()
        srv.proc.wait(10)
        assert "30 dropped before their association request" in srv.stderr(), srv.stderr()


def _state(sock: socket.socket) -> str:
    """"open" (nothing to read, no EOF), "closed" (EOF or reset) or "data", without waiting."""
    sock.settimeout(0.0)
    try:
        return "closed" if sock.recv(1) == b"" else "data"
    except BlockingIOError:
        return "open"
    except OSError:
        return "closed"


def _entity() -> ApplicationEntity:
    return ApplicationEntity(AcceptorPolicy(ae_title="ANY-SCP", contexts={"1.2.840.10008.1.1": ("1.2.840.10008.1.2",)}))


def test_pending_bounded_per_address_oldest_dropped_first():
    notices: list[object] = []
    server = Server(_entity(), host=LOOPBACK, port=0, artim_timeout=10.0, max_pending_per_host=5,
                    log=notices.append)
    port = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    socks = []
    try:
        socks = [connect(port) for _ in range(8)]
        # all 8 accepted and 3 of them closed (waited for: a loaded machine takes its time)
        assert wait_until(lambda: server.stats.dropped >= 3 and server.pending >= 5
                          and sum(_state(sock) == "closed" for sock in socks) >= 3, 20), \
            (server.stats.dropped, server.pending, [_state(sock) for sock in socks])
        states = [_state(sock) for sock in socks]
        assert states == ["closed"] * 3 + ["open"] * 5, states
        assert server.stats.dropped == 3
        assert server.pending == 5
        assert any(isinstance(n, ConnectionsDropped) and "more than 5 pending from 127.0.0.1" in n.detail
                   for n in notices), notices
    finally:
        for sock in socks:
            sock.close()
        server.stop(1.0)
        thread.join(5)


def test_limit_rejects_without_a_thread_while_slots_are_taken():
    """Over --max-associations: A-ASSOCIATE-RJ transient, local limit exceeded (2, 3, 2)."""
    with listen_server("--verify-only", "--max-associations", "1", "--artim-timeout", "2") as srv:
        first = connect(srv.port)
        try:
            first.sendall(make_rq().encode())
            assert type(read_pdu(first)).__name__ == "AssociateAC"
            second = connect(srv.port)
            with second:
                second.sendall(make_rq().encode())
                assert reject_of(read_pdu(second)) == (2, 3, 2)
        finally:
            first.close()
        assert srv.wait_for_stderr("rejected: local limit exceeded")


@pytest.mark.parametrize("tail", [b"", b"\x77\x00\x00\x00\x00\x04abcd"])
def test_request_and_bad_pdu_in_one_segment_is_a_peer_protocol_error(tail):
    """An RQ (or a release) followed by garbage in the same segment: the peer's protocol error, never ours."""
    from dcmnet_cli.ul.pdu import ReleaseRQ

    with listen_server("--verify-only", "--artim-timeout", "2") as srv:
        garbage = b"\x77\x00\x00\x00\x00\x04abcd"
        with connect(srv.port) as sock:
            sock.sendall(make_rq().encode() + garbage)
            sock.settimeout(2)
            try:
                sock.recv(100)
            except OSError:
                pass
        with connect(srv.port) as sock:
            sock.sendall(make_rq().encode())
            read_pdu(sock)
            sock.sendall(ReleaseRQ().encode() + garbage + tail)
            sock.settimeout(2)
            try:
                while sock.recv(100):
                    pass
            except OSError:
                pass
        assert srv.wait_for_stderr("protocol-error: unrecognised PDU type 0x77")
        srv.proc.terminate()
        srv.proc.wait(10)
        err = srv.stderr()
        assert "cannot occur in" not in err and "internal-error" not in err, err
        assert "2 protocol errors of peers" in err and "0 errors" in err, err


def test_in_process_server_thread_bound():
    """Library use (move --store-port's receiver): 200 idle connections, still one thread."""
    with serving(_entity()) as port:
        before = threading.active_count()
        socks = [connect(port) for _ in range(200)]
        try:
            time.sleep(0.3)
            assert threading.active_count() <= before + 1
        finally:
            for sock in socks:
                sock.close()
