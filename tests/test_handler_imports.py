"""What the query/retrieve handlers import on first use is imported when listen builds them, in one
thread: left to the association threads, twenty C-FINDs arriving at once each began the first
``import pydicom`` and one got a half-initialised module ("cannot import name 'convert_numbers' from
partially initialized module 'pydicom.values'"), which aborted its association."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_building_the_find_handlers_imports_pydicom_and_the_query_modules(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from dcmnet_cli.services.archive.columns import MatchOptions
        from dcmnet_cli.services.archive.index import IndexRef
        from dcmnet_cli.services.scp.find_handler import QueryConfig, find_handlers, _QUERY_MODULES
        before = [m for m in _QUERY_MODULES if m in sys.modules]
        find_handlers(QueryConfig(IndexRef(sys.argv[1] + "/x.sqlite", sys.argv[1]), MatchOptions(), "AET"))
        print(before, [m for m in _QUERY_MODULES if m not in sys.modules], "pydicom.values" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]", "True"], done.stdout  # none loaded before, none missing after
