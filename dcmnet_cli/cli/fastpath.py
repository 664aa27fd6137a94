"""The click-free fast path of ``dcmnet echo``, ``find`` and ``store``: parse argv, run, never import click.

``import click`` alone costs 40-60 ms here, more than a whole C-ECHO. :func:`run_fast` parses the command
line with :data:`.argspec.SPEC` (generated from the click commands by ``scripts/gen_argspec.py``) into
exactly the keyword arguments click would pass, then calls the command's click-free body. It DECLINES
(returns None, and :mod:`.main` runs click, which then behaves as if there were no fast path) on anything it
does not reproduce exactly: help and --version, shell completion, a config file with [defaults] (node
names are read here), an unknown option, a value
click would refuse (conversion, range, choice, path checks, a callback's check), a callback it does not
know, an environment variable for a flag, a PEER :func:`.peer.parse_peer` refuses, TLS or user identity
(from options or the node).
So every error message stays click's. ``tests/test_argspec.py`` compares both parsers on many command lines.
"""

from __future__ import annotations

import os
import stat
import sys
from ..ul.typenames import Any

from .argspec import SPEC
from .values import CHECKS, TYPES

COMMANDLINE, ENVIRONMENT, DEFAULT = "commandline", "environment", "default"
"""Where a value came from (click's ``ParameterSource`` names)."""

RUNNERS = {"echo": "dcmnet_cli.cli.fastpath_run.run_echo", "find": "dcmnet_cli.cli.fastpath_run.run_find",
           "store": "dcmnet_cli.cli.fastpath_run.run_store"}
"""The function that runs each command of ``SPEC`` (:mod:`.fastpath_run`)."""


class Decline(Exception):
    """The fast path does not handle this command line exactly: click takes it."""


class Parsed:
    """A command line as click would see it: the command, the group's and the command's values and
    where each came from."""

    __slots__ = ("command", "group", "params", "sources")

    def __init__(self, command: str, group: dict[str, Any], params: dict[str, Any], sources: dict[str, str]) -> None:
        self.command, self.group, self.params, self.sources = command, group, params, sources

    def given(self, name: str) -> bool:
        """Option ``name`` came from the command line or the environment (not a default)."""
        return self.sources.get(name, COMMANDLINE) in (COMMANDLINE, ENVIRONMENT)

    def typed(self, name: str) -> bool:
        """Option ``name`` came from the command line."""
        return self.sources.get(name) == COMMANDLINE


# --------------------------------------------------------------------------- the option parser (click's)


def _split_opt(opt: str) -> tuple[str, str]:
    first = opt[:1]
    if first.isalnum():
        return "", opt
    if opt[1:2] == first:
        return opt[:2], opt[2:]
    return first, opt[1:]


_HELP = {"name": None, "kind": "option", "opts": SPEC["dcmnet"]["help"], "secondary_opts": [], "is_flag": True, "count": False,
         "flag_value": True, "help": True}
"""-h/--help (click adds it to every command's parameters; never in the spec's): declined."""


def _table(params: list[dict[str, Any]]) -> tuple[dict[str, tuple[dict[str, Any], Any]], dict[str, tuple[dict[str, Any], Any]]]:
    """(long, short) option strings → (parameter, the constant a flag stores or None for a value)."""
    long: dict[str, tuple[dict[str, Any], Any]] = {}
    short: dict[str, tuple[dict[str, Any], Any]] = {}
    for param in [*params, _HELP]:
        if param["kind"] != "option":
            continue
        const = param["flag_value"] if param["is_flag"] else None
        pairs = [(o, const) for o in param["opts"]] + [(o, False) for o in param["secondary_opts"]]
        for opt, value in pairs:
            prefix, rest = _split_opt(opt)
            if not prefix:
                raise Decline
            (short if len(prefix) == 1 and len(rest) == 1 else long)[opt] = (param, value)
    return long, short


class _State:
    __slots__ = ("raw", "largs", "rargs")

    def __init__(self, args: list[str]) -> None:
        self.raw: dict[str, list[Any]] = {}
        self.largs: list[str] = []
        self.rargs = list(args)


