"""Storage SCP (PS3.4 Annex B): C-STORE data sets streamed to disk, renamed into place, then answered.

Per request (scenarios G.39–45). The request was already matched to its presentation context by the
DIMSE layer: a C-STORE whose Affected SOP Class is not the context's abstract syntax (a CT object on the
Verification context, an MR object on a CT context) is answered 0x0122 there and never reaches this.

1. ``begin``: the output directory (resolved at start), opened once as a descriptor kept for the
   whole run (opened again by its path when it was removed), is the anchor of every path below;
   create an unnamed temporary in it (O_TMPFILE: nothing visible, nothing to clean after a crash; made
   ahead, after the previous object's response, by ``make_spare``, and freed unused when the association
   ends), or,
   where the filesystem refuses that (found out once per output directory, placement.py), create
   ``.dcmnet-tmp-<process tag>-<n>.part`` in it (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0644,
   relative to that descriptor; the tag is 64 random bits per process, renewed after fork and on a name
   clash) and take an exclusive ``flock`` on it, held until it is renamed or removed; build the Part-10
   header from the command and the presentation context.
2. ``fragment``: feed each received memoryview to one :class:`~dcmnet_cli.part10.received.ReceivedDataset`
   (one walk of the element structure, nothing decoded, nesting bounded; a deflated data set is walked
   inflated, incrementally) and write what it returns straight to the file descriptor (``os.write``; the
   header goes out with the first fragment in one ``os.writev``), looping on partial writes. The walk
   (a) finds the data set's own SOP Class/Instance UID, which must match the command's, else 0xA900 and
   the temp file is dropped at once; (b) leaves out File Meta elements (group 0002) at the start of the
   data set, which would otherwise follow our File Meta and make the file read back wrong (logged at -v;
   inside a deflated data set they cannot be cut out: 0xC000); (c) stops at the first malformed header:
   0xC000 with the walker's reason as Error Comment, temp file dropped. A write error (disk full,
   directory gone) drops the temp file and marks the request 0xA700. In every failure the rest of the
   data set is read and discarded, so the association stays usable.
3. ``complete``: the data set must end exactly on an element boundary with every sequence, item and run
   of fragments closed, else 0xC000 "cannot understand" with the walker's one-line reason, nothing kept.
   Then read the elements a ``--filepath`` template names (pydicom, from the temp file, stop before
   pixels); derive a safe relative path (every value made path-safe, see part10/filenames.py); open each
   template folder component by component relative to the output directory's descriptor, creating it
   if missing, with O_NOFOLLOW: a symlink or non-directory on the way is 0xC000 "unsafe path", so a
   folder swapped for a symlink mid-run can make a store fail but never lead outside the output
   directory. fsync the file, link it (unnamed: one ``linkat``, which never overwrites) or rename or
   link it (named) between the two descriptors per ``--on-duplicate``, fsync the folder; only then answer C-STORE-RSP Success, and then start the ``--exec-on-receive``
   hook. With an index (``listen -od``), the file's row is queued just before the response, from the
   values the walk of step 2 kept (no second parse), and committed by the index's own thread with those
   of the objects around it: never before the file is whole; this process's queries wait for the queue,
   so they see the object once the response was sent. A crash before the commit leaves a file without a
   row, which the next start's reconciliation indexes (services/archive/index.py). A folder removed between its opening and the rename (ENOENT) is opened again and the rename
   retried once; so is the output directory, removed under an unnamed temporary (which it outlives).
4. ``abandon`` (abort, FIN, shutdown mid-data-set): remove the temp file (an unnamed one is freed when
   closed); the final name is never touched.

Start-up removes the temporaries of crashed runs (``prepare``): only those no live process holds the
``flock`` of, so a second ``listen`` (or worker, or C-MOVE/C-GET receiver) on the same folder leaves the
in-flight stores of the first alone.

Duplicates: ``replace`` renames over the old file atomically (a symlink planted there is replaced, never
followed; an unnamed temporary is first linked to a locked temporary's name in the output directory); ``keep`` keeps the old file (hard link refuses to overwrite) and answers Success, but only
when the old entry is a regular file: a symlink or folder at the name is 0xA700 (the object would be
stored nowhere); ``rename`` links to ``name_1.dcm``, ``name_2.dcm`` … with the same no-overwrite guarantee.
"""

from __future__ import annotations

