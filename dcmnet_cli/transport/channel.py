"""A blocking socket driving one sans-IO :class:`Association` and its DIMSE assembler.

The only place (with :mod:`.server` and :mod:`.client`) that touches sockets and clocks. Every wait has a
deadline the caller computes; ARTIM is folded into the same wait, so nothing ever polls. Reads go into one
preallocated buffer with ``recv_into``; writes gather many buffers per ``sendmsg`` call. Data set bytes
given as a :class:`~dcmnet_cli.dimse.fragment.FileRegion` go from the file to the socket with
``os.sendfile`` (no copy through user space); the PDU and PDV headers before each region are written
with ``MSG_MORE`` so they leave in the same TCP segments as the file bytes.

Over TLS (an ``ssl.SSLSocket``, see :mod:`.tls`) neither ``sendfile`` nor ``sendmsg`` exists: the
buffers of a batch are joined and written with ``sendall`` (TLS copies and encrypts them anyway), and
file regions are read with ``pread`` first.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import time
from collections import deque
from itertools import islice
from typing import Sequence, Union

from ..dimse.assembler import Assembler, CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from ..dimse.commandset import Message
from ..dimse.fragment import Dataset, FileRegion, Piece, fragment_message
from ..errors import AssociationAborted, InputError, RemoteProtocolError, TimeoutExpired
from ..ul.association import Aborted, Association, DataReceived
from ..ul.association import AssociationEvent as ULEvent
from ..ul.statemachine import State

RECV_SIZE = 1 << 20
"""One receive buffer per association. 1 MiB (not 256 KiB): most 128 KiB PDUs then arrive whole inside one
read and are handed on without a copy (bench/store.py, 2 x 105 MB into listen -od: 874 -> 1 180 MB/s). The
pages are touched only as far as reads fill them, so an idle or small-message association costs little."""
IOV_MAX = 512
BATCH_BYTES = 1 << 20
"""Gather up to this many bytes of whole PDUs into one sendmsg call."""

DimseEvent = Union[CommandReceived, DatasetFragment, InvalidCommand, MessageComplete]
ChannelEvent = Union[DimseEvent, ULEvent]


def send_all(sock: socket.socket, buffers: Sequence[Piece], *, use_sendfile: bool | None = None) -> int:
    """Write every buffer, many per syscall, coping with partial writes; returns bytes written.

    :class:`FileRegion` entries are sent from their file with ``os.sendfile`` (contiguous regions of one
    file merged into one call) when ``use_sendfile`` (default: a plain TCP/Unix socket on a system that
    has it), else read with ``pread`` and written like the rest. A region whose file ends early raises
    :class:`InputError`; the stream is then cut mid-PDU and the connection must be dropped, not used.
    """
    if _is_tls(sock):
        return _send_tls(sock, buffers)
    if not any(type(b) is FileRegion for b in buffers):
        return _sendmsg_all(sock, buffers, 0)  # type: ignore[arg-type]
    if use_sendfile is None:
        use_sendfile = _can_sendfile(sock)
    total = 0
    memory: list[bytes | bytearray | memoryview] = []
    index, count = 0, len(buffers)
    while index < count:
        piece = buffers[index]
        index += 1
        if type(piece) is not FileRegion:
            memory.append(piece)  # type: ignore[arg-type]
            continue
        region: FileRegion = piece  # type: ignore[assignment]
        fd, offset, length = region.fd, region.offset, region.length
        while index < count:  # merge the next regions while they continue this one
            nxt = buffers[index]
            if type(nxt) is not FileRegion or nxt.fd != fd or nxt.offset != offset + length:  # type: ignore[union-attr]
                break
            length += nxt.length  # type: ignore[union-attr]
            index += 1
        if not length:
            continue
        if use_sendfile:
            total += _sendmsg_all(sock, memory, _MSG_MORE)
            memory = []
            total += _sendfile_all(sock, fd, offset, length, region.name)
        else:
            memory.append(_pread_all(fd, offset, length, region.name))
    return total + _sendmsg_all(sock, memory, 0)


_MSG_MORE = getattr(socket, "MSG_MORE", 0)
SENDFILE_MAX = 1 << 30
"""Bytes asked of one ``sendfile`` call (Linux moves at most 0x7ffff000 per call anyway)."""
_CONNECTION_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ESHUTDOWN,
                                errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN})


def _is_tls(sock: socket.socket) -> bool:
    """An ``ssl.SSLSocket``, told without importing ``ssl`` (loaded already if such a socket exists)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def _send_tls(sock: socket.socket, buffers: Sequence[Piece]) -> int:
    """TLS sockets have no ``sendmsg``/``sendfile``: join up to BATCH_BYTES at a time and ``sendall``."""
    total = 0
    batch: list[bytes | bytearray | memoryview] = []
    size = 0
    for piece in buffers:
        if type(piece) is FileRegion:
            region: FileRegion = piece  # type: ignore[assignment]
            if not region.length:
                continue
            piece = _pread_all(region.fd, region.offset, region.length, region.name)
        if not len(piece):  # type: ignore[arg-type]
            continue
        batch.append(piece)  # type: ignore[arg-type]
        size += len(piece)  # type: ignore[arg-type]
        if size >= BATCH_BYTES:
            sock.sendall(b"".join(batch))
            total, batch, size = total + size, [], 0
    if batch:
        sock.sendall(batch[0] if len(batch) == 1 else b"".join(batch))
        total += size
    return total


