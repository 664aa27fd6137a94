"""A blocking socket driving one sans-IO :class:`Association` and its DIMSE assembler.

The only place (with :mod:`.server` and :mod:`.client`) that touches sockets and clocks. Every wait has a
deadline the caller computes; ARTIM is folded into the same wait, so nothing ever polls. Reads go into one
preallocated buffer with ``recv_into``; writes gather many buffers per ``sendmsg`` call.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from itertools import islice
from typing import Iterable, Union

from ..dimse.assembler import Assembler, CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from ..dimse.commandset import Message
from ..dimse.fragment import fragment_message
from ..errors import AssociationAborted, RemoteProtocolError, TimeoutExpired
from ..ul.association import Aborted, Association, DataReceived
from ..ul.association import AssociationEvent as ULEvent
from ..ul.statemachine import State

RECV_SIZE = 1 << 18
IOV_MAX = 512
BATCH_BYTES = 1 << 20
"""Gather up to this many bytes of whole PDUs into one sendmsg call."""

DimseEvent = Union[CommandReceived, DatasetFragment, InvalidCommand, MessageComplete]
ChannelEvent = Union[DimseEvent, ULEvent]


def send_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> int:
    """Write every buffer, many per syscall, coping with partial writes; returns bytes written."""
    views = deque(memoryview(b).cast("B") for b in buffers if len(b))
    total = 0
    while views:
        sent = sock.sendmsg(list(islice(views, IOV_MAX)))
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
        self.bytes_received = 0
        self.bytes_sent = 0
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._artim_seen = 0
        self._artim_deadline: float | None = None
        self._events: deque[ChannelEvent] = deque()
        self.assembler = Assembler(valid_context_ids=lambda cid: cid in assoc.contexts, max_dataset_bytes=max_dataset_bytes)
        self._message_id = 0

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

    def _write(self, buffers: list[bytes | memoryview]) -> None:
        self.sock.settimeout(self.network_timeout)
        try:
            self.bytes_sent += send_all(self.sock, buffers)
        except (socket.timeout, TimeoutError):
            self.close()
            raise TimeoutExpired("the peer stopped reading: write timed out") from None
        except OSError as error:
            self.close()
            self.assoc.connection_lost()
            raise AssociationAborted(f"connection lost while sending: {error.strerror or error}") from None

    def send_message(
        self, context_id: int, message: Message, dataset: bytes | memoryview | Iterable[bytes] | None = None
    ) -> None:
        """Fragment and send one DIMSE message; dataset chunks must not be reused after being passed."""
        self._raise_if_ended()
        batch: list[bytes | memoryview] = []
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
        self.sock.settimeout(wait)
        try:
            count = self.sock.recv_into(self._buf)
        except (socket.timeout, TimeoutError, BlockingIOError):
            # A wait of 0.0 (a deadline already due) puts the socket in non-blocking mode, where "no data
            # yet" is BlockingIOError: that is a timeout, not the peer closing the connection.
            if artim:
                self.assoc.artim_expired()  # AA-2: the association asks to close; flush() does it
                self.flush()
                return
            raise TimeoutExpired("timed out waiting for the peer") from None
        except OSError:
            count = 0
        if count == 0:
            self.close()
            self.assoc.connection_lost()
            return
        self.bytes_received += count
        self.assoc.receive_data(self._view[:count])

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
            self.sock.shutdown(socket.SHUT_RDWR)
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


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


__all__ = ["Channel", "ChannelEvent", "Aborted", "send_all"]
