"""Bulk receive: the bulk of a large data set moved socket → pipe → file with ``splice``, never through Python.

Why: with ``recv_into`` + ``write`` every byte of a 100 MB object is copied twice on ``listen``'s thread
(socket → our buffer → page cache). ``splice`` moves the socket's pages into a pipe by reference and from
there into the file: one copy, no Python per byte. Measured on a 2-core VM, 100 MB objects into tmpfs
(bare loops, issue 13): recv_into + write 1 450–1 760 MB/s, a writer thread beside the receiver no
better (both cores are already busy), splice 2 360–2 500 MB/s with 1 MiB PDUs. With 128 KiB PDUs splice
loses (1 370–1 440 MB/s: a PDU header to read every 128 KiB), hence :data:`SPLICE_MIN`.

Who decides what: the framing offers the bytes of a data-set PDV nothing has read yet
(:meth:`..dimse.connection.DIMSEConnection.bulk`, never a data set's last bytes, which still end it with
the "last" bit); the message's handler says where they go and how many it does not need to see (the
walker's "skippable": inside Pixel Data); the driver moves them here and tells both how many went. Plain
TCP sockets on Linux only (a TLS record must be decrypted in user space).
"""

from __future__ import annotations

import os
from ..ul.typenames import Protocol

SPLICE_MIN = 256 << 10
"""Fewer bytes than this go the usual way: below, the syscalls per byte cost more than the copy saved."""

PIPE_SIZE = 1 << 20
"""Asked of the kernel for the pipe (Linux's default ceiling for unprivileged processes); what it grants is used."""

_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032

AVAILABLE = hasattr(os, "splice")

MOVED, LOST, TIMED_OUT = 0, 1, 2
"""How :meth:`Splicer.move` ended: every byte asked moved (or a write failed), the link ended, the wait ran out."""


class BulkSink(Protocol):
    """Where a driver's bulk bytes go (the session, for its current handler)."""

    def bulk_target(self, count: int) -> tuple[int, int] | None:
        """(file descriptor, bytes) to move at most ``count`` bytes to, or None: the usual path."""

    def bulk_moved(self, count: int, error: OSError | None) -> None:
        """``count`` bytes were read from the link; ``error``: writing them failed (they are gone)."""


class Splicer:
    """One pipe per link, made on first use and closed with the link."""

    def __init__(self) -> None:
        self._pipe: tuple[int, int, int] | None = None

    def _open(self) -> tuple[int, int, int]:
        import fcntl

        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # a lower ceiling (/proc/sys/fs/pipe-max-size): smaller moves, same result
        size = fcntl.fcntl(write_end, _F_GETPIPE_SZ)
        self._pipe = (read_end, write_end, size)
        return self._pipe

    def move(self, source: int, target: int, count: int) -> tuple[int, OSError | None, int]:
        """Move up to ``count`` bytes from socket ``source`` to file ``target`` (at its position): (bytes
        read from the socket, the write error if one happened, :data:`MOVED` / :data:`LOST` / :data:`TIMED_OUT`).
        After a write error the bytes read are dropped, not written; the socket's timeout bounds each wait."""
        read_end, write_end, size = self._pipe or self._open()
        moved = 0
        while moved < count:
            try:
                got = os.splice(source, write_end, min(count - moved, size))
            except (BlockingIOError, TimeoutError):
                return moved, None, TIMED_OUT
            except OSError:
                return moved, None, LOST
            if got == 0:
                return moved, None, LOST
            moved += got
            error = _to_file(read_end, target, got)
            if error is not None:
                return moved, error, MOVED
        return moved, None, MOVED

    def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            os.close(pipe[0])
            os.close(pipe[1])


def _to_file(read_end: int, target: int, count: int) -> OSError | None:
    """Empty ``count`` bytes of the pipe into ``target``; on a write error drain them (the pipe must be
    empty for the next move) and return the error."""
    while count:
        try:
            written = os.splice(read_end, target, count)
            if written == 0:
                raise OSError(5, "the file took no bytes")
            count -= written
        except OSError as error:
            while count:
                count -= len(os.read(read_end, min(count, 1 << 16)))
            return error
    return None
