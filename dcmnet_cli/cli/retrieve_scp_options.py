"""``listen``'s C-MOVE/C-GET SCP: ``--move-destination AET=HOST:PORT`` and the handlers it registers.

Move destinations come from ``--move-destination`` (repeatable) and from the named nodes of the config
file that have an AE title (``[nodes.NAME] aet = "..."``); the command line wins for an AE title both name.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from .options import ae_title


def _parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """``AET=HOST:PORT`` (``AET=[::1]:PORT`` for IPv6) → (aet, host, port); a usage error (exit 2) else."""
    parsed = []
    for value in values:
        aet, sep, address = value.partition("=")
        host, colon, port_text = address.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not colon or not host or not (port_text.isascii() and port_text.isdigit())\
                or not 0 < int(port_text) < 65536:
            raise click.BadParameter(f"{value!r} is not AET=HOST:PORT (e.g. STORESCP=127.0.0.1:11112)")
        parsed.append((ae_title(ctx, param, aet.strip()) or "", host, int(port_text)))
    return tuple(parsed)


move_destination_option = click.option(
    "--move-destination", "move_destinations", multiple=True, metavar="AET=HOST:PORT", callback=_parse,
    help="Where C-MOVE may send (repeatable): the AE title a requestor names, and its address. The named nodes "
         "of the config file with an aet are destinations too. With an index (-od DIR or --index).")


def destinations(options: dict[str, Any]) -> dict[str, Any]:
    """AE title → Peer: config nodes with an ``aet``, then ``--move-destination`` (which wins)."""
    from ..services.peer import Peer
    from .config import nodes

    found: dict[str, Any] = {}
    for node in nodes().values():
        aet, host, port = node.get("aet"), node.get("host"), node.get("port")
        if isinstance(aet, str) and isinstance(host, str) and isinstance(port, int):
            found[aet.strip()] = Peer(host, port, aet.strip())
    for aet, host, port in options.get("move_destinations") or ():
        found[aet] = Peer(host, port, aet)
    return found


def retrieve_handlers_for(query: Any, aetitle: str, options: dict[str, Any],
                          on_event: Callable[[Any], None] | None = None) -> dict[int, Any]:
    """The C-MOVE/C-GET handlers of ``listen`` over the index of its C-FIND SCP (``query.index``)."""
    from ..services.scp.retrieve_handler import IndexArchive, RetrieveSCP, retrieve_handlers
    from ..transport.client import Timeouts

    table = destinations(options)
    network = options.get("network_timeout")
    scp = RetrieveSCP(IndexArchive(query.index), aetitle, table.get,
                      Timeouts(connect=10.0, acse=30.0, dimse=network, network=network),
                      max_pdu=options.get("max_pdu") or 16382 * 8, on_event=on_event)
    return retrieve_handlers(scp)
