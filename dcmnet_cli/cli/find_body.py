"""The body of ``dcmnet find`` without click: the click command (:mod:`.commands.find`, whose docstring
describes the output) and the fast path (:mod:`.fastpath`) both check the command line, then call
:func:`find_body`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from ..ul.typenames import TYPE_CHECKING, Any

from .. import counted
from ..dimse.status import Category
from ..errors import DcmnetError, InputError, NoAcceptedContext
from ..part10.uidnames import WHAT_FOR, described
from ..services.peer import Peer
from .app import App
from .exitcodes import ExitCode, for_error
from .find_output import dump, name_uids, registry_name, table_lines, terminal_width
from .text import one_line
from .peer import timeouts_from

if TYPE_CHECKING:  # pragma: no cover
    from ..part10.dataset_codec import DataSet, Element

HIDDEN_COLUMNS = (0x00080005, 0x00080052)  # Specific Character Set, Query/Retrieve Level
FORMATS = ("table", "tsv", "csv", "json")
FLUSH_BYTES = 1 << 16
"""Streamed output kept at most (characters) before it is written, however fast matches keep coming."""
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


def find_body(app: App, target: Peer, spec: Any, fmt: str, write_dir: str | None, cancel_after: int | None,
              deadline: float | None, max_identifier: int, relational: bool, datetime_matching: bool, fuzzy: bool,
              timezone_adjust: bool, **options: Any) -> int:
    """Query ``target`` with ``spec``; print the matches as ``fmt`` (and write them to ``write_dir``); the
    exit code. PEER, the query, the format and the folder were checked by the caller (usage errors)."""
    from ..services.scu.find import ExtendedFlags

    printer = MatchPrinter(app, fmt, identifier_columns(spec.identifier, column_order(options, spec.level)))

    def on_match(index: int, match: "DataSet") -> None:
        if app.verbose:
            app.detail(f"received match {index}:")
            for line in dump(match, "  "):
                app.detail(line)
        if write_dir is not None:
            write_match(write_dir, index, match, spec.model.find, spec.level)
        printer.add(match)

    flags = ExtendedFlags(relational, datetime_matching, fuzzy, timezone_adjust)
    try:
        on_idle = printer.flush if fmt != "table" else None  # the table waits for every row anyway
        result = _run_find(app, target, spec, options, flags, cancel_after, on_match, on_idle, deadline,
                           max_identifier)
    except DcmnetError as error:
        printer.finish(failed=True)
        app.error(_error_text(error, spec.model.find))
        return for_error(error)
    except BaseException:  # Ctrl-C, a closed stdout, a bug: the matches received so far are still shown
        printer.flush(quietly=True)
        raise
    printer.finish(failed=False)
    return _outcome(app, result, cancel_after)



def column_order(options: dict[str, Any], level: str | None) -> list[str]:
    """The -k keys in the order given, then the level's default return keys (most telling first)."""
    from ..services.query import DEFAULT_RETURN_KEYS, HIGHER_KEYS

    higher = HIGHER_KEYS.get(options.get("model") or "study", {}).get(level or "", ())
    return [*options.get("keys", ()), *DEFAULT_RETURN_KEYS.get(level or "WORKLIST", ()), *higher]


def _run_find(app: App, target: Any, spec: Any, options: dict[str, Any], flags: Any, cancel_after: int | None,
              on_match: Any, on_idle: Any, deadline: float | None, max_identifier: int) -> Any:
    """Call the C-FIND service, with -v logging that dumps the identifier sent and names UIDs."""
    from ..services.scu.find import find

    def log(line: str) -> None:
        app.detail(name_uids(line))
        if line.startswith("sent C-FIND-RQ"):
            for text in dump(spec.identifier, "  "):
                app.detail(text)

    return find(target, spec, options["calling_aet"], timeouts_from(options), max_pdu=options["max_pdu"],
                extended=flags, cancel_after=cancel_after, on_match=on_match,
                trace=app.trace if app.debug else None, log=log if app.verbose else None,
                deadline=deadline, max_identifier=max_identifier, on_idle=on_idle)


def _error_text(error: Exception, sop_class: str) -> str:
    """The error line; a missing presentation context names the SOP class and what it is for."""
    if isinstance(error, NoAcceptedContext):
        what = WHAT_FOR.get(sop_class, "this kind of query")
        return (f"the peer accepted no presentation context for {described(sop_class, registry_name)}: "
                f"the peer does not support {what}")
    return name_uids(str(error))


