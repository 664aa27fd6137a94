"""C-STORE SCU (PS3.4 Annex B): send files to a Storage SCP, streaming their data sets from disk.

The plan, file by file:

1. **Inputs** (:func:`.store_inputs.collect`): paths, folders (optionally recursive, filtered by a glob), DICOMDIRs
   (their referenced files; the DICOMDIR itself is not sent). Only the File Meta group of each file is
   read (:mod:`..dicomfiles`); unusable files become input errors and the rest still go.
2. **Contexts** (:mod:`.store_plan`): for every (SOP class, transfer syntax) the files need, one
   context proposing just that syntax, plus one context per SOP class proposing explicit and implicit
   VR little endian as a fallback, so whatever the acceptor picks per context, each file still finds its
   own syntax if the peer supports it. More than 128 contexts (PS3.8 §9.3.2.2) → several associations.
3. **Transfer**: a file whose own syntax was accepted is streamed as it is on disk; otherwise it is
   re-encoded through pydicom (:mod:`.store_convert`) into an accepted syntax (PS3.5 conversions between uncompressed syntaxes,
   decompression where pydicom has a handler), or reported with the reason. Streaming never holds a
   large data set in memory: it is handed to the channel as a :class:`FileRegion`, which the transport
   reads a batch of PDUs at a time into one gathered ``sendmsg`` (or sends with ``sendfile`` when the
   peer takes PDUs larger than :data:`...transport.writes.GATHER_REGION_MAX`); a small file goes as the
   bytes its meta read already fetched (or one ``pread``), in the same ``sendmsg`` as its command. One
   request at a time (no window), the next file's data set, up to :data:`READ_AHEAD_MAX`, is read into
   one reused buffer while the previous response is awaited (:class:`_ReadAhead`): on the round trip,
   only the send is left.

Associations run one after another in the calling thread, or ``jobs`` at a time in worker threads that
are all joined before :func:`store` returns. Transient rejections and dropped connections are retried
with exponential back-off, re-sending only files the peer has not answered yet.

With ``window`` > 1 (``--async N``) each association proposes the Asynchronous Operations Window
(PS3.7 D.3.3.3, :mod:`...ul.async_window`) and, when the peer grants it, keeps up to the granted number
of C-STORE requests outstanding: the next request goes out before the previous response has come back,
so the round trip is no longer paid per file. Responses are matched by Message ID (in any order), so each
file still gets its own status; a peer that grants nothing (DCMTK's storescp) gets one at a time.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from ...dimse.fragment import Dataset, FileRegion
from ...errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectError,
    DcmnetError,
    DIMSEError,
    InputError,
    NoAcceptedContext,
    ProtocolError,
    TimeoutExpired,
)
from ...transport.pool import Pool
from ...transport.rate import TokenBucket
from ...transport.client import Timeouts, release
from ...ul.negotiation import DEFAULT_MAX_PDU, MAX_CONTEXTS, AcceptedContext, build_contexts
from ..dicomfiles import CHUNK_SIZE, INLINE_MAX, DicomFile, dataset_bytes, open_dataset
from .association import associate
from .store_convert import class_name, convert
from .store_plan import choose_context, partition, proposed_contexts
from .store_results import AssociationLog, Callbacks, FileOutcome, StoreResult
from ..peer import Peer
from ..session import Session
from ..store_commands import store_rq

NO_STATUS = 0xFFFF
READ_AHEAD_MAX = 4 << 20
"""One request at a time (window 1): the next file's data set, up to this size, is read while the response
to the previous request is awaited, so its open, fstat, pread and close are off the round trip."""


class _Reconnect(AssociationAborted):
    """We aborted on purpose (a file failed mid-message): reconnect for the rest without using a retry."""


class _Settings:
    """One run's settings, shared by its associations (a slotted class: dataclasses cost start-up)."""

    __slots__ = ("peer", "calling_ae", "timeouts", "max_pdu", "retries", "backoff", "chunk_size", "bucket", "callbacks",
                 "pool", "window", "gave_up")

    def __init__(self, peer: Peer, calling_ae: str, timeouts: Timeouts, max_pdu: int, retries: int, backoff: float,
                 chunk_size: int, bucket: TokenBucket | None, callbacks: Callbacks, pool: Pool, window: int = 1) -> None:
        self.peer, self.calling_ae, self.timeouts, self.max_pdu = peer, calling_ae, timeouts, max_pdu
        self.retries, self.backoff, self.chunk_size, self.bucket = retries, backoff, chunk_size, bucket
        self.callbacks, self.pool = callbacks, pool
        self.window = window
        """Requests outstanding at once we propose (--async); the peer's grant caps it per association."""
        self.gave_up: DcmnetError | None = None
        """A connection failure that outlasted the retries: the other associations do not try again."""


