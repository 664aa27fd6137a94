"""Modality Worklist SCP (PS3.4 K.6: Modality Worklist Information Model - FIND, 1.2.840.10008.5.1.4.31).

``listen --worklist DIR`` answers MWL C-FIND requests from the worklist items in DIR, so that a modality
can be tested without a RIS:

- Every regular file of DIR (not hidden, not in sub-folders) holds items: a DICOM file (Part 10, or a bare
  data set), or DICOM JSON (PS3.18 F: one object, or a list of them). An item must hold the Scheduled
  Procedure Step Sequence (0040,0100), type 1 in the worklist (PS3.4 K.6.1.2.2).
- DIR is listed at every query; a file is read again only when its size, mtime or inode changed, so an
  item added, edited or removed while ``listen`` runs is seen by the next query, and a query of an
  unchanged folder costs one ``stat`` per file. A file that cannot be read or holds no item is skipped
  with one ``worklist-skipped`` event (once per version of the file), never a failure of the query; so is
  a file over 64 MiB, unread.
- Matching is :mod:`..archive.matching` (PS3.4 C.2.2.2 as K.2.2.1 refers to it): sequence matching on the
  Scheduled Procedure Step Sequence (scheduled date/time ranges, modality, station AE title, ...).
  Dates and times match as the items write them: a Timezone Offset From UTC (0008,0201) in the query is
  a return key only and shifts no range (adjusting would need each DA and TM key pair turned into one
  range that may cross midnight; documented in ``listen --help``).
- Each match is a pending response 0xFF00 holding exactly the requested keys (C.4.1.1.3 / K.6.1.2.2);
  the final response is 0x0000, 0xFE00 after a C-CANCEL-RQ for the request, 0xA900 for a request on
  another SOP class, 0xC000 for an undecodable identifier or an unreadable DIR.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

from ...dimse.commandset import C_CANCEL_RQ, C_FIND_RQ, c_find_rsp
from ...dimse.connection import RequestRefused
from ...dimse.status import CANNOT_UNDERSTAND, DATASET_MISMATCH
from ..session import HandlerFactory, MessageHandler, Session
from .find_answers import PENDING, FindAnswers, answering, decode_request_identifier

MWL_FIND = "1.2.840.10008.5.1.4.31"
"""Modality Worklist Information Model - FIND (PS3.4 K.6.1)."""

WORKLIST_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
"""Accepted for the worklist context: explicit VR LE preferred, implicit LE, explicit BE, deflated."""
SCHEDULED_PROCEDURE_STEP_SEQUENCE = 0x00400100
MAX_ITEM_FILE = 64 << 20
"""A bigger file in the folder is skipped unread (worklist items are a few kilobytes)."""


class WorklistSkipped(NamedTuple):
    """A file of the worklist folder holds no usable item (logged once per version of the file)."""

    path: str
    detail: str
    peer: str = "worklist"
    event: str = "worklist-skipped"


class _Entry(NamedTuple):
    stamp: tuple[int, int, int]  # size, mtime_ns, inode: a change of any means "read again"
    items: tuple[Any, ...]  # pydicom Datasets; () for a skipped file


class WorklistFolder:
    """The worklist items of one folder, re-read when they change (see the module docstring).

    Shared by the associations of ``listen``: a scan builds a new table and replaces the old one in one
    assignment, so two concurrent scans at worst read a changed file twice."""

    def __init__(self, folder: str, on_event: Callable[[Any], None] = lambda event: None) -> None:
        self.folder = os.path.abspath(folder)
        self.on_event = on_event
        self._entries: dict[str, _Entry] = {}

    def items(self) -> list[Any]:
        """Every item now in the folder, in file-name order; OSError when the folder cannot be listed."""
        old, entries = self._entries, {}
        with os.scandir(self.folder) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    info = entry.stat()
                except OSError:
                    continue  # removed meanwhile
                stamp = (info.st_size, info.st_mtime_ns, info.st_ino)
                known = old.get(entry.path)
                if known is None or known.stamp != stamp:
                    known = _Entry(stamp, self._read(entry.path, info.st_size))
                entries[entry.path] = known
        self._entries = entries
        return [item for path in sorted(entries) for item in entries[path].items]

    def _read(self, path: str, size: int) -> tuple[Any, ...]:
        try:
            if size > MAX_ITEM_FILE:
                raise ValueError(f"larger than {MAX_ITEM_FILE >> 20} MiB: not a worklist file")
            return read_items(path)
        except Exception as error:  # any parse failure of a file someone dropped in: skip it, say why
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.on_event(WorklistSkipped(path, f"{path}: {detail[:200]}"))
            return ()


def read_items(path: str) -> tuple[Any, ...]:
    """The worklist items in one file (DICOM or DICOM JSON); ValueError/OSError when there are none."""
    with open(path, "rb") as file:
        data = file.read()
    if data[:1] in (b"{", b"[") or path.lower().endswith(".json"):
        items = _json_items(data)
    else:
        items = (_dicom_item(data),)
    for item in items:
        if SCHEDULED_PROCEDURE_STEP_SEQUENCE not in item:
            raise ValueError("not a worklist item: no Scheduled Procedure Step Sequence (0040,0100)")
    return items


def _json_items(data: bytes) -> tuple[Any, ...]:
    from pydicom.dataset import Dataset

    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not DICOM JSON: {error}") from None
    objects = parsed if isinstance(parsed, list) else [parsed]
    if not objects or not all(isinstance(item, dict) for item in objects):
        raise ValueError("not DICOM JSON: expected an object or a list of objects")
    return tuple(Dataset.from_json(item) for item in objects)  # values converted as they are read


def _dicom_item(data: bytes) -> Any:
    from io import BytesIO

    import pydicom

    try:
        dataset = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as error:
        raise ValueError(f"not DICOM: {error}") from None
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    if len(dataset) == 0:
        raise ValueError("not DICOM: no data elements")
    _load_all(dataset)
    return dataset


def _load_all(dataset: Any) -> None:
    """Convert every value now (character sets applied), so a bad value fails here, not while answering."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.decode()
        for element in dataset.iterall():
            element.value  # noqa: B018 - raw values are converted on access


