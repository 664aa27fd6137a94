"""A raw-socket DICOM peer for hostile-input tests: scripted bytes out, whole PDUs in, every wait bounded.

PDUs are built with the package's own ``ul.pdu`` / ``ul.items`` classes (then patched by hand where a test
needs a malformed field); received bytes are framed here independently of ``ul.framing``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

from dcmnet_cli.dimse.commandset import VERIFICATION_SOP_CLASS, c_echo_rq, c_echo_rsp
from dcmnet_cli.dimse.commandset import decode as decode_command
from dcmnet_cli.dimse.fragment import fragment_message, pdu_bytes
from dcmnet_cli.ul.items import PresentationContextRQ, UserInformation
from dcmnet_cli.ul.negotiation import build_request
from dcmnet_cli.ul.pdu import (
    HEADER,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu_bytes,
)

from .procs import LOOPBACK

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MAX_PDU = 16384
ANSWER_TIMEOUT = 10.0
"""How long the helpers wait for an answer the peer owes: generous, since it only runs out when the answer
never comes (a loaded CI machine can stall a process for a second); never a measure of how fast it came."""


class PeerClosed(Exception):
    """The other side closed the connection in the middle of a PDU."""


def verification_context(context_id: int = 1) -> PresentationContextRQ:
    return PresentationContextRQ(context_id, VERIFICATION_SOP_CLASS, (IMPLICIT_LE,))


def make_rq(called: str = "ANY-SCP", calling: str = "RAWPEER", contexts=None, max_pdu: int = MAX_PDU,
            **fields) -> AssociateRQ:
    """A well-formed A-ASSOCIATE-RQ (Verification by default); ``fields`` override dataclass fields."""
    base = build_request(called, calling, contexts if contexts is not None else (verification_context(),), max_pdu)
    if not fields:
        return base
    values = {name: getattr(base, name) for name in
              ("called_ae", "calling_ae", "user_info", "application_context", "protocol_version", "presentation_contexts")}
    values.update(fields)
    return AssociateRQ(**values)


def with_user_info(rq: AssociateRQ, *sub_items) -> AssociateRQ:
    """The same request with extra user-information sub-items appended."""
    return make_rq(rq.called_ae, rq.calling_ae, rq.presentation_contexts,
                   user_info=UserInformation(rq.user_info.sub_items + tuple(sub_items)))


def raw_pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU from a type and a body, with an optionally lying length field."""
    return HEADER.pack(pdu_type, 0, len(body) if length is None else length) + body


def echo_rq_bytes(context_id: int = 1, message_id: int = 1) -> bytes:
    return b"".join(pdu_bytes(p) for p in fragment_message(context_id, c_echo_rq(message_id).encode(), None, MAX_PDU))


def echo_rsp_bytes(context_id: int, message_id: int, status: int = 0) -> bytes:
    return b"".join(pdu_bytes(p) for p in fragment_message(context_id, c_echo_rsp(message_id, status).encode(), None, MAX_PDU))


# --------------------------------------------------------------------------- sockets


