"""The README runs as written: every ``dcmnet`` command in it parses (its options exist, its values are
accepted), and the blocks marked ``<!-- runnable: dcmqrscp -->`` run against a real dcmqrscp, in a fresh
bash with only the two set-up commands' effect (dcmnet on PATH from the venv), on free ports.
Also ``make demo``'s script: it keeps and shows what it received."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from helpers.procs import base_env, free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(<!-- runnable: (?P<needs>[\w-]+) -->\n)?```(?P<lang>sh|console)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str | None, str, str]]:
    return [(m["needs"], m["lang"], m["body"]) for m in FENCE.finditer(README.read_text())]


def dcmnet_commands() -> list[list[str]]:
    """Every dcmnet invocation in the README's sh and console blocks, as argv after ``dcmnet``."""
    found = []
    for _, lang, body in blocks():
        text = re.sub(r"\\\n\s*", " ", body)
        for line in text.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            for part in re.split(r"\||;|&&", line):
                words = shlex.split(part, comments=True)
                while words and words[0] in ("time", "exec"):
                    words = words[1:]
                if not words or words[0] not in ("dcmnet", ".venv/bin/dcmnet") or words[1:2] == ["="]:
                    continue  # (a dcmqrscp HostTable line is not a command)
                words = [w for w in words[1:] if w != "&"]
                if ">" in words:
                    words = words[:words.index(">")]
                found.append(words)
    return found


def test_readme_has_dcmnet_commands() -> None:
    assert len(dcmnet_commands()) > 20


@pytest.mark.parametrize("argv", dcmnet_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_readme_command_parses(argv: list[str]) -> None:
    """Parse (no network, no side effects): the group's and the command's options, and PEER."""
    from dcmnet_cli.cli.main import cli

    try:
        with cli.make_context("dcmnet", list(argv), resilient_parsing=False) as ctx:
            with warnings.catch_warnings():  # click 8.2 deprecates protected_args (9.0 folds it into args)
                warnings.simplefilter("ignore", DeprecationWarning)
                tokens = [*ctx.protected_args, *ctx.args]
            name, command, rest = cli.resolve_command(ctx, tokens)
            assert command is not None, f"no command in {argv}"
            command.make_context(name, rest, parent=ctx)
    except click.exceptions.Exit:
        pass  # --help, --version


def _fresh_shell_env() -> dict[str, str]:
    """A shell after ``make install`` and ``. .venv/bin/activate``: the venv's bin first on PATH."""
    env = base_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    return env


def test_runnable_dcmqrscp_walkthrough(tmp_path: Path) -> None:
    if shutil.which("dcmqrscp") is None or not (ROOT / ".venv/bin/python").exists():
        pytest.skip("needs DCMTK's dcmqrscp and the project's .venv")
    runnable = [body for needs, _, body in blocks() if needs == "dcmqrscp"]
    assert runnable, "the README's dcmqrscp walk-through is not marked runnable"
    qr_port, store_port = free_port(), free_port()
    script = runnable[0].replace("11112", str(qr_port)).replace("11113", str(store_port))
    script = script.replace("/tmp/qr", str(tmp_path / "qr"))
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    done = subprocess.run(["bash", "-c", wrapped], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_fresh_shell_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 completed, 0 failed" in done.stdout + done.stderr
    assert len([p for p in (tmp_path / "qr" / "moved").rglob("*") if p.is_file()]) == 12
    assert len([p for p in (tmp_path / "qr" / "got").rglob("*") if p.is_file()]) == 12


def test_demo_keeps_and_shows_what_it_received(tmp_path: Path) -> None:
    if not (ROOT / ".venv/bin/dcmnet").exists():
        pytest.skip("needs the project's .venv (make install)")
    env = dict(_fresh_shell_env(), DEMO_DIR=str(tmp_path / "demo"))
    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "stored 12 of 12 files" in out  # the store summary
    assert f"received 12 of 12 files in {tmp_path / 'demo' / 'received'}" in out
    assert re.search(r"^\s+1\.2\.826\.0\.1\.3680043\.9\.7781\.100\.3\.1\.1\.1\.dcm$", out, re.M)  # the tree
    assert len(list((tmp_path / "demo" / "received").rglob("*.dcm"))) == 12  # kept after the demo
    assert str(tmp_path / "demo") in out.splitlines()[-2] + out.splitlines()[-1]
