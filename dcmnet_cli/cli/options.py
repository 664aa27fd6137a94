"""Option stacks shared by the commands, and PEER parsing (``HOST PORT``, ``[AET@]HOST:PORT``, node name)."""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import click

from ..services.peer import Peer

F = Callable[..., Any]


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def ae_title(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """AE titles: 1-16 characters, no backslash or control characters (PS3.5 AE VR)."""
    if value is None:
        return value
    if not 0 < len(value.strip(" ")) <= 16 or "\\" in value or any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise click.BadParameter(f"{value!r} is not a valid AE title (1-16 printable ASCII characters, no backslash)")
    return value


def positive_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be a positive number of seconds")
    return value


network_options = _stack(
    click.option("-aet", "--calling-aet", default="DCMNET", show_default=True, callback=ae_title,
                 envvar="DCMNET_CALLING_AET", help="Our AE title."),
    click.option("-aec", "--called-aet", default=None, callback=ae_title, envvar="DCMNET_CALLED_AET",
                 help="The peer's AE title [default: ANY-SCP, or the node's]."),
    click.option("--connect-timeout", type=float, default=10.0, show_default=True, callback=positive_seconds,
                 envvar="DCMNET_CONNECT_TIMEOUT", help="Seconds to wait for the TCP connection."),
    click.option("-ta", "--acse-timeout", type=float, default=30.0, show_default=True, callback=positive_seconds,
                 envvar="DCMNET_ACSE_TIMEOUT", help="Seconds to wait for association accept/release."),
    click.option("-td", "--dimse-timeout", type=float, default=None, callback=positive_seconds,
                 envvar="DCMNET_DIMSE_TIMEOUT", help="Seconds to wait for each DIMSE response [default: forever]."),
    click.option("--network-timeout", type=float, default=None, callback=positive_seconds,
                 envvar="DCMNET_NETWORK_TIMEOUT", help="Seconds a read or write may stall [default: forever]."),
    click.option("-pdu", "--max-pdu", type=click.IntRange(min=0, max=0xFFFFFFFF), default=131056, show_default=True,
                 envvar="DCMNET_MAX_PDU", help="Largest P-DATA-TF we accept (0 = no limit)."),
)


def timeouts_from(options: dict[str, Any]):
    from ..transport.client import Timeouts

    return Timeouts(
        connect=options["connect_timeout"],
        acse=options["acse_timeout"],
        dimse=options["dimse_timeout"],
        network=options["network_timeout"],
    )


_AET_HOST_PORT = re.compile(r"^(?:(?P<aet>[^@]{1,16})@)?(?P<host>\[[^\]]+\]|[^:@\[\]]+|[0-9a-fA-F:]+):(?P<port>\d+)$")


def config_path() -> str:
    """$DCMNET_CONFIG, else $XDG_CONFIG_HOME/dcmnet/config.toml, else ~/.config/dcmnet/config.toml.

    os.path, not pathlib: pathlib costs ~3 ms of start-up that ``dcmnet echo`` need not pay.
    """
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.environ.get("DCMNET_CONFIG") or os.path.join(base, "dcmnet", "config.toml")


def _node(name: str) -> tuple[str, int, str | None]:
    """A named node from the config file: ``[nodes.NAME] host, port, aet``."""
    import tomllib

    path = config_path()
    try:
        with open(path, "rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise click.BadParameter(f"{name!r} is not HOST PORT or [AET@]HOST:PORT, and there is no config file ({path}) naming nodes") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(f"cannot read {path}: {error}") from None
    node = config.get("nodes", {}).get(name)
    if not isinstance(node, dict) or "host" not in node or "port" not in node:
        raise click.BadParameter(f"no node {name!r} (with host and port) in {path}")
    return str(node["host"]), _port(str(node["port"])), node.get("aet")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise click.BadParameter(f"{text!r} is not a port number (1-65535)")
    return int(text)


def parse_peer(args: tuple[str, ...], called_aet: str | None) -> Peer:
    """``HOST PORT`` (the DCMTK habit), ``[AET@]HOST:PORT``, or a node name from the config file."""
    if len(args) == 2:
        host, port, aet = args[0], _port(args[1]), None
    elif len(args) == 1:
        match = _AET_HOST_PORT.match(args[0])
        if match:
            host, port, aet = match["host"].strip("[]"), _port(match["port"]), match["aet"]
        else:
            host, port, aet = _node(args[0])
    else:
        raise click.BadParameter("expected HOST PORT, [AET@]HOST:PORT or a node name", param_hint="PEER")
    if aet is not None:
        ae_title(None, None, aet)  # type: ignore[arg-type]
    return Peer(host, port, called_aet or aet or "ANY-SCP")
