"""``dcmnet store``: send files, folders, DICOMDIRs or a list on stdin to a Storage SCP (C-STORE).

The options are declared here; the body is :func:`.store_body.store_body` (no click, so the fast path can
run it too).
"""

from __future__ import annotations

from typing import Any

import click

from ..app import App
from ..options import (SectionedCommand, as_click_error, finite_number, network_options, output_options, parse_peer,
                       seconds_from_zero, tls_options)
from ..peer import UsageProblem
from ..store_body import split_args, store_body
from ..values import jobs_value


class Jobs(click.ParamType):
    """``-j``: a number of associations (1 to 64), or ``auto`` (0 here: chosen once the files are known)."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            return jobs_value(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("store", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, required=True, metavar="PEER PATH...")
@network_options
@tls_options
@click.option("-r/-R", "--recursive/--no-recursive", default=True, show_default="recursive",
              help="Descend into sub-folders of folders given as PATH.")
@click.option("--pattern", metavar="GLOB", default=None, help="Only files in folders whose name matches GLOB (e.g. '*.dcm').")
@click.option("-j", "--jobs", type=Jobs(), default="1", show_default=True, envvar="DCMNET_JOBS", metavar="N|auto",
              help="Associations in parallel (files are split across them). 'auto' picks from the files and the CPU "
                   "count: one for small objects (under 256 KB on average; use --async for those), else one per CPU "
                   "(half when the peer is on this machine), at most 8. On loopback one association was as fast as "
                   "two for every object size (it polls its reads); several help where each file waits for a slow "
                   "peer or a network round trip.")
@click.option("--async", "window", type=click.IntRange(min=1, max=0xFFFF), default=1, show_default=True,
              metavar="N", envvar="DCMNET_ASYNC",
              help="Keep up to N C-STORE requests outstanding on each association if the peer grants an "
                   "asynchronous operations window (PS3.7 D.3.3.3; dcmnet listen does, DCMTK's storescp does not: "
                   "then one at a time). Saves a round trip per file: helps most for many small files.")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True, envvar="DCMNET_RETRIES",
              help="Retry transient rejections and dropped connections; only unanswered files are re-sent.")
@click.option("--retry-delay", type=float, default=1.0, show_default=True, callback=seconds_from_zero,
              help="Seconds before the first retry; doubled each time.")
@click.option("--max-rate", type=click.FloatRange(min=0.001), default=None, metavar="MB/S", callback=finite_number,
              envvar="DCMNET_MAX_RATE", help="Cap the send rate over all associations (1 MB = 10^6 bytes).")
@click.option("--no-progress", is_flag=True, help="No progress bar (only drawn when stderr is a terminal).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE",
              help="Write the JSON summary to FILE as well.")
@click.option("--warnings-ok", is_flag=True, help="Exit 0 instead of 1 when the peer answered warnings only.")
@output_options(json_help="One JSON summary object on stdout.")
@click.pass_obj
def command(app: App, args: tuple[str, ...], recursive: bool, pattern: str | None, jobs: int, window: int, retries: int,
            retry_delay: float, max_rate: float | None, no_progress: bool, as_json: bool, report: str | None,
            warnings_ok: bool, **options: Any) -> int:
    """Send DICOM files to a Storage SCP (C-STORE).

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml. PATH is a
    file, a folder (recursive by default), a DICOMDIR (its referenced files are sent), or - to read
    paths from stdin, one per line. Only the File Meta of each file is read; the data set is streamed
    as it is on disk, or converted through pydicom when the peer accepts none of its transfer syntax.
    """
    try:
        peer_args, path_args = split_args(args)
    except UsageProblem as problem:
        raise as_click_error(problem) from None
    target = parse_peer(peer_args, options["called_aet"], options)
    return store_body(app, target, path_args, recursive, pattern, jobs, window, retries, retry_delay, max_rate,
                      no_progress, as_json, report, warnings_ok, **options)
