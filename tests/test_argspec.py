"""The fast path's parser (cli/fastpath.py) against click's, over command lines generated from the spec.

``dcmnet echo/find/store`` parse their command line without click when they can (start-up: click costs
40-60 ms). The option table they use, cli/argspec.py, is generated from the click commands; this file
checks that it is current, that every option of the three commands (and the group's output options, before
and after the command name) gives exactly click's keyword arguments and value sources, and that the fast
path declines whatever it does not reproduce (click then runs and prints its own error).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import click
import pytest

from dcmnet_cli.cli import fastpath
from dcmnet_cli.cli.argspec import SPEC
from dcmnet_cli.cli.group import cli
from dcmnet_cli.cli.specgen import FAST_COMMANDS, SAMPLE_ARGS, render

ARGSPEC = Path(__file__).resolve().parent.parent / "dcmnet_cli" / "cli" / "argspec.py"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DCMNET_") or name.startswith("_DCMNET"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DCMNET_CONFIG", str(tmp_path / "no-such-config.toml"))


def test_argspec_is_current() -> None:
    """Changing an option of the group, echo, find or store needs `make argspec` (scripts/gen_argspec.py)."""
    assert ARGSPEC.read_text(encoding="utf-8") == render(), "cli/argspec.py is stale: run make argspec"


def _click(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(group params, command params, command sources) as click parses ``argv``."""
    root = cli.make_context("dcmnet", list(argv))
    rest = [*(getattr(root, "_protected_args", None) or []), *root.args]
    name, command, args = cli.resolve_command(root, rest)
    assert command is not None
    sub = command.make_context(name, args, parent=root)
    sources = {k: sub.get_parameter_source(k).name.lower() for k in sub.params}  # type: ignore[union-attr]
    return root.params, sub.params, sources


def _assert_same(argv: list[str]) -> None:
    group, params, sources = _click(argv)
    try:
        parsed = fastpath.parse(argv)
    except fastpath.Decline:
        pytest.fail(f"the fast path declined {argv}")
    assert (parsed.group, parsed.params) == (group, params), argv
    assert parsed.sources == sources, argv


def _sample(param: dict[str, Any], tmp: str) -> str:
    """A value click accepts for ``param``."""
    kind = param["type"]
    if kind["name"] == "int":
        low, high = kind.get("min"), kind.get("max")
        value = (low if low is not None else 0) + 2
        return str(value if high is None or value <= high else high)
    if kind["name"] == "float":
        return "2.5"
    if kind["name"] == "choice":
        return kind["choices"][-1]
    if kind["name"] == "path":
        return os.path.join(tmp, f"not-there-{param['name']}")
    return "AE1"


def _option_lines(command: str, tmp: str) -> Iterator[list[str]]:
    """For every option of ``command``: each spelling, ``--opt value`` and ``--opt=value``, ``-xVALUE``."""
    for param in SPEC[command]["params"]:
        if param["kind"] != "option" or param["type"]["name"] == "custom" or param["callback"] and not param["expose_value"]:
            continue
        if param["is_flag"] or param["count"]:
            for opt in (*param["opts"], *param["secondary_opts"]):
                yield [opt]
                yield [opt, opt]
            continue
        value = _sample(param, tmp)
        for opt in param["opts"]:
            yield [opt, value]
            if len(opt) > 2:
                yield [f"{opt}={value}"]
            else:
                yield [f"{opt}{value}"]
            if param["multiple"]:
                yield [opt, value, opt, value + "X"]
            else:
                yield [opt, "AE2" if param["type"]["name"] == "str" else value, opt, value]  # the last wins


@pytest.mark.parametrize("command", FAST_COMMANDS)
def test_every_option_parses_as_click_does(command: str, tmp_path: Path) -> None:
    positional = SAMPLE_ARGS[command]
    count = 0
    for option in _option_lines(command, str(tmp_path)):
        _assert_same([command, *option, *positional])
        _assert_same([command, *positional, *option])  # options after the arguments
        _assert_same([command, positional[0], *option, *positional[1:]])  # in between
        count += 1
    assert count > 20


@pytest.mark.parametrize("argv", [
    ["-q", "echo", "h", "1"], ["-v", "-v", "echo", "h", "1", "-v"], ["-vv", "echo", "-qv", "h", "1"],
    ["--debug", "echo", "h", "1", "--no-color"], ["--json", "find", "h", "1", "-k", "PatientName=A*"],
    ["--verbose", "--json", "store", "-q", "h", "1", "f", "g"], ["echo", "--", "h", "1"],
    ["echo", "-c", "3", "--", "h", "1"], ["store", "-r", "-R", "h:1", "-"], ["find", "-aet", "-x", "h", "1"],
    ["echo", "-aet=A=B", "h", "1"], ["echo", "-aet", "--", "h", "1"], ["echo", "-aec", "-v", "h", "1", "--", "-x"], ["echo", "-c3", "-i0.5", "--abort", "h:1"], ["store", "--", "h", "1", "-R"],
    ["find", "-P", "-L", "PATIENT", "-k", "0010,0010", "-kPatientID=1", "--format=csv", "h", "1"],
    ["echo", "--tls", "--no-tls", "h", "1"], ["echo", "-td", "0", "--network-timeout=0", "h", "1"],
    ["store", "--max-rate", "0.5", "--report", "r.json", "--async", "65535", "h", "1", "f"],
    ["store", "-j", "4", "h", "1", "f"], ["store", "--jobs=AUTO", "-j64", "h", "1", "f"], ["store", "-j", " 2 ", "h:1", "f"],
])
def test_mixed_command_lines_parse_as_click_does(argv: list[str]) -> None:
    _assert_same(argv)