def store(
    peer: Peer,
    files: Sequence[DicomFile],
    calling_ae: str = "DCMNET",
    timeouts: Timeouts = Timeouts(),
    *,
    max_pdu: int = DEFAULT_MAX_PDU,
    jobs: int = 1,
    retries: int = 0,
    backoff: float = 0.5,
    max_rate: float | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_contexts: int = MAX_CONTEXTS,
    callbacks: Callbacks = Callbacks(),
    window: int = 1,
) -> StoreResult:
    """Send ``files``; every file gets an outcome (a status, or the error that kept it from one).

    ``max_rate`` is bytes per second over all associations; ``window`` the C-STORE requests to keep
    outstanding per association if the peer grants it (1: one at a time). Never raises the package's
    network errors: they are recorded per file so one run reports on every file.
    """
    started = time.perf_counter()
    settings = _Settings(peer, calling_ae, timeouts, max_pdu, retries, backoff,
                         max(1024, min(chunk_size, int(max_rate / 10) if max_rate else chunk_size)),
                         TokenBucket(max_rate) if max_rate else None, callbacks, Pool(), max(1, window))
    tasks: list[list[DicomFile]] = []
    for group in partition(files, max_contexts):
        shards = max(1, min(jobs, len(group)))
        # In input order on one association; else largest first, dealt round-robin: balanced shards.
        ordered = sorted(group, key=lambda f: -f.size) if shards > 1 else group
        buckets: list[list[DicomFile]] = [[] for _ in range(shards)]
        for index, file in enumerate(ordered):
            buckets[index % shards].append(file)
        tasks.extend(buckets)
    result = StoreResult(peer)
    outcomes: list[list[FileOutcome]] = [[] for _ in tasks]
    logs: list[list[AssociationLog]] = [[] for _ in tasks]
    settings.pool.run(len(tasks), jobs, lambda index: _run_task(settings, index, tasks[index], outcomes[index], logs[index]))
    order = {f.path: i for i, f in enumerate(files)}
    result.files = sorted((o for chunk in outcomes for o in chunk), key=lambda o: order.get(o.path, len(order)))
    result.associations = [log for chunk in logs for log in chunk]
    for index, log in enumerate(result.associations):
        log.index = index + 1
    result.elapsed = time.perf_counter() - started
    return result


def _retryable(error: DcmnetError) -> bool:
    """Transient: a rejection marked transient, a dropped association, or a refused/reset connection (a
    peer restarting refuses connections for a while: back off and try again rather than give up)."""
    if isinstance(error, AssociationRejected):
        return error.result == 2  # transient (PS3.8 Table 9-21)
    if isinstance(error, ConnectError):  # not a name that does not resolve, nor a TLS verification failure
        text = str(error)
        return not text.startswith("cannot resolve") and "TLS" not in text and "certificate" not in text
    return isinstance(error, AssociationAborted)


