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

import errno
import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ...dimse.commandset import C_STORE_RQ, Message, c_store_rsp
from ...dimse.connection import RequestRefused
from ...part10 import filemeta as part10
from ...transport.threads import Lock
from ...part10.filenames import PathTemplate, TemplateError, escaped, inside, safe_component
from .hooks import HookRunner
from .placement import clean_leftovers, create_temp as _create_temp, fsync_dir as _fsync_dir
from .placement import write_all as _write_all, writev_all as _writev_all
from ..session import AssociationReport, MessageHandler, Session
from .entity import EchoHandler
from .events import RECEIVED, STORE_FAILED, STORED, CheckSkipped, ListenEvent, ObjectOutcome, UnsafeValue
from ...part10.syntaxes import encoding_of

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

PEEK_LIMIT = 1 << 20
"""Bytes at the start of a data set searched for (0008,0016)/(0008,0018); past that the check is skipped."""
MAX_FOLDERS = 4096
"""Template folders remembered as created and checked (the cache is emptied when full)."""
DUPLICATE_POLICIES = ("replace", "keep", "rename")
MAX_RENAME = 10000
_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}$")


class StoreFailure(Exception):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


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


def _os_failure(error: OSError, doing: str) -> StoreFailure:
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
            raise _os_failure(error, "cannot create folder") from None
        real = os.path.realpath(folder)
        if not inside(root, real):
            raise StoreFailure(CANNOT_UNDERSTAND, "unsafe path: outside the output directory")
        try:
            st = os.stat(real)
        except OSError as error:
            raise _os_failure(error, "cannot create folder") from None
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