def test_environment_values_parse_as_click_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCMNET_CALLING_AET", "ENVAET")
    monkeypatch.setenv("DCMNET_CONNECT_TIMEOUT", "4.5")
    monkeypatch.setenv("DCMNET_MAX_PDU", "16384")
    monkeypatch.setenv("DCMNET_CALLED_AET", "")  # empty: ignored, as click does
    monkeypatch.setenv("DCMNET_JOBS", "auto")
    monkeypatch.setenv("DCMNET_RETRY_DELAY", "0.25")
    for command in FAST_COMMANDS:
        _assert_same([command, *SAMPLE_ARGS[command]])
        _assert_same([command, "-aet", "CLI", *SAMPLE_ARGS[command]])  # the command line wins


def _declines(argv: list[str]) -> bool:
    try:
        fastpath.parse(argv)
    except fastpath.Decline:
        return True
    return False


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--version"], ["echo", "-h", "h", "1"], ["echo", "h", "1", "--help"], ["-qh", "echo", "h", "1"],
    ["echo"], [], ["listen", "1"], ["ech", "h", "1"], ["-x", "echo", "h", "1"], ["echo", "--unknown", "h", "1"],
    ["echo", "--coun", "2", "h", "1"], ["echo", "-c", "0", "h", "1"], ["echo", "-c", "x", "h", "1"], ["echo", "h", "1", "-c"],
    ["echo", "-i", "-1", "h", "1"], ["echo", "--max-pdu", "-1", "h", "1"], ["echo", "-pdu", "4294967296", "h", "1"],
    ["echo", "-aet", "", "h", "1"], ["echo", "-aet", "A" * 17, "h", "1"], ["echo", "-aec", "A\\B", "h", "1"],
    ["echo", "--connect-timeout", "0", "h", "1"], ["echo", "-td", "-2", "h", "1"], ["echo", "--abort=yes", "h", "1"],
    ["find", "--format", "xml", "h", "1"], ["find", "-L", "study", "h", "1"], ["find", "--max-identifier", "0", "h", "1"],
    ["store", "-j", "65", "h", "1", "f"], ["store", "--jobs=x", "h", "1", "f"], ["store", "--async", "0", "h", "1", "f"],
    ["store", "--report", "/", "h", "1", "f"], ["find", "-od", "/etc/hostname", "h", "1"],
    ["echo", "--password", "secret", "h", "1"], ["--", "echo", "h", "1"], ["echo", "-1", "h"],
])
def test_declines_what_it_does_not_reproduce(argv: list[str]) -> None:
    assert _declines(argv), argv


@pytest.mark.parametrize("name, value", [
    ("DCMNET_QUIET", "1"), ("DCMNET_VERBOSE", "2"), ("DCMNET_TLS", "yes"), ("DCMNET_KEY", "PatientID=1"),
    ("DCMNET_JOBS", "99"), ("DCMNET_COUNT", "0"), ("DCMNET_CALLING_AET", "WAY-TOO-LONG-AE-TITLE"),
])
def test_declines_environment_it_does_not_reproduce(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    command = {"DCMNET_KEY": "find", "DCMNET_JOBS": "store"}.get(name, "echo")
    assert _declines([command, *SAMPLE_ARGS[command]])


def test_declines_completion_and_config_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Shell completion, [defaults] (click's default_map) and a config file click refuses are click's."""
    monkeypatch.setenv("_DCMNET_COMPLETE", "bash_complete")
    assert fastpath.run_fast(["echo", "127.0.0.1", "1"]) is None
    monkeypatch.delenv("_DCMNET_COMPLETE")
    for text in ("[defaults]\ncalling_aet = 'X'\n", "[nodes.pacs]\nhots = 'h'\n", "not toml ["):
        config = tmp_path / f"config-{len(text)}.toml"
        config.write_text(text)
        monkeypatch.setenv("DCMNET_CONFIG", str(config))
        assert fastpath.run_fast(["echo", "127.0.0.1", "1"]) is None, text


def test_click_refuses_what_the_tests_call_invalid() -> None:
    """The declined values above are real usage errors for click (so declining them loses nothing)."""
    for argv in (["echo", "-c", "0", "h", "1"], ["echo", "-aet", "A" * 17, "h", "1"], ["find", "--format", "xml", "h", "1"]):
        with pytest.raises(click.UsageError):
            _click(argv)
