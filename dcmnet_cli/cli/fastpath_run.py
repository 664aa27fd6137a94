"""What the fast path does with a parsed command line: the click group's and command's wrappers, without
click. The group callback builds the :class:`.app.App` (``dcmnet COMMAND``), the command's output options
merge into it (:func:`.options.output_options`), then the command's click-free body runs. Interruptions
and a closed stdout end as under click's ``Command.main``.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from ..ul.typenames import Any

from .app import App
from .fastpath import Decline, Parsed


def _app(parsed: Parsed) -> tuple[App, bool]:
    """The App of the group callback, with the command's output options merged; (app, as_json)."""
    app = App(command=f"dcmnet {parsed.command}")
    group = parsed.group
    app.apply(quiet=group["quiet"], verbose=group["verbose"], debug=group["debug"], no_color=group["no_color"],
              json_output=group["as_json"])
    params = parsed.params
    app.apply(quiet=params.pop("quiet"), verbose=params.pop("verbose"), debug=params.pop("debug"),
              no_color=params.pop("no_color"), json_output=params.get("as_json", False))
    if "as_json" not in params and app.json_output:
        raise Decline  # click's "has no --json output"
    return app, app.json_output


def _as_click_main(body: Callable[[], int]) -> int:
    """``body()`` with what click's ``Command.main`` adds around a command: a newline on stderr before an
    interruption is reported, exit 1 (and quiet streams) when stdout or stderr is a closed pipe."""
    try:
        return body()
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        raise KeyboardInterrupt from None
    except OSError as error:
        if error.errno != errno.EPIPE:
            raise
        from click.utils import _PacifyFlushWrapper as PacifyFlushWrapper  # a closed pipe: click's own wrapper, whatever it costs

        sys.stdout = PacifyFlushWrapper(sys.stdout)  # type: ignore[assignment]
        sys.stderr = PacifyFlushWrapper(sys.stderr)  # type: ignore[assignment]
        raise SystemExit(1) from None


def _identity_or_tls(options: dict[str, Any]) -> bool:
    from .peer import IDENTITY_OPTIONS

    detail = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_key_password_env", "tls_server_name", "tls_no_verify")
    return any(options.get(name) for name in (*detail, *IDENTITY_OPTIONS))


def _target(parsed: Parsed, app: App, words: tuple[str, ...], options: dict[str, Any]) -> Any:
    """PEER as :func:`.options.parse_peer` gives it; Decline where it would raise a usage error (click
    then prints it), or where TLS or a user identity is asked for (their set-up is click's)."""
    from .peer import UsageProblem, address, parse_peer

    if _identity_or_tls(options):
        raise Decline
    try:
        if set(address(words)[3]) - {"calling_aet"}:
            raise Decline  # a node with TLS or a user identity
        return parse_peer(words, options["called_aet"], options, given=parsed.given, typed=parsed.typed, app=app)
    except UsageProblem:
        raise Decline from None


def run_echo(parsed: Parsed) -> int | None:
    """``dcmnet echo`` (:func:`.echo_body.echo_body`); None when declined."""
    try:
        app, as_json = _app(parsed)
        options = dict(parsed.params)
        words, count, interval, abort = (options.pop(k) for k in ("peer", "count", "interval", "abort"))
        options.pop("as_json")
        target = _target(parsed, app, words, options)
    except Decline:
        return None
    from .echo_body import echo_body

    return _as_click_main(lambda: echo_body(app, target, count, interval, abort, as_json, options))


STORE_ARGS = ("recursive", "pattern", "jobs", "window", "retries", "retry_delay", "max_rate", "no_progress", "as_json",
              "report", "warnings_ok")


def run_store(parsed: Parsed) -> int | None:
    """``dcmnet store`` (:func:`.store_body.store_body`); None when declined."""
    from .peer import UsageProblem
    from .store_body import split_args, store_body

    try:
        app, as_json = _app(parsed)
        options = dict(parsed.params)
        values = {name: options.pop(name) for name in STORE_ARGS}
        values["as_json"] = as_json
        try:
            peer_args, path_args = split_args(options.pop("args"))
        except UsageProblem:
            raise Decline from None
        target = _target(parsed, app, peer_args, options)
    except Decline:
        return None
    return _as_click_main(lambda: store_body(app, target, path_args, **values, **options))


FIND_ARGS = ("cancel_after", "deadline", "max_identifier", "relational", "datetime_matching", "fuzzy", "timezone_adjust")


def _find_format(app: App, as_json: bool, output_format: str | None) -> str:
    """``find``'s output format (as commands/find.py's ``_format``); Decline where that is a usage error."""
    if as_json:
        if output_format not in (None, "json"):
            raise Decline
        return "json"
    return output_format or ("table" if app.out.isatty() else "tsv")


def run_find(parsed: Parsed) -> int | None:
    """``dcmnet find`` (:func:`.find_body.find_body`); None when declined (-od/--write included: creating
    the folder is click's)."""
    from .peer import UsageProblem
    from .query_spec import model_from_flags, query_spec

    try:
        app, as_json = _app(parsed)
        options = dict(parsed.params)
        if options.pop("write_dir") is not None or options.pop("legacy_write_dir") is not None:
            raise Decline
        fmt = _find_format(app, as_json, options.pop("output_format"))
        values = {name: options.pop(name) for name in FIND_ARGS}
        options.pop("as_json")
        try:
            model_from_flags(options)
        except UsageProblem:
            raise Decline from None
        target = _target(parsed, app, options.pop("peer"), options)
        try:
            spec, notes = query_spec(options, for_retrieve=False)
        except UsageProblem:
            raise Decline from None
    except Decline:
        return None
    for note in notes:
        app.say(note, "warning")
    from .find_body import find_body

    return _as_click_main(lambda: find_body(app, target, spec, fmt, None, **values, **options))
