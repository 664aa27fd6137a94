"""Putting a received object on disk safely: temporary files, complete writes, durable directories.

The Storage SCP (and the C-MOVE/C-GET receiver built on it) writes each data set to a temporary file in
the output directory and renames it into place only when it is whole (scenarios G.41–G.43), so a crash,
an abort or a full disk never leaves a truncated file under a final name. This module is that mechanism
and nothing else: which name an object gets, and the duplicate policy, stay in :mod:`.storage`.

- Unnamed first: where the filesystem allows it (O_TMPFILE: ext4, XFS, btrfs, tmpfs), the temporary is
  created with no name at all in the output root (:func:`create_unnamed`) and gets its final name by one
  ``linkat`` through ``/proc/self/fd`` (:func:`place_unnamed`), which never overwrites: the usual case
  (a free name) is one system call, with no lock, no stat and no rename. A crash or an abort leaves
  nothing (closing the descriptor frees the file), so there is nothing to lock, track or clean. Whether
  it works is found out once per output directory by :func:`unnamed_works` (a probe: create, link,
  unlink); where it does not (NFS, old kernels, some FUSE filesystems, no ``/proc``), the named
  temporaries below are used instead, for the whole run.
- Names: ``.dcmnet-tmp-<tag>-<n>.part``, created with O_CREAT | O_EXCL | O_NOFOLLOW (never an existing
  file, never through a symlink), mode 0644, in the output root only, relative to a descriptor of it.
  The tag is 64 random bits per process, renewed in a forked child and when a name is found taken, so
  other local users cannot predict the next name. The writer holds an exclusive ``flock`` on it until
  it is renamed or removed.
- Paths: every folder below the root is opened one component at a time relative to its parent's
  descriptor with O_NOFOLLOW (:func:`open_folder`), and the temporary is renamed or linked between
  descriptors (:func:`place`): a folder swapped for a symlink makes the store fail, never escape.
- Writes: a regular file may accept less than asked (a signal, a nearly full disk): :func:`write_all`
  and :func:`writev_all` loop until everything is written or ``OSError`` says why not.
- Durability: after the rename, the caller fsyncs the folder's descriptor (:func:`sync_placed`) so the
  new entry survives a power cut; when that fails the entry is removed again, so the failure status the
  store then gets means nothing under a final name.
- Leftovers of a crash are removed at start-up by :func:`clean_leftovers`, from the output directory
  only, and only those no live writer holds locked.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import re
import secrets
import stat
from typing import Callable

TEMP_PREFIX = ".dcmnet-tmp-"
TEMP_SUFFIX = ".part"
TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDWR | os.O_CLOEXEC
TEMP_MODE = 0o644
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
UNNAMED_FLAGS = O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
UNNAMED_REFUSED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
"""O_TMPFILE refused by the filesystem (EOPNOTSUPP) or unknown to the kernel (EISDIR, EINVAL)."""
LINK_REFUSED = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.ELOOP})
"""Linking through ``/proc/self/fd`` refused: no ``/proc`` (ENOENT), not allowed, no hard links here."""


def clean_leftovers(root: str, node: str | None = None) -> int:
    """Remove ``.dcmnet-tmp-*.part`` files left in ``root`` by a crash (scenario G.43); returns how many.

    Only temporaries nobody holds are removed: a writer holds an exclusive ``flock`` on its temporary
    from creation until it is renamed or removed, so another ``listen`` (or ``--workers`` process, or a
    C-MOVE/C-GET receiver) starting on the same folder leaves in-flight stores alone. A symlink with our
    name is removed (never followed). Temporaries are only ever created in the root itself (then renamed
    into template folders), so one directory is scanned, never the tree. With a node identity
    (``listen --node-id``, :data:`TEMP_NAMES`) ``.dcmnet-tmp-<node>~…`` names are ours and other nodes'
    (``~`` with another node before it) are never touched, locked or not (a lock on a shared filesystem
    may not be seen from another machine).
    """
    node = TEMP_NAMES.node if node is None else node
    removed = 0
    try:
        root_fd = open_root(root)
    except OSError:
        return 0
    try:
        with os.scandir(root_fd) as scan:
            names = [e.name for e in scan if e.name.startswith(TEMP_PREFIX) and e.name.endswith(TEMP_SUFFIX)
                     and ("~" not in e.name or (node is not None and e.name.startswith(f"{TEMP_PREFIX}{node}~")))]
        for name in names:
            removed += _remove_if_orphan(root_fd, name)
    except OSError:
        pass
    finally:
        os.close(root_fd)
    return removed


def _remove_if_orphan(root_fd: int, name: str) -> int:
    """1 when ``name`` was a temporary whose writer is gone (no lock on it) and is now removed, else 0."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError as error:
        if error.errno != errno.ELOOP:
            return 0
        fd = -1  # a symlink carrying our name: remove the link itself
    try:
        if fd >= 0:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return 0
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer: BlockingIOError
        os.unlink(name, dir_fd=root_fd)
        return 1
    except OSError:
        return 0
    finally:
        if fd >= 0:
            os.close(fd)


