"""Storage SCP (PS3.4 Annex B): C-STORE data sets streamed to disk, renamed into place, then answered.

Per request (scenarios G.39–45):

1. ``begin``: create ``.dcmnet-tmp-<process tag>-<n>.part`` in the output directory (O_CREAT | O_EXCL |
   O_NOFOLLOW, mode 0644; the tag is 64 random bits per process, renewed after fork and on a name clash)
   and build the Part-10 header from the command and the presentation context.
2. ``fragment``: write each received memoryview straight to the file descriptor (``os.write``; the header
   goes out with the first fragment in one ``os.writev``), looping on partial writes; nothing is kept in
   memory except, until they are found, a copy of the data set's first bytes (at most PEEK_LIMIT; usually
   none: the first fragment holds them): its own SOP Class/Instance UID must match the command's, else
   0xA900 and the temp file is dropped at once. A write error (disk full, directory gone) drops the temp
   file and marks the request 0xA700; the rest of the data set is read and discarded, so the association
   stays usable.
3. ``complete``: read the elements a ``--filepath`` template names (pydicom, from the temp file, stop
   before pixels); derive a safe final path inside the output directory (else 0xC000 "unsafe path");
   fsync, close, rename or link per ``--on-duplicate``, fsync the directory; only then answer C-STORE-RSP
   Success, and then start the ``--exec-on-receive`` hook. Template folders are created and checked
   (resolved, inside the output directory) once and remembered with the identity of the directory they
   resolved to; one ``stat`` per object confirms it, else (removed, or swapped for a symlink) the folder
   is created and checked again; a folder removed between that and the rename (ENOENT) is too, and the
   rename retried once. With no folder in the template the folder is the output directory, resolved at
   start.
4. ``abandon`` (abort, FIN, shutdown mid-data-set): remove the temp file; the final name is never touched.

Duplicates: ``replace`` renames over the old file atomically (a symlink planted there is replaced, never
followed); ``keep`` keeps the old file (hard link refuses to overwrite) and answers Success; ``rename``
links to ``name_1.dcm``, ``name_2.dcm`` … with the same no-overwrite guarantee.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ...dimse.commandset import C_STORE_RQ
from ...dimse.status import CANNOT_UNDERSTAND, OUT_OF_RESOURCES
from ...part10.filenames import PathTemplate, inside
from ...transport.threads import Lock
from ..session import AssociationReport, MessageHandler
from .entity import EchoHandler
from .events import ListenEvent
from .hooks import HookRunner
from .naming import StoreFailure
from .placement import clean_leftovers

PEEK_LIMIT = 1 << 20
"""Bytes at the start of a data set searched for (0008,0016)/(0008,0018); past that the check is skipped."""
MAX_FOLDERS = 4096
"""Template folders remembered as created and checked (the cache is emptied when full)."""
DUPLICATE_POLICIES = ("replace", "keep", "rename")


@dataclass
class StorageConfig:
    output_dir: str | None
    template: PathTemplate | None = None
    on_duplicate: str = "replace"
    fsync: bool = True
    ignore: bool = False
    exec_on_receive: list[str] | None = None
    exec_on_association_end: list[str] | None = None


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
        self._lock = Lock()
        self._folders: dict[str, tuple[str, tuple[int, int]]] = {}  # template folder → (real path, (dev, inode))
        if config.template is not None and config.template.dataset_fields:
            importlib.import_module("pydicom")  # pay for it now, not in the first association

    def prepare(self) -> int:
        """Create the output directory if needed and remove leftover temp files; returns how many."""
        if self.root is None or self.config.ignore:
            return 0
        os.makedirs(self.root, exist_ok=True)
        return clean_leftovers(self.root)

    def handlers(self) -> dict[int, Callable[[], MessageHandler]]:
        from ...dimse.commandset import C_ECHO_RQ
        from .store_handler import StoreHandler

        return {C_ECHO_RQ: EchoHandler, C_STORE_RQ: lambda: StoreHandler(self)}

    def association_ended(self, report: AssociationReport) -> None:
        """``--exec-on-association-end``, for associations that stored at least one object."""
        argv = self.config.exec_on_association_end
        if argv and report.stored > 0:
            self.hooks.run([*argv, self.root or ""], {
                "DCMNET_COUNT": report.stored, "DCMNET_DIR": self.root or "", "DCMNET_REMOTE_AET": report.calling_ae,
                "DCMNET_LOCAL_AET": report.called_ae, "DCMNET_PEER": report.peer})

    def folder(self, relative: str) -> str:
        """The real path of template folder ``relative`` (non-empty), created if needed and checked to be
        inside the output directory (0xC000 "unsafe path" if not).

        Remembered once checked, with the identity (device, inode) of the directory it resolved to: one
        ``stat`` per object then confirms the path still leads to that directory. A folder removed, or
        replaced (itself or a parent) by a symlink to elsewhere, resolves to another directory or to
        nothing, and is created and checked again from scratch.
        """
        entry = self._folders.get(relative)
        if entry is not None:
            real, identity = entry
            try:
                st = os.stat(real)
                if (st.st_dev, st.st_ino) == identity:
                    return real
            except OSError:
                pass
            self.forget_folder(relative)
        root = self.root
        assert root is not None
        folder = os.path.join(root, relative)
        if not inside(root, os.path.realpath(folder)):
            raise StoreFailure(CANNOT_UNDERSTAND, "unsafe path: outside the output directory")
        try:
            os.makedirs(folder, mode=0o755, exist_ok=True)
        except OSError as error:
            raise os_failure(error, "cannot create folder") from None
        real = os.path.realpath(folder)
        if not inside(root, real):
            raise StoreFailure(CANNOT_UNDERSTAND, "unsafe path: outside the output directory")
        try:
            st = os.stat(real)
        except OSError as error:
            raise os_failure(error, "cannot create folder") from None
        with self._lock:
            if len(self._folders) >= MAX_FOLDERS:
                self._folders.clear()
            self._folders[relative] = (real, (st.st_dev, st.st_ino))
        return real

    def forget_folder(self, relative: str) -> None:
        with self._lock:
            self._folders.pop(relative, None)

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
        self.hooks.close(grace)
