"""The ``dcmnet`` group: global options, lazy command loading, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from types import MethodType
from typing import Any

import click

from .. import __version__
from ..errors import DcmnetError
from . import config
from .app import App
from .exitcodes import ExitCode, for_error, table_text
from .options import group_output_options

COMMANDS: dict[str, tuple[str, str]] = {
    "echo": ("dcmnet_cli.cli.commands.echo", "Check that a DICOM node answers (C-ECHO)."),
    "find": ("dcmnet_cli.cli.commands.find", "Query a node for patients, studies, series, images or worklist items (C-FIND)."),
    "get": ("dcmnet_cli.cli.commands.get", "Retrieve objects from a Q/R SCP over one association (C-GET)."),
    "listen": ("dcmnet_cli.cli.commands.listen", "Run a DICOM node: Verification and Storage SCP."),
    "nodes": ("dcmnet_cli.cli.commands.nodes", "List the nodes of the config file; --check echoes them all."),
    "completion": ("dcmnet_cli.cli.commands.completion", "Print the shell completion script (bash, zsh or fish)."),
    "probe": ("dcmnet_cli.cli.commands.probe", "See which SOP classes, transfer syntaxes and roles a node accepts."),
    "move": ("dcmnet_cli.cli.commands.move", "Move objects from a Q/R SCP to an AE, or receive them here (C-MOVE)."),
    "store": ("dcmnet_cli.cli.commands.store", "Send DICOM files to a Storage SCP (C-STORE)."),
    "users": ("dcmnet_cli.cli.commands.users", "Add or remove a user in the users file of listen --users."),
}


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


def _config_defaults() -> dict:
    """Click's default_map from the config file's [defaults] (empty, and no file read, without a file)."""
    from .config import default_map, with_environment

    with_environment(cli, group=True)
    return default_map(COMMANDS)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group and turn whatever happened into the exit-code contract."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli.main(args=argv, prog_name="dcmnet", standalone_mode=False, default_map=_config_defaults())
        code = int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as problem:
        problem.show()
        code = problem.exit_code
    except (KeyboardInterrupt, click.Abort):
        print("dcmnet: interrupted", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    except DcmnetError as error:
        print(f"dcmnet: error: {error}", file=sys.stderr)
        code = for_error(error)
    except BrokenPipeError:
        code = ExitCode.SUCCESS
    except Exception as error:  # a bug: one line unless --debug
        if debug:
            import traceback

            traceback.print_exc()
        print(f"dcmnet: internal error: {type(error).__name__}: {error} (please report this; --debug shows the traceback)",
              file=sys.stderr)
        code = ExitCode.INTERNAL
    sys.exit(int(code))


def entry() -> None:
    """The ``dcmnet`` program: :func:`main`, then exit without the interpreter's teardown.

    Module clean-up and garbage collection at exit cost ~4 ms of every run and do nothing useful here:
    every file was closed by its ``with``, worker threads were joined, and the streams are flushed below.
    (Tests call :func:`main` in-process and get a normal ``SystemExit``.)
    """
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
