"""The ``dcmnet`` click group: global options, lazy command loading, and click's run of a command line.

:mod:`.main` imports this only when the fast path (:mod:`.fastpath`) declines a command line: click costs
40-60 ms of start-up here.
"""

from __future__ import annotations

import importlib
from types import MethodType
from typing import Any

import click

from .. import __version__
from . import config
from .app import App
from .exitcodes import table_text
from .commands import COMMANDS
from .options import group_output_options


_ClickParser: Any = getattr(click.parser, "_OptionParser", None) or getattr(click.parser, "OptionParser")


class _ShortFirstParser(_ClickParser):  # type: ignore[misc]
    """Click's parser, but a known short option (``-q``, ``-v2``, ``-k``) goes straight to the short-option
    match. Click tries every ``-x`` as a long option first and, when that fails, builds a NoSuchOption whose
    "did you mean" suggestions import :mod:`difflib` (1.5-2 ms of every run that uses a short flag) only to
    be thrown away. The result is the same: this is the branch click takes after that failed long match."""

    def _process_opts(self, arg: str, state: Any) -> None:
        if arg[1:2] != "-" and arg[:2] in self._short_opt and arg.partition("=")[0] not in self._long_opt:
            self._match_short_opt(arg, state)
        else:
            super()._process_opts(arg, state)


def _make_parser(command: click.Command, ctx: click.Context) -> Any:
    """:meth:`click.Command.make_parser` with :class:`_ShortFirstParser`."""
    parser = _ShortFirstParser(ctx)
    for param in command.get_params(ctx):
        param.add_to_parser(parser, ctx)
    return parser


def short_first(command: click.Command) -> click.Command:
    """``command`` parsing its short options without the failed long-option lookup (see above)."""
    if not isinstance(command, LazyGroup):
        setattr(command, "make_parser", MethodType(_make_parser, command))
    return command


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so ``--help`` and ``echo`` stay fast."""

    def make_parser(self, ctx: click.Context) -> Any:
        return _make_parser(self, ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        from .config import with_environment

        return short_first(with_environment(importlib.import_module(COMMANDS[name][0]).command))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


EPILOG = "\b\nExit codes:\n" + table_text()


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dcmnet")
@group_output_options
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int, debug: bool, no_color: bool, as_json: bool) -> None:
    """dcmnet: DICOM networking from the shell — echo, store, find, move, get, listen.

    PEER is HOST PORT, [AET@]HOST:PORT, or a node named in ~/.config/dcmnet/config.toml.

    \b
    Output options (-q, -v, --debug, --no-color, --json) go before or after the
    command name with the same meaning; given in both places they combine: -v
    counts add up, the others are switches either place turns on. -q wins over -v.
    """
    command = f"dcmnet {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "dcmnet"
    ctx.obj = App(command=command)
    ctx.obj.apply(quiet=quiet, verbose=verbose, debug=debug, no_color=no_color, json_output=as_json)


def command_sources() -> list[tuple[str, click.Command, bool]]:
    """(name, command, is the group) for the group and every command, for the option catalogue."""
    from .config import with_environment

    root = click.Context(cli, info_name="dcmnet")
    found: list[tuple[str, click.Command, bool]] = [("dcmnet", with_environment(cli, group=True), True)]
    for name in sorted(COMMANDS):
        command = cli.get_command(root, name)
        if command is not None:
            found.append((name, command, False))
    return found


config.use_commands(command_sources)
config.with_environment(cli, group=True)  # the group's DCMNET_* variables, whoever renders it (help, docs)


def config_defaults() -> dict:
    """Click's default_map from the config file's [defaults] (empty, and no file read, without a file)."""
    from .config import default_map, with_environment

    with_environment(cli, group=True)
    return default_map(COMMANDS)


def run(argv: list[str] | None) -> int:
    """Run the command line through click; the command's exit code (click's exceptions propagate)."""
    result = cli.main(args=argv, prog_name="dcmnet", standalone_mode=False, default_map=config_defaults())
    return int(result) if isinstance(result, int) else 0
