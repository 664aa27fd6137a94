"""Help, generated docs and start-up cost: every command documented, man/ and completions/ up to date,
the exit-code table in ``--help`` and the README, and ``--help``/``echo`` free of heavy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcmnet_cli.cli import docs
from dcmnet_cli.cli.exitcodes import MEANINGS
from dcmnet_cli.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pydicom", "asyncio", "rich", "ssl", "dataclasses", "json", "pathlib")
"""Not on the start-up path of --help and echo: pydicom ~0.4 s, asyncio ~95 ms, the others a few ms each."""


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help(name: str) -> None:
    command = cli.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None, f"COMMANDS names {name!r} but its module has no `command`"
    assert (command.help or "").strip(), f"`dcmnet {name}` has no help text (docstring)"
    assert COMMANDS[name][1].strip(), f"COMMANDS[{name!r}] has no one-line description"
    for param in command.params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            assert (param.help or "").strip(), f"`dcmnet {name}` option {param.opts} has no help"
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="dcmnet")
    assert result.exit_code == 0, result.output
    assert f"Usage: dcmnet {name}" in result.output


def test_group_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="dcmnet")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind", ["man", "completions"])
def test_generated_docs_are_current(kind: str, tmp_path: Path) -> None:
    assert docs.main([kind, str(tmp_path)]) == 0
    expected, committed = _tree(tmp_path), _tree(ROOT / kind) if (ROOT / kind).is_dir() else {}
    assert sorted(committed) == sorted(expected), (
        f"{kind}/ holds {sorted(committed)} but the generator makes {sorted(expected)}: run `make docs`")
    stale = [name for name in expected if committed[name] != expected[name]]
    assert not stale, f"{kind}/{', '.join(stale)} out of date with the click commands: run `make docs`"


def test_man_pages_cover_every_command_and_exit_code() -> None:
    pages = docs.man_pages()
    assert set(pages) == {"dcmnet.1", *(f"dcmnet-{name}.1" for name in COMMANDS)}
    for text in pages.values():
        assert ".SH EXIT STATUS" in text
        for code in MEANINGS:
            assert f"\\fB{int(code)}\\fR" in text
        requests = {line.split()[0] for line in text.splitlines() if line.startswith((".", "'"))}
        assert requests <= {'.\\"', ".TH", ".SH", ".TP", ".PP", ".nf", ".fi", ".RS", ".RE"}, requests


def test_roff_escaping() -> None:
    assert docs.roff("a\\b") == "a\\eb"
    assert docs.roff(".TH x\n'quote") == "\\&.TH x\n\\&'quote"
    assert docs.roff("--max-pdu") == "\\-\\-max\\-pdu"


def test_help_shows_exit_code_table() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="dcmnet")
    assert result.exit_code == 0
    assert "Exit codes:" in result.output
    lines = result.output.splitlines()
    for code, meaning in MEANINGS.items():
        assert any(line.split()[:1] == [str(int(code))] and meaning[:30] in line for line in lines), (code, meaning)


def test_readme_has_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code, meaning in MEANINGS.items():
        assert f"| {int(code)} | {meaning} |" in readme, f"README.md exit-code table lacks {int(code)}: {meaning}"


def _modules_after(code: str) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_help_does_not_import_heavy_modules() -> None:
    loaded = _modules_after("""
        import contextlib, io
        import dcmnet_cli.cli.main as main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main.main(["--help"])
            except SystemExit as done:
                assert done.code == 0, done.code
    """)
    assert loaded == [], f"`dcmnet --help` imports {loaded}"


def test_echo_does_not_import_heavy_modules() -> None:
    loaded = _modules_after("""
        import dcmnet_cli.cli.commands.echo, dcmnet_cli.services.scu.echo
    """)
    assert loaded == [], f"`dcmnet echo` imports {loaded}"


def test_find_does_not_import_heavy_modules() -> None:
    """find's modules (its own codec, no pydicom: issue 13); a whole query in each output format is
    tests/test_find_lean.py's (pydicom, numpy and rich never loaded)."""
    loaded = _modules_after("""
        import dcmnet_cli.cli.commands.find, dcmnet_cli.services.scu.find, dcmnet_cli.services.query_build
        import dcmnet_cli.cli.find_output, dcmnet_cli.part10.dataset_encode
    """)
    assert loaded == [], f"`dcmnet find` imports {loaded}"
