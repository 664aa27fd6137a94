"""Option stacks shared by the commands, and PEER parsing (``HOST PORT``, ``[AET@]HOST:PORT``, node name)."""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Callable, Sequence

import click

from ..services.peer import Peer
from .app import App

F = Callable[..., Any]


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator made of several, applied as if written one above the other in this order."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


# --------------------------------------------------------------------------- output options

def _output_flags(json_help: str | None) -> list[Callable[[F], F]]:
    flags: list[Callable[[F], F]] = [
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
        click.option("-v", "--verbose", count=True,
                     help="Association and DIMSE detail on stderr (one line per file, response or event)."),
        click.option("--debug", is_flag=True, help="PDU summaries and tracebacks (implies -vv)."),
        click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is honoured too)."),
    ]
    if json_help is not None:
        flags.append(click.option("--json", "as_json", is_flag=True, help=json_help))
    return flags


def output_options(json_help: str | None = None) -> Callable[[F], F]:
    """The output option stack of a command: -q, -v, --debug, --no-color, and --json when ``json_help``.

    The group takes the same flags before the command name (:func:`group_output_options`); this stack
    merges the ones given after it into the App (:meth:`App.apply`), so the command sees one App. A
    command with --json receives ``as_json`` (true when --json came before or after the name); one
    without refuses a --json given before its name (usage error).
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def merged(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            app = ctx.find_object(App)
            if app is None:  # the command invoked without the group (tests)
                app = ctx.obj = App(command=f"dcmnet {ctx.info_name}")
            app.apply(quiet=kwargs.pop("quiet"), verbose=kwargs.pop("verbose"), debug=kwargs.pop("debug"),
                      no_color=kwargs.pop("no_color"), json_output=kwargs.get("as_json", False))
            if json_help is not None:
                kwargs["as_json"] = app.json_output
            elif app.json_output:
                raise click.UsageError(f"{app.command} has no --json output")
            return function(*args, **kwargs)

        return stack(*_output_flags(json_help))(merged)  # type: ignore[return-value]

    return decorate


group_output_options = stack(*_output_flags("Machine-readable output (JSON on stdout), as the command's --json."))
"""The same flags on the ``dcmnet`` group, before the command name; the group callback builds the App."""


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


def seconds_or_unlimited(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Timeouts a CI run must be able to rely on: finite by default, 0 lifts the limit."""
    if value is None or value == 0:
        return None
    if value < 0:
        raise click.BadParameter("must be a number of seconds (0 = no limit)")
    return value


network_options = stack(
    click.option("-aet", "--calling-aet", default="DCMNET", show_default=True, callback=ae_title,
                 envvar="DCMNET_CALLING_AET", help="Our AE title."),
    click.option("-aec", "--called-aet", default=None, callback=ae_title, envvar="DCMNET_CALLED_AET",
                 help="The peer's AE title [default: ANY-SCP, or the node's]."),
    click.option("--connect-timeout", type=float, default=10.0, show_default=True, callback=positive_seconds,
                 envvar="DCMNET_CONNECT_TIMEOUT", help="Seconds to wait for the TCP connection."),
    click.option("-ta", "--acse-timeout", type=float, default=30.0, show_default=True, callback=positive_seconds,
                 envvar="DCMNET_ACSE_TIMEOUT", help="Seconds to wait for association accept/release."),
    click.option("-td", "--dimse-timeout", type=float, default=60.0, show_default=True, callback=seconds_or_unlimited,
                 envvar="DCMNET_DIMSE_TIMEOUT",
                 help="Seconds to wait for each DIMSE response (pending responses restart it); 0 = no limit."),
    click.option("--network-timeout", type=float, default=60.0, show_default=True, callback=seconds_or_unlimited,
                 envvar="DCMNET_NETWORK_TIMEOUT", help="Seconds a read or write may stall; 0 = no limit."),
    click.option("-pdu", "--max-pdu", type=click.IntRange(min=0, max=0xFFFFFFFF), default=131056, show_default=True,
                 envvar="DCMNET_MAX_PDU", help="Largest P-DATA-TF we accept (0 = no limit)."),
)


_FILE = click.Path(dir_okay=False)

