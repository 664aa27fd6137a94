"""pyflakes finds nothing: no unused import, undefined name or dead assignment slips into main; mypy
finds no type error (default settings over the package, --strict over the sans-IO core ul/ and dimse/).
The mypy commands are read from the Makefile's lint target, so ``make lint`` and this test never drift."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyflakes_clean() -> None:
    targets = [str(ROOT / name) for name in ("dcmnet_cli", "tests", "scripts", "bench")]
    done = subprocess.run([sys.executable, "-m", "pyflakes", *targets], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _mypy_commands() -> list[list[str]]:
    """The arguments of each ``$(PY) -m mypy ...`` line of the Makefile's lint target."""
    commands: list[list[str]] = []
    in_lint = False
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line and not line[0].isspace():
            in_lint = line.startswith("lint:")
        elif in_lint and line.strip():
            words = shlex.split(line)
            if words[:3] == ["$(PY)", "-m", "mypy"]:
                commands.append(words[3:])
    return commands


def test_makefile_lint_runs_mypy_default_and_strict() -> None:
    assert _mypy_commands() == [["dcmnet_cli"], ["--strict", "dcmnet_cli/ul", "dcmnet_cli/dimse", "dcmnet_cli/part10"]]


@pytest.mark.parametrize("args", _mypy_commands(), ids=lambda args: " ".join(args))
def test_mypy_clean(args: list[str]) -> None:
    # cwd=ROOT so pyproject.toml's [tool.mypy] applies (its cache lives in .venv/).
    done = subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
