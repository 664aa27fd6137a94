"""Reading the small files users name on the command line (config, query, users, keys, certificates).

Why not a plain ``open``: opening a named FIFO nobody writes to blocks for ever, and ``/dev/zero`` or
``/dev/urandom`` never end. Here the open never blocks (``O_NONBLOCK``, cleared again so a pipe from
process substitution, ``<(...)``, is read to its end as usual), devices and sockets are refused, and
more than ``limit`` bytes is an error instead of unbounded memory. A FIFO without a writer reads as
empty, which each caller already reports ("... is empty", a parse error).

Errors are :class:`OSError` with ``strerror`` set, so callers' existing ``except OSError`` clauses
turn them into their one-line messages.
"""

from __future__ import annotations

import errno
import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
"""An open for reading that never waits for a FIFO's writer (a regular file ignores O_NONBLOCK)."""


def _refuse(code: int, text: str, path: str) -> OSError:
    return OSError(code, text, path)


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole content of ``path``, a regular file or a pipe, at most ``limit`` bytes."""
    name = os.fspath(path)
    fd = os.open(name, OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _refuse(errno.EISDIR, "is a folder", name)
        if stat.S_ISFIFO(mode):
            os.set_blocking(fd, True)
        elif not stat.S_ISREG(mode):
            raise _refuse(errno.EINVAL, "not a file or pipe (a device or socket)", name)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _refuse(errno.EFBIG, f"larger than {limit} bytes", name)
        return b"".join(chunks)
    finally:
        os.close(fd)


def regular_or_copy(path: str, limit: int) -> tuple[str, int | None]:
    """A path a library may open itself (OpenSSL's ``load_cert_chain``): ``path`` when it is a regular
    file, else a memory file holding what the pipe gave (``/proc/self/fd/N``; close the returned fd after).
    Devices, sockets and FIFOs go through :func:`read_limited`'s checks, so nothing blocks or runs on."""
    try:
        if stat.S_ISREG(os.stat(path).st_mode):
            return path, None
    except OSError:
        return path, None  # the library reports a missing or unreadable file in its own words
    data = read_limited(path, limit)
    fd = os.memfd_create("dcmnet-input", getattr(os, "MFD_CLOEXEC", 0))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return f"/proc/self/fd/{fd}", fd
