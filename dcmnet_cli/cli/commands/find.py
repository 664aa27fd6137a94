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
from typing import Any

import click

from ..app import App
from ..find_body import FORMATS, find_body
from ..options import AliasedOption, SectionedCommand, network_options, output_options, parse_peer, positive_seconds, tls_options
from ..query_options import query_from_options, query_options


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
    target = parse_peer(peer, options["called_aet"], options)
    spec = query_from_options(options, for_retrieve=False)
    fmt = _format(app, as_json, output_format)
    write_dir = _output_directory(app, write_dir, legacy_write_dir)
    return find_body(app, target, spec, fmt, write_dir, cancel_after, deadline, max_identifier, relational,
                     datetime_matching, fuzzy, timezone_adjust, **options)


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
