"""The C-STORE sub-operations of a C-MOVE or C-GET SCP (PS3.4 C.4.2.3, C.4.3.3), one instance at a time.

Both senders reuse the store SCU's rules (:mod:`..scu.store_plan`, :mod:`..scu.store_convert`,
:mod:`..dicomfiles`): a file goes on the accepted context of its own class and transfer syntax, streamed
from disk (``sendfile`` for a large one), and is re-encoded through pydicom only when the receiver accepted
none of its own syntax. The C-MOVE sender opens its association to the destination when the first
instance is sent (one context per class and syntax, plus an uncompressed fallback per class; beyond 128
contexts, one association per group of classes); the C-GET sender uses the requestor's association, where
a class goes only on a context the requestor offered with the SCP role (PS3.7 D.3.3.4).

A failure of one instance (file gone, no context, the receiver's failure status) is that instance's
outcome; a failure of the destination's association (:attr:`StoreOutcome.fatal`) ends the C-MOVE's
sub-operations. On a C-GET the requestor's association breaking raises: nothing more can be answered.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Sequence

from ...dimse.commandset import C_STORE_RSP, Message, c_store_rq
from ...dimse.fragment import Dataset, FileRegion
from ...errors import DcmnetError, InputError, NoAcceptedContext
from ...transport.client import Timeouts, release
from ...ul.negotiation import AcceptedContext, build_contexts
from ..dicomfiles import CHUNK_SIZE, INLINE_MAX, DicomFile, dataset_bytes, open_dataset, read_meta
from ..peer import Peer
from ..scu.association import associate
from ..scu.store_convert import convert
from ..scu.store_plan import choose_context, partition, proposed_contexts
from ..session import Session

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
Choices = dict[tuple[str, str], tuple[AcceptedContext | None, bool]]


class StoreOutcome(NamedTuple):
    """One sub-operation: the receiver's C-STORE status (None: not sent), and why when it failed."""

    status: int | None
    detail: str = ""
    fatal: bool = False
    """The destination's association ended: no further sub-operation can go (C-MOVE)."""


class Sender:
    """Sends one stored instance per :meth:`send`; :meth:`close` ends what it opened."""

    def send(self, instance: Any) -> StoreOutcome:
        raise NotImplementedError

    def close(self) -> None:
        """Release the association it opened, if any."""


def _planned(instance: Any) -> DicomFile:
    """A stand-in for planning contexts from the index's record, before any file is opened."""
    return DicomFile(instance.path, instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax, 0,
                     instance.size)


def send_instance(session: Session, instance: Any, choices: Choices, timeout: float | None,
                  originator: tuple[str, int] | None = None) -> StoreOutcome:
    """One C-STORE-RQ with the file of ``instance`` and its response. A problem with the file or the
    contexts is the outcome; the association's end raises (DcmnetError; InputError when the file ended
    mid-message and the link was dropped)."""
    key = (instance.sop_class_uid, instance.transfer_syntax)
    choice = choices.get(key)
    if choice is None:
        choice = choices[key] = choose_context(_planned(instance), session.contexts.values())
    context, must_convert = choice
    if context is None:
        return StoreOutcome(None, f"no accepted presentation context (with our SCU role) for {instance.sop_class_uid}")
    fd = -1
    dataset: Dataset
    try:
        if must_convert:
            dataset = convert(read_meta(instance.path), context.transfer_syntax)
        else:
            dataset, fd = stored_dataset(instance.path)
    except (InputError, NoAcceptedContext) as error:
        return StoreOutcome(None, str(error))
    aet, message_id = originator if originator is not None else (None, None)
    try:
        request_id = session.request(context.context_id, lambda mid: c_store_rq(
            mid, instance.sop_class_uid, instance.sop_instance_uid, move_originator_aet=aet,
            move_originator_id=message_id), dataset)
    finally:
        if fd >= 0:
            os.close(fd)
    response, _ = session.response(request_id, timeout, C_STORE_RSP)
    status = response.status if response.status is not None else 0xFFFF
    return StoreOutcome(status, response.error_comment or "")