class TempNames:
    """Temp file names: a random per-process tag (renewed in a forked child and on a clash) + a counter.

    O_EXCL | O_NOFOLLOW makes any name safe; the random tag keeps names unguessable for other local
    users without a getrandom() per file.
    """

    def __init__(self) -> None:
        self.node: str | None = None
        """``listen --node-id``: names become ``.dcmnet-tmp-<node>~<tag>-<n>.part`` (see clean_leftovers)."""
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.tag = secrets.token_hex(8)
        self.counter = itertools.count()

    def next(self) -> str:
        node = f"{self.node}~" if self.node else ""
        return f"{TEMP_PREFIX}{node}{self.tag}-{next(self.counter)}{TEMP_SUFFIX}"


TEMP_NAMES = TempNames()


def open_root(root: str) -> int:
    """A descriptor of the output directory (resolved at start-up), the anchor of every path below it."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def create_temp(root_fd: int, names: TempNames = TEMP_NAMES) -> tuple[str, int]:
    """A new temporary file in the directory ``root_fd``: its name and a read-write descriptor holding an
    exclusive ``flock`` (released when the caller closes it, after the rename)."""
    for attempt in range(4):
        name = names.next()
        try:
            fd = os.open(name, TEMP_FLAGS, TEMP_MODE, dir_fd=root_fd)
        except FileExistsError:
            if attempt == 3:
                raise
            names.renew()  # someone planted our next name: move to fresh random names
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink > 0:
                return name, fd
        except BlockingIOError:
            pass  # a starting listen's clean-up took it between open and flock: it removes it
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, "temporary files keep being taken")


def create_unnamed(root_fd: int) -> int:
    """A new unnamed temporary (O_TMPFILE, mode 0644) in the directory ``root_fd``: a read-write descriptor
    of a file no other process can see or open; it is freed when closed unless it was linked first."""
    return os.open(".", UNNAMED_FLAGS, TEMP_MODE, dir_fd=root_fd)


def unnamed_works(root_fd: int, names: TempNames = TEMP_NAMES) -> bool:
    """Whether unnamed temporaries work in the directory ``root_fd``: O_TMPFILE accepted and the file
    linkable through ``/proc/self/fd`` (a probe file is created, linked under a temporary's name, unlinked).
    False when refused (:data:`UNNAMED_REFUSED`, :data:`LINK_REFUSED`); another error (ENOSPC, the
    directory removed) is raised, nothing decided."""
    if not O_TMPFILE:
        return False
    try:
        fd = create_unnamed(root_fd)
    except OSError as error:
        if error.errno in UNNAMED_REFUSED:
            return False
        raise
    try:
        try:
            name = link_temp(root_fd, fd, names)
        except OSError as error:
            if error.errno in LINK_REFUSED:
                return False
            raise
        os.unlink(name, dir_fd=root_fd)
        return True
    finally:
        os.close(fd)


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def link_temp(root_fd: int, fd: int, names: TempNames = TEMP_NAMES) -> str:
    """Give the unnamed temporary ``fd`` a temporary's name in ``root_fd`` (a fresh one, never an existing
    entry) and take its ``flock`` first, so that a starting listen's clean-up leaves it alone; a crash
    before the caller removes or renames it leaves an ordinary leftover. Returns the name."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    for attempt in range(4):
        name = names.next()
        try:
            os.link(_proc_fd(fd), name, dst_dir_fd=root_fd, follow_symlinks=True)
            return name
        except FileExistsError:
            if attempt == 3:
                raise
            names.renew()
    raise AssertionError("unreachable")


def open_folder(root_fd: int, relative: str) -> int:
    """A descriptor of folder ``relative`` (``a/b/c``, clean components) below ``root_fd``, each component
    created if missing and opened with O_NOFOLLOW relative to its parent: a symlink (or a non-directory)
    anywhere on the way raises OSError (ELOOP, ENOTDIR), so no swap can lead outside the output folder."""
    current = root_fd
    try:
        for part in relative.split("/"):
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=current)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o755, dir_fd=current)
                except FileExistsError:
                    pass
                child = os.open(part, DIR_FLAGS, dir_fd=current)
            if current != root_fd:
                os.close(current)
            current = child
    except BaseException:
        if current != root_fd:
            os.close(current)
        raise
    return current


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
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


def writev_all(fd: int, first: bytes, second: bytes | bytearray | memoryview) -> None:
    """Both buffers, in one ``os.writev`` when the kernel takes them whole."""
    done = os.writev(fd, (first, second))
    if done == len(first) + len(second):
        return
    if done < len(first):
        write_all(fd, memoryview(first)[done:])
        done = len(first)
    write_all(fd, memoryview(second)[done - len(first):])


MAX_RENAME = 10000
"""``--on-duplicate rename``: NAME_1 … NAME_9999 are tried before the store fails."""
_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}\Z")