tls_options = stack(
    click.option("--tls/--no-tls", "tls", default=None, envvar="DCMNET_TLS",
                 help="Connect with TLS (DICOM secure transport, TLS 1.2 or later) [default: plain TCP, or the node's "
                      "tls setting]."),
    click.option("--tls-ca", type=_FILE, default=None, envvar="DCMNET_TLS_CA", metavar="FILE",
                 help="CA certificates (PEM) to verify the peer with [default: the system trust store]."),
    click.option("--tls-cert", type=_FILE, default=None, envvar="DCMNET_TLS_CERT", metavar="FILE",
                 help="Our certificate (PEM), for peers that require client authentication."),
    click.option("--tls-key", type=_FILE, default=None, envvar="DCMNET_TLS_KEY", metavar="FILE",
                 help="The private key (PEM) of --tls-cert [default: in the --tls-cert file]."),
    click.option("--tls-key-password-env", default=None, envvar="DCMNET_TLS_KEY_PASSWORD_ENV", metavar="VAR",
                 help="Name of the environment variable holding the password of an encrypted --tls-key."),
    click.option("--tls-server-name", default=None, envvar="DCMNET_TLS_SERVER_NAME", metavar="NAME",
                 help="Name to send (SNI) and check in the peer's certificate [default: the host given; an IP "
                      "address is checked against the certificate's IP addresses]."),
    click.option("--tls-no-verify", is_flag=True, default=False, envvar="DCMNET_TLS_NO_VERIFY",
                 help="Do not verify the peer's certificate (insecure: anyone can impersonate the peer)."),
)
"""TLS for the SCU commands; node settings (``tls``, ``tls_ca``...) fill what the command line leaves unset."""


