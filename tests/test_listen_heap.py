"""``listen`` moves what start-up made out of the garbage collector's reach before it serves (gc.freeze):
a long-lived listener's full collections would otherwise walk every module and table again and again
(issue 13: ~10 % of its CPU per object under store --async)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from dcmnet_cli.cli.commands import listen
listen._serve = lambda *args, **kwargs: print("frozen", gc.get_freeze_count(), flush=True)
from dcmnet_cli.cli.main import main
main(["listen", "--bind", "127.0.0.1", "--no-progress", "-q", "0"])
"""


def test_listen_freezes_its_start_up_objects_before_serving():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frozen = int(done.stdout.split("frozen", 1)[1].split()[0])
    assert frozen > 10_000  # the modules and tables of a started listener, not a handful of objects