def connect(port: int, timeout: float = ANSWER_TIMEOUT) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    chunks, got = [], 0
    while got < n:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(n - got)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            if got:
                raise PeerClosed(f"connection closed after {got} of {n} bytes")
            return b""
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_pdu_raw(sock: socket.socket, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
    """One whole PDU (header included), or None on EOF before it; raises TimeoutError past ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        header = _recv_exact(sock, 6, deadline)
        if not header:
            return None
        _, _, length = HEADER.unpack(header)
        if length > 1 << 24:
            raise AssertionError(f"peer sent a PDU header claiming {length} bytes")
        body = _recv_exact(sock, length, deadline) if length else b""
        if length and not body:
            raise PeerClosed("connection closed after a PDU header")
    except socket.timeout:
        raise TimeoutError(f"no whole PDU within {timeout:g} s") from None
    return header + body


def read_pdu(sock: socket.socket, timeout: float = ANSWER_TIMEOUT):
    """The next PDU decoded with the package codec, or None on EOF."""
    raw = read_pdu_raw(sock, timeout)
    return None if raw is None else decode_pdu_bytes(raw)


def wait_closed(sock: socket.socket, timeout: float = 3.0) -> tuple[float, list]:
    """Read PDUs until the peer closes; returns (seconds waited, PDUs received). Fails past ``timeout``."""
    start = time.monotonic()
    received = []
    while True:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            raise AssertionError(f"the peer did not close within {timeout:g} s (got {received})")
        try:
            pdu = read_pdu(sock, remaining)
        except TimeoutError:
            raise AssertionError(f"the peer did not close within {timeout:g} s (got {received})") from None
        except PeerClosed:
            return time.monotonic() - start, received
        if pdu is None:
            return time.monotonic() - start, received
        received.append(pdu)


def expect_abort_then_close(sock: socket.socket, timeout: float = ANSWER_TIMEOUT) -> Abort:
    """The peer sends exactly one A-ABORT and then closes (scenarios.md "Abort")."""
    _, pdus = wait_closed(sock, timeout)
    assert len(pdus) == 1 and isinstance(pdus[0], Abort), f"expected one A-ABORT then close, got {pdus}"
    return pdus[0]


def associate(port: int, rq: AssociateRQ | None = None, timeout: float = ANSWER_TIMEOUT) -> tuple[socket.socket, AssociateAC]:
    """Connect and negotiate; the answer must be an A-ASSOCIATE-AC."""
    sock = connect(port, timeout)
    try:
        sock.sendall((rq or make_rq()).encode())
        answer = read_pdu(sock, timeout)
        assert isinstance(answer, AssociateAC), f"expected A-ASSOCIATE-AC, got {answer}"
    except BaseException:
        sock.close()
        raise
    return sock, answer


def exchange_rq(port: int, data: bytes, timeout: float = ANSWER_TIMEOUT):
    """Send ``data`` on a new connection and return the first PDU answered (None on close)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_pdu(sock, timeout)


def read_command(sock: socket.socket, timeout: float = ANSWER_TIMEOUT):
    """Read P-DATA-TF PDUs until a whole command set arrived; returns the decoded DIMSE message."""
    fragments: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        pdu = read_pdu(sock, max(0.001, deadline - time.monotonic()))
        assert isinstance(pdu, PDataTF), f"expected P-DATA-TF, got {pdu}"
        for pdv in pdu.pdvs:
            assert pdv.is_command, "unexpected data set fragment"
            fragments.append(bytes(pdv.data))
            if pdv.is_last:
                return decode_command(b"".join(fragments))


def echo(sock: socket.socket, context_id: int = 1, message_id: int = 1, timeout: float = ANSWER_TIMEOUT,
         chunk: int | None = None) -> int:
    """One C-ECHO over an established raw association; returns the status. ``chunk`` dribbles the bytes."""
    send_chunked(sock, echo_rq_bytes(context_id, message_id), chunk)
    response = read_command(sock, timeout)
    assert response.message_id_being_responded_to == message_id
    return response.status


def release(sock: socket.socket, timeout: float = ANSWER_TIMEOUT) -> None:
    """A-RELEASE-RQ, expect A-RELEASE-RP, then close (and see the peer close too)."""
    try:
        sock.sendall(ReleaseRQ().encode())
        answer = read_pdu(sock, timeout)
        assert isinstance(answer, ReleaseRP), f"expected A-RELEASE-RP, got {answer}"
        sock.shutdown(socket.SHUT_WR)
        wait_closed(sock, timeout)
    finally:
        sock.close()


def send_chunked(sock: socket.socket, data: bytes, chunk: int | None = None, pause: float = 0.0) -> None:
    if not chunk:
        sock.sendall(data)
        return
    for offset in range(0, len(data), chunk):
        sock.sendall(data[offset : offset + chunk])
        if pause:
            time.sleep(pause)


def reject_of(pdu) -> tuple[int, int, int]:
    assert isinstance(pdu, AssociateRJ), f"expected A-ASSOCIATE-RJ, got {pdu}"
    return pdu.result, pdu.source, pdu.reason


# --------------------------------------------------------------------------- a scripted acceptor


class ScriptedPeer:
    """A one-shot acceptor on 127.0.0.1 running ``script(conn)`` in a thread; a context manager.

    On exit the listening socket and the connection are closed and the thread joined, whatever happened.
    Exceptions raised by the script are kept in ``errors`` for the test to assert on. When the block ends
    normally the script first gets ``grace`` seconds to finish by itself: the client process may exit
    before the script has read (and recorded) what it sent, and closing the connection under the script
    then loses that record (a flake seen in CI under load).
    """

    def __init__(self, script: Callable[[socket.socket], None], backlog: int = 4, grace: float = 5.0) -> None:
        self.script = script
        self.grace = grace
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(backlog)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="scripted-peer", daemon=True)

    def __enter__(self) -> "ScriptedPeer":
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self._thread.join(self.grace)
        self.stop.set()
        for conn in self._conns:
            _close_quietly(conn)
        _close_quietly(self.listener)
        self._thread.join(5)
        assert not self._thread.is_alive(), "scripted peer thread did not end"

    def _run(self) -> None:
        try:
            self.listener.settimeout(10)
            conn, _ = self.listener.accept()
        except OSError as error:
            if not self.stop.is_set():
                self.errors.append(error)
            return
        self._conns.append(conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.script(conn)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            if not self.stop.is_set():
                self.errors.append(error)
        finally:
            _close_quietly(conn)

    def drain_until_closed(self, conn: socket.socket, timeout: float = 5.0) -> None:
        """Read and ignore whatever comes until the other side closes, ``stop`` or the timeout."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            conn.settimeout(0.05)
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


def _close_quietly(sock: socket.socket) -> None:
    """shutdown() first: on Linux it wakes a thread blocked in accept() or recv() on this socket."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def pack_pdv_pdata(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF with one PDV, built by hand."""
    return raw_pdu(0x04, struct.pack(">IBB", len(data) + 2, context_id, control) + data)
