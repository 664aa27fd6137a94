"""The driver: carries out one sans-IO :class:`DIMSEConnection` over a byte link, and owns every deadline.

It moves bytes and does nothing else: the DIMSE connection decides what to send and what happened.
Every wait has a deadline the caller computes; ARTIM is folded into the same wait, so nothing polls.
:class:`Driver` holds the logic; :class:`Channel` is the socket link (reads into one preallocated
buffer with ``recv_into``; writes gather many buffers per ``sendmsg``, file regions go by ``sendfile``,
see :mod:`.writes`). A plain TCP socket stays blocking and its deadlines go to the kernel (SO_RCVTIMEO,
SO_SNDTIMEO): a socket with a Python timeout is non-blocking underneath and CPython ``poll``s before every
``recv_into`` and ``sendmsg``, two syscalls and two GIL hand-offs per object more (issue 13); a TLS socket
keeps Python's timeout. Tests drive the same logic over an in-memory link (``tests/wire.py``), so every
SCU and SCP runs there without a socket.
"""

from __future__ import annotations

import struct
import time

from ..dimse.connection import Aborted, Command, DIMSEConnection, Event
from ..dimse.fragment import Dataset, FileRegion, Piece
from ..errors import AssociationAborted, InputError, TimeoutExpired
from ..ul.association import Association
from .ssl_loaded import ssl_classes
from .busy_poll import BUDGET, LINKS, BusyPoll
from .bulk import AVAILABLE as _SPLICE, LOST, SPLICE_MIN, TIMED_OUT, BulkSink, Splicer
from .sockets import (IPPROTO_TCP, MSG_DONTWAIT, SHUT_RDWR, SO_RCVTIMEO, SO_SNDTIMEO, SOL_SOCKET, TCP_NODELAY,
                      TCP_QUICKACK, Socket, is_plain, same_host)
from .writes import COPY_PIECE, can_sendfile, gathers, is_tls, send_all

RECV_SIZE = 1 << 20
"""One receive buffer per association. 1 MiB (not 256 KiB): most 128 KiB PDUs then arrive whole inside one
read and are handed on without a copy (bench/store.py, 2 x 105 MB into listen -od: 874 -> 1 180 MB/s). The
pages are touched only as far as reads fill them, so an idle or small-message association costs little."""

ChannelEvent = Event

CARRY_MAX = 16 << 10
"""A read that ends inside a PDU with at most this many of its bytes (a sender's 12-byte P-DATA-TF header
written before its 128 KiB of data, a DCMTK 16 KiB PDU cut by the read) has them moved to the start of
the buffer and the next read appended, so the PDU arrives whole and is handed on as a view, never
assembled (:mod:`..ul.framing`). Small, because a peer that sends one byte per read makes us move the
tail once per read."""

HOLD_BYTES = 256 * 1024
"""Most bytes of held (``flush=False``) messages before they are written anyway."""

HOLD_ANSWERS_MAX = 16
"""Most answers :meth:`Driver.send_answer` ever holds, whatever window the peer was granted."""


_QUICKACK = TCP_QUICKACK
"""Linux's TCP_QUICKACK, set before every blocking read of a socket link: the kernel then acknowledges what
arrives at once instead of up to ~40 ms later. A peer that keeps Nagle's algorithm on (DCMTK's default
since 3.6.2: storescu, storescp, findscu, dcmqrscp... without ``TCP_NODELAY=1``) writes a message in two
parts and holds the second until the first is acknowledged, so a delayed ACK cost one 40 ms stall per
message: storescu → listen and store → storescp went at ~23 files/s (tests/test_nagle_peers.py,
bench/store.py's "Nagle on" rows). The flag does not stick (the kernel returns to delaying ACKs after each
exchange), hence once per read; one setsockopt, no measurable cost with a peer that never waits. 0 where
the platform has no such option."""


class LinkTimeout(Exception):
    """A link's read or write found its wait over (internal to the drivers)."""