def _run_task(settings: _Settings, index: int, files: list[DicomFile], outcomes: list[FileOutcome],
              logs: list[AssociationLog]) -> None:
    """Send ``files`` over one association, reconnecting for the unanswered ones on retryable errors."""
    pending = list(files)
    attempts = 0
    while pending:
        if settings.pool.stopping:
            _fail_all(settings, pending, outcomes, AssociationAborted("interrupted before this file was sent"), attempts)
            return
        if settings.gave_up is not None:  # another association could not connect: neither will this one
            _fail_all(settings, pending, outcomes, settings.gave_up, attempts)
            return
        pairs = proposed_contexts(pending)
        log = AssociationLog(index, len(pending), len(pairs))
        logs.append(log)
        try:
            session = associate(settings.peer, settings.calling_ae, build_contexts(pairs), settings.timeouts, settings.max_pdu,
                                trace=settings.callbacks.trace, log=settings.callbacks.log, async_ops=settings.window)
        except DcmnetError as error:
            log.outcome, log.detail = "failed", str(error)
            settings.callbacks.on_association(log)
            if _retryable(error) and attempts < settings.retries:
                attempts += 1
                _back_off(settings, attempts, str(error))
                continue
            if isinstance(error, ConnectError) and settings.gave_up is None:
                settings.gave_up = error
            _fail_all(settings, pending, outcomes, settings.gave_up or error, attempts + 1)
            return
        channel = session.driver
        settings.pool.track(channel)
        log.accepted = len(session.contexts)
        settings.callbacks.on_association(log)
        try:
            stopped = _send_files(settings, session, pending, outcomes, attempts + 1)
            if stopped is None:
                try:
                    release(channel, settings.timeouts.acse)
                except DcmnetError as problem:  # every file has its answer: note it, do not fail them
                    log.outcome, log.detail = "release failed", str(problem)
                return
        finally:
            settings.pool.untrack(channel)
            if not channel.closed:
                channel.abort()
        log.outcome, log.detail = "aborted", str(stopped)
        if isinstance(stopped, _Reconnect):
            continue
        if _retryable(stopped) and attempts < settings.retries and not settings.pool.stopping:
            attempts += 1
            _back_off(settings, attempts, str(stopped))
            continue
        _fail_all(settings, pending, outcomes, stopped, attempts + 1)
        return


def _back_off(settings: _Settings, attempt: int, reason: str) -> None:
    delay = min(settings.backoff * 2 ** (attempt - 1), 30.0)
    settings.callbacks.on_retry(reason, delay)
    settings.pool.sleep(delay)


def _fail_all(settings: _Settings, pending: list[DicomFile], outcomes: list[FileOutcome], error: DcmnetError,
              attempts: int) -> None:
    for file in pending:
        outcome = _outcome(file)
        outcome.error, outcome.attempts = error, attempts
        outcomes.append(outcome)
        settings.callbacks.on_file(outcome)
    pending.clear()


def _outcome(file: DicomFile) -> FileOutcome:
    return FileOutcome(file.path, file.sop_class_uid, file.sop_instance_uid, file.transfer_syntax)


def _window(settings: _Settings, session: Session) -> int:
    """Requests this association may keep outstanding: what we proposed, capped by the peer's grant."""
    if settings.window <= 1:
        return 1
    window = min(settings.window, session.driver.assoc.granted_window)
    if settings.callbacks.log is not None:
        settings.callbacks.log(f"asynchronous operations window: proposed {settings.window}, the peer granted {window}"
                               + ("" if window > 1 else " (one request at a time)"))
    return window


class _Sent:
    """A request on the wire, waiting for its response."""

    __slots__ = ("file", "outcome", "started")

    def __init__(self, file: DicomFile, outcome: FileOutcome, started: float) -> None:
        self.file, self.outcome, self.started = file, outcome, started


class _Reports:
    """Settles answered files (counted, reported: progress, log line, JSON) in order. A response is
    settled only once the next request is on the wire (``later``, then ``flush``): on a round trip of one
    request at a time, that work then overlaps the peer's instead of delaying the next request."""

    __slots__ = ("settings", "pending", "outcomes", "answered")

    def __init__(self, settings: _Settings, pending: list[DicomFile], outcomes: list[FileOutcome]) -> None:
        self.settings, self.pending, self.outcomes = settings, pending, outcomes
        self.answered: list[_Sent] = []

    def later(self, sent: _Sent) -> None:
        self.answered.append(sent)

    def now(self, file: DicomFile, outcome: FileOutcome) -> None:
        """Settle ``file`` after every response received before it."""
        self.flush()
        self._settle(file, outcome)

    def flush(self) -> None:
        answered = self.answered
        while answered:
            sent = answered.pop(0)
            self._settle(sent.file, sent.outcome)

    def _settle(self, file: DicomFile, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)
        self.pending.remove(file)  # answered in order, so nearly always the first element
        self.settings.callbacks.on_file(outcome)


