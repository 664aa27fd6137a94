"""The accept loop: one worker thread per association, bounded, stoppable without polling.

The loop blocks in ``accept()``; :meth:`Server.stop` wakes it by shutting the listening socket down.
Each worker runs ARTIM until a whole A-ASSOCIATE-RQ is in, asks the handler to negotiate, then hands
the established :class:`Channel` to the handler. Beyond ``max_associations`` a request is answered with
A-ASSOCIATE-RJ (transient, presentation provider, local limit exceeded); beyond that plus a small margin of
half-open connections, new connections are closed at once so threads stay bounded.

With ``tls`` (an ``ssl.SSLContext`` from :func:`.tls.server_context`) the worker, never the accept loop,
runs the TLS handshake on the accepted socket, bounded by ARTIM; a failure (plain DICOM on the TLS port,
a TLS version below 1.2, a client certificate missing or not trusted) is logged as one ``tls-error``
event and the connection closed (PS3.15 Annex B: no association without a secure transport).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..errors import DcmnetError
from ..dimse.connection import Aborted, AssociationRequested, DIMSEConnection
from ..ul.pdu import AssociateAC, AssociateRJ, AssociateRQ
from ..ul.statemachine import Role
from .channel import Channel, Driver, peer_name
from .notices import (
    AssociationFailed,
    ConnectionRefused,
    InternalFailure,
    LimitRejected,
    ProtocolViolation,
    ServerNotice,
    TLSEstablished,
    TLSFailed,
)

LOCAL_LIMIT_EXCEEDED = AssociateRJ(2, 3, 2)
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
ACCEPT_BACKOFF = 0.1
"""Seconds to wait before accepting again when out of descriptors or memory."""


class Handler(Protocol):
    def negotiate(self, request: AssociateRQ, peer: str) -> AssociateAC | AssociateRJ: ...

    def serve(self, channel: Driver) -> None: ...


@dataclass
class ServerStats:
    connections: int = 0
    associations: int = 0
    rejected: int = 0
    active: int = 0
    errors: int = 0


@dataclass
class Server:
    handler: Handler
    host: str = "0.0.0.0"
    port: int = 11112
    max_associations: int = 64
    artim_timeout: float = 30.0
    network_timeout: float | None = None
    max_receive: int = 0
    reuse_port: bool = False
    log: Callable[[ServerNotice], None] = lambda event: None
    trace: Callable[[str, str, str], None] | None = None
    """Called with (peer, "sent" | "received", PDU summary) for every PDU when set (--debug)."""
    stats: ServerStats = field(default_factory=ServerStats)
    tls: Any = None
    """An ``ssl.SSLContext`` (server side) to require TLS on every connection; None for plain TCP."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._channels: set[Channel] = set()
        self._handshaking: set[socket.socket] = set()

    @property
    def max_connections(self) -> int:
        """Threads allowed at once: the associations plus a margin for half-open or over-limit peers."""
        return self.max_associations + max(8, self.max_associations // 4)

    def bind(self) -> int:
        """Bind and listen; returns the port (useful with port 0)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self._sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    def serve_forever(self) -> None:
        """Accept until stop(); KeyboardInterrupt and SystemExit propagate to the caller."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, addr = self._sock.accept()
            except OSError as error:
                if self._stopping.is_set():
                    return
                if error.errno in _OUT_OF_RESOURCES:
                    # The connection stays queued, so accepting again at once would spin at 100 % CPU
                    # until a descriptor frees up; stop() still ends the wait at once.
                    self._stopping.wait(ACCEPT_BACKOFF)
                continue
            self.stats.connections += 1
            with self._lock:
                crowded = len(self._workers) >= self.max_connections
            if crowded:
                self.log(ConnectionRefused(f"{addr[0]}:{addr[1]}", "too many connections"))
                conn.close()
                continue
            worker = threading.Thread(target=self._run, args=(conn,), name=f"assoc-{addr[0]}:{addr[1]}", daemon=True)
            with self._lock:
                self._workers.add(worker)
            worker.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight associations finish within ``grace`` seconds, then abort them."""
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        deadline = time.monotonic() + grace
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._channels)
            shaking = list(self._handshaking)
        for conn in shaking:  # a TLS handshake still waiting for its peer: wake it too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for channel in leftovers:
            # Wake the worker's blocked read (close() alone does not on Linux); the worker then sees the
            # connection end and cleans up itself: this thread never drives another thread's association.
            channel.interrupt()
        for worker in list(self._workers):
            worker.join(5.0)

    @property
    def active_threads(self) -> int:
        with self._lock:
            return len(self._workers)

    def _run(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                wrapped = self._handshake(conn)
                if wrapped is None:
                    return
                conn = wrapped
            self._serve(conn)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _handshake(self, conn: socket.socket) -> socket.socket | None:
        """TLS server handshake bounded by ARTIM; None (logged, closed) when it fails."""
        from .tls import accept_tls

        peer = peer_name(conn)
        with self._lock:
            self._handshaking.add(conn)
        try:
            wrapped, detail = accept_tls(conn, self.tls, self.artim_timeout)
        finally:
            with self._lock:
                self._handshaking.discard(conn)
        if wrapped is None:
            self.stats.errors += 1
            self.log(TLSFailed(peer, detail))
            return None
        self.log(TLSEstablished(peer, detail))
        return wrapped

    def _serve(self, conn: socket.socket) -> None:
        dimse = DIMSEConnection(Role.ACCEPTOR, self.max_receive)
        dimse.connection_made()
        channel = Channel(conn, dimse, artim_timeout=self.artim_timeout, network_timeout=self.network_timeout)
        if self.trace is not None:
            trace, peer = self.trace, channel.peer
            dimse.association.trace = lambda direction, summary: trace(peer, direction, summary)
        counted = False
        try:
            with self._lock:
                self._channels.add(channel)
            event = channel.next_event(None)  # ARTIM bounds this wait
            if not isinstance(event, AssociationRequested):
                if isinstance(event, Aborted):
                    self.log(ProtocolViolation(channel.peer, event.message))
                return
            with self._lock:
                counted = self.stats.active < self.max_associations
                if counted:
                    self.stats.active += 1
            if not counted:
                self.stats.rejected += 1
                self.log(LimitRejected(channel.peer))
                reject_and_drain(channel, LOCAL_LIMIT_EXCEEDED)
                return
            if not answer_request(channel, self.handler, event.request):
                self.stats.rejected += 1
                return
            self.stats.associations += 1
            self.handler.serve(channel)
        except DcmnetError as error:
            self.stats.errors += 1
            self.log(AssociationFailed(channel.peer, str(error)))
            channel.abort()
        except Exception as error:  # a bug in a handler must not kill the server
            self.stats.errors += 1
            self.log(InternalFailure(channel.peer, f"{type(error).__name__}: {error}"))
            channel.abort()
        finally:
            channel.close()
            with self._lock:
                if counted:
                    self.stats.active -= 1
                self._channels.discard(channel)


def answer_request(channel: Driver, handler: Handler, request: AssociateRQ) -> bool:
    """Negotiate an A-ASSOCIATE-RQ: accept (True, the association is established) or reject and wait
    (ARTIM-bounded, Sta13) for the peer to close (False)."""
    answer = handler.negotiate(request, channel.peer)
    if isinstance(answer, AssociateRJ):
        reject_and_drain(channel, answer)
        return False
    channel.conn.accept(answer)
    channel.flush()
    return True


def reject_and_drain(channel: Driver, rj: AssociateRJ) -> None:
    channel.conn.reject(rj)
    channel.flush()
    while channel.next_event(None) is not None:
        pass


class BackgroundServer:
    """A :class:`Server` accepting in a thread of its own between :meth:`start` and :meth:`stop` (the C-MOVE
    destination inside ``move --store-port``): bound before the thread exists, joined when stopped."""

    def __init__(self, server: Server, grace: float = 5.0, name: str = "dcmnet-server") -> None:
        self.server, self.grace, self.name = server, grace, name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.server.bind()  # OSError (port in use) reaches the caller before any thread exists
        self._thread = threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop(self.grace)
        if self._thread is not None:
            self._thread.join(self.grace + 5.0)
            self._thread = None
