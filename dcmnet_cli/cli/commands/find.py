"""``dcmnet find``: query a node (C-FIND) and print the matches as a table, TSV or DICOM JSON.

Output (``--format``): a table fitted to the terminal when stdout is one (:mod:`..find_output`; no rich);
tab-separated values otherwise (a header of column names, then one line per match); ``csv`` the same as
RFC 4180 CSV; ``json`` (or ``--json``) one DICOM JSON object (PS3.18 F) per match per line. Columns are
the keys of the query identifier, those named by ``-k`` first in their order, then the others in tag
order (sequence keys flattened as ``Seq[0].Keyword``), without QueryRetrieveLevel and Specific Character
Set. Nothing is printed on stdout before the association is accepted: the TSV/CSV header comes with the
first match, or after a query that matched nothing. With -v the identifier sent and every identifier
received are dumped on stderr one element per line, and UIDs are named. The identifier and the matches
are lean data sets encoded and decoded by our own codec (:mod:`...services.query_build`): a plain query
never imports pydicom (only ``-f``, ``-od`` and what our reader leaves to it do), numpy or rich.

Exit codes beyond the contract's usual ones: a user-requested ``--cancel-after-matches`` that the peer confirms
with 0xFE00 is success (0); a Cancel the peer sends unprompted is 8. An unknown final status (e.g.
0x1234) falls in PS3.7's failure range: 7. A pending response whose identifier cannot be decoded is a
protocol problem: the association is aborted, exit 6.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from ... import counted
from ...dimse.status import Category
from ...errors import DcmnetError, InputError, NoAcceptedContext
from ...part10.uidnames import WHAT_FOR, described
from ..app import App
from ..exitcodes import ExitCode, for_error
from ..find_output import dump, escape_cell, name_uids, registry_name, table_lines, terminal_width
from ..options import AliasedOption, SectionedCommand, network_options, output_options, parse_peer, positive_seconds, timeouts_from, tls_options
from ..query_options import query_from_options, query_options

if TYPE_CHECKING:  # pragma: no cover
    from ...part10.dataset_codec import DataSet, Element

HIDDEN_COLUMNS = (0x00080005, 0x00080052)  # Specific Character Set, Query/Retrieve Level
FORMATS = ("table", "tsv", "csv", "json")
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


@click.command("find", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@query_options
@click.option("--format", "output_format", type=click.Choice(FORMATS), default=None,
              help="table (a terminal's default), tsv (otherwise the default), csv, or json (= --json).")
@click.option("-od", "--output-directory", "write_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write each match as a DICOM file in DIR (created if missing).")
@click.option("--write", "legacy_write_dir", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Deprecated alias of -od/--output-directory.")
@click.option("--cancel-after-matches", "cancel_after", cls=AliasedOption, hidden_aliases=("--cancel-after",),
              type=click.IntRange(min=1), default=None, metavar="N",
              help="Send C-CANCEL after N matches; the peer's Cancel answer then exits 0, not 8.")
@click.option("--deadline", type=float, default=None, callback=positive_seconds, metavar="S",
              help="Abort when the whole query takes longer than S seconds (exit 6). Unlike -td, which "
                   "restarts with every response, this is never restarted.")
@click.option("--max-identifier", type=click.IntRange(min=1), default=64 << 20, show_default=True, metavar="BYTES",
              help="Abort (exit 6) when one response identifier is larger than BYTES.")
@click.option("--relational", is_flag=True, help="Ask for relational queries (extended negotiation).")
@click.option("--datetime-matching", is_flag=True, help="Ask for combined date-time matching (extended negotiation).")
@click.option("--fuzzy", is_flag=True, help="Ask for fuzzy semantic matching of person names (extended negotiation).")
@click.option("--timezone-adjust", is_flag=True, help="Ask for timezone query adjustment (extended negotiation).")
@output_options(json_help="One DICOM JSON object (PS3.18 F) per match, one per line (= --format json).")
@click.pass_obj
def command(app: App, peer: tuple[str, ...], as_json: bool, output_format: str | None, write_dir: str | None,
            legacy_write_dir: str | None, cancel_after: int | None, deadline: float | None, max_identifier: int,
            relational: bool, datetime_matching: bool, fuzzy: bool, timezone_adjust: bool, **options: Any) -> int:
    """Query a node for patients, studies, series, images or worklist items (C-FIND).

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml.
    Keys: -k Keyword=VALUE (or gggg,eeee=VALUE) to match (wildcards * ?, ranges 20240101-20241231
    or 2024-01-01-2024-12-31, UID lists with backslashes), -k Keyword alone to return it,
    -k Seq[0].Keyword=VALUE inside a sequence. Unless a return key is given, the level's usual keys
    are returned (e.g. for STUDY: PatientName, PatientID, StudyDate, StudyDescription, ...).

    \b
    Output: a table fitted to the terminal (columns in -k order; full values with --format
    tsv/csv/json), tab-separated values (header line first) when piped. Zero matches exits 0; a
    failure status 7; Cancel from the peer 8 (0 when --cancel-after-matches asked for it); a malformed
    identifier or abort 6.
    """
    from ...services.scu.find import ExtendedFlags

    target = parse_peer(peer, options["called_aet"], options)
    spec = query_from_options(options, for_retrieve=False)
    fmt = _format(app, as_json, output_format)
    write_dir = _output_directory(app, write_dir, legacy_write_dir)
    printer = MatchPrinter(app, fmt, identifier_columns(spec.identifier, _column_order(options, spec.level)))

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
        result = _run_find(app, target, spec, options, flags, cancel_after, on_match, deadline, max_identifier)
    except DcmnetError as error:
        printer.finish(failed=True)
        app.error(_error_text(error, spec.model.find))
        return for_error(error)
    printer.finish(failed=False)
    return _outcome(app, result, cancel_after)


def _column_order(options: dict[str, Any], level: str | None) -> list[str]:
    """The -k keys in the order given, then the level's default return keys (most telling first)."""
    from ...services.query import DEFAULT_RETURN_KEYS, HIGHER_KEYS

    higher = HIGHER_KEYS.get(options.get("model") or "study", {}).get(level or "", ())
    return [*options.get("keys", ()), *DEFAULT_RETURN_KEYS.get(level or "WORKLIST", ()), *higher]