def _send_files(settings: _Settings, session: Session, pending: list[DicomFile], outcomes: list[FileOutcome],
                attempt: int) -> DcmnetError | None:
    """Send files until done or the association breaks; answered files leave ``pending``.

    Up to the window's worth of requests are outstanding at once (1 unless --async was granted); each
    response settles the file whose request carried its Message ID (:class:`_Reports`). Returns the
    association-level error that stopped it (the unanswered files, sent or not, stay pending), or None.
    """
    reports = _Reports(settings, pending, outcomes)
    try:
        return _exchange(settings, session, deque(pending), attempt, reports)
    finally:
        reports.flush()  # whatever ended the loop, every response received is reported


def _exchange(settings: _Settings, session: Session, queue: deque[DicomFile], attempt: int,
              reports: _Reports) -> DcmnetError | None:
    """The loop of :func:`_send_files`."""
    contexts = list(session.contexts.values())
    choices: dict[tuple[str, str], tuple[AcceptedContext | None, bool]] = {}
    window = _window(settings, session)
    outstanding: dict[int, _Sent] = {}
    ahead = _ReadAhead() if window == 1 and settings.bucket is None else None
    while queue or outstanding:
        if settings.pool.stopping:
            return AssociationAborted("interrupted")
        while queue and len(outstanding) < window:
            file = queue.popleft()
            outcome = _outcome(file)
            outcome.attempts = attempt
            started = time.perf_counter()
            try:
                message_id = _send_one(settings, session, file, contexts, outcome, choices, hold=window > 1,
                                       data=ahead.take(file) if ahead is not None else None)
            except (AssociationAborted, TimeoutExpired, DIMSEError, ProtocolError) as error:
                return error
            except InputError as failed:  # a file ended mid-message: the channel dropped the connection
                outcome.error = failed
                reports.now(file, outcome)
                session.driver.abort()
                return _Reconnect(f"aborted after a read error on {file.path}")
            if message_id is None:  # settled here (no context, unreadable): nothing on the wire
                reports.now(file, outcome)
            else:
                outstanding[message_id] = _Sent(file, outcome, started)
        reports.flush()
        if outstanding:
            if ahead is not None and queue:
                ahead.read(queue[0], choices)
            try:
                response, _ = session.response(next(iter(outstanding)) if len(outstanding) == 1 else list(outstanding),
                                               settings.timeouts.dimse)
            except (AssociationAborted, TimeoutExpired, DIMSEError, ProtocolError) as error:
                return error
            sent = outstanding.pop(response.message_id_being_responded_to)  # type: ignore[arg-type]
            status = response.status
            sent.outcome.status = status if status is not None else NO_STATUS
            sent.outcome.elapsed = time.perf_counter() - sent.started
            reports.later(sent)
    return None


def _send_one(settings: _Settings, session: Session, file: DicomFile, contexts: list[AcceptedContext],
              outcome: FileOutcome, choices: dict[tuple[str, str], tuple[AcceptedContext | None, bool]] | None = None,
              hold: bool = False, data: memoryview | None = None) -> int | None:
    """Send one file's C-STORE-RQ; returns its Message ID (the caller waits for the response), or None
    when nothing was sent. ``hold``: a data set in memory may wait for the next request's or the next
    read's flush (pipelined requests leave together, in one syscall). ``data``: the data set as read ahead
    (:class:`_ReadAhead`), sent when the file goes as it is on disk.

    A file that cannot be read before anything of it is sent gets its InputError in ``outcome`` and the
    association goes on. A file ending mid-message raises InputError from the channel, which has dropped
    the connection (a PDU was cut short); the caller reconnects for the rest.
    """
    key = (file.sop_class_uid, file.transfer_syntax)
    choice = choices.get(key) if choices is not None else None
    if choice is None:
        choice = choose_context(file, contexts)
        if choices is not None:
            choices[key] = choice
    context, must_convert = choice
    if context is None:
        outcome.error = NoAcceptedContext(
            f"{file.path}: the peer accepted no presentation context for SOP class {file.sop_class_uid} "
            f"({class_name(file.sop_class_uid)})")
        return None
    dataset: Dataset
    fd = -1
    if must_convert:
        try:
            converted = convert(file, context.transfer_syntax)
        except NoAcceptedContext as error:
            outcome.error = error
            return None
        outcome.bytes = len(converted)
        dataset = _memory(settings, converted)
    elif data is not None:
        dataset = _memory(settings, data)
        outcome.bytes = file.dataset_length
    else:
        try:
            dataset, fd = _as_stored(settings, file)
        except InputError as error:  # nothing of this file is on the wire: the association goes on
            outcome.error = error
            return None
        outcome.bytes = file.dataset_length
    outcome.sent_syntax = context.transfer_syntax
    try:
        if hold and fd < 0 and isinstance(dataset, (bytes, memoryview)):
            driver = session.driver
            message_id = driver.next_message_id()
            driver.send_message(context.context_id, store_rq(message_id, file.sop_class_uid, file.sop_instance_uid),
                                dataset, flush=False)
            return message_id
        return session.request(
            context.context_id, lambda mid: store_rq(mid, file.sop_class_uid, file.sop_instance_uid), dataset)
    finally:
        if fd >= 0:
            os.close(fd)


