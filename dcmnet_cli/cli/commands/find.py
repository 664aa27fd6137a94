"""``dcmnet find``: query a node (C-FIND) and print the matches as a table, TSV or DICOM JSON.

Output: a Rich table when stdout is a terminal (rich is imported only then); tab-separated values
otherwise (a header of column names, then one line per match); ``--json`` one DICOM JSON object
(PS3.18 F) per match per line. Columns are the keys of the query identifier in tag order (sequence keys
flattened as ``Seq[0].Keyword``), without QueryRetrieveLevel and Specific Character Set.

Exit codes beyond the contract's usual ones: a user-requested ``--cancel-after`` that the peer confirms
with 0xFE00 is success (0); a Cancel the peer sends unprompted is 8. An unknown final status (e.g.
0x1234) falls in PS3.7's failure range: 7. A pending response whose identifier cannot be decoded is a
protocol problem: the association is aborted, exit 6.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from ...dimse.status import Category
from ...errors import DcmnetError, InputError
from ..app import App
from ..exitcodes import ExitCode, for_error
from ..options import network_options, output_options, parse_peer, timeouts_from, tls_options
from ..query_options import query_from_options, query_options

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

HIDDEN_COLUMNS = (0x00080005, 0x00080052)  # Specific Character Set, Query/Retrieve Level
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


@click.command("find", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True)
@network_options
@tls_options
@query_options
@click.option("--write", "write_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write each match as a DICOM file in DIR (created if missing).")
@click.option("--cancel-after", type=click.IntRange(min=1), default=None, metavar="N",
              help="Send C-CANCEL after N matches; the peer's Cancel answer then exits 0, not 8.")
@click.option("--relational", is_flag=True, help="Ask for relational queries (extended negotiation).")
@click.option("--datetime-matching", is_flag=True, help="Ask for combined date-time matching (extended negotiation).")
@click.option("--fuzzy", is_flag=True, help="Ask for fuzzy semantic matching of person names (extended negotiation).")
@click.option("--timezone-adjust", is_flag=True, help="Ask for timezone query adjustment (extended negotiation).")
@output_options(json_help="One DICOM JSON object (PS3.18 F) per match, one per line.")
@click.pass_obj
def command(app: App, peer: tuple[str, ...], as_json: bool, write_dir: str | None, cancel_after: int | None,
            relational: bool, datetime_matching: bool, fuzzy: bool, timezone_adjust: bool, **options: Any) -> int:
    """Query a node for patients, studies, series, images or worklist items (C-FIND).

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml.
    Keys: -k Keyword=VALUE (or gggg,eeee=VALUE) to match (wildcards * ?, ranges 20240101-20241231,
    UID lists with backslashes), -k Keyword alone to return it, -k Seq[0].Keyword=VALUE inside a
    sequence. Unless a return key is given, the level's usual keys are returned (e.g. for STUDY:
    PatientName, PatientID, StudyDate, StudyDescription, ModalitiesInStudy, ...).

    \b
    Output: a table on a terminal, tab-separated values (header line first) otherwise, --json for
    DICOM JSON lines. Zero matches exits 0; a failure status 7; Cancel from the peer 8 (0 when
    --cancel-after asked for it); a malformed identifier or abort 6.
    """
    from ...services.scu.find import ExtendedFlags, find

    target = parse_peer(peer, options["called_aet"], options)
    spec = query_from_options(options, for_retrieve=False)
    if write_dir is not None:
        try:
            os.makedirs(write_dir, exist_ok=True)
        except OSError as error:
            raise click.BadParameter(f"cannot create {write_dir}: {error.strerror or error}", param_hint="--write")
    columns = identifier_columns(spec.identifier)
    to_terminal = not as_json and app.out.isatty()
    collected: list[list[str]] = []
    if not as_json and not to_terminal:
        _print_line(app, "\t".join(label for label, _path in columns))

    def on_match(index: int, match: "Dataset") -> None:
        if write_dir is not None:
            write_match(write_dir, index, match, spec.model.find, spec.level)
        if as_json:
            _print_line(app, _json_line(match))
        elif to_terminal:
            collected.append([render(match, path) for _label, path in columns])
        else:
            _print_line(app, "\t".join(tsv_cell(render(match, path)) for _label, path in columns))

    flags = ExtendedFlags(relational, datetime_matching, fuzzy, timezone_adjust)
    try:
        result = find(target, spec, options["calling_aet"], timeouts_from(options), max_pdu=options["max_pdu"],
                      extended=flags, cancel_after=cancel_after, on_match=on_match,
                      trace=app.trace if app.debug else None, log=app.detail if app.verbose else None)
    except DcmnetError as error:
        if collected:
            print_table(app, columns, collected)
        app.error(str(error))
        return for_error(error)
    if to_terminal and collected:
        print_table(app, columns, collected)
    return _outcome(app, result, cancel_after)


def _outcome(app: App, result: Any, cancel_after: int | None) -> ExitCode:
    """Exit code and stderr summary for the final C-FIND status."""
    status = result.status
    category = result.category
    comment = f": {result.error_comment}" if result.error_comment else ""
    if category is Category.SUCCESS:
        extra = ""
        if result.cancel_sent:
            extra = (f"; cancel sent after {cancel_after}, the peer completed anyway"
                     + (f" ({result.dropped_after_cancel} later match(es) not shown)" if result.dropped_after_cancel else ""))
        app.info(f"{result.matches} match(es){extra}")
        return ExitCode.SUCCESS
    if category is Category.CANCEL:
        if result.cancel_sent:
            app.info(f"{result.matches} match(es); cancelled after {cancel_after} as asked")
            return ExitCode.SUCCESS
        app.error(f"the peer cancelled the query (0x{status:04X}) after {result.matches} match(es){comment}")
        return ExitCode.CANCELLED
    if category is Category.WARNING:
        app.info(f"{result.matches} match(es); warning 0x{status:04X} {result.meaning}{comment}")
        return ExitCode.WARNING
    offending = ""
    if result.offending_element:
        offending = " (offending " + ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in result.offending_element) + ")"
    app.error(f"the peer answered 0x{status:04X} {result.meaning}{offending}{comment} after {result.matches} match(es)")
    return ExitCode.FAILURE


# ------------------------------------------------------------------------------------------ rendering

def _print_line(app: App, text: str) -> None:
    print(text, file=app.out, flush=True)


def _json_line(match: "Dataset") -> str:
    import json

    return json.dumps(match.to_json_dict(), ensure_ascii=False, separators=(",", ":"))


def identifier_columns(identifier: "Dataset") -> list[tuple[str, tuple[int, ...]]]:
    """(label, tag path) per column: every key of the identifier; sequence item 0 keys flattened."""
    columns: list[tuple[str, tuple[int, ...]]] = []
    for element in identifier:
        if element.tag in HIDDEN_COLUMNS:
            continue
        label = _label(element)
        items = element.value if element.VR == "SQ" else None
        if items:
            for sub in items[0]:
                if sub.tag not in HIDDEN_COLUMNS:
                    columns.append((f"{label}[0].{_label(sub)}", (int(element.tag), int(sub.tag))))
        else:
            columns.append((label, (int(element.tag),)))
    return columns


def _label(element: Any) -> str:
    return element.keyword or f"{element.tag.group:04X},{element.tag.element:04X}"


def render(ds: "Dataset", path: tuple[int, ...]) -> str:
    """The value at ``path`` as one line of text ("" when absent or empty)."""
    current: Any = ds
    for depth, tag in enumerate(path):
        if tag not in current:
            return ""
        element = current[tag]
        if depth < len(path) - 1:
            if element.VR != "SQ" or not element.value:
                return ""
            current = element.value[0]
            continue
        return _text(element)
    return ""


def _text(element: Any) -> str:
    value = element.value
    if value is None or value == "":
        return ""
    if element.VR == "SQ":
        return f"{len(value)} item(s)"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if element.VM > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def tsv_cell(text: str) -> str:
    """Tabs and line breaks would break the TSV grid: shown as escapes; other control characters too."""
    if not any(ord(c) < 32 or c == "\x7f" for c in text):
        return text
    return "".join(c if ord(c) >= 32 and c != "\x7f" else c.encode("unicode_escape").decode("ascii") for c in text)


def print_table(app: App, columns: list[tuple[str, tuple[int, ...]]], rows: list[list[str]]) -> None:
    """A Rich table on stdout (a terminal); peer text is never read as markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, header_style="bold" if app.color else None)
    for label, _path in columns:
        table.add_column(label, overflow="fold")
    for row in rows:
        table.add_row(*(Text(tsv_cell(cell)) for cell in row))
    Console(file=app.out, no_color=not app.color, highlight=False).print(table)


def write_match(folder: str, index: int, match: "Dataset", sop_class: str, level: str | None) -> str:
    """Write one match as a Part-10 file ``rspNNNNN[-UNIQUEKEY].dcm``; the name is path-safe."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    from ...part10.filenames import is_valid_uid, safe_component

    key = str(match.get(UNIQUE.get(level or "", "AccessionNumber"), "") or "")
    name = f"rsp{index:05d}" + (f"-{safe_component(key)}" if key else "") + ".dcm"
    path = os.path.join(folder, name)
    out = match.copy()
    out.file_meta = FileMetaDataset()
    out.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    out.file_meta.MediaStorageSOPInstanceUID = UID(key) if is_valid_uid(key) else generate_uid()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        out.save_as(path, enforce_file_format=True)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    return path