def _outcome(app: App, result: Any, cancel_after: int | None) -> ExitCode:
    """Exit code and stderr summary for the final C-FIND status."""
    status = result.status
    category = result.category
    comment = f": {result.error_comment}" if result.error_comment else ""
    if category is Category.SUCCESS:
        extra = ""
        if result.cancel_sent:
            extra = (f"; cancel sent after {cancel_after}, the peer completed anyway"
                     + (f" ({counted(result.dropped_after_cancel, 'later match', 'later matches')} not shown)" if result.dropped_after_cancel else ""))
        app.info(f"{counted(result.matches, 'match', 'matches')}{extra}")
        return ExitCode.SUCCESS
    if category is Category.CANCEL:
        if result.cancel_sent:
            app.info(f"{counted(result.matches, 'match', 'matches')}; cancelled after {cancel_after} as asked")
            return ExitCode.SUCCESS
        app.error(f"the peer cancelled the query (0x{status:04X}) after {counted(result.matches, 'match', 'matches')}{comment}")
        return ExitCode.CANCELLED
    if category is Category.WARNING:
        app.info(f"{counted(result.matches, 'match', 'matches')}; warning 0x{status:04X} {result.meaning}{comment}")
        return ExitCode.WARNING
    offending = ""
    if result.offending_element:
        offending = " (offending " + ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in result.offending_element) + ")"
    app.error(f"the peer answered 0x{status:04X} {result.meaning}{offending}{comment} after {counted(result.matches, 'match', 'matches')}")
    return ExitCode.FAILURE


# ------------------------------------------------------------------------------------------ rendering

def _print_line(app: App, text: str) -> None:
    print(text, file=app.out, flush=True)


def _json_encoder() -> Callable[["DataSet"], str]:
    """One match as a DICOM JSON line (PS3.18 F), written directly (as json.dumps would, faster)."""
    from ..part10.dataset_json import json_line

    return json_line


def identifier_columns(identifier: "DataSet", keys: Sequence[str] = ()) -> list[tuple[str, tuple[int, ...]]]:
    """(label, tag path) per column: every key of the identifier, sequence item 0 keys flattened; the
    attributes named in ``keys`` (-k keys, then default return keys) first in that order, then the
    others (from -f) in tag order."""
    columns: list[tuple[str, tuple[int, ...]]] = []
    for element in identifier.in_order():
        if element.tag in HIDDEN_COLUMNS:
            continue
        label = _label(element)
        items = element.items
        if items:
            for sub in items[0].in_order():
                if sub.tag not in HIDDEN_COLUMNS:
                    columns.append((f"{label}[0].{_label(sub)}", (element.tag, sub.tag)))
        else:
            columns.append((label, (element.tag,)))
    order = _key_order(identifier, keys)
    return sorted(columns, key=lambda column: order.get(column[1][0], len(order)))


def _key_order(identifier: "DataSet", keys: Sequence[str]) -> dict[int, int]:
    """Top-level tag → position of its first -k key (keys that do not parse are skipped)."""
    from ..services.query_values import tag_of

    order: dict[int, int] = {}
    for key in keys:
        name = key.partition("=")[0].split(".")[0].split("[")[0]
        try:
            tag = tag_of(name)
        except ValueError:
            continue
        if tag in identifier and tag not in order:
            order[tag] = len(order)
    return order


def _label(element: "Element") -> str:
    return element.keyword or f"{element.tag >> 16:04X},{element.tag & 0xFFFF:04X}"


def render(ds: "DataSet", path: tuple[int, ...]) -> str:
    """The value at ``path`` as one line of text ("" when absent or empty; "N items" for a sequence)."""
    elements = ds.elements
    for tag in path[:-1]:
        element = elements.get(tag)
        if element is None or element.VR != "SQ" or not element.value:
            return ""
        elements = element.items[0].elements
    element = elements.get(path[-1])
    return "" if element is None else element.text()


tsv_cell = one_line
"""Tabs and line breaks would break the TSV grid: shown as escapes; other control characters too."""