class _ReadAhead:
    """The next file's data set, read while the previous request's response is awaited (window 1 only: the
    buffer is reused once the request that used it was written whole). Best effort: a file that cannot be
    read ahead (gone, shrunk, unreadable) is read again when its turn comes, which reports why."""

    __slots__ = ("file", "view", "buffer")

    def __init__(self) -> None:
        self.file: DicomFile | None = None
        self.view = memoryview(b"")
        self.buffer = bytearray()

    def read(self, file: DicomFile, choices: dict[tuple[str, str], tuple[AcceptedContext | None, bool]]) -> None:
        self.file = None
        length = file.dataset_length
        choice = choices.get((file.sop_class_uid, file.transfer_syntax))
        if file.content is not None or not 0 < length <= READ_AHEAD_MAX or (choice is not None and choice[1]):
            return  # in memory already, too large to hold, or re-encoded from the file anyway
        try:
            fd = open_dataset(file)
        except InputError:
            return
        try:
            if len(self.buffer) < length:
                self.buffer = bytearray(length)  # a new one: views of the old one may still exist
            view = memoryview(self.buffer)[:length]
            done = os.preadv(fd, [view], file.offset)
        except OSError:
            return
        finally:
            os.close(fd)
        if done == length:
            self.file, self.view = file, view

    def take(self, file: DicomFile) -> memoryview | None:
        """The data set read ahead for ``file``, or None."""
        if self.file is not file:
            return None
        self.file = None
        return self.view


def _as_stored(settings: _Settings, file: DicomFile) -> tuple[Dataset, int]:
    """The file's data set as it is on disk, and the descriptor to close after sending it (-1: none).

    A small one in memory; a larger one as a :class:`FileRegion` of a descriptor checked to still hold it
    (whole when no rate is metered and it fits one chunk: no generators on the per-file path).
    Raises InputError (nothing sent) when the file cannot be read or shrank."""
    length = file.dataset_length
    if file.content is not None or length <= INLINE_MAX:
        return _memory(settings, dataset_bytes(file)), -1
    fd = open_dataset(file)
    region = FileRegion(fd, file.offset, length, file.path)
    if settings.bucket is None and length <= settings.chunk_size:
        settings.callbacks.on_bytes(length)
        return region, fd
    return _metered(settings, region.split(settings.chunk_size)), fd


def _memory(settings: _Settings, data: bytes | memoryview) -> Dataset:
    """A data set already in memory: whole (one progress step) unless the rate is metered."""
    if settings.bucket is not None:
        return _metered(settings, _split(data, settings.chunk_size))
    settings.callbacks.on_bytes(len(data))
    return data


def _split(data: bytes | memoryview, size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield view[start:start + size]


def _metered(settings: _Settings, chunks: Iterable[bytes | memoryview | FileRegion]) -> Iterator[bytes | memoryview | FileRegion]:
    """Chunks as the fragmenter pulls them: the token bucket (``--max-rate``) waits between them."""
    bucket, on_bytes = settings.bucket, settings.callbacks.on_bytes
    for chunk in chunks:
        if bucket is not None:
            bucket.take(len(chunk))
        on_bytes(len(chunk))
        yield chunk
