"""``dcmnet echo``: C-ECHO one node, once or ping-style."""

from __future__ import annotations

from typing import Any

import click

from ..app import App
from ..echo_body import echo_body
from ..options import SectionedCommand, network_options, output_options, parse_peer, seconds_from_zero, tls_options


@click.command("echo", cls=SectionedCommand)
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@click.option("-c", "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Echoes to send over one association.")
@click.option("-i", "--interval", type=float, default=0.0, callback=seconds_from_zero,
              help="Seconds between echoes with --count.")
@click.option("--abort", "abort", is_flag=True, help="End with A-ABORT instead of a release.")
@output_options(json_help="One JSON object with statuses and timings.")
@click.pass_obj
def command(app: App, peer: tuple[str, ...], count: int, interval: float, abort: bool, as_json: bool, **options: Any) -> int:
    """Check that a DICOM node answers (C-ECHO).

    PEER is HOST PORT, [AET@]HOST:PORT or the name of a node in ~/.config/dcmnet/config.toml.
    """
    target = parse_peer(peer, options["called_aet"], options)
    return echo_body(app, target, count, interval, abort, as_json, options)