class StoreHandler(MessageHandler):
    """One C-STORE request (PS3.7 §9.1.1, PS3.4 B.2.2)."""

    def __init__(self, scp: StorageSCP) -> None:
        self.scp = scp
        self.tmp: str | None = None
        self.fd = -1
        self.header: bytes | None = None  # written with the first fragment
        self.check: part10.HeadCheck | None = None
        self.failure: StoreFailure | None = None
        self.size = 0
        self.received = 0

    # ---------------------------------------------------------------- MessageHandler

    def begin(self, session: Session, context_id: int, message: Message) -> None:
        self.session, self.context_id, self.message, self.report = session, context_id, message, session.report
        self.peer = session.driver.peer
        context = session.contexts.get(context_id)
        self.transfer_syntax = context.transfer_syntax if context else "1.2.840.10008.1.2"
        if self.scp.config.ignore or not message.has_dataset:
            return
        try:
            header = part10.file_meta(message.affected_sop_class_uid or "", message.affected_sop_instance_uid or "",
                                      self.transfer_syntax, self.report.calling_ae)
        except part10.Part10Error as error:
            self.failure = StoreFailure(CANNOT_UNDERSTAND, str(error)[:64])
            return
        assert self.scp.root is not None
        try:
            self.tmp, self.fd = _create_temp(self.scp.root)
        except OSError as error:
            self._fail(_os_failure(error, "cannot create file"))
            return
        self.scp.track(self.tmp, True)
        self.header = header
        self.size = len(header)
        implicit, little, deflated = encoding_of(self.transfer_syntax)
        self.check = part10.HeadCheck(implicit, little, deflated, PEEK_LIMIT)

    def fragment(self, data: memoryview, last: bool) -> None:
        self.received += len(data)
        if self.fd < 0:
            return
        if self.check is not None and not self.check.decided:
            self._check_uids(data, last)
            if self.fd < 0:
                return
        try:
            if self.header is not None:
                _writev_all(self.fd, self.header, data)
                self.header = None
            else:
                _write_all(self.fd, data)
            self.size += len(data)
        except OSError as error:
            self._fail(_os_failure(error, "write failed"))

    def complete(self, dataset: bytes | None = None) -> None:
        message = self.message
        path, duplicate = None, None
        try:
            if self.scp.config.ignore:
                status, comment = SUCCESS, None
            else:
                path, duplicate = self._finish()
                status, comment = SUCCESS, None
        except StoreFailure as failure:
            status, comment = failure.status, failure.comment
        except Exception as error:  # a bug must not leave a temp file or an unanswered request
            status, comment = CANNOT_UNDERSTAND, f"internal error: {type(error).__name__}"
        finally:
            self._discard()
        assert message.message_id is not None
        self.session.send(self.context_id, c_store_rsp(
            message.message_id, status, message.affected_sop_class_uid, message.affected_sop_instance_uid, comment))
        self._account(status, path, duplicate, comment)

    def abandon(self) -> None:
        self._discard()

    def refuse(self, session: Session, event: RequestRefused) -> None:
        """A C-STORE-RQ whose SOP class does not fit its context: answered, counted, logged; nothing written."""
        self.session, self.message, self.report, self.peer = session, event.message, session.report, session.driver.peer
        session.answer(event.context_id, event.message, event.status, event.reason[:64])
        self._account(event.status, None, None, event.reason)

    # ---------------------------------------------------------------- internals

    def _fail(self, failure: StoreFailure) -> None:
        if self.failure is None:
            self.failure = failure
        self._discard()

    def _discard(self) -> None:
        """Close and remove the temp file, if it is still ours."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.scp.track(self.tmp, False)
            self.tmp = None

    def _finish(self) -> tuple[str, str | None]:
        if self.failure is not None:
            raise self.failure
        if not self.message.has_dataset or self.fd < 0:
            raise StoreFailure(CANNOT_UNDERSTAND, "C-STORE-RQ without a data set")
        try:
            if self.header is not None:  # no data set fragment arrived
                _write_all(self.fd, self.header)
                self.header = None
        except OSError as error:
            raise _os_failure(error, "write failed") from None
        check = self.check
        assert check is not None  # set with the temporary file in begin()
        if not check.decided:  # the data set ended without a fragment marked last
            self._check_uids(b"", True)
        if self.failure is not None:
            raise self.failure
        if check.found is None:
            self.scp.on_event(CheckSkipped(self.peer, "SOP UIDs not within the first MiB of the data set"))
        relative = self._relative_path()
        folder, _sep, name = relative.rpartition("/")
        final_dir = self.scp.folder(folder) if folder else self.scp.root
        assert final_dir is not None
        try:
            if self.scp.config.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            try:
                path, duplicate = self._place(final_dir, name)
            except FileNotFoundError:
                if not folder:
                    raise
                self.scp.forget_folder(folder)  # removed since we checked it: create and check it again
                final_dir = self.scp.folder(folder)
                path, duplicate = self._place(final_dir, name)
            if self.scp.config.fsync:
                _fsync_dir(final_dir)
        except OSError as error:
            raise _os_failure(error, "cannot store file") from None
        return path, duplicate

    def _check_uids(self, data: bytes | memoryview, last: bool) -> None:
        """Data set SOP Class/Instance UID = the command's (PS3.4 B.2.2, scenario F.37), else 0xA900 (and
        the temp file is dropped at once); a malformed start is 0xC000. Fed each fragment until decided."""
        assert self.check is not None
        try:
            if not self.check.feed(data, last):
                return
        except part10.Part10Error as error:
            self._fail(StoreFailure(CANNOT_UNDERSTAND, f"cannot parse data set: {error}"[:64]))
            return
        found = self.check.found
        if found is None:
            return  # not within PEEK_LIMIT: reported as check-skipped if the store succeeds
        pairs = ((part10.SOP_CLASS_UID, self.message.affected_sop_class_uid, "SOP Class"),
                 (part10.SOP_INSTANCE_UID, self.message.affected_sop_instance_uid, "SOP Instance"))
        for tag, expected, what in pairs:
            if found.get(tag) != (expected or ""):
                self._fail(StoreFailure(DATASET_MISMATCH, f"data set {what} UID differs from the command's"))
                return

    def _relative_path(self) -> str:
        template = self.scp.config.template
        message = self.message
        sop_instance = message.affected_sop_instance_uid or ""
        if template is None:  # the default name: no other field to look at
            name = safe_component(sop_instance)
            if sop_instance and name != sop_instance:
                self.scp.on_event(UnsafeValue(self.peer, f"SOPInstanceUID {escaped(sop_instance)!r} stored as {name!r}"))
            return name + ".dcm"
        values: dict[str, str | None] = {"SOPInstanceUID": sop_instance, "SOPClassUID": message.affected_sop_class_uid,
                                         "CallingAET": self.report.calling_ae, "CalledAET": self.report.called_ae}
        if template.dataset_fields:
            values.update(self._dataset_values(template.dataset_fields))
        for name in template.fields:
            raw = values.get(name)
            if raw and safe_component(raw) != raw:
                self.scp.on_event(UnsafeValue(self.peer, f"{name} {escaped(raw)!r} stored as {safe_component(raw)!r}"))
        try:
            return template.render(values)
        except TemplateError as error:
            raise StoreFailure(CANNOT_UNDERSTAND, str(error)[:64]) from None

    def _dataset_values(self, keywords: tuple[str, ...]) -> dict[str, str | None]:
        """The template's elements, read with pydicom from the temp file (stop before pixels)."""
        import pydicom
        from pydicom.datadict import tag_for_keyword
        from pydicom.multival import MultiValue

        tags = [int(tag_for_keyword(k) or 0) for k in keywords]  # keywords were checked when the template was parsed
        try:
            with os.fdopen(os.dup(self.fd), "rb") as handle:
                handle.seek(0)  # the duplicate shares the writer's offset (at the end)
                ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=[0x00080005, *tags])
                values: dict[str, str | None] = {}
                for keyword, tag in zip(keywords, tags):
                    element = ds.get(tag)
                    value = None if element is None or element.VR == "SQ" else element.value
                    if isinstance(value, MultiValue):
                        value = "\\".join(str(v) for v in value)
                    values[keyword] = None if value is None or value == "" else str(value)
        except Exception as error:  # pydicom raises many types for bad data
            raise StoreFailure(CANNOT_UNDERSTAND, f"cannot parse data set: {type(error).__name__}"[:64]) from None
        return values

    def _place(self, folder: str, name: str) -> tuple[str, str | None]:
        """Move the temp file to its final name per the duplicate policy; never truncate in place."""
        assert self.tmp is not None
        target = os.path.join(folder, name)
        policy = self.scp.config.on_duplicate
        if policy == "replace":
            existed = os.path.lexists(target)
            os.replace(self.tmp, target)  # a symlink at ``target`` is replaced, not followed
            self.scp.track(self.tmp, False)
            self.tmp = None
            return target, "replaced" if existed else None
        match = _EXT.search(name)
        stem, ext = (name[:match.start()], match.group()) if match else (name, "")
        for n in range(MAX_RENAME if policy == "rename" else 1):
            candidate = target if n == 0 else os.path.join(folder, f"{stem}_{n}{ext}")
            try:
                os.link(self.tmp, candidate, follow_symlinks=False)
            except FileExistsError:
                continue
            os.unlink(self.tmp)
            self.scp.track(self.tmp, False)
            self.tmp = None
            return candidate, "renamed" if n else None
        if policy == "keep":
            return target, "kept"
        raise OSError(errno.EEXIST, f"{MAX_RENAME} copies of this name exist")

    def _account(self, status: int, path: str | None, duplicate: str | None, comment: str | None) -> None:
        message, report = self.message, self.report
        ok = status == SUCCESS
        size = self.size if path else self.received
        if ok:
            report.stored += 1
        else:
            report.failed += 1
        self.scp.totals.add(ok, size)
        self.scp.on_event(ObjectOutcome(
            STORED if ok and path else RECEIVED if ok else STORE_FAILED, path, message.affected_sop_class_uid,
            message.affected_sop_instance_uid, size, f"0x{status:04X}", report.calling_ae, self.peer,
            duplicate or None, comment or None))
        argv = self.scp.config.exec_on_receive
        if ok and path and argv and duplicate != "kept":
            self.scp.hooks.run([*argv, path], {
                "DCMNET_PATH": path, "DCMNET_SOP_CLASS_UID": message.affected_sop_class_uid or "",
                "DCMNET_SOP_INSTANCE_UID": message.affected_sop_instance_uid or "",
                "DCMNET_REMOTE_AET": report.calling_ae, "DCMNET_LOCAL_AET": report.called_ae,
                "DCMNET_PEER": self.peer})