def _can_sendfile(sock: socket.socket) -> bool:
    """``sendfile`` writes the descriptor directly: only for a plain socket (never a TLS wrapper)."""
    return hasattr(os, "sendfile") and type(sock) is socket.socket and sock.family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def _sendmsg_all(sock: socket.socket, buffers: Sequence[bytes | bytearray | memoryview], flags: int) -> int:
    views = deque(memoryview(b).cast("B") for b in buffers if len(b))
    total = 0
    while views:
        sent = sock.sendmsg(list(islice(views, IOV_MAX)), (), flags) if flags else sock.sendmsg(list(islice(views, IOV_MAX)))
        total += sent
        while sent:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.popleft()
            else:
                views[0] = first[sent:]
                sent = 0
    return total


def _sendfile_all(sock: socket.socket, fd: int, offset: int, length: int, name: str) -> int:
    """``length`` bytes of ``fd`` from ``offset`` to the socket; partial writes and EAGAIN handled.

    A socket with a timeout is non-blocking underneath: on EAGAIN wait (``poll``, no busy loop) until it
    is writable, at most the socket's timeout per wait, as ``sock.send`` would. Errors reading the file
    raise InputError; errors on the connection raise OSError as a failed ``send`` would.
    """
    out = sock.fileno()
    timeout = sock.gettimeout()
    done = 0
    while done < length:
        try:
            sent = os.sendfile(out, fd, offset + done, min(length - done, SENDFILE_MAX))
        except BlockingIOError:
            _wait_writable(out, timeout)
            continue
        except OSError as error:
            if error.errno in _CONNECTION_ERRNOS or error.errno == errno.EAGAIN:
                raise
            raise InputError(f"{name or f'fd {fd}'}: cannot read: {error.strerror or error}") from None
        if sent == 0:
            raise InputError(f"{name or f'fd {fd}'}: the file shrank while it was being sent "
                             f"({length - done} bytes missing)")
        done += sent
    return done


def _wait_writable(fd: int, timeout: float | None) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
        raise TimeoutError("timed out")


def _pread_all(fd: int, offset: int, length: int, name: str) -> bytes:
    """The region's bytes in memory (the fallback when the socket cannot take ``sendfile``)."""
    try:
        data = os.pread(fd, length, offset)
        while len(data) < length:  # pread is short only at the end of the file (or for huge reads)
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                raise InputError(f"{name or f'fd {fd}'}: the file shrank while it was being sent "
                                 f"({length - len(data)} bytes missing)")
            data += more
    except OSError as error:
        raise InputError(f"{name or f'fd {fd}'}: cannot read: {error.strerror or error}") from None
    return data


