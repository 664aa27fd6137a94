"""One C-STORE request on the SCP side (PS3.7 §9.1.1, PS3.4 B.2.2): the steps are in :mod:`.storage`."""

from __future__ import annotations

import os

from ...dimse.commandset import Message, c_store_rsp
from ...dimse.connection import RequestRefused
from ...dimse.status import CANNOT_UNDERSTAND, DATASET_MISMATCH, SUCCESS
from ...part10 import filemeta as part10
from ...part10.syntaxes import IMPLICIT_LE, encoding_of
from ..session import MessageHandler, Session
from .events import RECEIVED, STORE_FAILED, STORED, CheckSkipped, ObjectOutcome, UnsafeValue
from .naming import StoreFailure, relative_path
from .placement import create_temp, fsync_dir, place, write_all, writev_all
from .storage import PEEK_LIMIT, StorageSCP, os_failure


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
        self.transfer_syntax = context.transfer_syntax if context else IMPLICIT_LE
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
            self.tmp, self.fd = create_temp(self.scp.root)
        except OSError as error:
            self._fail(os_failure(error, "cannot create file"))
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
                writev_all(self.fd, self.header, data)
                self.header = None
            else:
                write_all(self.fd, data)
            self.size += len(data)
        except OSError as error:
            self._fail(os_failure(error, "write failed"))

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
                write_all(self.fd, self.header)
                self.header = None
        except OSError as error:
            raise os_failure(error, "write failed") from None
        check = self.check
        assert check is not None  # set with the temporary file in begin()
        if not check.decided:  # the data set ended without a fragment marked last
            self._check_uids(b"", True)
        if self.failure is not None:
            raise self.failure
        if check.found is None:
            self.scp.on_event(CheckSkipped(self.peer, "SOP UIDs not within the first MiB of the data set"))
        relative = relative_path(self.scp.config.template, self.message, self.report, self.fd,
                                 lambda detail: self.scp.on_event(UnsafeValue(self.peer, detail)))
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
                fsync_dir(final_dir)
        except OSError as error:
            raise os_failure(error, "cannot store file") from None
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

    def _place(self, folder: str, name: str) -> tuple[str, str | None]:
        assert self.tmp is not None
        path, duplicate = place(self.tmp, folder, name, self.scp.config.on_duplicate)
        if duplicate != "kept":  # renamed or linked away: no longer a temporary of ours
            self.scp.track(self.tmp, False)
            self.tmp = None
        return path, duplicate

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
