"""Write ``dcmnet_cli/cli/argspec.py``, the fast path's option table, from the click commands
(``make argspec``; ``make docs`` runs it too). Rerun it after changing any option of the group, ``echo``,
``find`` or ``store``: ``tests/test_argspec.py`` fails until then.

    .venv/bin/python scripts/gen_argspec.py
"""

from __future__ import annotations

from pathlib import Path

from dcmnet_cli.cli.specgen import render

OUT = Path(__file__).resolve().parent.parent / "dcmnet_cli" / "cli" / "argspec.py"

if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