def _take(param: dict[str, Any], const: Any, state: _State, explicit: str | None) -> None:
    """Record one occurrence of an option (click's ``_match_long_opt``/``_get_value_from_state``)."""
    if param.get("help"):
        raise Decline
    takes_value = not param["is_flag"] and not param["count"]
    if not takes_value:
        if explicit is not None:
            raise Decline  # "Option does not take a value"
        state.raw.setdefault(param["name"], []).append(True if param["count"] else const)
        return
    if param["nargs"] != 1:
        raise Decline
    if explicit is not None:
        state.rargs.insert(0, explicit)
    if not state.rargs:
        raise Decline  # "Option requires an argument"
    state.raw.setdefault(param["name"], []).append(state.rargs.pop(0))


def _short(arg: str, short: dict[str, tuple[dict[str, Any], Any]], state: _State) -> None:
    """``-qv``, ``-c5``, ``-k KEY``: click's ``_match_short_opt``."""
    for i, ch in enumerate(arg[1:], start=2):
        found = short.get(arg[0] + ch)
        if found is None:
            raise Decline  # no such option (-h included)
        param, const = found
        if not param.get("is_flag") and not param["count"]:
            if i < len(arg):
                state.rargs.insert(0, arg[i:])
            _take(param, const, state, None)
            return
        _take(param, const, state, None)


def _options(params: list[dict[str, Any]], args: list[str], interspersed: bool) -> _State:
    """Options out of ``args`` into ``state.raw``; positional arguments left in ``state.largs`` (and, for a
    group, the command and its arguments in ``state.rargs``)."""
    long, short = _table(params)
    prefixes = {_split_opt(o)[0] for o in (*long, *short)} | {"-", "--"}
    state = _State(args)
    while state.rargs:
        arg = state.rargs.pop(0)
        if arg == "--":
            if not interspersed:
                raise Decline
            state.largs.extend(state.rargs)
            state.rargs = []
            break
        if arg[:1] in prefixes and len(arg) > 1:
            name, eq, explicit = arg.partition("=")
            if name in long:
                _take(*long[name], state, explicit if eq else None)
            elif arg[:2] in prefixes:
                raise Decline  # no such option
            else:
                _short(arg, short, state)
        elif interspersed:
            state.largs.append(arg)
        else:
            state.rargs.insert(0, arg)
            break
    return state


# --------------------------------------------------------------------------- values (click's types)


def _number(kind: dict[str, Any], raw: str) -> Any:
    try:
        value = int(raw) if kind["name"] == "int" else float(raw)
    except ValueError:
        raise Decline from None
    if kind.get("clamp"):
        raise Decline
    low, high = kind.get("min"), kind.get("max")
    if low is not None and (value <= low if kind.get("min_open") else value < low):
        raise Decline
    if high is not None and (value >= high if kind.get("max_open") else value > high):
        raise Decline
    return value


def _path(kind: dict[str, Any], raw: str) -> str:
    if kind["resolve_path"] or kind["file_okay"] and kind["allow_dash"] and raw == "-":
        raise Decline
    try:
        found = os.stat(raw)
    except OSError:
        if kind["exists"]:
            raise Decline from None
        return raw
    if not kind["file_okay"] and stat.S_ISREG(found.st_mode) or not kind["dir_okay"] and stat.S_ISDIR(found.st_mode):
        raise Decline
    for check, mode in (("readable", os.R_OK), ("writable", os.W_OK), ("executable", os.X_OK)):
        if kind[check] and not os.access(raw, mode):
            raise Decline
    return raw


def convert(kind: dict[str, Any], raw: str) -> Any:
    """``raw`` as click's type ``kind`` converts it; Decline where click would refuse it (or we are unsure)."""
    name = kind["name"]
    if name == "str":
        return raw
    if name in ("int", "float"):
        return _number(kind, raw)
    if name == "choice":
        fold = (lambda text: text) if kind["case_sensitive"] else str.casefold
        matches = [c for c in kind["choices"] if fold(c) == fold(raw)]
        if matches != [raw]:
            raise Decline
        return raw
    if name == "path":
        return _path(kind, raw)
    convert_custom = TYPES.get(kind.get("class", "")) if name == "custom" else None
    if convert_custom is None:
        raise Decline  # bool values, types of other packages
    try:
        return convert_custom(raw)
    except ValueError:
        raise Decline from None


