"""transport/sockets.py: clients connect without the ``socket`` module, and plain sockets of either kind are
told from TLS wrappers (what decides kernel deadlines, polling and ``sendfile``)."""

from __future__ import annotations

import socket
import ssl

import _socket
import pytest

from dcmnet_cli.transport import sockets
from dcmnet_cli.transport.channel import Channel
from dcmnet_cli.transport.client import connect_socket, requestor
from dcmnet_cli.transport.writes import can_sendfile, is_tls
from dcmnet_cli.errors import ConnectError
from dcmnet_cli.ul.negotiation import build_contexts, build_request
from store_helpers import closed_port

LOOPBACK = "127.0.0.1"


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(4)
    try:
        yield server
    finally:
        server.close()


def test_connect_gives_a_plain_c_socket_with_the_timeout(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    sock = sockets.connect(LOOPBACK, port, 2.5)
    try:
        peer, _ = listener.accept()
        assert type(sock) is _socket.socket
        assert sock.getpeername() == (LOOPBACK, port)
        assert sock.gettimeout() == 2.5
        sock.sendall(b"ping")
        assert peer.recv(4) == b"ping"
        peer.close()
    finally:
        sock.close()


def _addresses(*ports: int, asked: list | None = None):
    """A getaddrinfo that resolves any name to 127.0.0.1 at ``ports``, noting what it was asked."""
    def getaddrinfo(host, port, family=0, kind=0, proto=0, flags=0):
        if asked is not None:
            asked.append((host, port, family, kind))
        return [(_socket.AF_INET, _socket.SOCK_STREAM, 6, "", (LOOPBACK, p)) for p in ports]
    return getaddrinfo


def test_connect_tries_each_address_in_turn(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    port = listener.getsockname()[1]
    asked: list = []
    monkeypatch.setattr(sockets._socket, "getaddrinfo", _addresses(closed_port(), port, asked=asked))
    sock = sockets.connect(b"pacs.example", 104, 2.0)
    try:
        assert sock.getpeername() == (LOOPBACK, port)
    finally:
        sock.close()
    assert asked == [(b"pacs.example", 104, 0, _socket.SOCK_STREAM)]


def test_connect_raises_the_first_addresss_error_and_closes_every_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeSocket] = []

    class FakeSocket:
        def __init__(self, family: int, kind: int, proto: int) -> None:
            self.closed = False
            made.append(self)

        def settimeout(self, timeout: float | None) -> None:
            pass

        def connect(self, address: tuple[str, int]) -> None:
            raise (ConnectionRefusedError if address[1] == 1 else TimeoutError)(f"port {address[1]}")

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(sockets, "Socket", FakeSocket)
    monkeypatch.setattr(sockets._socket, "getaddrinfo", _addresses(1, 2))
    with pytest.raises(ConnectionRefusedError, match="port 1"):
        sockets.connect("pacs.example", 104, 2.0)
    assert len(made) == 2 and all(sock.closed for sock in made)
    monkeypatch.setattr(sockets._socket, "getaddrinfo", _addresses())
    with pytest.raises(OSError, match="^getaddrinfo returned no address$"):
        sockets.connect("pacs.example", 104, 2.0)


def test_connect_socket_turns_failures_into_one_line_connect_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    with pytest.raises(ConnectError, match=f"connection refused by {LOOPBACK}:{port}"):
        connect_socket(LOOPBACK, port, 2.0)

    def unresolvable(*args: object) -> list:
        raise _socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(sockets._socket, "getaddrinfo", unresolvable)
    with pytest.raises(ConnectError, match="cannot resolve host 'pacs.invalid': Name or service not known"):
        connect_socket("pacs.invalid", 104, 2.0)


def test_plain_sockets_of_both_kinds_and_not_their_wrappers() -> None:
    c_sock, py_sock = _socket.socket(), socket.socket()

    class Wrapped(socket.socket):
        pass

    wrapped = Wrapped()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_socket(socket.socket(), server_hostname="pacs.example",
                                                              do_handshake_on_connect=False)
    try:
        assert sockets.is_plain(c_sock) and sockets.is_plain(py_sock)
        assert not sockets.is_plain(wrapped) and not sockets.is_plain(tls)
        assert can_sendfile(c_sock) and can_sendfile(py_sock) and not can_sendfile(tls)
        assert not is_tls(c_sock) and not is_tls(py_sock) and is_tls(tls)
    finally:
        for sock in (c_sock, py_sock, wrapped, tls):
            sock.close()


def test_a_client_link_is_kept_blocking_with_kernel_deadlines(listener: socket.socket) -> None:
    """A Channel over a connected ``_socket.socket`` takes the plain-socket path: blocking (no Python
    timeout), its waits given to the kernel, its reads polled."""
    sock = sockets.connect(LOOPBACK, listener.getsockname()[1], 2.0)
    request = build_request("ME", "YOU", build_contexts([("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])]))
    channel = Channel(sock, requestor(request))
    try:
        assert channel._kernel
        assert sock.gettimeout() is None
    finally:
        channel.close()


@pytest.mark.parametrize("host", ["é" + "a" * 70 + ".example", "a..é"])
def test_a_host_name_idna_cannot_encode_is_a_connect_error(host: str) -> None:
    with pytest.raises(ConnectError, match=r"cannot resolve host .*: not a valid host name \(label empty or too long\)"):
        connect_socket(host, 104, 2.0)


def test_the_program_reports_an_unencodable_host_in_one_line_with_exit_4() -> None:
    import subprocess
    import sys

    from helpers.procs import base_env

    done = subprocess.run([sys.executable, "-m", "dcmnet_cli", "echo", "é" + "a" * 70 + ".example", "104"],
                          capture_output=True, text=True, timeout=60, env=base_env())
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a valid host name" in lines[0] and "Traceback" not in done.stderr


class _Addressed:
    """A connected socket's addresses, for the peers tests cannot reach (only 127.0.0.1 is used here)."""

    def __init__(self, family: int, peer: str, local: str) -> None:
        self.family, self._peer, self._local = family, peer, local

    def getpeername(self) -> tuple:
        return (self._peer, 104)

    def getsockname(self) -> tuple:
        return (self._local, 50000)


@pytest.mark.parametrize("family, peer, local, same", [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1", True),
    (socket.AF_INET, "127.3.2.1", "127.0.0.1", True),
    (socket.AF_INET, "10.1.2.3", "10.1.2.3", True),   # this machine's own address
    (socket.AF_INET, "10.1.2.4", "10.1.2.3", False),
    (socket.AF_INET, "128.0.0.1", "10.1.2.3", False),
    (socket.AF_INET, "12.7.0.1", "10.1.2.3", False),
    (socket.AF_INET6, "::1", "::1", True),
    (socket.AF_INET6, "::ffff:127.0.0.1", "::ffff:127.0.0.1", True),
    (socket.AF_INET6, "::ffff:10.1.2.3", "::ffff:10.1.2.3", True),
    (socket.AF_INET6, "::ffff:10.1.2.3", "::ffff:10.1.2.4", False),
    (socket.AF_INET6, "fd00::7", "fd00::7", True),
    (socket.AF_INET6, "fd00::7", "fd00::8", False),
    (socket.AF_INET6, "::10", "fd00::8", False),
])
def test_same_host_by_address(family: int, peer: str, local: str, same: bool) -> None:
    """What decides whether large file regions are copied (a peer on this machine) or sent with sendfile."""
    assert sockets.same_host(_Addressed(family, peer, local)) is same  # type: ignore[arg-type]


def test_same_host_of_real_sockets(listener: socket.socket) -> None:
    client = sockets.connect(LOOPBACK, listener.getsockname()[1], 2.0)
    peer, _ = listener.accept()
    a, b = socket.socketpair()
    unconnected = socket.socket()
    try:
        assert sockets.same_host(client) and sockets.same_host(peer) and sockets.same_host(a)
        assert not sockets.same_host(unconnected)  # no peer to read: taken for a remote one
    finally:
        for sock in (client, peer, a, b, unconnected):
            sock.close()