class Driver:
    """One association over one link. Not thread-safe: one thread drives it (``interrupt`` excepted)."""

    carries = False
    """True for a link whose :meth:`_read` fills ``self._into``: a read's unframed tail is then carried."""

    def __init__(self, conn: DIMSEConnection, *, peer: str = "?", artim_timeout: float = 30.0,
                 network_timeout: float | None = None) -> None:
        self.conn = conn
        self.artim_timeout = artim_timeout
        self.network_timeout = network_timeout
        self.peer = peer
        self.closed = False
        self.bytes_received = 0
        self.bytes_sent = 0
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._into = self._view
        """Where :meth:`_read` puts the bytes: the buffer, or (a link that :attr:`carries`) after a carried tail."""
        self._fed = 0  # bytes of the buffer fed last
        self._carried = 0  # bytes carried to the buffer's start, waiting for the read that follows them
        if self.carries:
            conn.carry_tails(CARRY_MAX)
        self.tls_error: OSError | None = None
        """The TLS error (an alert from the peer) that ended the connection, if one did (socket links)."""
        self._artim_seen = 0
        self._artim_deadline: float | None = None
        self._held: list[Piece] = []
        """PDUs of messages sent with ``flush=False``: written with the next flush, in one syscall."""
        self._answers = 0
        """Answers (:meth:`send_answer`) among the held PDUs."""
        self.hold_answers = 1
        """Answers :meth:`send_answer` may hold (1: none; see :meth:`hold_answers_for`)."""
        self.bulk_sink: BulkSink | None = None
        """Where a large data set's bulk may go without passing through events (:mod:`.bulk`); set by a serving session."""

    @property
    def assoc(self) -> Association:
        return self.conn.association

    @property
    def events_waiting(self) -> bool:
        """Bytes already received make more events (a pipelining peer's next request is here): what a
        handler asks before doing work that could wait for the peer's turn."""
        return self.conn.events_waiting

    # ------------------------------------------------------------------ the link (subclasses)

    def _read(self, wait: float | None) -> int:
        """Read into ``self._buf`` (``self._into`` for a link that :attr:`carries`) within ``wait`` seconds: bytes
        read, 0 at end of stream; LinkTimeout."""
        raise NotImplementedError

    def _send(self, buffers: list[Piece]) -> int:
        """Write every buffer; LinkTimeout when the peer stops reading, OSError when the link broke,
        InputError when a file region's file ended early."""
        raise NotImplementedError

    def _close_link(self) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """From another thread: end the link so a blocked read or write in the owner returns."""
        raise NotImplementedError

    def security(self) -> str:
        """' over TLSv1.3 CIPHER' when the link is encrypted, else ''."""
        return ""

    def last_read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the buffer's start as the last read left them (during association set-up,
        the peer's first answer: what a client shows when that answer is not DICOM)."""
        return bytes(self._view[:min(limit, self.bytes_received, len(self._buf))])

    # ------------------------------------------------------------------ sending

    def next_message_id(self) -> int:
        return self.conn.next_message_id()

    def flush(self) -> bool:
        """Write everything the connection has queued; close the link if the association asked for it.
        True when it wrote or closed anything (only then can the connection have new events: a write that
        lost the link), so :meth:`next_event` need not ask again when it did neither."""
        conn = self.conn
        acted = False
        if self._held and not self.closed:
            held, self._held = self._held, []
            self._answers = 0
            acted = True
            self._write(held + conn.data_to_send())
        while not self.closed:
            buffers = conn.data_to_send()
            if not buffers:
                break
            acted = True
            self._write(buffers)
        if conn.close_requested and not self.closed:
            self.close()
            acted = True
        return acted

    def send_message(self, context_id: int, message: Command, dataset: Dataset = None, flush: bool = True) -> None:
        """Send one DIMSE message (see :meth:`DIMSEConnection.send_message`). Raises InputError if a
        region's file ends early; the connection is then closed (the message was cut mid-PDU).

        ``flush=False`` (a data set in memory only, never a file region or a generator) holds the
        message's PDUs until the next flush, which :meth:`next_event` does before it waits: pipelined
        requests (store --async) then go out together, in one ``sendmsg``. At most :data:`HOLD_BYTES`
        are held."""
        if self.closed:
            self.conn.connection_lost()
        conn = self.conn
        conn.send_message(context_id, message, dataset)
        if flush:
            self.flush()
            return
        held = self._held
        while buffers := conn.data_to_send():
            held.extend(buffers)
        if sum(len(b) for b in held) >= HOLD_BYTES:  # type: ignore[arg-type]
            self.flush()

    def hold_answers_for(self, window: int) -> None:
        """Let :meth:`send_answer` hold up to half of ``window``, the requests the peer may keep outstanding
        (PS3.7 D.3.3.3): the peer refills one half while we serve the other. Holding them all makes both
        sides take turns (store --async 8 → listen -od, 2 cores, files/s vs none held: 4 held ~+14 %, all 8
        held -4 %). A window under 4 holds none."""
        self.hold_answers = max(1, min(window // 2, HOLD_ANSWERS_MAX))

    def send_answer(self, context_id: int, message: Command) -> None:
        """Send a response without a data set (a C-STORE-RSP), held while the peer's next PDUs are already
        here to be served, up to :attr:`hold_answers`: the answers to a pipelined window (store --async)
        then leave several to a ``sendmsg`` instead of one syscall and one wake-up of the peer each (~20 µs
        per response on loopback). Never held waiting for more bytes: with nothing more received to serve
        they are written at once, and :meth:`next_event` flushes before it reads."""
        self.send_message(context_id, message, None, flush=False)
        self._answers += 1
        if self._answers >= self.hold_answers or not self.conn.events_waiting:
            self.flush()

    def _write(self, buffers: list[Piece]) -> None:
        try:
            self.bytes_sent += self._send(buffers)
        except InputError:
            # A file region ended early: a PDU is cut short on the wire, so not even an A-ABORT can
            # follow it. Drop the connection; the peer sees it closed mid-PDU (never a whole message).
            self._lost()
            raise
        except LinkTimeout:
            self.close()
            raise TimeoutExpired("the peer stopped reading: write timed out") from None
        except OSError as error:
            self._link_error(error)
            self._lost()
            raise AssociationAborted(f"connection lost while sending: {error.strerror or error}") from None

    def _link_error(self, error: OSError) -> None:
        """A hook for links that keep an error's detail (TLS alerts)."""

    # ------------------------------------------------------------------ receiving

    def next_event(self, timeout: float | None) -> Event | None:
        """The next event; None once the connection is closed. Raises TimeoutExpired."""
        conn = self.conn
        event = conn.next_event()  # the common case: already decoded from the last read (no clock read)
        if event is not None:
            if type(event) is Aborted:
                self.flush()  # the A-ABORT a protocol error queued goes out before anyone closes
            return event
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Every way into this loop has just found no event waiting: only a flush that acted can add one.
            if self.flush():
                event = conn.next_event()  # flushing may have closed the link (an abort we sent)
                if event is not None:
                    return event
            if self.closed:
                return None
            self._receive(deadline)
            event = conn.next_event()
            if event is not None:
                if type(event) is Aborted:
                    self.flush()
                return event

    def _receive(self, deadline: float | None) -> None:
        headers = 0
        if self.bulk_sink is not None and not self._carried:
            if self._bulk(deadline):
                return
            headers = self._bulk_headers_next()
        start = self._carried or self._carry()
        if headers:  # up to the next PDU's and PDV's headers, then its data by _bulk
            self._into = self._view[:headers]
            self.conn.carry_tails(0)
        wait, artim = self._wait_time(deadline)
        try:
            try:
                count = self._read(wait)
            except LinkTimeout:  # a carried tail stays where it is, for the next read
                if artim:
                    self.conn.artim_expired()  # AA-2: the association asks to close; flush() does it
                    self.flush()
                    return
                raise TimeoutExpired("timed out waiting for the peer") from None
            self._carried = 0
            if count == 0:
                self._lost()
                return
            self.bytes_received += count
            self._fed = total = start + count
            self.conn.receive_data(self._view[:total])
        finally:
            if headers:
                self.conn.carry_tails(CARRY_MAX)

    def _bulk_headers_next(self) -> int:
        """The size of a read that stops after the next PDU's headers, so :meth:`_bulk` can move its data; 0: a usual read."""
        return 0

    def _bulk(self, deadline: float | None) -> bool:
        """Move bulk data-set bytes straight to the handler's file (:mod:`.bulk`) instead of reading them;
        True when that is what happened (bytes moved, or the link ended meanwhile). Links that cannot: False."""
        return False

    def _carry(self) -> int:
        """Move the last read's unframed tail (see :data:`CARRY_MAX`) to the buffer's start and point the next
        read after it; the number of bytes moved."""
        tail = self.conn.tail() if self.carries else 0
        fed = self._fed
        if tail == 0 or tail > CARRY_MAX or tail > fed:
            self._into = self._view
            return 0
        source = self._view[fed - tail:fed]
        self._buf[:tail] = source if fed - tail >= tail else bytes(source)  # overlapping: through a copy
        self.conn.drop_tail()
        self._into = self._view[tail:]
        self._carried = tail
        return tail

    def _wait_time(self, deadline: float | None) -> tuple[float | None, bool]:
        """Seconds to block and whether ARTIM is what ends the wait."""
        now = time.monotonic()
        conn = self.conn
        if conn.artim_running:
            if conn.artim_starts != self._artim_seen:
                self._artim_seen = conn.artim_starts
                self._artim_deadline = now + self.artim_timeout
        else:
            self._artim_deadline = None
        artim_at = self._artim_deadline
        if deadline is None and artim_at is None:
            return self.network_timeout, False
        if artim_at is None or (deadline is not None and deadline <= artim_at):
            return max(0.0, deadline - now), False  # type: ignore[operator]
        return max(0.0, artim_at - now), True

    # ------------------------------------------------------------------ ending

    def _lost(self) -> None:
        self.close()
        self.conn.connection_lost()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close_link()

    def abort(self, source: int = 0, reason: int = 0) -> None:
        """A-ABORT and close at once: after an abort nothing the peer says matters."""
        if not self.closed:
            self.conn.abort(source, reason)
            try:
                self.flush()
            except (TimeoutExpired, AssociationAborted):
                pass
        self.close()


class Channel(Driver):
    """A :class:`Driver` over a connected TCP (or TLS) socket."""

    carries = True

    def __init__(self, sock: Socket, conn: DIMSEConnection, *, artim_timeout: float = 30.0,
                 network_timeout: float | None = None) -> None:
        sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        super().__init__(conn, peer=peer_name(sock), artim_timeout=artim_timeout, network_timeout=network_timeout)
        self.sock = sock
        self._timeout: float | None = -1.0  # unknown: the first wait always sets it
        self._sendfile = can_sendfile(sock) and not same_host(sock)
        """``sendfile`` for large file regions; to a peer on this machine they are copied instead, through
        :attr:`_scratch` (see :func:`~.writes._copy_all`)."""
        self._scratch: bytearray | None = None
        self._tls = is_tls(sock)
        self._kernel = is_plain(sock)
        """A plain socket: kept blocking, its deadlines given to the kernel (SO_RCVTIMEO, SO_SNDTIMEO), see
        :meth:`_read_plain`. Any other (TLS) keeps Python's socket timeout."""
        self._send_timeout: float | None = -1.0
        self._poll = BusyPoll(BUDGET)
        self._splicer = Splicer() if self._kernel and _SPLICE else None
        if self._kernel:
            sock.settimeout(None)
            LINKS.opened()

    def _set_timeout(self, seconds: float | None) -> float:
        """Make the socket's timeout ``seconds``, or close enough: settimeout costs two fcntl/ioctl calls,
        and every wait on a deadline is a new float (59.9991 s, 59.9987 s...), so a timeout already within
        :func:`_slack` of it is kept. Returns how much earlier than ``seconds`` the socket may give up
        (0.0 when it waits at least that long; a read then waits again for the rest)."""
        current = self._timeout
        if seconds == current:
            return 0.0
        if seconds is not None and current is not None and seconds > 0 and current > 0 \
                and abs(seconds - current) <= _slack(seconds):
            return max(0.0, seconds - current)
        self.sock.settimeout(seconds)
        self._timeout = seconds
        return 0.0

    def _read(self, wait: float | None) -> int:
        if self._kernel:
            return self._read_plain(wait)
        early = self._set_timeout(wait)
        try:
            if _QUICKACK:
                self.sock.setsockopt(IPPROTO_TCP, _QUICKACK, 1)
            return self.sock.recv_into(self._into)
        except (TimeoutError, BlockingIOError):
            if early > 0:  # the kept timeout was a little shorter than this wait: wait out the rest
                return self._read(early)
            # A wait of 0.0 (a deadline already due) puts the socket in non-blocking mode, where "no data
            # yet" is BlockingIOError: that is a timeout, not the peer closing the connection.
            raise LinkTimeout() from None
        except OSError as error:
            if self._tls:
                if _tls_would_block(error):  # a TLS socket's BlockingIOError (a wait of 0.0)
                    raise LinkTimeout() from None
                self._link_error(error)
            return 0

    def _send(self, buffers: list[Piece]) -> int:
        if self._kernel:
            return self._send_plain(buffers)
        self._set_timeout(self.network_timeout)
        try:
            return send_all(self.sock, buffers, use_sendfile=self._sendfile)
        except TimeoutError:
            raise LinkTimeout() from None

    def _send_regions(self, buffers: list[Piece]) -> int:
        """A batch with file regions on the blocking socket. Small regions (a file of a few KB, or a batch
        of 16 KiB PDUs) are read and gathered into ``sendmsg`` (:func:`~.writes.send_all` with
        ``use_sendfile=False``), bounded by SO_SNDTIMEO like any write; so are large ones to a peer on this
        machine, copied through :attr:`_scratch`. Other large ones go by ``sendfile``, whose wait for a full
        socket buffer is a ``poll`` on the socket's Python timeout: set for that batch only."""
        sock = self.sock
        if gathers([piece for piece in buffers if type(piece) is FileRegion]):
            return send_all(sock, buffers, use_sendfile=False)
        if not self._sendfile:
            if self._scratch is None:
                self._scratch = bytearray(COPY_PIECE)
            return send_all(sock, buffers, use_sendfile=False, scratch=self._scratch)
        sock.settimeout(self.network_timeout)
        try:
            return send_all(sock, buffers, use_sendfile=True)
        finally:
            sock.settimeout(None)

    # ------------------------------------------------------------------ a plain socket: kernel deadlines

    def _read_plain(self, wait: float | None) -> int:
        """``recv_into`` on the blocking socket, its wait bounded by SO_RCVTIMEO. A socket with a Python
        timeout is non-blocking underneath and CPython ``poll``s before every call; blocking with the
        kernel's timeout, a read is one syscall (issue 13: two fewer per object, one GIL hand-off less).
        A kept timeout a little shorter than ``wait`` is waited out as in :meth:`_read`; a due deadline
        (``wait`` 0) is one non-blocking read."""
        sock = self.sock
        try:
            if wait is not None and wait <= 0:
                return sock.recv_into(self._into, 0, _DONTWAIT)
            early = self._kernel_timeout(wait, SO_RCVTIMEO)
            if _QUICKACK:
                sock.setsockopt(IPPROTO_TCP, _QUICKACK, 1)
            return self._poll.read(sock, self._into, wait)  # polls a moment first, then sleeps (busy_poll.py)
        except (BlockingIOError, TimeoutError):
            if wait is not None and wait > 0 and early > 0:
                return self._read_plain(early)
            raise LinkTimeout() from None
        except OSError:
            return 0

    def _bulk_headers_next(self) -> int:
        sink = self.bulk_sink
        if self._splicer is None or sink is None:
            return 0
        size = self.conn.bulk_read_size()
        if not size or size > RECV_SIZE:
            return 0
        target = sink.bulk_target(_ANY)
        return size if target is not None and target[1] >= SPLICE_MIN else 0

    def _bulk(self, deadline: float | None) -> bool:
        splicer, sink = self._splicer, self.bulk_sink
        if splicer is None or sink is None:
            return False
        count = self.conn.bulk()
        if count < SPLICE_MIN:
            return False
        target = sink.bulk_target(count)
        if target is None or target[1] < SPLICE_MIN:
            return False
        wait, artim = self._wait_time(deadline)
        if artim or (wait is not None and wait <= 0):
            return False  # the usual read handles a due deadline
        early = self._kernel_timeout(wait, SO_RCVTIMEO)
        moved, error, end = splicer.move(self.sock.fileno(), target[0], target[1])
        if moved:
            self.bytes_received += moved
            self.conn.skip_bulk(moved)
            sink.bulk_moved(moved, error)
        if end == LOST:
            self._lost()
            return True
        if end == TIMED_OUT and not moved:
            if early > 0:
                return False  # the kept timeout was a little short: the usual read waits out the rest
            raise TimeoutExpired("timed out waiting for the peer")
        return True

    def _kernel_timeout(self, seconds: float | None, option: int) -> float:
        """Set SO_RCVTIMEO to ``seconds`` unless the one set is within :func:`_slack` of it (a setsockopt
        per read otherwise: every deadline's wait is a new float). Returns how much earlier than
        ``seconds`` the read may give up, as :meth:`_set_timeout` does."""
        current = self._timeout
        if seconds == current:
            return 0.0
        if seconds is not None and current is not None and current > 0 and abs(seconds - current) <= _slack(seconds):
            return max(0.0, seconds - current)
        self.sock.setsockopt(SOL_SOCKET, option, _timeval(seconds))
        self._timeout = seconds
        return 0.0

    def _send_plain(self, buffers: list[Piece]) -> int:
        """Write on the blocking socket, each call bounded by SO_SNDTIMEO (the network timeout): a batch in
        memory goes in one ``sendmsg`` when the kernel takes it whole (the usual response), else through
        :func:`~.writes.send_all`; a batch with file regions by :meth:`_send_regions`."""
        sock, timeout = self.sock, self.network_timeout
        if timeout != self._send_timeout:
            sock.setsockopt(SOL_SOCKET, SO_SNDTIMEO, _timeval(timeout))
            self._send_timeout = timeout
        try:
            plain = len(buffers) <= _IOV_MAX
            for piece in buffers:
                kind = type(piece)
                if kind is FileRegion:
                    return self._send_regions(buffers)
                if kind is memoryview and piece.itemsize != 1:  # type: ignore[union-attr]
                    plain = False  # its len() is not its bytes: send_all casts it
            if plain:
                sent = sock.sendmsg(buffers)  # type: ignore[arg-type]
                total = sum(map(len, buffers))  # type: ignore[arg-type]
                if sent == total:
                    return sent
                return sent + send_all(sock, _after(buffers, sent), use_sendfile=False)  # type: ignore[arg-type]
            return send_all(sock, buffers, use_sendfile=False)
        except (BlockingIOError, TimeoutError):
            raise LinkTimeout() from None

    def _link_error(self, error: OSError) -> None:
        """Keep a TLS alert (not a plain EOF) so the client can name it: a TLS 1.3 server refuses our
        certificate only after the handshake, with an alert instead of the A-ASSOCIATE-AC."""
        if isinstance(error, ssl_classes("SSLError")) and not isinstance(error, ssl_classes("SSLEOFError", "SSLZeroReturnError")):
            self.tls_error = error

    def _close_link(self) -> None:
        if self._kernel:
            LINKS.closed()
        if self._splicer is not None:
            self._splicer.close()
        try:
            self.sock.close()
        except OSError:
            pass

    def interrupt(self) -> None:
        try:
            # The plain socket's shutdown even for TLS: SSLSocket.shutdown also drops its SSL object,
            # which the owner thread may be using at this very moment.
            Socket.shutdown(self.sock, SHUT_RDWR)
        except OSError:
            pass

    def security(self) -> str:
        version = getattr(self.sock, "version", None)  # an ssl.SSLSocket
        return f" over {version()} {self.sock.cipher()[0]}" if callable(version) else ""  # type: ignore[attr-defined]


_DONTWAIT = MSG_DONTWAIT
_ANY = 1 << 62
_IOV_MAX = 512
_NO_TIMEOUT = struct.pack("@ll", 0, 0)  # a struct timeval of zero: no limit


def _timeval(seconds: float | None) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO: zero means no limit, so a positive wait shorter
    than a microsecond is one microsecond (the kernel rounds up to its clock tick anyway)."""
    if seconds is None or seconds <= 0:
        return _NO_TIMEOUT
    whole = int(seconds)
    micro = int((seconds - whole) * 1e6)
    return struct.pack("@ll", whole, micro if whole or micro else 1)


def _after(buffers: list[Piece], sent: int) -> list[Piece]:
    """What is left of ``buffers`` once their first ``sent`` bytes were written (all in memory)."""
    out: list[Piece] = []
    for piece in buffers:
        size = len(piece)
        if sent >= size:
            sent -= size
            continue
        out.append(memoryview(piece)[sent:] if sent else piece)  # type: ignore[arg-type]
        sent = 0
    return out


def _slack(seconds: float) -> float:
    """How far a socket timeout may be from a wait and still be kept: 2 % of it, at most 1 s (a DIMSE or
    network timeout of 60 s may end up to 1 s late or, for a write, early; ARTIM's 30 s by 0.6 s)."""
    return min(1.0, seconds * 0.02)


def _tls_would_block(error: OSError) -> bool:
    return isinstance(error, ssl_classes("SSLWantReadError", "SSLWantWriteError"))


def peer_name(sock: Socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


__all__ = ["Channel", "ChannelEvent", "Driver", "Aborted", "FileRegion", "LinkTimeout", "peer_name"]
