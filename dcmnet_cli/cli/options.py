"""Option stacks shared by the commands, and PEER parsing (``HOST PORT``, ``[AET@]HOST:PORT``, node name)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import click

from ..services.peer import Peer
from . import values
from .app import App
from .peer import AET_HOST_PORT, UsageProblem, config_path, timeouts_from, warn
from .peer import parse_peer as _parse_peer

__all__ = ["AET_HOST_PORT", "config_path", "timeouts_from"]

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


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def ae_title(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """AE titles: 1-16 characters, no backslash or control characters (PS3.5 AE VR): :func:`.values.ae_title`."""
    return _checked(values.ae_title, value)


def positive_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """:func:`.values.positive_seconds`."""
    return _checked(values.positive_seconds, value)


def seconds_or_unlimited(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Timeouts a CI run must be able to rely on (:func:`.values.seconds_or_unlimited`)."""
    return _checked(values.seconds_or_unlimited, value)


def seconds_from_zero(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """0 to :data:`.values.MAX_SECONDS` (:func:`.values.seconds_from_zero`)."""
    return _checked(values.seconds_from_zero, value)


def finite_number(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Not ``nan`` nor infinite (:func:`.values.finite_number`)."""
    return _checked(values.finite_number, value)


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


def _sources() -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    """(given, typed) for :func:`.peer.parse_peer` from the current click context: option NAME came from
    the command line or the environment / from the command line."""
    ctx = click.get_current_context(silent=True)
    source = click.core.ParameterSource

    def given(name: str) -> bool:
        if ctx is None or name not in ctx.params:
            return True
        found = ctx.get_parameter_source(name)
        return found is None or found in (source.COMMANDLINE, source.ENVIRONMENT)

    def typed(name: str) -> bool:
        return ctx is not None and ctx.get_parameter_source(name) is source.COMMANDLINE

    return given, typed


def as_click_error(problem: UsageProblem) -> click.UsageError:
    """The click exception of a click-free :class:`.peer.UsageProblem` (same text, same exit code 2)."""
    if problem.bad:
        return click.BadParameter(problem.message, param_hint=problem.param_hint)
    return click.UsageError(problem.message)


def _warn(text: str) -> None:
    """A warning on stderr even with -q: it is about security, not progress."""
    ctx = click.get_current_context(silent=True)
    warn(ctx.obj if ctx is not None else None, text)


def parse_peer(args: tuple[str, ...], called_aet: str | None, options: dict[str, Any] | None = None,
               tls_detail_used: bool = False) -> Peer:
    """:func:`.peer.parse_peer` in a click command: option sources from the context, click's errors."""
    given, typed = _sources()
    ctx = click.get_current_context(silent=True)
    try:
        return _parse_peer(args, called_aet, options, tls_detail_used, given if options is not None else
                           (lambda name: True), typed, ctx.obj if ctx is not None else None)
    except UsageProblem as problem:
        raise as_click_error(problem) from None


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
