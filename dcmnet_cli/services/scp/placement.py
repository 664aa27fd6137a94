"""Putting a received object on disk safely: temporary files, complete writes, durable directories.

The Storage SCP (and the C-MOVE/C-GET receiver built on it) writes each data set to a temporary file in
the output directory and renames it into place only when it is whole (scenarios G.41–G.43), so a crash,
an abort or a full disk never leaves a truncated file under a final name. This module is that mechanism
and nothing else: which name an object gets, and the duplicate policy, stay in :mod:`.storage`.

- Names: ``.dcmnet-tmp-<tag>-<n>.part``, created with O_CREAT | O_EXCL | O_NOFOLLOW (never an existing
  file, never through a symlink), mode 0644. The tag is 64 random bits per process, renewed in a forked
  child and when a name is found taken, so other local users cannot predict the next name.
- Writes: a regular file may accept less than asked (a signal, a nearly full disk): :func:`write_all`
  and :func:`writev_all` loop until everything is written or ``OSError`` says why not.
- Durability: after the rename, :func:`fsync_dir` makes the new directory entry survive a power cut.
- Leftovers of a crash are removed at start-up by :func:`clean_leftovers`, from the output directory only.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import secrets

TEMP_PREFIX = ".dcmnet-tmp-"
TEMP_SUFFIX = ".part"
TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDWR | os.O_CLOEXEC
TEMP_MODE = 0o644


def clean_leftovers(root: str) -> int:
    """Remove ``.dcmnet-tmp-*.part`` files left in ``root`` by a crash (scenario G.43); returns how many.

    Temporary files are only ever created in the root itself (then renamed into template folders), so
    one directory is scanned, never the tree: ``get -od .`` in a large folder must start at once.
    """
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX) and not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


class TempNames:
    """Temp file names: a random per-process tag (renewed in a forked child and on a clash) + a counter.

    O_EXCL | O_NOFOLLOW makes any name safe; the random tag keeps names unguessable for other local
    users without a getrandom() per file.
    """

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.tag = secrets.token_hex(8)
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{TEMP_PREFIX}{self.tag}-{next(self.counter)}{TEMP_SUFFIX}"


TEMP_NAMES = TempNames()


def create_temp(root: str, names: TempNames = TEMP_NAMES) -> tuple[str, int]:
    """A new temporary file in ``root``: its path and a read-write descriptor (the caller closes it)."""
    for attempt in range(3):
        path = os.path.join(root, names.next())
        try:
            return path, os.open(path, TEMP_FLAGS, TEMP_MODE)
        except FileExistsError:
            if attempt == 2:
                raise
            names.renew()  # someone planted our next name: move to fresh random names
    raise AssertionError("unreachable")


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until all of ``data`` is written (a regular file may take less on a signal or near full)."""
    done = os.write(fd, data)
    if done == len(data):
        return
    view = memoryview(data)
    while done < len(view):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.EIO, "write wrote nothing")
        done += n


def writev_all(fd: int, first: bytes, second: bytes | memoryview) -> None:
    """Both buffers, in one ``os.writev`` when the kernel takes them whole."""
    done = os.writev(fd, (first, second))
    if done == len(first) + len(second):
        return
    if done < len(first):
        write_all(fd, memoryview(first)[done:])
        done = len(first)
    write_all(fd, memoryview(second)[done - len(first):])


def fsync_dir(path: str) -> None:
    """Make a rename into ``path`` durable: fsync the directory itself (POSIX leaves it to us)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MAX_RENAME = 10000
"""``--on-duplicate rename``: NAME_1 … NAME_9999 are tried before the store fails."""
_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def place(tmp: str, folder: str, name: str, policy: str) -> tuple[str, str | None]:
    """Move the finished temporary file to ``folder/name`` per the ``--on-duplicate`` policy; returns the
    path and what happened to an existing file ("replaced", "renamed", "kept" or None). Never truncates in
    place: ``replace`` renames over (a symlink at the name is replaced, not followed), the others link
    (which refuses to overwrite) and unlink the temporary. With "kept" the temporary is left for the
    caller to remove."""
    target = os.path.join(folder, name)
    if policy == "replace":
        existed = os.path.lexists(target)
        os.replace(tmp, target)
        return target, "replaced" if existed else None
    match = _EXT.search(name)
    stem, ext = (name[:match.start()], match.group()) if match else (name, "")
    for n in range(MAX_RENAME if policy == "rename" else 1):
        candidate = target if n == 0 else os.path.join(folder, f"{stem}_{n}{ext}")
        try:
            os.link(tmp, candidate, follow_symlinks=False)
        except FileExistsError:
            continue
        os.unlink(tmp)
        return candidate, "renamed" if n else None
    if policy == "keep":
        return target, "kept"
    raise OSError(errno.EEXIST, f"{MAX_RENAME} copies of this name exist")
