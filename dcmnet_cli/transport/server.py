"""The server: an accept loop (:mod:`.acceptor`) plus one worker thread per association, bounded, stoppable.

New connections wait in the acceptor's selector, holding no thread, until a whole A-ASSOCIATE-RQ is in
(a TLS handshake runs there too, non-blocking, bounded by ARTIM). Only then does a worker thread start:
it asks the handler to negotiate, then hands the established :class:`Channel` to the handler. Beyond
``max_associations`` a request is answered with A-ASSOCIATE-RJ (transient, presentation provider, local
limit exceeded) by the acceptor, so worker threads never exceed ``max_associations``.

With ``tls`` (an ``ssl.SSLContext`` from :func:`.tls.server_context`) a handshake failure (plain DICOM on
the TLS port, a TLS version below 1.2, a client certificate missing or not trusted) is logged as one
``tls-error`` event and the connection closed (PS3.15 Annex B: no association without a secure transport).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..errors import DcmnetError, LocalProtocolError
from ..dimse.connection import Aborted, AssociationRequested, DIMSEConnection
from ..ul.pdu import AssociateAC, AssociateRJ, AssociateRQ
from ..ul.statemachine import Role
from .acceptor import ACCEPT_BACKOFF, LOCAL_LIMIT_EXCEEDED, Acceptor
from .channel import Channel, Driver
from .notices import AssociationFailed, InternalFailure, ProtocolViolation, ServerNotice

__all__ = ["ACCEPT_BACKOFF", "LOCAL_LIMIT_EXCEEDED", "BackgroundServer", "Handler", "Server", "ServerStats",
           "answer_request", "reject_and_drain"]


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
    dropped: int = 0
    """Connections closed before a whole A-ASSOCIATE-RQ: too many pending, or ARTIM expired."""
    protocol_errors: int = 0
    """Associations or connections the peer broke (a PDU its state does not allow, garbage)."""


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
    max_pending: int = 4096
    """Connections that have not sent a whole A-ASSOCIATE-RQ yet, in total (the oldest is dropped first)."""
    max_pending_per_host: int = 1024
    """The same, per remote address."""
    proxy_protocol: bool = False
    """Every connection starts with a PROXY protocol v2 header (``listen --proxy-protocol``): its source
    address is the peer in every event, log line and hook; a connection without one is refused."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._channels: set[Channel] = set()
        self._acceptor: Acceptor | None = None
        self._loop_done = threading.Event()

    def bind(self) -> int:
        """Bind and listen; returns the port (useful with port 0)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    def close_listener(self) -> None:
        """Close the listening socket without serving (a forked worker's copy of its parent's)."""
        if self._sock is not None:
            self._sock.close()

    def serve_forever(self) -> None:
        """Accept until stop(); KeyboardInterrupt and SystemExit propagate to the caller."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        with self._lock:  # stop() either sees this acceptor (and waits for its loop) or came first
            if self._stopping.is_set():
                return
            acceptor = self._acceptor = Acceptor(self._sock, self, artim=self.artim_timeout, tls=self.tls,
                                                 max_pending=self.max_pending,
                                                 max_pending_per_host=self.max_pending_per_host,
                                                 proxy_protocol=self.proxy_protocol)
            self._loop_done.clear()
        try:
            acceptor.run(self._stopping)
        finally:
            self._loop_done.set()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight associations finish within ``grace`` seconds, then abort them."""
        import time

        with self._lock:
            self._stopping.set()
            acceptor = self._acceptor
        if acceptor is not None:
            acceptor.wake()
            self._loop_done.wait(5.0)  # the loop closes its pending connections on the way out
        if self._sock is not None:
            self._sock.close()
        deadline = time.monotonic() + grace
        for worker in self._worker_list():
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._channels)
        for channel in leftovers:
            # Wake the worker's blocked read (close() alone does not on Linux); the worker then sees the
            # connection end and cleans up itself: this thread never drives another thread's association.
            channel.interrupt()
        for worker in self._worker_list():
            worker.join(5.0)

    def _worker_list(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._workers)

    @property
    def active_threads(self) -> int:
        with self._lock:
            return len(self._workers)

    @property
    def pending(self) -> int:
        """Connections waiting in the acceptor (no thread) for their RQ, or to close after a rejection."""
        acceptor = self._acceptor
        return acceptor.pending if acceptor is not None else 0

    # ------------------------------------------------------------------ called by the acceptor

    def new_connection(self, peer: str) -> DIMSEConnection:
        dimse = DIMSEConnection(Role.ACCEPTOR, self.max_receive)
        if self.trace is not None:
            trace = self.trace
            dimse.association.trace = lambda direction, summary: trace(peer, direction, summary)
        return dimse

    def hand_over(self, sock: socket.socket, conn: DIMSEConnection, event: AssociationRequested,
                  peer: str | None = None) -> bool:
        """Start a worker for a connection whose A-ASSOCIATE-RQ is in; False when every slot is taken.
        ``peer``: the address events name (the PROXY protocol's source), else the socket's peer."""
        with self._lock:
            if self._stopping.is_set() or self.stats.active >= self.max_associations:
                return False
            self.stats.active += 1
            worker = threading.Thread(target=self._run, args=(sock, conn, event, peer), daemon=True,
                                      name=f"assoc-{sock.getpeername()[0]}" if sock.fileno() >= 0 else "assoc")
            self._workers.add(worker)
        worker.start()
        return True

    # ------------------------------------------------------------------ a worker

    def _run(self, sock: socket.socket, conn: DIMSEConnection, event: AssociationRequested,
             peer: str | None = None) -> None:
        channel: Channel | None = None
        try:
            channel = Channel(sock, conn, artim_timeout=self.artim_timeout, network_timeout=self.network_timeout)
            if peer is not None:
                channel.peer = peer
            with self._lock:
                self._channels.add(channel)
            self._serve(channel, event)
        except OSError:  # the peer went away between its RQ and this thread (getpeername, setsockopt)
            sock.close()
        finally:
            if channel is not None:
                channel.close()
            with self._lock:
                self.stats.active -= 1
                if channel is not None:
                    self._channels.discard(channel)
                self._workers.discard(threading.current_thread())

    def _serve(self, channel: Channel, event: AssociationRequested) -> None:
        try:
            if not answer_request(channel, self.handler, event.request):
                self.stats.rejected += 1
                return
            self.stats.associations += 1
            self.handler.serve(channel)
        except DcmnetError as error:
            fault = peer_fault(channel.conn) if isinstance(error, LocalProtocolError) else None
            if fault is not None:  # our answer came too late: the peer had already broken the protocol
                self.stats.protocol_errors += 1
                self.log(ProtocolViolation(channel.peer, fault))
            else:
                self.stats.errors += 1
                self.log(AssociationFailed(channel.peer, str(error)))
            channel.abort()
        except Exception as error:  # a bug in a handler must not kill the server
            self.stats.errors += 1
            self.log(InternalFailure(channel.peer, f"{type(error).__name__}: {error}"))
            channel.abort()


def peer_fault(conn: DIMSEConnection) -> str | None:
    """Why the peer ended the association, when it did (an A-ABORT it sent, or one its bad PDU made us
    send), including an abort still queued behind the event being answered; None when it did not."""
    if conn.ended is not None:
        return conn.ended.message
    try:
        while (event := conn.next_event()) is not None:
            if isinstance(event, Aborted):
                return event.message
    except DcmnetError:
        return None
    return None


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
