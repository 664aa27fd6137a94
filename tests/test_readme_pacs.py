"""The README's "A test PACS in one command" walk-through runs as written (block marked
``<!-- runnable: pacs -->``): in a fresh bash with only the set-up commands' effect, on free ports, in a
temporary folder; what it says it prints is printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.procs import base_env, free_port

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable: pacs -->\n```sh\n(?P<body>.*?)```", re.S)


def test_readme_test_pacs_walkthrough(tmp_path: Path) -> None:
    if not (ROOT / ".venv/bin/python").exists():
        pytest.skip("needs the project's .venv (make install)")
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "the README's test PACS walk-through is not marked runnable"
    pacs_port, second_port = free_port(), free_port()
    script = found["body"].replace("11112", str(pacs_port)).replace("11113", str(second_port))
    script = script.replace("/tmp/pacs", str(tmp_path / "pacs"))
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script + "wait\n"
    env = base_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # as after '. .venv/bin/activate'
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "-c", wrapped], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "2 matches" in out
    assert out.count("C-GET 0x0000 success: 6 completed, 0 failed, 0 warning") == 2, out
    assert out.count("C-MOVE 0x0000 success: 6 completed, 0 failed, 0 warning") == 2, out
    assert "identical: the 12 data sets are byte for byte the same in all 3 folders" in done.stdout
    assert out.count("stopped: ") == 2  # both listeners stopped by the block's kill, with their summaries
    for folder in ("store", "got", "second"):
        assert len(list((tmp_path / "pacs" / folder).rglob("*.dcm"))) == 12, folder