class _Captured:
    """The one ``write`` a csv writer makes per row, kept (one writer for the whole run)."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text


class MatchPrinter:
    """Prints matches on stdout in one format; nothing before the first match or the end of a query
    that associated (so a refused connection prints no header). The table waits for every row.

    Streamed lines (JSON, TSV, CSV) are kept here (whatever stdout's own buffering, PYTHONUNBUFFERED
    included) and written in one go by :meth:`flush`, which the query calls whenever it is about to wait
    for the peer (``on_idle`` of :func:`..services.scu.find.find`), at the end, and when
    :data:`FLUSH_BYTES` are waiting: a reader of the pipe sees every match while the peer pauses, and a
    burst of matches costs one write instead of one per match (measured on 2 000 matches: a write and a
    wake-up of the reader per line were ~10 % of ``find --json``'s CPU time). On a terminal, and with -v
    (whose dump of each match on stderr comes just before its line), each line is written at once.
    """

    def __init__(self, app: App, fmt: str, columns: list[tuple[str, tuple[int, ...]]]) -> None:
        self.app, self.fmt, self.columns = app, fmt, columns
        self.rows: list[list[str]] = []
        self.started = False
        self.json_line = _json_encoder() if fmt == "json" else None
        self.csv: Any = None
        self.pending: list[str] = []
        self.pending_size = 0
        self.eager = app.verbose or _isatty(app.out)

    def add(self, match: "DataSet") -> None:
        if self.json_line is not None:
            self._emit(self.json_line(match))
            return
        cells = [render(match, path) for _label, path in self.columns]
        if self.fmt == "table":
            self.rows.append(cells)
            return
        self._header()
        self._emit(self._line(cells))

    def finish(self, failed: bool) -> None:
        """After the query: the header of an empty TSV/CSV (not when it failed), the table."""
        if self.fmt in ("tsv", "csv") and not failed:
            self._header()
        if self.fmt == "table" and self.rows:
            print_table(self.app, self.columns, self.rows)
        self.flush(quietly=failed)

    def flush(self, quietly: bool = False) -> None:
        """Write out the lines buffered so far; ``quietly``: on the way out of an error, where a closed
        stdout must not replace the error being reported."""
        pending, self.pending, self.pending_size = self.pending, [], 0
        out = self.app.out
        if out is None:  # no stdout at all (closed at start, ``>&-``): the lines go nowhere, as print's would
            return
        try:
            if pending:
                pending.append("")
                out.write("\n".join(pending))
            out.flush()
        except (OSError, ValueError):
            if not quietly:
                raise

    def _emit(self, line: str) -> None:
        """One streamed match, kept for the next :meth:`flush` (see the class docstring)."""
        self.pending.append(line)
        self.pending_size += len(line)
        if self.eager or self.pending_size >= FLUSH_BYTES:
            self.flush()

    def _header(self) -> None:
        if not self.started:
            self.started = True
            _print_line(self.app, self._line([label for label, _path in self.columns]))

    def _line(self, cells: list[str]) -> str:
        if self.fmt == "tsv":
            return "\t".join(tsv_cell(cell) for cell in cells)
        if self.csv is None:
            import csv

            captured = _Captured()
            self.csv = (csv.writer(captured, lineterminator=""), captured)
        writer, captured = self.csv
        writer.writerow(cells)
        return captured.text


def _isatty(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def print_table(app: App, columns: list[tuple[str, tuple[int, ...]]], rows: list[list[str]]) -> None:
    """The table fitted to the terminal (see :mod:`..find_output`); left-out columns named on stderr."""
    named = [i for i, (label, _path) in enumerate(columns) if label.endswith("SOPClassUID")]
    if named:  # SOP classes by name on the terminal; TSV/CSV/JSON keep the UIDs
        rows = [[registry_name(cell) or cell if i in named else cell for i, cell in enumerate(row)] for row in rows]
    lines, dropped = table_lines([label for label, _path in columns], rows, terminal_width(app.out), app.color)
    _print_line(app, "\n".join(lines))  # one write for the whole table, not one per row
    if dropped:
        app.info(f"not shown (too wide for the terminal): {', '.join(dropped)}; use --format tsv or csv for every column")


def write_match(folder: str, index: int, match: "DataSet", sop_class: str, level: str | None) -> str:
    """Write one match as a Part-10 file ``rspNNNNN[-UNIQUEKEY].dcm``; the name is path-safe. pydicom
    writes it (the one find path that imports it, with -f and our reader's fallbacks)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    from ..part10.filenames import is_valid_uid, safe_component
    from ..services.query_build import to_pydicom

    key = str(match.get(UNIQUE.get(level or "", "AccessionNumber"), "") or "")
    name = f"rsp{index:05d}" + (f"-{safe_component(key)}" if key else "") + ".dcm"
    path = os.path.join(folder, name)
    out = to_pydicom(match)
    out.file_meta = FileMetaDataset()
    out.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    out.file_meta.MediaStorageSOPInstanceUID = UID(key) if is_valid_uid(key) else generate_uid()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        out.save_as(path, enforce_file_format=True)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    return path
