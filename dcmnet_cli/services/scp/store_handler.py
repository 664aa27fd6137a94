"""One C-STORE request on the SCP side (PS3.7 §9.1.1, PS3.4 B.2.2): the steps are in :mod:`.storage`."""

from __future__ import annotations

import os

from ...dimse.commandset import C_ECHO_RQ, C_STORE_RQ, Message
from ...dimse.connection import RequestRefused
from ...dimse.status import CANNOT_UNDERSTAND, DATASET_MISMATCH, OUT_OF_RESOURCES, SUCCESS
from ...part10 import filemeta as part10
from ...part10.received import ReceivedDataset
from ...part10.syntaxes import IMPLICIT_LE, encoding_of
from ..archive.extraction import INDEXED, RawValues
from ..session import HandlerFactory, MessageHandler, Session
from ..store_commands import store_rsp
from .entity import EchoHandler
from .events import RECEIVED, STORE_FAILED, STORED, HookFailed, ObjectOutcome, UnsafeValue
from .naming import StoreFailure, relative_path
from .placement import place, place_unnamed, sync_placed, withdraw, write_all, writev_all
from .storage import StorageSCP, os_failure, removed

NOT_AUTHORIZED = 0x0124
"""Refused: Not Authorized (PS3.7 Annex C general status): ``listen --read-only``'s answer to every C-STORE-RQ."""