def _no_plain_password(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """DCMTK's ``--password VALUE`` is refused with the fix: a value on the command line is visible to
    every user of the machine (``ps``, /proc, shell history) for as long as the command runs."""
    if value is not None:
        raise click.UsageError("--password VALUE would show the password to anyone who lists processes: put it "
                               "in an environment variable and give its name with --password-env VAR (or "
                               "password_env in the config node), or type it at the prompt")


identity_options = stack(
    click.option("--user", default=None, metavar="NAME",
                 help="Present this user name to the peer (PS3.7 user identity negotiation). The password comes "
                      "from --password-env, else the node's password_env, else a prompt when stdin is a terminal; "
                      "with none of them the user name is sent alone. Sent in clear: use --tls."),
    click.option("--password-env", default=None, metavar="VAR",
                 help="Name of the environment variable holding the --user password (never the password itself: "
                      "a command line is visible to every user of the machine, so DCMTK's --password VALUE is "
                      "refused)."),
    click.option("--jwt-env", default=None, metavar="VAR",
                 help="Present the JSON Web Token held in environment variable VAR."),
    click.option("--saml", type=_FILE, default=None, metavar="FILE", help="Present the SAML assertion in FILE."),
    click.option("--kerberos", type=_FILE, default=None, metavar="FILE",
                 help="Present the Kerberos service ticket in FILE."),
    click.option("--identity-response", is_flag=True, default=False,
                 help="Ask the peer to confirm the identity; exit 5 when it does not. The answer is shown with "
                      "-v and in --json (identity)."),
    click.option("--password", "-pwd", default=None, hidden=True, expose_value=False, is_eager=True,
                 callback=_no_plain_password),
)
"""User identity (PS3.7 D.3.3.7) for the SCU commands; part of :data:`tls_options` (how we prove who we
are), so every SCU gets it. A ``[nodes.NAME]`` table may hold ``user`` and ``password_env``."""

tls_options = stack(tls_options, identity_options)
_IDENTITY_OPTIONS = ("user", "password_env", "jwt_env", "saml", "kerberos", "identity_response")


listen_identity_options = stack(
    click.option("--users", type=_FILE, default=None, metavar="FILE",
                 help="Accept user identities (user name and password) listed in FILE: one NAME:scrypt$N$r$p$SALT$HASH "
                      "line per user, written by 'dcmnet users add FILE NAME'; read again when it changes. Unknown "
                      "users and wrong passwords are rejected (permanent, service user, no reason given) and logged "
                      "by name, never with the password."),
    click.option("--jwt-key", type=_FILE, default=None, metavar="FILE",
                 help="Accept JSON Web Tokens signed with this key: a PEM RSA public key (RS256/384/512) or a shared "
                      "secret of at least 32 bytes (HS256/384/512); exp and nbf are checked."),
    click.option("--require-identity", is_flag=True, default=False,
                 help="Reject association requests that carry no user identity."),
)
"""User identity checks for ``listen`` (PS3.7 D.3.3.7): see services/scp/identity.py."""


def listen_identity_from(options: dict[str, Any]) -> Any:
    """The IdentityPolicy of ``listen``'s options, or None; unreadable files are usage errors (exit 2)."""
    if not (options.get("users") or options.get("jwt_key") or options.get("require_identity")):
        return None
    from ..errors import InputError
    from ..services.scp.identity import identity_policy, loose_permissions

    try:
        policy = identity_policy(options.get("users"), options.get("jwt_key"), bool(options.get("require_identity")))
    except InputError as error:
        raise click.UsageError(str(error)) from None
    for path in (options.get("users"), options.get("jwt_key")):
        if path and loose_permissions(path):
            _warn(f"{path} is readable by other users: chmod 600 {path}")
    return policy

_TLS_DETAIL = ("tls_ca", "tls_cert", "tls_key", "tls_key_password_env", "tls_server_name", "tls_no_verify")

server_tls_options = stack(
    click.option("--tls", "tls", is_flag=True, help="Require TLS on every connection (needs --tls-cert/--tls-key)."),
    click.option("--tls-cert", type=_FILE, default=None, metavar="FILE", help="Our certificate (PEM) for --tls."),
    click.option("--tls-key", type=_FILE, default=None, metavar="FILE",
                 help="The private key (PEM) of --tls-cert [default: in the --tls-cert file]."),
    click.option("--tls-key-password-env", default=None, metavar="VAR",
                 help="Name of the environment variable holding the password of an encrypted --tls-key."),
    click.option("--tls-ca", type=_FILE, default=None, metavar="FILE",
                 help="CA certificates (PEM) that client certificates must chain to; with it, clients must "
                      "present one (mutual TLS, as DCMTK storescp) unless --tls-allow-anonymous."),
    click.option("--tls-require-client-cert", is_flag=True,
                 help="Refuse clients without a certificate signed by --tls-ca (the default with --tls-ca)."),
    click.option("--tls-allow-anonymous", is_flag=True,
                 help="With --tls-ca: also accept clients without a certificate (one offered is still verified)."),
)
"""TLS for ``listen``: our certificate and key, and how clients are authenticated."""


def server_tls_from(options: dict[str, Any]) -> Any:
    """The server ``ssl.SSLContext`` for ``listen --tls`` (None without it); config errors are usage errors."""
    given = [name for name in ("tls_cert", "tls_key", "tls_ca", "tls_key_password_env") if options.get(name)]
    if not options.get("tls"):
        if given or options.get("tls_require_client_cert") or options.get("tls_allow_anonymous"):
            raise click.UsageError("the --tls-* options need --tls")
        return None
    if not options.get("tls_cert"):
        raise click.UsageError("--tls needs --tls-cert FILE (and --tls-key FILE unless the key is in it)")
    from ..transport.tls import ServerSettings, TLSConfigError, server_context

    try:
        return server_context(ServerSettings(options["tls_cert"], options.get("tls_key"), options.get("tls_ca"),
                                             bool(options.get("tls_require_client_cert")),
                                             options.get("tls_key_password_env"),
                                             bool(options.get("tls_allow_anonymous"))))
    except TLSConfigError as error:
        raise click.UsageError(str(error)) from None


def _client_tls(options: dict[str, Any], node: dict[str, Any], detail_used: bool = False) -> Any:
    """The ClientTLS for this run, or None: the command line and environment first, then the node.

    ``detail_used``: the --tls-* options serve something else too (``move --store-tls``), so giving them
    without --tls is no mistake.
    """
    enabled = options.get("tls")
    if enabled is None:
        enabled = bool(node.get("tls", False))
    if not enabled and not detail_used:
        ctx = click.get_current_context(silent=True)
        explicit = [name for name in _TLS_DETAIL if ctx is not None and options.get(name)
                    and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if explicit:
            raise click.UsageError(f"--{explicit[0].replace('_', '-')} needs --tls")
    if not enabled:
        return None

    def pick(name: str) -> Any:
        value = options.get(name)
        return value if value not in (None, False) else node.get(name)

    from ..transport.tls import ClientSettings, TLSConfigError, client_tls

    verify = not pick("tls_no_verify")
    try:
        tls = client_tls(ClientSettings(pick("tls_ca"), pick("tls_cert"), pick("tls_key"), pick("tls_key_password_env"),
                                        verify, pick("tls_server_name")))
    except TLSConfigError as error:
        raise click.UsageError(str(error)) from None
    if not verify:
        _warn("--tls-no-verify: the peer's certificate is not verified; anyone on the path can impersonate it")
    return tls


def _warn(text: str) -> None:
    """A warning on stderr even with -q: it is about security, not progress."""
    ctx = click.get_current_context(silent=True)
    app = ctx.obj if ctx is not None else None
    print(f"{getattr(app, 'command', 'dcmnet')}: warning: {text}", file=getattr(app, "err", None) or sys.stderr, flush=True)


def timeouts_from(options: dict[str, Any]):
    from ..transport.client import Timeouts

    return Timeouts(
        connect=options["connect_timeout"],
        acse=options["acse_timeout"],
        dimse=options["dimse_timeout"],
        network=options["network_timeout"],
    )


class _LazyPattern:
    """A regular expression compiled at its first use, not at import: ``dcmnet echo HOST PORT`` never needs
    the peer pattern below, and compiling it cost a few hundred µs of every command's start-up."""

    __slots__ = ("_source", "_compiled")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def match(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self._source)
        return self._compiled.match(text)


AET_HOST_PORT = _LazyPattern(r"^(?:(?P<aet>[^@]{1,16})@)?(?P<host>\[[^\]]+\]|[^:@\[\]]+|[0-9a-fA-F:]+):(?P<port>\d+)$")


def config_path() -> str:
    """$DCMNET_CONFIG, else $XDG_CONFIG_HOME/dcmnet/config.toml, else ~/.config/dcmnet/config.toml."""
    from .config import config_path as path

    return path()


_NODE_TLS = {"tls": bool, "tls_ca": str, "tls_cert": str, "tls_key": str, "tls_key_password_env": str,
             "tls_server_name": str, "tls_no_verify": bool}


def _node(name: str) -> tuple[str, int, str | None, dict[str, Any]]:
    """A named node from the config file: ``[nodes.NAME] host, port, aet, calling_aet`` and the TLS keys of
    ``_NODE_TLS`` (``tls = true``, ``tls_ca = "path"``, ...; relative paths from the config folder).
    The node's ``calling_aet`` comes back in the dict under that key."""
    from . import config

    path = config_path()
    if config.load() is None:
        raise click.BadParameter(f"{name!r} is not HOST PORT or [AET@]HOST:PORT, and there is no config file ({path}) naming nodes")
    known = config.nodes()
    node = known.get(name)
    if node is None:
        names = ", ".join(sorted(known)) or "none"
        raise click.BadParameter(f"no node {name!r} in {path} (known nodes: {names})")
    if "host" not in node or "port" not in node:
        raise click.BadParameter(f"node {name!r} in {path} needs host and port")
    extra: dict[str, Any] = {}
    for key, kind in _NODE_TLS.items():
        if key in node:
            if not isinstance(node[key], kind):
                raise click.BadParameter(f"node {name!r} in {path}: {key} must be a {'boolean' if kind is bool else 'string'}")
            value = node[key]
            if key in ("tls_ca", "tls_cert", "tls_key"):
                value = os.path.join(os.path.dirname(path), os.path.expanduser(value))
            extra[key] = value
    for key in ("aet", "calling_aet"):
        if key in node:
            ae_title(None, None, str(node[key]))  # type: ignore[arg-type]
    if "calling_aet" in node:
        extra["calling_aet"] = str(node["calling_aet"])
    for key in ("user", "password_env"):
        if key in node:
            if not isinstance(node[key], str) or not node[key]:
                raise click.BadParameter(f"node {name!r} in {path}: {key} must be a non-empty string")
            extra[key] = node[key]
    return str(node["host"]), _port(str(node["port"])), node.get("aet"), extra


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise click.BadParameter(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _hint_swapped(args: tuple[str, ...]) -> None:
    """``104 pacs.example.org``: HOST and PORT the wrong way round; ``HOST Key=Value``: a forgotten -k."""
    if "=" in args[1]:
        raise click.BadParameter(f"{args[1]!r} is not a port number: query keys go after -k (-k {args[1]})",
                                 param_hint="PEER")
    if args[0].isdigit() and not args[1].isdigit():
        raise click.BadParameter(f"{args[1]!r} is not a port number: did you swap HOST and PORT? "
                                 f"(give {args[1]} {args[0]})", param_hint="PEER")


def _given(options: dict[str, Any] | None, name: str) -> bool:
    """True when option ``name`` came from the command line or the environment (not a default, not the
    config file's [defaults]); True too outside a click context (a caller passing values itself)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or options is None or name not in ctx.params and name not in options:
        return True
    source = ctx.get_parameter_source(name)
    return source is None or source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def _node_calling_aet(options: dict[str, Any], value: str) -> None:
    """The node's ``calling_aet`` unless -aet came from the command line or the environment."""
    if not _given(options, "calling_aet"):
        options["calling_aet"] = value


def parse_peer(args: tuple[str, ...], called_aet: str | None, options: dict[str, Any] | None = None,
               tls_detail_used: bool = False) -> Peer:
    """``HOST PORT`` (the DCMTK habit), ``[AET@]HOST:PORT``, or a node name from the config file.

    ``options`` (the command's, with :data:`tls_options`) decide TLS, with the node's settings as defaults.
    """
    node: dict[str, Any] = {}
    if len(args) == 2:
        _hint_swapped(args)
        host, port, aet = args[0], _port(args[1]), None
    elif len(args) == 1:
        match = AET_HOST_PORT.match(args[0])
        if match:
            host, port, aet = match["host"].strip("[]"), _port(match["port"]), match["aet"]
        elif "=" in args[0]:
            raise click.BadParameter(f"{args[0]!r} is not a peer: give HOST PORT first, and query keys after -k "
                                     f"(-k {args[0]})", param_hint="PEER")
        elif args[0].isdigit():
            raise click.BadParameter(f"{args[0]!r} is a port number, not a peer: give HOST PORT", param_hint="PEER")
        else:
            host, port, aet, node = _node(args[0])
    else:
        keys = [arg for arg in args if "=" in arg]
        hint = f" (query keys go after -k: -k {keys[0]})" if keys else ""
        raise click.BadParameter(f"expected HOST PORT, [AET@]HOST:PORT or a node name{hint}", param_hint="PEER")
    if aet is not None:
        ae_title(None, None, aet)  # type: ignore[arg-type]
    if options is not None and "calling_aet" in node:
        _node_calling_aet(options, node.pop("calling_aet"))
    if aet is not None and called_aet is not None and not _given(options, "called_aet"):
        called_aet = None  # the node's aet is more specific than [defaults] called_aet
    tls = _client_tls(options, node, tls_detail_used) if options is not None else None
    identity = None
    if options is not None and "user" in options and (node.get("user") or any(options.get(n) for n in _IDENTITY_OPTIONS)):
        from .identity import identity_from

        identity = identity_from(options, node, f"{host}:{port}")
    return Peer(host, port, called_aet or aet or "ANY-SCP", tls, identity)


# --------------------------------------------------------------------------- help


class AliasedOption(click.Option):
    """An option with old spellings (``hidden_aliases``) that still parse but are not shown in help or the
    man pages, so renaming an option breaks no script."""

    def __init__(self, param_decls: Sequence[str], hidden_aliases: Sequence[str] = (), **attrs: Any) -> None:
        super().__init__([*param_decls, *hidden_aliases], **attrs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return " / ".join(f"'{o}'" for o in self.opts if o not in self.hidden_aliases)


class SectionedCommand(click.Command):
    """A command whose help lists options by section, then its examples."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .help_sections import sectioned

        options = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        for title, group in sectioned(options):
            records = [r for r in (p.get_help_record(ctx) for p in group) if r is not None]
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from .help_sections import EXAMPLES

        examples = EXAMPLES.get(ctx.info_name or self.name or "", ())
        if examples:
            with formatter.section("Examples"):
                for line in examples:
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