# ---------------------------------------------------------------- the handler


class WorklistHandler(FindAnswers):
    """One MWL C-FIND-RQ (PS3.4 K.4.1.3, PS3.7 §9.1.2)."""

    def __init__(self, folder: WorklistFolder, options: Any = None) -> None:
        self.folder = folder
        self.options = options

    def _answer(self, sop_class: str, dataset: bytes | None, syntax: str) -> tuple[int, str | None]:
        from ..archive.matching import MatchOptions, compile_matcher

        if sop_class != MWL_FIND:
            return DATASET_MISMATCH, "not the Modality Worklist FIND SOP class"
        identifier, problem = decode_request_identifier(dataset, syntax)
        if identifier is None:
            return CANNOT_UNDERSTAND, problem
        try:
            items = self.folder.items()
        except OSError as error:
            return CANNOT_UNDERSTAND, f"worklist folder: {error.strerror or error}"[:64]
        def run() -> None:
            accept = compile_matcher(identifier, self.options or MatchOptions())
            for item in items:
                if accept(item):
                    self._pending(identifier, item, sop_class, syntax)

        return answering(run)  # a value that cannot be matched or encoded: this query fails, listen goes on

    def _pending(self, identifier: Any, item: Any, sop_class: str, syntax: str) -> None:
        from ..archive.matching import response
        from ..query import encode_identifier

        self._check_cancel()
        answer = response(identifier, item, "")
        asked = identifier.get("SpecificCharacterSet")
        if asked and "SpecificCharacterSet" not in answer:
            answer.SpecificCharacterSet = asked  # all ASCII: the query's own character set fits
        data = encode_identifier(answer, syntax)
        self.session.send(self.context_id, c_find_rsp(self.message.message_id or 0, PENDING, sop_class, True), data)


class CancelHandler(MessageHandler):
    """A C-CANCEL-RQ has no response (PS3.7 §9.3.2.3): the session notes it, the request's handler acts."""

    def complete(self, dataset: bytes | None) -> None:
        pass


class _FindDispatch(MessageHandler):
    """C-FIND-RQs share one command field: the worklist class goes to the worklist, the others on."""

    def __init__(self, worklist: HandlerFactory, other: HandlerFactory | None) -> None:
        self.worklist, self.other = worklist, other
        self.inner: MessageHandler | None = None

    def _pick(self, sop_class: str | None) -> MessageHandler:
        factory = self.worklist if sop_class == MWL_FIND or self.other is None else self.other
        return factory()

    def begin(self, session: Session, context_id: int, message: Any) -> None:
        self.inner = self._pick(message.affected_sop_class_uid)
        self.inner.begin(session, context_id, message)

    def fragment(self, data: memoryview, last: bool) -> None:
        if self.inner is not None:
            self.inner.fragment(data, last)

    def complete(self, dataset: bytes | None) -> None:
        if self.inner is not None:
            self.inner.complete(dataset)

    def abandon(self) -> None:
        if self.inner is not None:
            self.inner.abandon()

    def refuse(self, session: Session, event: RequestRefused) -> None:
        self._pick(event.message.affected_sop_class_uid).refuse(session, event)


def worklist_handlers(handlers: dict[int, HandlerFactory], folder: WorklistFolder,
                      options: Any = None) -> dict[int, HandlerFactory]:
    """``handlers`` plus the worklist's: C-FIND-RQs on the worklist class come here, others go to the
    C-FIND handler already registered (the Query/Retrieve SCP), if any; C-CANCEL-RQ is taken silently."""
    other = handlers.get(C_FIND_RQ)
    out = dict(handlers)
    out[C_FIND_RQ] = lambda: _FindDispatch(lambda: WorklistHandler(folder, options), other)
    out.setdefault(C_CANCEL_RQ, CancelHandler)
    return out


def with_worklist_contexts(contexts: Any) -> Callable[[str], Any]:
    """The negotiation callable ``contexts`` (callable, mapping or None) plus the worklist class."""
    def negotiate(abstract_syntax: str) -> Any:
        if abstract_syntax == MWL_FIND:
            return WORKLIST_SYNTAXES
        if contexts is None:
            return None
        return contexts(abstract_syntax) if callable(contexts) else contexts.get(abstract_syntax)

    return negotiate
