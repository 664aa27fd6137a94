"""Writing many buffers to a socket: gathered ``sendmsg``, ``sendfile`` for file regions, TLS batches.

Data set bytes given as a :class:`~dcmnet_cli.dimse.fragment.FileRegion` go from the file to the socket
with ``os.sendfile`` (no copy through user space); the PDU and PDV headers before each region are written
with ``MSG_MORE`` so they leave in the same TCP segments as the file bytes. That costs two syscalls per
PDU, which is cheap for a peer that takes large PDUs (DCMTK ``-pdu 131072``: 4 per 0.5 MB CT image) but not
for one that takes small ones (storescp's default 16 KiB: 32 per CT image, 64 syscalls): when a batch's
regions average at most :data:`GATHER_REGION_MAX` bytes, each run of them that continues through one file
is read with one ``pread`` and the whole batch, headers and data, goes in one gathered ``sendmsg``.
Over TLS (an ``ssl.SSLSocket``) neither ``sendfile`` nor ``sendmsg`` exists: the buffers of a batch are
joined and written with ``sendall`` (TLS copies and encrypts them anyway), and file regions are read
with ``pread`` first.
"""

from __future__ import annotations

import errno
import os
import select
from collections import deque
from itertools import islice

from ..dimse.fragment import FileRegion, Piece
from ..errors import InputError
from .sockets import AF_INET, AF_INET6, AF_UNIX, MSG_MORE, Socket, is_plain
from .ssl_loaded import ssl_classes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence

IOV_MAX = 512
BATCH_BYTES = 1 << 20
"""Join up to this many bytes per TLS write."""


def send_all(sock: Socket, buffers: Sequence[Piece], *, use_sendfile: bool | None = None,
             write_timeout: float | None | bool = True, scratch: bytearray | None = None) -> int:
    """Write every buffer, many per syscall, coping with partial writes; returns bytes written.

    :class:`FileRegion` entries are sent from their file with ``os.sendfile`` (contiguous regions of one
    file merged into one call) when ``use_sendfile`` (default: a plain TCP/Unix socket on a system that
    has it) and they average more than :data:`GATHER_REGION_MAX` bytes, else read with ``pread`` (one per
    run of regions through one file) and written with the rest in one gathered ``sendmsg``. A region
    whose file ends early raises :class:`InputError` (when read, before anything of the batch is written;
    with ``sendfile``, possibly after part of it): the connection must then be dropped, not used.
    Given a ``scratch`` buffer and no ``sendfile``, large regions are copied through it instead, a piece
    at a time (:func:`_copy_all`: what a peer on the same machine takes fastest).

    ``write_timeout`` bounds each wait of ``sendfile`` for room in the socket (True: the socket's own
    timeout; a blocking socket with a kernel SO_SNDTIMEO passes its value here). Waiting too long raises
    TimeoutError; ``sendmsg`` waits as the socket does (its timeout, or SO_SNDTIMEO: BlockingIOError).
    """
    if is_tls(sock):
        return _send_tls(sock, buffers)
    regions = [b for b in buffers if type(b) is FileRegion]
    if not regions:
        return _sendmsg_all(sock, buffers, 0)  # type: ignore[arg-type]
    if use_sendfile is None:
        use_sendfile = can_sendfile(sock)
    if (not use_sendfile and scratch is None) or gathers(regions):
        return _sendmsg_all(sock, _gathered(buffers), 0)
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
            total += _sendfile_all(sock, fd, offset, length, region.name,
                                   sock.gettimeout() if write_timeout is True else write_timeout)  # type: ignore[arg-type]
        else:
            total += _copy_all(sock, memory, fd, offset, length, region.name, scratch)  # type: ignore[arg-type]
            memory = []
    return total + _sendmsg_all(sock, memory, 0)


def _copy_all(sock: Socket, head: list[bytes | bytearray | memoryview], fd: int, offset: int, length: int,
              name: str, scratch: bytearray) -> int:
    """The buffers ``head``, then ``length`` bytes of ``fd`` from ``offset``, read into ``scratch`` and
    written a piece at a time (the first piece with ``head``, in one ``sendmsg``).

    Why not ``sendfile`` to a peer on this machine: its segments point at the file's page cache, so the
    receiving process's one copy reads every byte from memory on its own core, while the sender's core
    idles. Copied here, the sender's core reads the file and the receiver copies bytes still in the
    shared cache. Measured on loopback (issue 13, 2 cores, 1 GB into a splicing receiver): ~3 200 MB/s
    against ~2 600 with ``sendfile``; into a receiver that only reads, ~2 900 against ~2 100. Reusing one
    buffer matters too (~3 040 MB/s with a new one per piece)."""
    view = memoryview(scratch)
    total = done = 0
    while done < length:
        want = min(len(scratch), length - done)
        try:
            got = os.preadv(fd, [view[:want]], offset + done)
        except OSError as error:
            raise _unreadable(name, fd, error) from None
        if not got:
            raise _shrank(name, fd, length - done)
        total += _sendmsg_all(sock, [*head, view[:got]], 0)
        head = []
        done += got
    return total