def place(root_fd: int, tmp: str, folder_fd: int, name: str, policy: str) -> tuple[str, str | None]:
    """Move the finished temporary ``tmp`` (in ``root_fd``) to ``name`` in ``folder_fd`` per the
    ``--on-duplicate`` policy; returns the name used and what happened to an existing file ("replaced",
    "renamed", "kept" or None). Never truncates in place: ``replace`` renames over (a symlink at the name
    is replaced, not followed), the others link (which refuses to overwrite) and unlink the temporary.
    With "kept" the temporary is left for the caller to remove; ``keep`` only keeps a regular file: any
    other entry at the name (a symlink, a folder) raises OSError, since the object would be stored nowhere."""
    if policy == "replace":
        existed = _lexists(name, folder_fd)
        os.replace(tmp, name, src_dir_fd=root_fd, dst_dir_fd=folder_fd)
        return name, "replaced" if existed else None

    def link(candidate: str) -> None:
        os.link(tmp, candidate, src_dir_fd=root_fd, dst_dir_fd=folder_fd, follow_symlinks=False)

    placed = _link_free(link, name, policy)
    if placed is not None:
        os.unlink(tmp, dir_fd=root_fd)
        return placed
    return _kept(folder_fd, name, policy)


def place_unnamed(root_fd: int, fd: int, folder_fd: int, name: str, policy: str,
                  names: TempNames = TEMP_NAMES) -> tuple[str, str | None]:
    """:func:`place` for the unnamed temporary ``fd``: linked to ``name`` in ``folder_fd`` (``linkat``
    never overwrites, so a free name takes one call and needs no look first). When the name is taken:
    ``rename`` links to NAME_1 …; ``replace`` links the file to a temporary's name in ``root_fd`` and
    renames that over ``name`` (atomic; a symlink at the name is replaced, never followed); ``keep``
    keeps a regular file ("kept": the caller closes ``fd``, which frees it) and raises for anything else."""

    def link(candidate: str) -> None:
        os.link(_proc_fd(fd), candidate, dst_dir_fd=folder_fd, follow_symlinks=True)

    placed = _link_free(link, name, policy)
    if placed is not None:
        return placed
    if policy != "replace":
        return _kept(folder_fd, name, policy)
    tmp = link_temp(root_fd, fd, names)
    try:
        os.replace(tmp, name, src_dir_fd=root_fd, dst_dir_fd=folder_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=root_fd)
        except OSError:
            pass
        raise
    return name, "replaced"


def _link_free(link: Callable[[str], None], name: str, policy: str) -> tuple[str, str | None] | None:
    """``link(name)``, or with ``rename`` the first free of NAME_1 … NAME_9999; None when taken."""
    try:
        link(name)
        return name, None
    except FileExistsError:
        if policy != "rename":
            return None
    match = _EXT.search(name)
    stem, ext = (name[:match.start()], match.group()) if match else (name, "")
    for n in range(1, MAX_RENAME):
        candidate = f"{stem}_{n}{ext}"
        try:
            link(candidate)
        except FileExistsError:
            continue
        return candidate, "renamed"
    return None


def _kept(folder_fd: int, name: str, policy: str) -> tuple[str, str]:
    """``name`` (and with ``rename`` every numbered copy) is taken: ``keep`` keeps an existing regular
    file; a symlink or a folder there, or no free copy, is an OSError."""
    if policy == "keep":
        if not stat.S_ISREG(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.EEXIST, "its name is taken by a symlink or a folder")
        return name, "kept"
    raise OSError(errno.EEXIST, f"{MAX_RENAME} copies of this name exist")


def _lexists(name: str, folder_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def withdraw(path: str, ours: bool, fsync: bool) -> None:
    """Take back a file placed at ``path`` whose store is then answered a failure (a shared index could
    not record it), as :func:`sync_placed` does when the folder's fsync fails: only when ``ours`` (put at
    a free name), best effort, the folder fsynced again when the listener fsyncs."""
    if not ours:
        return
    try:
        os.unlink(path)
        if fsync:
            folder = os.open(os.path.dirname(path), os.O_RDONLY)  # an absolute path: never ""
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except OSError:
        pass


def sync_placed(folder_fd: int, name: str, ours: bool) -> None:
    """fsync the folder that just got ``name`` (the entry must survive a power cut before Success is
    answered). When that fails the store is answered a failure, and a failure must mean nothing under a
    final name (else the sender's retry lands a second copy): the entry, when ``ours`` (put at a name that
    was free: not an older file kept, nor one that replaced an earlier object, whose removal would lose
    that object too), is removed again, best effort, and the folder fsynced once more; then the error is
    raised."""
    try:
        os.fsync(folder_fd)
    except OSError:
        if ours:
            try:
                os.unlink(name, dir_fd=folder_fd)
                os.fsync(folder_fd)
            except OSError:
                pass
        raise