_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
"""(0002,0000) UL, length 4: the first element of every File Meta group listen writes (PS3.10 §7.1)."""


def stored_dataset(path: str) -> tuple[Dataset, int]:
    """The data set of a stored file and the descriptor to close after sending it (-1: none): one open,
    the File Meta group skipped by its group length; a small file is read whole, a large one goes by
    ``sendfile``. Files without a group length go through the element walker (:func:`read_meta`).
    InputError when the file cannot be read (nothing is sent)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, size if size <= INLINE_MAX else 256)
    except OSError as error:
        os.close(fd)
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    offset = 144 + int.from_bytes(head[140:144], "little") if head[128:140] == b"DICM" + _GROUP_LENGTH else size + 1
    if offset > size:
        os.close(fd)
        file = read_meta(path, keep_content=True)
        if file.content is not None or file.dataset_length <= INLINE_MAX:
            return dataset_bytes(file), -1
        fd = open_dataset(file)
        return FileRegion(fd, file.offset, file.dataset_length, path).split(CHUNK_SIZE), fd
    if size <= INLINE_MAX:
        os.close(fd)
        return memoryview(head)[offset:], -1
    return FileRegion(fd, offset, size - offset, path).split(CHUNK_SIZE), fd


class GetSender(Sender):
    """C-GET: C-STORE-RQs on the requestor's own association (PS3.4 C.4.3.3)."""

    def __init__(self, session: Session, timeout: float | None) -> None:
        self.session, self.timeout = session, timeout
        self.choices: Choices = {}

    def send(self, instance: Any) -> StoreOutcome:
        return send_instance(self.session, instance, self.choices, self.timeout)


class MoveSender(Sender):
    """C-MOVE: C-STORE-RQs over associations we open to the destination, one group of classes at a time."""

    def __init__(self, calling_ae: str, timeouts: Timeouts, max_pdu: int, peer: Peer, instances: Sequence[Any],
                 request: Message, originator_aet: str) -> None:
        self.calling_ae, self.timeouts, self.max_pdu, self.peer = calling_ae, timeouts, max_pdu, peer
        self.originator = (originator_aet, request.message_id or 0)
        groups = partition([_planned(i) for i in instances])
        self.group_of = {f.sop_class_uid: index for index, group in enumerate(groups) for f in group}
        self.groups = groups
        self.session: Session | None = None
        self.current = -1
        self.choices: Choices = {}

    def send(self, instance: Any) -> StoreOutcome:
        group = self.group_of.get(instance.sop_class_uid, 0)
        try:
            if self.session is None or group != self.current:
                self.close()
                self._open(group)
            assert self.session is not None
            return send_instance(self.session, instance, self.choices, self.timeouts.dimse, self.originator)
        except DcmnetError as error:
            self._drop()
            return StoreOutcome(None, f"move destination {self.peer.called_ae} at {self.peer}: {error}", fatal=True)

    def _open(self, group: int) -> None:
        self.choices = {}
        self.current = group
        contexts = build_contexts(proposed_contexts(self.groups[group]))
        self.session = associate(self.peer, self.calling_ae, contexts, self.timeouts, self.max_pdu)

    def _drop(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.driver.closed:
            session.driver.abort()

    def close(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            release(session.driver, self.timeouts.acse)
        except DcmnetError:
            pass
        finally:
            if not session.driver.closed:
                session.driver.abort()


def get_sender(session: Session, timeout: float | None) -> Sender:
    return GetSender(session, timeout)


def move_sender(calling_ae: str, timeouts: Timeouts, max_pdu: int, peer: Peer, instances: Sequence[Any],
                request: Message, originator_aet: str = "") -> Sender:
    return MoveSender(calling_ae, timeouts, max_pdu, peer, instances, request, originator_aet)
