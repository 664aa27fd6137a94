"""The accept loop of ``listen``: new connections wait in a selector, not in threads, until their RQ is in.

DESIGN.md "Transport": thousands of idle or slow connections must cost little and hold no thread. The
loop accepts without blocking, reads each new connection (and runs its TLS handshake, non-blocking) in
one ``selectors`` selector, and hands a connection to a worker thread only once a whole first PDU is in:

- an A-ASSOCIATE-RQ goes to :meth:`Owner.hand_over` (a worker negotiates and serves it); when every
  ``--max-associations`` slot is taken it is answered A-ASSOCIATE-RJ (transient, local limit exceeded)
  from here and kept, still without a thread, until the peer closes or ARTIM ends (Sta13);
- anything else (garbage, a P-DATA-TF, an A-ABORT) is answered by the sans-IO state machine from here
  (an A-ABORT, or nothing) and closed, logged as the peer's protocol error.

With ``proxy_protocol`` (``listen --proxy-protocol``) every connection must first send a PROXY protocol
v2 header (:mod:`.proxy_protocol`, read exactly, before any TLS handshake, within the same ARTIM
deadline): its source address replaces the socket's peer from then on (logs, events, hooks, the
per-address bounds); a connection without a valid one is closed and counted as dropped (logged like
the other drops).

Pending connections are bounded per remote address and in total (the oldest is dropped first), and so
are the bytes they buffer; ARTIM is enforced without polling: the selector's timeout is the nearest
deadline (pending connections are kept in arrival order, so the oldest has the nearest one). Drops are
counted and logged at most once per :data:`DROP_LOG_INTERVAL` (one :class:`ConnectionsDropped` per
reason, with the count since the last one).
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Protocol

from ..dimse.connection import Aborted, AssociationRequested, DIMSEConnection
from ..errors import PDUDecodeError
from ..ul.framing import ASSOCIATE_CAP, PDUReader
from ..ul.pdu import AssociateRJ
from .proxy_protocol import ProxyHeaderError, ProxyHeaderReader
from .ssl_loaded import ssl_classes
from .notices import ConnectionsDropped, InternalFailure, LimitRejected, ProtocolViolation, ServerNotice, TLSEstablished, TLSFailed

LOCAL_LIMIT_EXCEEDED = AssociateRJ(2, 3, 2)
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
ACCEPT_BACKOFF = 0.1
"""Seconds to wait before accepting again when out of descriptors or memory with nothing to drop."""
READ_SIZE = 64 * 1024
ACCEPT_BATCH = 64
"""Connections accepted per wake-up before the others get their turn."""
DROP_LOG_INTERVAL = 5.0
MAX_BUFFERED = 64 << 20
"""Bytes all pending connections may hold together before the oldest are dropped."""

_HANDSHAKE, _READING, _DRAINING, _PROXY = 0, 1, 2, 3


class Owner(Protocol):
    """What the acceptor needs of the server: counters, the log, the PDU trace and the worker slots."""

    @property
    def stats(self) -> Any: ...

    @property
    def log(self) -> Callable[[ServerNotice], None]: ...

    def new_connection(self, peer: str) -> DIMSEConnection: ...

    def hand_over(self, sock: socket.socket, conn: DIMSEConnection, event: AssociationRequested,
                  peer: str | None = None) -> bool: ...


class _Pending:
    __slots__ = ("sock", "host", "peer", "deadline", "stage", "reader", "data", "proxy")

    def __init__(self, sock: Any, host: str, peer: str, deadline: float, stage: int) -> None:
        self.sock, self.host, self.peer, self.deadline, self.stage = sock, host, peer, deadline, stage
        self.reader = PDUReader(max_pdata=1)  # a P-DATA-TF before the RQ is refused from its header
        self.data = bytearray()
        self.proxy: ProxyHeaderReader | None = None


class _DropLog:
    """Counts drops per reason; logs them at once, then at most once per interval (the count since)."""

    def __init__(self, log: Callable[[ServerNotice], None], interval: float = DROP_LOG_INTERVAL) -> None:
        self.log, self.interval = log, interval
        self.counts: dict[str, list[Any]] = {}
        self.last = -interval

    def note(self, reason: str, host: str) -> None:
        entry = self.counts.setdefault(reason, [0, set()])
        entry[0] += 1
        entry[1].add(host)
        self.flush()

    def due_in(self) -> float | None:
        """Seconds until held-back counts are due, None when nothing waits."""
        return max(0.0, self.last + self.interval - time.monotonic()) if self.counts else None

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.counts or (not force and now - self.last < self.interval):
            return
        self.last = now
        counts, self.counts = self.counts, {}
        for reason, (count, hosts) in counts.items():
            peer = next(iter(hosts)) if len(hosts) == 1 else f"{len(hosts)} addresses"
            try:
                self.log(ConnectionsDropped(peer, f"{count} connection{'' if count == 1 else 's'} closed: {reason}",
                                            count))
            except OSError:  # out of descriptors even for the log (stderr gone): the count still reaches the summary
                pass


class Acceptor:
    """Owns the listening socket's accept loop and every connection until its first PDU is whole."""

    def __init__(self, listener: socket.socket, owner: Owner, *, artim: float, tls: Any = None,
                 max_pending: int = 4096, max_pending_per_host: int = 1024, proxy_protocol: bool = False) -> None:
        self.listener, self.owner, self.artim, self.tls = listener, owner, artim, tls
        self.proxy_protocol = proxy_protocol
        self.max_pending, self.max_per_host = max(1, max_pending), max(1, max_pending_per_host)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # handshaking or reading, oldest first
        self._draining: OrderedDict[int, _Pending] = OrderedDict()  # rejected, waiting for the peer to close
        self._hosts: dict[str, OrderedDict[int, None]] = {}
        self._buffered = 0
        self.drops = _DropLog(owner.log)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._draining)

    def wake(self) -> None:
        """From any thread: end the current wait (the loop then checks its stop flag)."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def run(self, stopping: threading.Event) -> None:
        """Accept and read until ``stopping`` is set (and woken); every pending connection is closed then."""
        sel = self._selector
        self.listener.setblocking(False)
        sel.register(self.listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not stopping.is_set():
                for key, _mask in sel.select(self._timeout()):
                    if key.data is None:
                        self._accept(stopping)
                    elif key.data == "wake":
                        self._wake_r.recv(4096)
                    elif key.data.sock.fileno() in self._pending or key.data.sock.fileno() in self._draining:
                        self._ready(key.data)
                self._expire()
                self.drops.flush()
        finally:
            self._close_all()

    # ------------------------------------------------------------------ accepting

    def _accept(self, stopping: threading.Event) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if stopping.is_set() or error.errno not in OUT_OF_RESOURCES:
                    return
                if self._pending:  # make room: the oldest pending connection goes first
                    self._drop(next(iter(self._pending.values())), "out of file descriptors")
                    continue
                stopping.wait(ACCEPT_BACKOFF)  # nothing to drop: do not spin while the queue stays full
                return
            self.owner.stats.connections += 1
            self._admit(sock, addr[0], f"{addr[0]}:{addr[1]}")

    def _admit(self, sock: socket.socket, host: str, peer: str) -> None:
        same_host = self._hosts.get(host)
        if same_host is not None and len(same_host) >= self.max_per_host:
            self._drop(self._pending[next(iter(same_host))], f"more than {self.max_per_host} pending from {host}")
        if len(self._pending) >= self.max_pending:
            self._drop(next(iter(self._pending.values())), f"more than {self.max_pending} pending connections")
        sock.setblocking(False)
        stage = _READING
        if self.proxy_protocol:
            stage = _PROXY  # TLS (if any) starts once the header is in
        elif self.tls is not None:
            sock = self._wrap(sock, peer)
            if sock is None:
                return
            stage = _HANDSHAKE
        entry = _Pending(sock, host, peer, time.monotonic() + self.artim, stage)
        if stage == _PROXY:
            entry.proxy = ProxyHeaderReader()
        fd = sock.fileno()
        self._pending[fd] = entry
        self._hosts.setdefault(host, OrderedDict())[fd] = None
        self._selector.register(sock, selectors.EVENT_READ, entry)

    def _wrap(self, sock: Any, peer: str) -> Any:
        """``sock`` wrapped for a server-side TLS handshake (not started yet); None (closed, logged) on failure."""
        try:
            return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as error:
            sock.close()
            self.owner.log(TLSFailed(peer, f"TLS handshake failed: {error}"))
            return None

    # ------------------------------------------------------------------ the PROXY protocol header

    def _read_proxy(self, entry: _Pending) -> None:
        """Read exactly the PROXY v2 header (never a byte of what follows); then TLS or the RQ."""
        reader = entry.proxy
        assert reader is not None
        while reader.header is None:
            try:
                chunk = entry.sock.recv(reader.wanted)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._forget(entry)
                return
            if not chunk:
                if reader.data:
                    self._drop(entry, "closed within its PROXY protocol v2 header (--proxy-protocol)")
                else:
                    self._forget(entry)  # closed before sending anything (a port probe)
                return
            try:
                reader.feed(chunk)
            except ProxyHeaderError as error:
                self._drop(entry, f"no valid PROXY protocol v2 header (--proxy-protocol): {error}")
                return
        self._proxied(entry)

    def _proxied(self, entry: _Pending) -> None:
        """The header is whole: the source it names becomes the peer; then TLS, or the RQ."""
        assert entry.proxy is not None and entry.proxy.header is not None
        source = entry.proxy.header.source
        entry.proxy = None
        if source is not None:
            entry.peer = source
            self._rehost(entry, source.rsplit(":", 1)[0] if not source.startswith("unix:") else source)
        if self.tls is None:
            entry.stage = _READING
            self._read(entry)
            return
        self._selector.unregister(entry.sock)  # the TLS socket takes over the descriptor
        fd = entry.sock.fileno()
        wrapped = self._wrap(entry.sock, entry.peer)
        if wrapped is None:
            self._pending.pop(fd, None)
            self._unhost(entry, fd)
            return
        entry.sock, entry.stage = wrapped, _HANDSHAKE
        self._selector.register(wrapped, selectors.EVENT_READ, entry)

    def _rehost(self, entry: _Pending, host: str) -> None:
        fd = entry.sock.fileno()
        self._unhost(entry, fd)
        entry.host = host
        self._hosts.setdefault(host, OrderedDict())[fd] = None

    def _unhost(self, entry: _Pending, fd: int) -> None:
        same_host = self._hosts.get(entry.host)
        if same_host is not None:
            same_host.pop(fd, None)
            if not same_host:
                del self._hosts[entry.host]

    # ------------------------------------------------------------------ reading

    def _ready(self, entry: _Pending) -> None:
        if entry.stage == _PROXY:
            self._read_proxy(entry)
        elif entry.stage == _DRAINING:
            self._drain(entry)
        elif entry.stage == _HANDSHAKE:
            if self._handshake(entry):
                self._read(entry)  # the first bytes may have come with the handshake's last flight
        else:
            self._read(entry)

    def _handshake(self, entry: _Pending) -> bool:
        """One non-blocking step of the TLS handshake: True once it is done."""
        import ssl

        try:
            entry.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(entry.sock, selectors.EVENT_READ, entry)
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(entry.sock, selectors.EVENT_WRITE, entry)
            return False
        except (OSError, ValueError) as error:
            self.owner.stats.errors += 1
            self.owner.log(TLSFailed(entry.peer, _tls_failure(error)))
            self._forget(entry)
            return False
        from .tls import summary

        self._selector.modify(entry.sock, selectors.EVENT_READ, entry)
        entry.stage = _READING
        self.owner.log(TLSEstablished(entry.peer, summary(entry.sock)))
        return True

    def _read(self, entry: _Pending) -> None:
        while True:
            try:
                chunk = entry.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if not _would_block(error):
                    self._forget(entry)  # reset by the peer before its RQ: nothing to say
                return
            if not chunk:
                self._forget(entry)  # closed before a whole RQ (a port probe, a health check)
                return
            entry.data += chunk
            self._buffered += len(chunk)
            try:
                entry.reader.feed(chunk)
                whole = entry.reader.next_pdu() is not None
            except PDUDecodeError:
                whole = True  # the state machine below answers it (A-ABORT) and says why
            if whole:
                self._complete(entry)
                return
            self._bound_buffers()

    def _bound_buffers(self) -> None:
        while self._buffered > MAX_BUFFERED and self._pending:
            self._drop(next(iter(self._pending.values())), f"more than {MAX_BUFFERED >> 20} MiB buffered by pending connections")

    def _complete(self, entry: _Pending) -> None:
        """A whole first PDU (or one refused from its header): hand it over, or answer it from here."""
        self._unlist(entry)
        owner = self.owner
        conn = owner.new_connection(entry.peer)
        try:
            conn.connection_made()
            conn.receive_data(bytes(entry.data))
            event = conn.next_event()
        except Exception as error:  # a bug in the state machine must not end the accept loop
            owner.stats.errors += 1
            owner.log(InternalFailure(entry.peer, f"{type(error).__name__}: {error}"))
            _close(entry.sock)
            return
        entry.data = bytearray()
        if isinstance(event, AssociationRequested):
            event = _broken_after_request(conn, event)  # the RQ and a bad PDU in one segment
        if isinstance(event, AssociationRequested):
            entry.sock.setblocking(True)
            if owner.hand_over(entry.sock, conn, event, peer=entry.peer):
                return
            entry.sock.setblocking(False)
            owner.stats.rejected += 1
            owner.log(LimitRejected(entry.peer))
            conn.reject(LOCAL_LIMIT_EXCEEDED)
            _send_now(entry.sock, conn)
            self._start_draining(entry)
            return
        if isinstance(event, Aborted):
            owner.stats.protocol_errors += 1
            owner.log(ProtocolViolation(entry.peer, event.message))
        _send_now(entry.sock, conn)  # an A-ABORT, or the state machine's own A-ASSOCIATE-RJ (protocol version)
        if conn.close_requested or isinstance(event, Aborted):
            _close(entry.sock)
        else:
            self._start_draining(entry)

    def _start_draining(self, entry: _Pending) -> None:
        """Sta13 without a thread: read and discard until the peer closes, or ARTIM ends."""
        entry.stage = _DRAINING
        entry.deadline = time.monotonic() + self.artim
        fd = entry.sock.fileno()
        self._draining[fd] = entry
        self._selector.register(entry.sock, selectors.EVENT_READ, entry)

    def _drain(self, entry: _Pending) -> None:
        try:
            if entry.sock.recv(READ_SIZE):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._forget(entry)

    # ------------------------------------------------------------------ deadlines and drops

    def _timeout(self) -> float | None:
        """Seconds to the nearest ARTIM deadline (or held-back drop count); None: wait for I/O alone."""
        now = time.monotonic()
        due = [next(iter(queue.values())).deadline - now for queue in (self._pending, self._draining) if queue]
        held = self.drops.due_in()
        if held is not None:
            due.append(held)
        return max(0.0, min(due)) if due else None

    def _expire(self) -> None:
        now = time.monotonic()
        while self._draining:
            entry = next(iter(self._draining.values()))
            if entry.deadline > now:
                break
            self._forget(entry)
        while self._pending:
            entry = next(iter(self._pending.values()))
            if entry.deadline > now:
                break
            if entry.stage == _HANDSHAKE:
                self.owner.stats.errors += 1
                self.owner.log(TLSFailed(entry.peer, f"TLS handshake timed out after {self.artim:g} s"))
                self._forget(entry)
            elif entry.stage == _PROXY:
                self._drop(entry, f"no whole PROXY protocol v2 header within the ARTIM timeout ({self.artim:g} s)")
            else:
                self._drop(entry, f"no whole A-ASSOCIATE-RQ within the ARTIM timeout ({self.artim:g} s)")

    def _drop(self, entry: _Pending, reason: str) -> None:
        self.owner.stats.dropped += 1
        self.drops.note(reason, entry.host)
        self._forget(entry)

    def _unlist(self, entry: _Pending) -> None:
        fd = entry.sock.fileno()
        try:
            self._selector.unregister(entry.sock)
        except (KeyError, ValueError):
            pass
        if self._pending.pop(fd, None) is not None:
            self._buffered -= len(entry.data)
            self._unhost(entry, fd)
        self._draining.pop(fd, None)

    def _forget(self, entry: _Pending) -> None:
        self._unlist(entry)
        _close(entry.sock)

    def _close_all(self) -> None:
        for queue in (self._pending, self._draining):
            for entry in list(queue.values()):
                self._forget(entry)
        self.drops.flush(force=True)
        self._selector.close()
        _close(self._wake_r)
        _close(self._wake_w)


def _broken_after_request(conn: DIMSEConnection, event: AssociationRequested) -> Any:
    """``event``, or the Aborted that bytes sent behind the RQ (before any answer) caused."""
    try:
        later = conn.next_event()
    except Exception:  # noqa: BLE001 - judged by the state machine below, as for any abort
        return event
    return later if isinstance(later, Aborted) else event


def _send_now(sock: Any, conn: DIMSEConnection) -> None:
    """Best effort, without blocking: a few bytes (an A-ABORT or A-ASSOCIATE-RJ) fit any socket buffer."""
    try:
        for piece in conn.data_to_send():
            if isinstance(piece, (bytes, bytearray, memoryview)):
                sock.send(piece)
    except OSError:
        pass


def _close(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _would_block(error: OSError) -> bool:
    return isinstance(error, ssl_classes("SSLWantReadError", "SSLWantWriteError"))


def _tls_failure(error: BaseException) -> str:
    if isinstance(error, ssl_classes("SSLError")):
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
        from .tls import _words, server_hint

        return f"TLS handshake failed: {_words(reason)}{server_hint(error)}"
    return f"TLS handshake failed: {getattr(error, 'strerror', None) or error or 'connection closed'}"


__all__ = ["Acceptor", "ASSOCIATE_CAP", "LOCAL_LIMIT_EXCEEDED", "OUT_OF_RESOURCES"]