def _from_env(param: dict[str, Any]) -> str | None:
    for name in param["envvar"]:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _value(param: dict[str, Any], raw: list[Any] | None) -> tuple[Any, str]:
    """(value, source) of one option as click gives it to the command."""
    if raw is not None:
        if param["count"]:
            return _number(param["type"], str(len(raw))), COMMANDLINE
        if param["is_flag"]:
            return raw[-1], COMMANDLINE
        if param["multiple"]:
            return tuple(convert(param["type"], r) for r in raw), COMMANDLINE
        return convert(param["type"], raw[-1]), COMMANDLINE
    text = _from_env(param)
    if text is not None:
        if param["is_flag"] or param["count"] or param["multiple"]:
            raise Decline
        return convert(param["type"], text), ENVIRONMENT
    if "default" not in param:
        if param["expose_value"]:
            raise Decline
        return None, DEFAULT  # --version, --password: only their callbacks matter, and only when given
    return param["default"], DEFAULT


def _check(param: dict[str, Any], value: Any, source: str) -> Any:
    """The parameter's callback: a known check on a given value; a default was checked when generated."""
    callback = param["callback"]
    if callback is None:
        return value
    if source == DEFAULT and (callback in CHECKS or not param["expose_value"]):
        return value
    check = CHECKS.get(callback)
    if check is None:
        raise Decline
    try:
        return check(value)
    except ValueError:
        raise Decline from None


def _values(params: list[dict[str, Any]], state: _State) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    arguments = [p for p in params if p["kind"] == "argument"]
    if len(arguments) > 1 or arguments and arguments[0]["nargs"] != -1 or not arguments and state.largs:
        raise Decline
    for param in params:
        if param["kind"] == "argument":
            if param["required"] and not state.largs:
                raise Decline
            value, source = tuple(state.largs), COMMANDLINE
        else:
            value, source = _value(param, state.raw.get(param["name"]))
            value = _check(param, value, source)
        if param["expose_value"]:
            values[param["name"]], sources[param["name"]] = value, source
    return values, sources


def _declined_by_environment() -> bool:
    """Shell completion, or a config file with [defaults] (click's default_map) or that click would refuse."""
    if any(name.endswith("_COMPLETE") and name.startswith("_DCMNET") for name in os.environ):
        return True
    from .config_file import read
    from .values import UsageProblem

    try:
        config = read()
    except UsageProblem:
        return True
    return bool(config and config.get("defaults"))


def parse(argv: list[str]) -> Parsed:
    """``dcmnet [GROUP OPTIONS] COMMAND ARGS`` as click parses it, or :class:`Decline`."""
    group = SPEC["dcmnet"]
    _plain(group)
    if group["interspersed"]:
        raise Decline  # the command name would not end the group's options
    state = _options(group["params"], argv, interspersed=False)
    if not state.rargs or state.rargs[0] not in group["commands"]:
        raise Decline
    name, rest = state.rargs[0], state.rargs[1:]
    state.rargs = []
    group_values, _ = _values(group["params"], state)
    command = SPEC[name]
    _plain(command)
    params, sources = _values(command["params"], _options(command["params"], rest, command["interspersed"]))
    return Parsed(name, group_values, params, sources)


def _plain(command: dict[str, Any]) -> None:
    """Decline a command whose context keeps unknown options or normalises tokens (not reproduced here)."""
    if command["ignore_unknown_options"] or command["normalizes_tokens"]:
        raise Decline


def run_fast(argv: list[str]) -> int | None:
    """The exit code of running ``argv`` without click, or None when the fast path declines it."""
    try:
        if _declined_by_environment():
            return None
        parsed = parse(argv)
    except Decline:
        return None
    runner = RUNNERS.get(parsed.command)
    if runner is None:
        return None
    module, _, function = runner.rpartition(".")
    __import__(module)  # not importlib.import_module: importing importlib (and warnings) is start-up too
    result: int | None = getattr(sys.modules[module], function)(parsed)
    return result
