"""``dcmnet store``'s start-up path, like ``--help`` and ``echo`` in test_docs.py: ``store --help`` and a
streamed store (one association, ``--async`` included) load none of the heavy modules.

``dataclasses`` is in the list too: ``DicomFile`` and ``FileHead`` are slotted classes (one is built per
file, and building dataclasses cost start-up), and ``difflib`` (click imports it only to suggest a spelling
for an option it could not match, which short options used to trigger on every run).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from helpers.procs import base_env
from store_helpers import make_file, scripted_scp

HEAVY = ("pydicom", "numpy", "asyncio", "rich", "ssl", "json", "pathlib", "sqlite3", "email", "http", "urllib",
         "dataclasses", "difflib")
"""pydicom ~0.4 s, numpy ~50 ms, asyncio ~95 ms, the others a few ms each (json only with --json)."""


def _heavy_after(*args: str) -> list[str]:
    probe = textwrap.dedent(f"""
        import contextlib, io, sys
        from dcmnet_cli.cli.main import cli
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(args={list(args)!r}, standalone_mode=False)
        assert code in (0, None), code
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=base_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_store_help_imports_nothing_heavy() -> None:
    assert _heavy_after("store", "--help") == []


def test_streamed_store_imports_nothing_heavy(tmp_path: Path) -> None:
    files = [str(make_file(tmp_path, f"startup-{n}", rows=8, columns=8)) for n in range(3)]
    with scripted_scp() as (port, scp):
        assert _heavy_after("store", "-q", "-v", "127.0.0.1", str(port), *files) == []
        assert _heavy_after("store", "-q", "--async", "4", "-j", "auto", "127.0.0.1", str(port), *files) == []
    assert len(scp.stored) == 6