import errno
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ...dimse.status import CANNOT_UNDERSTAND, OUT_OF_RESOURCES
from ...part10.filenames import PathTemplate
from ...transport.threads import Lock
from ..session import AssociationReport
from .events import ListenEvent
from .hooks import HookRunner
from .naming import StoreFailure
from .placement import clean_leftovers, create_temp, create_unnamed, open_folder, open_root, unnamed_works

DUPLICATE_POLICIES = ("replace", "keep", "rename")
SPARES = 2
"""Unnamed temporaries made ahead (:meth:`StorageSCP.make_spare`) at most: enough for associations taking turns."""


@dataclass
class StorageConfig:
    output_dir: str | None
    template: PathTemplate | None = None
    on_duplicate: str = "replace"
    fsync: bool = True
    ignore: bool = False
    exec_on_receive: list[str] | None = None
    exec_on_association_end: list[str] | None = None
    index: Any = None
    """An :class:`~..archive.index.IndexRef`: every stored file is indexed after its rename and fsync."""
    read_only: bool = False
    """``listen --read-only``: every C-STORE is refused (0x0124 not authorized) and nothing is written."""


@dataclass
class StorageTotals:
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    lock: Any = field(default_factory=Lock, repr=False)

    def add(self, ok: bool, size: int = 0) -> None:
        with self.lock:
            if ok:
                self.stored += 1
                self.bytes += size
            else:
                self.failed += 1


def removed(folder_fd: int) -> bool:
    """Whether the directory ``folder_fd`` was removed (no link left to it)."""
    try:
        return os.fstat(folder_fd).st_nlink == 0
    except OSError:
        return False


def os_failure(error: OSError, doing: str) -> StoreFailure:
    return StoreFailure(OUT_OF_RESOURCES, f"{doing}: {error.strerror or error}"[:64])