def _format(app: App, as_json: bool, output_format: str | None) -> str:
    if as_json:
        if output_format not in (None, "json"):
            raise click.UsageError(f"--json and --format {output_format} disagree: give one")
        return "json"
    if output_format is not None:
        return output_format
    return "table" if app.out.isatty() else "tsv"


def _output_directory(app: App, write_dir: str | None, legacy: str | None) -> str | None:
    """-od DIR (or the deprecated --write DIR), created if missing; usage error when it cannot be."""
    if legacy is not None:
        if write_dir is not None and write_dir != legacy:
            raise click.UsageError("--write is the old name of -od/--output-directory: give one")
        app.say("--write is deprecated: use -od/--output-directory", "warning")
        write_dir = legacy
    if write_dir is None:
        return None
    try:
        os.makedirs(write_dir, exist_ok=True)
    except OSError as error:
        raise click.BadParameter(f"cannot create {write_dir}: {error.strerror or error}", param_hint="-od")
    return write_dir


def _run_find(app: App, target: Any, spec: Any, options: dict[str, Any], flags: Any, cancel_after: int | None,
              on_match: Any, deadline: float | None, max_identifier: int) -> Any:
    """Call the C-FIND service, with -v logging that dumps the identifier sent and names UIDs."""
    from ...services.scu.find import find

    def log(line: str) -> None:
        app.detail(name_uids(line))
        if line.startswith("sent C-FIND-RQ"):
            for text in dump(spec.identifier, "  "):
                app.detail(text)

    return find(target, spec, options["calling_aet"], timeouts_from(options), max_pdu=options["max_pdu"],
                extended=flags, cancel_after=cancel_after, on_match=on_match,
                trace=app.trace if app.debug else None, log=log if app.verbose else None,
                deadline=deadline, max_identifier=max_identifier)


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
    from ...part10.dataset_encode import to_json_text

    return to_json_text


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
    from ...services.query_values import tag_of

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


tsv_cell = escape_cell
"""Tabs and line breaks would break the TSV grid: shown as escapes; other control characters too."""


class _Captured:
    """The one ``write`` a csv writer makes per row, kept (one writer for the whole run)."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text


class MatchPrinter:
    """Prints matches on stdout in one format; nothing before the first match or the end of a query
    that associated (so a refused connection prints no header). The table waits for every row."""

    def __init__(self, app: App, fmt: str, columns: list[tuple[str, tuple[int, ...]]]) -> None:
        self.app, self.fmt, self.columns = app, fmt, columns
        self.rows: list[list[str]] = []
        self.started = False
        self.json_line = _json_encoder() if fmt == "json" else None
        self.csv: Any = None

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

    def _emit(self, line: str) -> None:
        """One streamed match, flushed at once (measured: ~4 us a line; a pipe reader sees each match as
        it arrives, not after a pause in a burst)."""
        print(line, file=self.app.out, flush=True)

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

    from ...part10.filenames import is_valid_uid, safe_component
    from ...services.query_build import to_pydicom

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
