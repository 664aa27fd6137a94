"""``dcmnet nodes``: the nodes named in the config file; ``--check`` echoes every one of them at once."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from ..app import App
from ..exitcodes import ExitCode, combine, for_error, for_status
from ..options import SectionedCommand, network_options, output_options, parse_peer, timeouts_from


@click.command("nodes", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--check", is_flag=True, help="C-ECHO every node in parallel: status and round trip per node.")
@click.option("--names", is_flag=True, hidden=True, help="Only the names, one per line (for shell completion).")
@click.option("-j", "--jobs", type=click.IntRange(min=1, max=64), default=8, show_default=True,
              help="Nodes checked at the same time with --check.")
@network_options
@output_options(json_help="One JSON object per node.")
@click.pass_obj
def command(app: App, check: bool, names: bool, jobs: int, as_json: bool, **options: Any) -> int:
    """List the nodes of the config file (name, AE title, host:port, TLS); --check echoes them all.

    The config file is $DCMNET_CONFIG, else $XDG_CONFIG_HOME/dcmnet/config.toml, else
    ~/.config/dcmnet/config.toml. --check sends the user identity a node names (user, and the password from
    its password_env variable; never a prompt): a node whose variable is unset is not checked and counts as
    a usage error (2). The exit code is the worst of the echoes (the order of the exit-code table: 2, 6, 5,
    4, 7, 8, 3, 1, 0); 0 when every node answered Success.
    """
    from .. import config

    known = config.nodes()
    if names:
        for name in sorted(known):
            app.result(name)
        return ExitCode.SUCCESS
    if not known:
        app.error(f"no nodes: {config.config_path()} names none (add a [nodes.NAME] table with host and port)")
        return ExitCode.USAGE
    rows = [_row(name, known[name], options) for name in sorted(known)]
    if check:
        _check(rows, options, jobs)
    _print(app, rows, check, as_json)
    return combine([row["code"] for row in rows]) if check else ExitCode.SUCCESS


def _row(name: str, node: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    node_options = dict(options, tls=None)
    for key in ("tls_ca", "tls_cert", "tls_key", "tls_key_password_env", "tls_server_name", "tls_no_verify"):
        node_options.setdefault(key, None)
    peer = parse_peer((name,), options["called_aet"], node_options)
    identity, problem = _identity(node)
    return {"name": name, "ae": peer.called_ae, "address": f"{peer.host}:{peer.port}", "tls": peer.tls is not None,
            "peer": peer._replace(identity=identity), "calling_aet": node_options["calling_aet"],
            "status": problem or "", "rtt_ms": None, "code": ExitCode.USAGE if problem else ExitCode.SUCCESS,
            "problem": problem}


def _identity(node: dict[str, Any]) -> tuple[Any, str | None]:
    """The user identity a node configures (``user``, with ``password_env``: PS3.7 D.3.3.7 type 2, else
    type 1), or (None, why it cannot be sent): a password variable unset or empty. Never a prompt."""
    user = node.get("user")
    if not isinstance(user, str) or not user:
        return None, None
    from ...services.scu.identity import Identity, IdentityError
    from ...ul.items import UserIdentityType

    var = node.get("password_env")
    password = os.environ.get(var) if isinstance(var, str) and var else ""
    if password is None or (var and not password):
        return None, f"not checked: password_env {var} (user {user}) is {'not set' if password is None else 'empty'}"
    kind = UserIdentityType.USERNAME_PASSCODE if password else UserIdentityType.USERNAME
    try:
        return Identity.build(kind, user.encode("utf-8"), (password or "").encode("utf-8")), None
    except IdentityError as error:
        return None, f"not checked: {error}"


def _check(rows: list[dict[str, Any]], options: dict[str, Any], jobs: int) -> None:
    """Echo every node on the store pool's threads (joined before this returns, Ctrl-C included)."""
    from ...errors import DcmnetError
    from ...services.scu.echo import echo
    from ...transport.pool import Pool

    timeouts = timeouts_from(options)

    def one(index: int) -> None:
        row = rows[index]
        if row["problem"]:
            return
        started = time.perf_counter()
        try:
            result = echo(row["peer"], row["calling_aet"], timeouts, max_pdu=options["max_pdu"])
        except DcmnetError as error:
            row["code"], row["status"] = for_error(error), str(error)
            return
        status = result.statuses[0]
        row["code"] = for_status(status)
        row["status"] = "ok" if status == 0 else f"status 0x{status:04X}"
        row["rtt_ms"] = round((time.perf_counter() - started) * 1000, 1)

    Pool().run(len(rows), jobs, one)


def _print(app: App, rows: list[dict[str, Any]], check: bool, as_json: bool) -> None:
    if as_json:
        for row in rows:
            entry = {k: row[k] for k in ("name", "ae", "address", "tls")}
            if check:
                entry.update(status=row["status"], rtt_ms=row["rtt_ms"], exit_code=int(row["code"]))
            app.json(entry)
        return
    header = ["NAME", "AE", "HOST:PORT", "TLS"] + (["STATUS", "ROUND TRIP"] if check else [])
    table = [header]
    for row in rows:
        cells = [row["name"], row["ae"], row["address"], "yes" if row["tls"] else "no"]
        if check:
            rtt = f"{row['rtt_ms']:.1f} ms" if row["rtt_ms"] is not None else "-"
            cells += [row["status"], rtt]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for cells in table:
        app.result("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1])