class StorageSCP:
    """The storage side of ``listen``: handler factory, totals, hooks. Thread-safe; one per process."""

    def __init__(self, config: StorageConfig, on_event: Callable[[ListenEvent], None] = lambda e: None,
                 hooks: HookRunner | None = None) -> None:
        self.config = config
        self.on_event = on_event
        self.totals = StorageTotals()
        self.hooks = hooks or HookRunner(log=on_event)
        self.root = os.path.realpath(config.output_dir) if config.output_dir else None
        self._active: set[str] = set()
        self._stored: dict[int, list[str]] = {}  # per association (id of its report): DCMNET_FILES
        self._lock = Lock()
        self._root_fd = -1  # the output directory, opened once (see create_temp)
        self._retired: list[int] = []  # descriptors of an output directory removed meanwhile
        self._unnamed: bool | None = None  # unnamed temporaries work in the output directory (None: not known yet)
        self._spares: list[tuple[int, int]] = []  # (output directory's descriptor, unnamed temporary): see make_spare
        if config.template is not None and config.template.dataset_fields:
            importlib.import_module("pydicom")  # pay for it now, not in the first association

    def prepare(self) -> int:
        """Create the output directory if needed and remove leftover temp files; returns how many."""
        if self.root is None or self.config.ignore:
            return 0
        os.makedirs(self.root, exist_ok=True)
        return clean_leftovers(self.root)

    def released(self, report: AssociationReport) -> None:
        """Before the A-RELEASE-RP: commit the index rows of what this association stored, so a sender that
        got its release answer finds its objects from any process (another worker, a second listen, a
        tool reading the index), not only from this one."""
        if self.config.index is not None and report.stored:
            self.config.index.get().sync(30.0)
        self._drop_spares()

    def association_ended(self, report: AssociationReport) -> None:
        """``--exec-on-association-end``, for associations that stored at least one object."""
        self._drop_spares()
        if self.config.index is not None and report.stored:  # its rows committed first (services/archive/index.py)
            self.config.index.get().sync(30.0)
        argv = self.config.exec_on_association_end
        with self._lock:
            files = self._stored.pop(id(report), [])
        if argv and report.stored > 0:
            self.hooks.run([*argv, self.root or ""], {
                "DCMNET_COUNT": report.stored, "DCMNET_DIR": self.root or "", "DCMNET_REMOTE_AET": report.calling_ae,
                "DCMNET_LOCAL_AET": report.called_ae, "DCMNET_PEER": report.peer}, files)

    def stored(self, report: AssociationReport, path: str) -> None:
        """Note a file this association stored (for the association-end hook's DCMNET_FILES)."""
        if self.config.exec_on_association_end:
            with self._lock:
                self._stored.setdefault(id(report), []).append(path)

    def open_folder(self, root_fd: int, relative: str) -> int:
        """A descriptor of template folder ``relative`` (non-empty) below the output directory ``root_fd``,
        created if needed, opened component by component without following symlinks: a symlink or a
        non-directory on the way is 0xC000 "unsafe path", another error 0xA700. The caller closes it."""
        try:
            return open_folder(root_fd, relative)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreFailure(CANNOT_UNDERSTAND, "unsafe path: a folder on the way is a symlink") from None
            raise os_failure(error, "cannot create folder") from None

    def create_temp(self) -> tuple[int, str | None, int]:
        """A new temporary in the output directory: (the directory's descriptor, the temporary's name in it
        or None for an unnamed one, its descriptor). Unnamed (O_TMPFILE, see placement.py) when the
        directory allows it, found out on first use and remembered; else a named, locked one. The directory
        is opened once and its descriptor kept for every object of every association (no open/close of it
        per object); the caller must not close it. When the directory was removed (nothing can be created
        in it), it is opened again by its path, so a folder made again at that path is used from then on,
        and a folder still missing raises OSError."""
        root_fd = self._root_fd
        if root_fd < 0:
            root_fd = self.reopen_root(-1)
        while self._spares:
            try:
                spare_root, spare = self._spares.pop()
            except IndexError:  # another association took the last one
                break
            if spare_root == root_fd and not removed(root_fd):  # one fstat: the same answers as without it
                return root_fd, None, spare
            os.close(spare)  # made in an output directory since removed (or replaced): freed
        try:
            name, fd = self._create(root_fd)
        except OSError:
            if not removed(root_fd):
                raise
            root_fd = self.reopen_root(root_fd)
            name, fd = self._create(root_fd)
        return root_fd, name, fd

    def make_spare(self) -> None:
        """Make the next object's unnamed temporary now (the Storage SCP calls this after its C-STORE-RSP, while
        the sender reads the answer): :meth:`create_temp` then hands it out with no syscall between a request's
        arrival and its response. Only where unnamed temporaries work (an unused one is freed when closed, so
        nothing is ever left behind, and the end of an association frees it); at most :data:`SPARES`; any
        error is left for create_temp to meet."""
        root_fd = self._root_fd
        if self._unnamed is not True or root_fd < 0 or len(self._spares) >= SPARES:
            return
        try:
            self._spares.append((root_fd, create_unnamed(root_fd)))
        except OSError:
            pass

    def _drop_spares(self) -> None:
        """Free the temporaries made ahead when an association ends (released or not): a listener between
        associations holds no temporary at all, and the next association's first object makes its own."""
        while True:
            try:
                _root, spare = self._spares.pop()
            except IndexError:
                return
            os.close(spare)

    def _create(self, root_fd: int) -> tuple[str | None, int]:
        unnamed = self._unnamed
        if unnamed is None:  # once per output directory (and again when it was opened again)
            unnamed = self._unnamed = unnamed_works(root_fd)
        if unnamed:
            return None, create_unnamed(root_fd)
        return create_temp(root_fd)

    def reopen_root(self, stale: int) -> int:
        """Open the output directory in place of descriptor ``stale`` (unless another thread just did), and
        find out again whether unnamed temporaries work there; OSError when it is missing. The stale one
        stays open until :meth:`close`: another association may still be using it."""
        with self._lock:
            if self._root_fd == stale:
                assert self.root is not None
                fd = open_root(self.root)
                if stale >= 0:
                    self._retired.append(stale)
                self._root_fd, self._unnamed = fd, None
            return self._root_fd

    def track(self, tmp: str, active: bool) -> None:
        with self._lock:
            (self._active.add if active else self._active.discard)(tmp)

    def close(self, grace: float) -> None:
        """After the server stopped: remove temp files of associations still stuck mid-data-set
        (their threads may be blocked in a read the shutdown could not wake), then wait for hooks."""
        with self._lock:
            stuck, self._active = list(self._active), set()
        for tmp in stuck:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        with self._lock:
            fds, self._retired, self._root_fd = [self._root_fd, *self._retired], [], -1
            fds += [spare for _root, spare in self._spares]
            self._spares = []
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        if self.config.index is not None:  # the rows still queued are committed (services/archive/index.py)
            self.config.index.close()
        self.hooks.close(grace)
