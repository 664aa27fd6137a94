"""The config file (``~/.config/dcmnet/config.toml``) and ``DCMNET_<OPTION>`` environment variables.

Where an option's value comes from, first found wins: the command line, the environment
(``DCMNET_<LONG_OPTION>``, e.g. ``DCMNET_RETRY_DELAY`` for ``--retry-delay``), the config file's
``[defaults]`` section (``retry_delay = 2``), the built-in default. Click does exactly this order when the
environment variable is the parameter's ``envvar`` and the config values are the context's ``default_map``.

The file is checked strictly: a key no option has (``aetitle = "QRSCP"``) is a usage error naming the key and
the closest known one, never ignored. Only runs that have a config file pay for reading it (tomllib).
"""

from __future__ import annotations

from typing import Any, Callable

import click

from . import config_file
from .config_file import NODE_KEYS, SECTIONS, config_path
from .values import UsageProblem

__all__ = ["NODE_KEYS", "SECTIONS", "config_path"]

OUTPUT_OPTIONS = ("quiet", "verbose", "debug", "no_color", "as_json")
"""Options every command shares with the group: set once on the group (env and [defaults]), not per command."""

_cache: dict[str, Any] = {}
"""Config files read (by path), their [defaults] keys checked."""


def load(required: bool = False) -> dict[str, Any] | None:
    """The parsed, checked config file, or None when there is none. Raises click.UsageError (exit 2).

    :func:`.config_file.read` reads it and checks its sections and nodes; the [defaults] keys are checked
    here, against every command's options."""
    from .options import as_click_error

    path = config_path()
    if path in _cache:
        return _cache[path]
    try:
        config = config_file.read()
    except UsageProblem as problem:
        raise as_click_error(problem) from None
    if config is None:
        return None
    defaults = config.get("defaults", {})
    if defaults:
        known = option_catalogue()
        for key in defaults:
            if key.replace("-", "_") not in known:
                raise as_click_error(config_file.unknown(key, "[defaults]", known, path))
    _cache[path] = config
    return config


def nodes() -> dict[str, dict[str, Any]]:
    config = load()
    return dict(config.get("nodes", {})) if config else {}


def option_catalogue() -> dict[str, dict[str, str]]:
    """Every option by its key (the long option in snake case: ``--retry-delay`` → ``retry_delay``, the
    ``[defaults]`` key and, upper-cased after ``DCMNET_``, the environment variable) → {command: parameter
    name}; ``dcmnet`` is the group (the output options). Imports every command module: only for a
    ``[defaults]`` section, the docs and the README table test."""
    catalogue: dict[str, dict[str, str]] = {}
    for command_name, command, group in _sources():
        for param in _options(command, group):
            for key in (option_key(param), *_alias_keys(param)):
                catalogue.setdefault(key, {})[command_name] = str(param.name)
    return catalogue


def _alias_keys(param: click.Option) -> list[str]:
    """The keys of an option's old spellings (options.AliasedOption): still read from ``DCMNET_*`` and
    ``[defaults]``, never listed."""
    return [a.lstrip("-").replace("-", "_") for a in getattr(param, "hidden_aliases", ()) if a.startswith("--")]


Sources = Callable[[], "list[tuple[str, click.Command, bool]]"]
_command_sources: list[Sources] = []


def use_commands(sources: Sources) -> None:
    """Called once by :mod:`.group`: how to list (name, command, is the group) for every command. The
    catalogue needs the commands; handing it this function keeps config from importing main (no cycle)."""
    _command_sources[:] = [sources]


def _sources() -> list[tuple[str, click.Command, bool]]:
    if not _command_sources:
        import importlib

        importlib.import_module(f"{__package__}.group")  # registers the commands
    return _command_sources[0]()


def _options(command: click.Command, group: bool) -> list[click.Option]:
    """The options that take ``DCMNET_*`` and ``[defaults]``: not --help/--version, not hidden ones, and the
    output options only on the group."""
    return [p for p in command.params if isinstance(p, click.Option) and p.name and not p.is_eager
            and not p.hidden and (group or p.name not in OUTPUT_OPTIONS)]


def option_key(param: click.Option) -> str:
    return _long(param).lstrip("-").replace("-", "_")


def _long(param: click.Option) -> str:
    names = [n for n in param.opts if n.startswith("--")] or param.opts
    return names[0]


def env_name(param: click.Option) -> str:
    """``DCMNET_`` + the long option in capitals (``--retry-delay`` → ``DCMNET_RETRY_DELAY``)."""
    return "DCMNET_" + option_key(param).upper()


def with_environment(command: click.Command, group: bool = False) -> click.Command:
    """Give every option of ``command`` without an environment variable its ``DCMNET_<OPTION>``.

    The shared output options get theirs on the group only (-v from the environment must not count twice).
    """
    for param in _options(command, group):
        if param.envvar is None:
            aliases = ["DCMNET_" + key.upper() for key in _alias_keys(param)]
            param.envvar = [env_name(param), *aliases] if aliases else env_name(param)
    return command


def env_names(param: click.Option) -> list[str]:
    """The environment variables of an option, old spellings (still read) left out."""
    envvar = param.envvar
    hidden = {"DCMNET_" + key.upper() for key in _alias_keys(param)}
    return [e for e in ([envvar] if isinstance(envvar, str) else list(envvar or [])) if e not in hidden]


def default_map(commands: Any) -> dict[str, Any]:
    """Click's ``default_map`` from ``[defaults]``: the group's output options, and per command the keys
    that command has (a key other commands have is no error for this one)."""
    config = load()
    defaults = {k.replace("-", "_"): v for k, v in (config or {}).get("defaults", {}).items()}
    if not defaults:
        return {}
    catalogue = option_catalogue()
    result: dict[str, Any] = {}
    for key, value in defaults.items():
        for command_name, param_name in catalogue[key].items():
            if command_name == "dcmnet":
                result[param_name] = value
            else:
                result.setdefault(command_name, {})[param_name] = value
    return result


def environment_table() -> str:
    """The README's table of options, environment variables, ``[defaults]`` keys and commands (a test
    compares the README with this)."""
    rows: dict[str, tuple[str, set[str], set[str]]] = {}
    for command_name, command, group in _sources():
        for param in _options(command, group):
            key = option_key(param)
            long, envs, used = rows.setdefault(key, (_long(param), set(), set()))
            envs.update(env_names(param))
            used.add("all" if group else command_name)
    lines = ["| option | environment variable | `[defaults]` key | commands |", "|---|---|---|---|"]
    for key in sorted(rows):
        long, envs, used = rows[key]
        lines.append(f"| `{long}` | {', '.join(f'`{e}`' for e in sorted(envs))} | `{key}` | {', '.join(sorted(used))} |")
    return "\n".join(lines)