def _gathered(buffers: Sequence[Piece]) -> list[bytes | bytearray | memoryview]:
    """``buffers`` with every file region replaced by its bytes: each run of regions that continues
    through one file (PDU headers in between) is read with one ``pread`` and handed out as views of it."""
    out: list[bytes | bytearray | memoryview] = []
    index, count = 0, len(buffers)
    while index < count:
        piece = buffers[index]
        index += 1
        if type(piece) is not FileRegion:
            out.append(piece)  # type: ignore[arg-type]
            continue
        first: FileRegion = piece  # type: ignore[assignment]
        fd, start = first.fd, first.offset
        end, last = start + first.length, index  # the run: buffers[index - 1:last]
        for ahead in range(index, count):
            nxt = buffers[ahead]
            if type(nxt) is FileRegion:
                if nxt.fd != fd or nxt.offset != end:  # type: ignore[union-attr]
                    break
                end += nxt.length  # type: ignore[union-attr]
                last = ahead + 1
        view = memoryview(_pread_all(fd, start, end - start, first.name))
        out.append(view[:first.length])
        for piece in buffers[index:last]:
            if type(piece) is FileRegion:
                at = piece.offset - start  # type: ignore[union-attr]
                out.append(view[at:at + piece.length])  # type: ignore[union-attr]
            else:
                out.append(piece)  # type: ignore[arg-type]
        index = last
    return out


_MSG_MORE = MSG_MORE
def gathers(regions: Sequence[FileRegion]) -> bool:
    """Whether a batch with these file regions is read and gathered into ``sendmsg`` rather than sent
    with ``sendfile`` (regions averaging at most :data:`GATHER_REGION_MAX` bytes)."""
    return sum(r.length for r in regions) <= GATHER_REGION_MAX * len(regions)


GATHER_REGION_MAX = 256 * 1024
"""File regions averaging at most this many bytes per batch are read and gathered into one ``sendmsg``
rather than sent with a ``sendmsg`` + ``sendfile`` pair each. Measured on loopback (issue 13, store of
0.5 MB CT images into storescp, interleaved runs): client CPU 20-30 % lower in 16 KiB and in 128 KiB
PDUs, the server's lower too (``sendfile`` costs more system time per call than the copy it saves at
that size); a 30 MB object in 128 KiB PDUs costs the same either way. A batch is at most about 1 MiB (:data:`...dimse.connection.BATCH_BYTES`),
so memory stays bounded by it whatever the object's size."""
COPY_PIECE = 1 << 20
"""Bytes of a file read and written per step by :func:`_copy_all` (the size of its ``scratch``)."""
SENDFILE_MAX = 1 << 30
"""Bytes asked of one ``sendfile`` call (Linux moves at most 0x7ffff000 per call anyway)."""
_CONNECTION_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ESHUTDOWN,
                                errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN})


def is_tls(sock: Socket) -> bool:
    """An ``ssl.SSLSocket``, told without importing ``ssl`` (see :mod:`.ssl_loaded`)."""
    return not is_plain(sock) and isinstance(sock, ssl_classes("SSLSocket"))


def _send_tls(sock: Socket, buffers: Sequence[Piece]) -> int:
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


def can_sendfile(sock: Socket) -> bool:
    """``sendfile`` writes the descriptor directly: only for a plain socket (never a TLS wrapper)."""
    return hasattr(os, "sendfile") and is_plain(sock) and sock.family in (AF_INET, AF_INET6, AF_UNIX)


def _sendmsg_all(sock: Socket, buffers: Sequence[bytes | bytearray | memoryview], flags: int) -> int:
    """Write every buffer; the usual case is one ``sendmsg`` that takes them all (no per-buffer views)."""
    if len(buffers) <= IOV_MAX:
        size = 0
        for b in buffers:
            size += b.nbytes if type(b) is memoryview else len(b)
        if not size:
            return 0
        sent = sock.sendmsg(buffers, (), flags) if flags else sock.sendmsg(buffers)
        if sent == size:
            return size
        return sent + _sendmsg_rest(sock, buffers, flags, sent)
    return _sendmsg_rest(sock, buffers, flags, 0)


def _sendmsg_rest(sock: Socket, buffers: Sequence[bytes | bytearray | memoryview], flags: int, skip: int) -> int:
    """Write the buffers' bytes after the first ``skip`` (already written), IOV_MAX buffers per call at most."""
    views = deque(memoryview(b).cast("B") for b in buffers if len(b))
    while skip:
        first = views.popleft()
        if skip < len(first):
            views.appendleft(first[skip:])
            break
        skip -= len(first)
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


def _sendfile_all(sock: Socket, fd: int, offset: int, length: int, name: str,
                  timeout: float | None) -> int:
    """``length`` bytes of ``fd`` from ``offset`` to the socket; partial writes and EAGAIN handled.

    A socket with a timeout is non-blocking underneath, and a blocking one with SO_SNDTIMEO gives up
    after it: on EAGAIN wait (``poll``, no busy loop) until it is writable, at most ``timeout`` per wait
    (None: no limit), as ``sock.send`` would. Errors reading the file
    raise InputError; errors on the connection raise OSError as a failed ``send`` would.
    """
    out = sock.fileno()
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
            raise _unreadable(name, fd, error) from None
        if sent == 0:
            raise _shrank(name, fd, length - done)
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
                raise _shrank(name, fd, length - len(data))
            data += more
    except OSError as error:
        raise _unreadable(name, fd, error) from None
    return data


def _unreadable(name: str, fd: int, error: OSError) -> InputError:
    return InputError(f"{name or f'fd {fd}'}: cannot read: {error.strerror or error}")


def _shrank(name: str, fd: int, missing: int) -> InputError:
    return InputError(f"{name or f'fd {fd}'}: the file shrank while it was being sent ({missing} bytes missing)")