class StoreHandler(MessageHandler):
    """One C-STORE request (PS3.7 §9.1.1, PS3.4 B.2.2)."""

    def __init__(self, scp: StorageSCP) -> None:
        self.scp = scp
        self.tmp: str | None = None  # the temporary's name in the output root
        self.root_fd = -1  # the output root, the anchor of every path (see placement.py)
        self.fd = -1
        self.header: bytes | None = None  # written with the first fragment
        self.check: ReceivedDataset | None = None
        self.uids_checked = False
        self.failure: StoreFailure | None = None
        self.size = 0
        self.received = 0
        self.to_index: str | None = None  # the placed file, indexed once the response is sent
        self.tmp_path = ""  # the temporary's path (for StorageSCP.close), while there is one
        self.queued: object = None  # what the index's submit returned: made ready after the response

    # ---------------------------------------------------------------- MessageHandler

    def begin(self, session: Session, context_id: int, message: Message) -> None:
        self.session, self.context_id, self.message, self.report = session, context_id, message, session.report
        self.peer = session.driver.peer
        context = session.contexts.get(context_id)
        self.transfer_syntax = context.transfer_syntax if context else IMPLICIT_LE
        if self.scp.config.read_only:  # listen --read-only: refused, nothing written (the data set is read and dropped)
            self.failure = StoreFailure(NOT_AUTHORIZED, "read-only node: storage refused")
            return
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
            self.root_fd, self.tmp, self.fd = self.scp.create_temp()  # the root stays open: never closed here
        except OSError as error:
            self._fail(os_failure(error, "cannot create file"))
            return
        if self.tmp is not None:  # a named temporary (placement.py): removed at shutdown if still there
            self.tmp_path = os.path.join(self.scp.root, self.tmp)
            self.scp.track(self.tmp_path, True)
        self.header = header
        self.size = len(header)
        implicit, little, deflated = encoding_of(self.transfer_syntax)
        self.check = ReceivedDataset(implicit, little, deflated,
                                     wanted=INDEXED if self.scp.config.index is not None else frozenset())

    def fragment(self, data: memoryview, last: bool) -> None:
        self.received += len(data)
        if self.fd < 0:
            return
        assert self.check is not None  # set with the temporary file in begin()
        try:
            out = self.check.feed(data)  # the data less any File Meta elements at its start
        except part10.Part10Error as error:
            self._fail(StoreFailure(CANNOT_UNDERSTAND, str(error)[:64]))
            return
        if not self.uids_checked and self.check.has_uids:
            self._check_uids()
            if self.fd < 0:
                return
        if not out:
            return
        try:
            if self.header is not None:
                writev_all(self.fd, self.header, out)
                self.header = None
            else:
                write_all(self.fd, out)
            self.size += len(out)
        except OSError as error:
            self._fail(os_failure(error, "write failed"))

    def bulk_target(self, count: int) -> tuple[int, int] | None:
        """Our temporary file, for the bytes the walk passes over unread (inside Pixel Data), once the header
        is written; never for a deflated data set or while File Meta elements may still be cut out."""
        if self.fd < 0 or self.header is not None or self.check is None:
            return None
        blind = self.check.skippable
        return (self.fd, min(count, blind)) if blind else None

    def bulk_moved(self, count: int, error: OSError | None) -> None:
        self.received += count
        if self.fd < 0 or self.check is None:
            return
        self.check.skip(count)
        if error is not None:
            self._fail(os_failure(error, "write failed"))
            return
        self.size += count

    def complete(self, dataset: bytes | None = None) -> None:
        message = self.message
        path, duplicate = None, None
        try:
            if self.scp.config.ignore and not self.scp.config.read_only:
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
        self._index()  # queued before the response (a query after it sees the object); written off this thread
        # Session.send may hold it while the peer's next requests are already here, up to half the granted
        # window (Driver.send_answer): holding all of them made both sides take turns (store --async 8 →
        # listen -od, 2 cores, wall +10-20 %); half lets the sender refill one half while this side serves
        # the other.
        self.session.send(self.context_id, store_rsp(message.message_id, status, message.affected_sop_class_uid,
                                                     message.affected_sop_instance_uid, comment))
        self._account(status, path, duplicate, comment)
        if self.scp.config.index is not None:  # a due batch written, else this row made ready, while the sender reads the answer
            queued, self.queued = self.queued, None
            if self.session.driver.events_waiting:  # a pipelining peer's next request is here: no time to
                queued = None  # wait out; the row is made ready with its batch, where rows cost less (issue 13)
            self.scp.config.index.get().write_due(queued)
        if path is not None:
            self.scp.make_spare()  # the next object's temporary, made while the sender reads the answer

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
        """Remove the temp file if it is still ours, then close it (releasing its lock). The root's
        descriptor belongs to the :class:`StorageSCP` (kept open for every object), not to this request."""
        if self.tmp is not None:
            try:
                os.unlink(self.tmp, dir_fd=self.root_fd)
            except OSError:
                pass
            self.scp.track(self.tmp_path, False)
            self.tmp = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.root_fd = -1

    def _finish(self) -> tuple[str, str | None]:
        if self.failure is not None:
            raise self.failure
        if not self.message.has_dataset or self.fd < 0:
            raise StoreFailure(CANNOT_UNDERSTAND, "C-STORE-RQ without a data set")
        check = self.check
        assert check is not None  # set with the temporary file in begin()
        try:
            check.finish()
        except part10.Part10Error as error:
            raise StoreFailure(CANNOT_UNDERSTAND, str(error)[:64]) from None
        self._check_uids()
        if self.failure is not None:
            raise self.failure
        try:
            if self.header is not None:  # no data set byte to write (empty, or only File Meta elements)
                write_all(self.fd, self.header)
                self.header = None
        except OSError as error:
            raise os_failure(error, "write failed") from None
        if check.dropped:
            self.scp.on_event(UnsafeValue(self.peer, f"{check.dropped} bytes of File Meta elements (group 0002) "
                                                     "at the start of the data set not stored"))
        relative = relative_path(self.scp.config.template, self.message, self.report, self.fd,
                                 lambda detail: self.scp.on_event(UnsafeValue(self.peer, detail)))
        try:
            if self.scp.config.fsync:
                os.fsync(self.fd)
            path, duplicate = self._place(relative)
        except OSError as error:
            raise os_failure(error, "cannot store file") from None
        if self.scp.config.index is not None and duplicate != "kept":
            self.to_index = path
            if getattr(self.scp.config.index, "commit_before_success", False):  # PostgreSQL (issue 14)
                try:
                    self._index(before_success=True)
                except StoreFailure:  # answered a failure: the sender retries, so nothing stays placed
                    withdraw(path, duplicate in (None, "renamed"), self.scp.config.fsync)
                    raise
        return path, duplicate

    def _index(self, before_success: bool = False) -> None:
        """Index the file now complete (renamed, fsynced), from the values the walk kept: queued
        (``Index.submit``) just before the C-STORE-RSP is sent, and committed by the index's own thread with
        the rows of the objects around it (services/archive/index.py: queries of this process wait for the
        queue, so they see the object once the response was sent). A failure is logged (``index-error``);
        the file stays, and the next start's reconciliation indexes it."""
        path, self.to_index = self.to_index, None
        check = self.check
        if path is None or check is None:
            return
        try:
            self.queued = self.scp.config.index.get().submit(path, RawValues(check.values, check.little),
                                                             self.transfer_syntax, self.size, self._index_failed)
        except Exception as error:  # sqlite3.Error, OSError: the store itself succeeded
            if before_success:  # a shared index (issue 14): no Success without the row; the sender retries
                raise StoreFailure(OUT_OF_RESOURCES, f"cannot index: {error}"[:64]) from None
            self._index_failed(path, error)

    def _index_failed(self, path: str, error: BaseException) -> None:
        self.scp.on_event(HookFailed(f"cannot index {path}: {type(error).__name__}: {error}", "index-error"))

    def _check_uids(self) -> None:
        """Data set SOP Class/Instance UID = the command's (PS3.4 B.2.2, scenario F.37), else 0xA900 (and
        the temp file is dropped at once); checked as soon as the walk passed both, or at the end."""
        if self.uids_checked:
            return
        self.uids_checked = True
        check = self.check
        assert check is not None
        pairs = ((part10.SOP_CLASS_UID, self.message.affected_sop_class_uid, "SOP Class"),
                 (part10.SOP_INSTANCE_UID, self.message.affected_sop_instance_uid, "SOP Instance"))
        for tag, expected, what in pairs:
            if check.uid(tag) != (expected or ""):
                self._fail(StoreFailure(DATASET_MISMATCH, f"data set {what} UID differs from the command's"))
                return

    def _place(self, relative: str) -> tuple[str, str | None]:
        """Link or rename the temporary into its folder, all relative to descriptors (see placement.py);
        a folder removed meanwhile (ENOENT) is created again and the move retried once, and so is the
        output directory when an unnamed temporary (which can be linked anywhere) was made in one removed."""
        scp = self.scp
        folder, _sep, name = relative.rpartition("/")
        for attempt in (0, 1):
            try:
                folder_fd = scp.open_folder(self.root_fd, folder) if folder else self.root_fd
            except StoreFailure:
                if attempt or not self._root_reopened():
                    raise
                continue
            try:
                placed, duplicate = self._link(folder_fd, name)
                if scp.config.fsync:
                    sync_placed(folder_fd, placed, duplicate in (None, "renamed"))  # failed: not left placed
            except FileNotFoundError:
                if attempt or not (self._root_reopened() or folder):
                    raise
                continue
            finally:
                if folder:
                    os.close(folder_fd)
            if duplicate != "kept" and self.tmp is not None:  # renamed or linked away: no longer a temporary
                scp.track(self.tmp_path, False)
                self.tmp = None
            return os.path.join(scp.root or "", folder, placed), duplicate
        raise AssertionError("unreachable")

    def _link(self, folder_fd: int, name: str) -> tuple[str, str | None]:
        policy = self.scp.config.on_duplicate
        if self.tmp is None:
            return place_unnamed(self.root_fd, self.fd, folder_fd, name, policy)
        return place(self.root_fd, self.tmp, folder_fd, name, policy)

    def _root_reopened(self) -> bool:
        """When the output directory was removed: open it again (OSError when it is still missing) and say
        so. An unnamed temporary outlives it and is linked into the new one; a named one went with it (the
        retry then finds nothing: ENOENT, as without it)."""
        if not removed(self.root_fd):
            return False
        self.root_fd = self.scp.reopen_root(self.root_fd)
        return True

    def _account(self, status: int, path: str | None, duplicate: str | None, comment: str | None) -> None:
        message, report = self.message, self.report
        ok = status == SUCCESS
        size = self.size if path else self.received
        if ok:
            report.stored += 1
            if path:
                self.scp.stored(report, path)
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


def storage_handlers(scp: StorageSCP) -> dict[int, HandlerFactory]:
    """The requests a Storage SCP serves: C-ECHO and C-STORE (``listen``, and the receivers of move/get)."""
    return {C_ECHO_RQ: EchoHandler, C_STORE_RQ: lambda: StoreHandler(scp)}