class Channel:
    """One association over one socket. Not thread-safe: one thread drives it."""

    def __init__(
        self,
        sock: socket.socket,
        assoc: Association,
        *,
        artim_timeout: float = 30.0,
        network_timeout: float | None = None,
        max_dataset_bytes: int | None = None,
    ) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.assoc = assoc
        self.artim_timeout = artim_timeout
        self.network_timeout = network_timeout
        self.peer = _peer_name(sock)
        self.closed = False
        self.tls_error: OSError | None = None
        """The TLS error (an alert from the peer) that ended the connection, if one did."""
        self._timeout: float | None = -1.0  # unknown: the first wait always sets it
        self.bytes_received = 0
        self.bytes_sent = 0
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._artim_seen = 0
        self._artim_deadline: float | None = None
        self._events: deque[ChannelEvent] = deque()
        self.assembler = Assembler(valid_context_ids=lambda cid: cid in assoc.contexts, max_dataset_bytes=max_dataset_bytes)
        self._message_id = 0
        self._sendfile = _can_sendfile(sock)

    # ------------------------------------------------------------------ sending

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def flush(self) -> None:
        """Send what the association queued; close the socket if it asked for it."""
        buffers = self.assoc.data_to_send()
        if buffers and not self.closed:
            self._write(buffers)
        if self.assoc.close_requested and not self.closed:
            self.close()

    def _write(self, buffers: list[Piece]) -> None:
        self._set_timeout(self.network_timeout)
        try:
            self.bytes_sent += send_all(self.sock, buffers, use_sendfile=self._sendfile)
        except InputError:
            # A file region ended early: a PDU is cut short on the wire, so not even an A-ABORT can
            # follow it. Drop the connection; the peer sees it closed mid-PDU (never a whole message).
            self.close()
            self.assoc.connection_lost()
            raise
        except (socket.timeout, TimeoutError):
            self.close()
            raise TimeoutExpired("the peer stopped reading: write timed out") from None
        except OSError as error:
            self._note_tls_error(error)
            self.close()
            self.assoc.connection_lost()
            raise AssociationAborted(f"connection lost while sending: {error.strerror or error}") from None

    def send_message(self, context_id: int, message: Message, dataset: Dataset = None) -> None:
        """Fragment and send one DIMSE message; dataset chunks must not be reused after being passed.

        ``dataset`` is bytes, a :class:`FileRegion`, or an iterable of either (chunks pulled lazily, so a
        generator may sleep between them to meter the rate). Raises :class:`InputError` if a region's
        file ends early; the connection is then closed (the message was cut mid-PDU).
        """
        self._raise_if_ended()
        batch: list[Piece] = []
        size = 0
        for pdu in fragment_message(context_id, message.encode(), dataset, self.assoc.peer_max_pdu):
            self.assoc.send_pdata(pdu)
            queued = self.assoc.data_to_send()
            batch.extend(queued)
            size += sum(len(b) for b in queued)
            if size >= BATCH_BYTES or len(batch) >= IOV_MAX:
                self._write(batch)
                batch, size = [], 0
        if batch:
            self._write(batch)

    def _raise_if_ended(self) -> None:
        """An association that already ended (an A-ABORT read together with the AC, or a close the user has
        not seen yet) raises what ended it (exit 6), not a LocalProtocolError from the state machine."""
        if not self.closed and self.assoc.state not in (State.STA1, State.STA13):
            return
        while (event := self.assoc.next_event()) is not None:
            self._route(event)
        aborted = next((e for e in self._events if isinstance(e, Aborted)), None)
        if aborted is not None:
            raise AssociationAborted(aborted.message, aborted.source, aborted.reason)
        raise AssociationAborted("the association ended before the message could be sent")

    # ------------------------------------------------------------------ receiving

    def next_event(self, timeout: float | None) -> ChannelEvent | None:
        """The next UL or DIMSE event; None once the connection is closed. Raises TimeoutExpired."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._events:
                return self._events.popleft()
            self.flush()
            event = self.assoc.next_event()
            if event is not None:
                self._route(event)
                continue
            if self.closed:
                return None
            self._receive(deadline)

    def _route(self, event: ULEvent) -> None:
        if not isinstance(event, DataReceived):
            self._events.append(event)
            return
        try:
            for pdv in event.pdata.pdvs:
                self._events.extend(self.assembler.receive_pdv(pdv.context_id, pdv.control, pdv.data))
        except RemoteProtocolError as error:
            self._events.clear()
            self.assoc.abort_for(error)

    def _receive(self, deadline: float | None) -> None:
        wait, artim = self._wait_time(deadline)
        self._set_timeout(wait)
        try:
            count = self.sock.recv_into(self._buf)
        except (socket.timeout, TimeoutError, BlockingIOError):
            # A wait of 0.0 (a deadline already due) puts the socket in non-blocking mode, where "no data
            # yet" is BlockingIOError: that is a timeout, not the peer closing the connection.
            self._receive_timed_out(artim)
            return
        except OSError as error:
            if _is_tls(self.sock):
                if _tls_would_block(error):  # a TLS socket's BlockingIOError (a wait of 0.0)
                    self._receive_timed_out(artim)
                    return
                self._note_tls_error(error)
            count = 0
        if count == 0:
            self.close()
            self.assoc.connection_lost()
            return
        self.bytes_received += count
        self.assoc.receive_data(self._view[:count])

    def _note_tls_error(self, error: OSError) -> None:
        """Keep a TLS alert (not a plain EOF) so the client can name it: a TLS 1.3 server refuses our
        certificate only after the handshake, with an alert instead of the A-ASSOCIATE-AC."""
        ssl = sys.modules.get("ssl")
        if ssl is not None and isinstance(error, ssl.SSLError) and not isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            self.tls_error = error

    def _receive_timed_out(self, artim: bool) -> None:
        if artim:
            self.assoc.artim_expired()  # AA-2: the association asks to close; flush() does it
            self.flush()
            return
        raise TimeoutExpired("timed out waiting for the peer") from None

    def _wait_time(self, deadline: float | None) -> tuple[float | None, bool]:
        """Seconds to block and whether ARTIM is what ends the wait."""
        now = time.monotonic()
        if self.assoc.artim_running:
            if self.assoc.artim_starts != self._artim_seen:
                self._artim_seen = self.assoc.artim_starts
                self._artim_deadline = now + self.artim_timeout
        else:
            self._artim_deadline = None
        limits = [(d, is_artim) for d, is_artim in ((deadline, False), (self._artim_deadline, True)) if d is not None]
        if not limits:
            return self.network_timeout, False
        end, is_artim = min(limits)
        return max(0.0, end - now), is_artim

    # ------------------------------------------------------------------ ending

    def _set_timeout(self, seconds: float | None) -> None:
        """settimeout costs two fcntl/ioctl calls; skip it when nothing changes (the common case)."""
        if seconds != self._timeout:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def interrupt(self) -> None:
        """From another thread: end the connection so a blocked read or write in the owner returns."""
        try:
            # The plain socket's shutdown even for TLS: SSLSocket.shutdown also drops its SSL object,
            # which the owner thread may be using at this very moment.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def abort(self, source: int = 0, reason: int = 0) -> None:
        """A-ABORT and close at once: after an abort nothing the peer says matters."""
        if not self.closed:
            self.assoc.abort(source, reason)
            try:
                self.flush()
            except (TimeoutExpired, AssociationAborted):
                pass
        self.close()


def _tls_would_block(error: OSError) -> bool:
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(error, (ssl.SSLWantReadError, ssl.SSLWantWriteError))


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


__all__ = ["Channel", "ChannelEvent", "Aborted", "FileRegion", "send_all"]
