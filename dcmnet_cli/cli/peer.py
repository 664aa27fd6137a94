"""PEER parsing (``HOST PORT``, ``[AET@]HOST:PORT``, node name) and the client TLS it implies, without click.

:func:`parse_peer` is shared by the click commands (through :func:`.options.parse_peer`, which turns a
:class:`UsageProblem` into click's ``BadParameter``/``UsageError``) and the click-free bodies the fast path
runs (:mod:`.fastpath` declines and lets click run the whole command again, so the message is click's).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..ul.typenames import TYPE_CHECKING, Any

from ..services.peer import Peer
from . import config_file
from .config_file import config_path
from .values import UsageProblem, ae_title

if TYPE_CHECKING:
    import re

__all__ = ["UsageProblem", "config_path"]


class _LazyPattern:
    """A regular expression compiled at its first use, not at import: ``dcmnet echo HOST PORT`` never needs
    the peer pattern below, and compiling it cost a few hundred µs of every command's start-up."""

    __slots__ = ("_source", "_compiled")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def match(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            import re  # not at import: ``re`` is 2-4 ms of a start-up that mostly never needs it

            self._compiled = re.compile(self._source)
        return self._compiled.match(text)


AET_HOST_PORT = _LazyPattern(r"^(?:(?P<aet>[^@]{1,16})@)?(?P<host>\[[^\]]+\]|[^:@\[\]]+|[0-9a-fA-F:]+):(?P<port>\d+)$")

_TLS_DETAIL = ("tls_ca", "tls_cert", "tls_key", "tls_key_password_env", "tls_server_name", "tls_no_verify")
IDENTITY_OPTIONS = ("user", "password_env", "jwt_env", "saml", "kerberos", "identity_response")

_NODE_TLS = {"tls": bool, "tls_ca": str, "tls_cert": str, "tls_key": str, "tls_key_password_env": str,
             "tls_server_name": str, "tls_no_verify": bool}


def _ae(value: str) -> None:
    try:
        ae_title(value)
    except ValueError as error:
        raise UsageProblem(str(error)) from None


def _node(name: str) -> tuple[str, int, str | None, dict[str, Any]]:
    """A named node from the config file: ``[nodes.NAME] host, port, aet, calling_aet`` and the TLS keys of
    ``_NODE_TLS`` (``tls = true``, ``tls_ca = "path"``, ...; relative paths from the config folder).
    The node's ``calling_aet`` comes back in the dict under that key."""
    path = config_path()
    if not os.path.exists(path):
        raise UsageProblem(f"{name!r} is not HOST PORT or [AET@]HOST:PORT, and there is no config file ({path}) naming nodes")
    if config_file.read() is None:
        raise UsageProblem(f"{name!r} is not HOST PORT or [AET@]HOST:PORT, and there is no config file ({path}) naming nodes")
    known = config_file.nodes()
    node = known.get(name)
    if node is None:
        names = ", ".join(sorted(known)) or "none"
        raise UsageProblem(f"no node {name!r} in {path} (known nodes: {names})")
    if "host" not in node or "port" not in node:
        raise UsageProblem(f"node {name!r} in {path} needs host and port")
    extra: dict[str, Any] = {}
    for key, kind in _NODE_TLS.items():
        if key in node:
            if not isinstance(node[key], kind):
                raise UsageProblem(f"node {name!r} in {path}: {key} must be a {'boolean' if kind is bool else 'string'}")
            value = node[key]
            if key in ("tls_ca", "tls_cert", "tls_key"):
                value = os.path.join(os.path.dirname(path), os.path.expanduser(value))
            extra[key] = value
    for key in ("aet", "calling_aet"):
        if key in node:
            _ae(str(node[key]))
    if "calling_aet" in node:
        extra["calling_aet"] = str(node["calling_aet"])
    for key in ("user", "password_env"):
        if key in node:
            if not isinstance(node[key], str) or not node[key]:
                raise UsageProblem(f"node {name!r} in {path}: {key} must be a non-empty string")
            extra[key] = node[key]
    return str(node["host"]), _port(str(node["port"])), node.get("aet"), extra


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise UsageProblem(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _hint_swapped(args: tuple[str, ...]) -> None:
    """``104 pacs.example.org``: HOST and PORT the wrong way round; ``HOST Key=Value``: a forgotten -k."""
    if "=" in args[1]:
        raise UsageProblem(f"{args[1]!r} is not a port number: query keys go after -k (-k {args[1]})", param_hint="PEER")
    if args[0].isdigit() and not args[1].isdigit():
        raise UsageProblem(f"{args[1]!r} is not a port number: did you swap HOST and PORT? "
                           f"(give {args[1]} {args[0]})", param_hint="PEER")


def warn(app: Any, text: str) -> None:
    """A warning on stderr even with -q: it is about security, not progress."""
    print(f"{getattr(app, 'command', 'dcmnet')}: warning: {text}", file=getattr(app, "err", None) or sys.stderr, flush=True)


def client_tls(options: dict[str, Any], node: dict[str, Any], detail_used: bool = False,
               typed: Callable[[str], bool] = lambda name: False, app: Any = None) -> Any:
    """The ClientTLS for this run, or None: the command line and environment first, then the node.

    ``detail_used``: the --tls-* options serve something else too (``move --store-tls``), so giving them
    without --tls is no mistake. ``typed(name)``: option ``name`` came from the command line.
    """
    enabled = options.get("tls")
    if enabled is None:
        enabled = bool(node.get("tls", False))
    if not enabled and not detail_used:
        explicit = [name for name in _TLS_DETAIL if options.get(name) and typed(name)]
        if explicit:
            raise UsageProblem(f"--{explicit[0].replace('_', '-')} needs --tls", bad=False)
    if not enabled:
        return None

    def pick(name: str) -> Any:
        value = options.get(name)
        return value if value not in (None, False) else node.get(name)

    from ..transport.tls import ClientSettings, TLSConfigError, client_tls as build

    verify = not pick("tls_no_verify")
    try:
        tls = build(ClientSettings(pick("tls_ca"), pick("tls_cert"), pick("tls_key"), pick("tls_key_password_env"),
                                   verify, pick("tls_server_name")))
    except TLSConfigError as error:
        raise UsageProblem(str(error), bad=False) from None
    if not verify:
        warn(app, "--tls-no-verify: the peer's certificate is not verified; anyone on the path can impersonate it")
    return tls


def timeouts_from(options: dict[str, Any]) -> Any:
    from ..transport.client import Timeouts

    return Timeouts(connect=options["connect_timeout"], acse=options["acse_timeout"],
                    dimse=options["dimse_timeout"], network=options["network_timeout"])


def address(args: tuple[str, ...]) -> tuple[str, int, str | None, dict[str, Any]]:
    """(host, port, AE title or None, node settings) of PEER's words."""
    if len(args) == 2:
        _hint_swapped(args)
        return args[0], _port(args[1]), None, {}
    if len(args) == 1:
        match = AET_HOST_PORT.match(args[0])
        if match:
            return match["host"].strip("[]"), _port(match["port"]), match["aet"], {}
        if "=" in args[0]:
            raise UsageProblem(f"{args[0]!r} is not a peer: give HOST PORT first, and query keys after -k "
                               f"(-k {args[0]})", param_hint="PEER")
        if args[0].isdigit():
            raise UsageProblem(f"{args[0]!r} is a port number, not a peer: give HOST PORT", param_hint="PEER")
        return _node(args[0])
    keys = [arg for arg in args if "=" in arg]
    hint = f" (query keys go after -k: -k {keys[0]})" if keys else ""
    raise UsageProblem(f"expected HOST PORT, [AET@]HOST:PORT or a node name{hint}", param_hint="PEER")


def parse_peer(args: tuple[str, ...], called_aet: str | None, options: dict[str, Any] | None = None,
               tls_detail_used: bool = False, given: Callable[[str], bool] = lambda name: True,
               typed: Callable[[str], bool] = lambda name: False, app: Any = None) -> Peer:
    """``HOST PORT`` (the DCMTK habit), ``[AET@]HOST:PORT``, or a node name from the config file.

    ``options`` (the command's, with the TLS options) decide TLS, with the node's settings as defaults.
    ``given(name)``: option ``name`` came from the command line or the environment (not a default);
    ``typed(name)``: from the command line.
    """
    host, port, aet, node = address(args)
    if aet is not None:
        _ae(aet)
    if options is not None and "calling_aet" in node:
        value = node.pop("calling_aet")
        if not given("calling_aet"):
            options["calling_aet"] = value
    if aet is not None and called_aet is not None and not given("called_aet"):
        called_aet = None  # the node's aet is more specific than [defaults] called_aet
    tls = client_tls(options, node, tls_detail_used, typed, app) if options is not None else None
    identity = None
    if options is not None and "user" in options and (node.get("user") or any(options.get(n) for n in IDENTITY_OPTIONS)):
        from .identity import identity_from

        identity = identity_from(options, node, f"{host}:{port}")
    return Peer(host, port, called_aet or aet or "ANY-SCP", tls, identity)
