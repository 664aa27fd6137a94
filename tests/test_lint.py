"""pyflakes finds nothing: no unused import, undefined name or dead assignment slips into main."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyflakes_clean() -> None:
    targets = [str(ROOT / name) for name in ("dcmnet_cli", "tests", "scripts", "bench")]
    done = subprocess.run([sys.executable, "-m", "pyflakes", *targets], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
