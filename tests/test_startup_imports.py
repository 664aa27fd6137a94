"""``dcmnet store``'s start-up path, like ``--help`` and ``echo`` in test_docs.py: ``store --help`` and a
streamed store (one association, ``--async`` included) load none of the heavy modules; and the services
themselves (the echo, store and find SCUs imported without the CLI) load none of a longer list, ``typing``
and ``re`` included, and the echo SCU nothing beyond ``socket`` but ``struct``.

``dataclasses`` is in the list too: ``DicomFile`` and ``FileHead`` are slotted classes (one is built per
file, and building dataclasses cost start-up), and ``difflib`` (click imports it only to suggest a spelling
for an option it could not match, which short options used to trigger on every run).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------- the services, without the CLI
# What the echo, store and find paths import on their own (P's click-free fast path calls these directly, so
# what they import is what a fast ``dcmnet echo`` costs): none of the modules below. ``typing`` (5-15 ms
# with the ``re`` it pulls in) is among them: the core's records and type names come from ul/records.py and
# ul/typenames.py, which give type checkers typing's names and the run time none of its cost.

CORE_HEAVY = ("typing", "re", "dataclasses", "inspect", "ast", "dis", "tokenize", "difflib",
              "pydicom", "numpy", "click", "rich", "ssl", "json", "sqlite3", "asyncio", "pathlib", "subprocess",
              "email", "http", "urllib", "hashlib", "unicodedata", "string", "argparse", "logging", "tempfile")
"""Never on these paths. ``find`` is allowed ``re`` (its query keys are parsed with regular expressions)."""

SERVICE_PATHS = {
    "dcmnet_cli.services.scu.echo": (),
    "dcmnet_cli.services.scu.store": (),
    "dcmnet_cli.services.scu.find": ("re",),
    "dcmnet_cli.services.query_build": ("re",),
    "dcmnet_cli.part10.dataset_codec": (),
    "dcmnet_cli.ul.association": (),
    "dcmnet_cli.dimse.connection": (),
}


def _loaded_by(module: str) -> tuple[set[str], set[str]]:
    """(modules ``import socket`` loads, modules ``import socket, <module>`` loads) in a fresh interpreter."""
    probe = textwrap.dedent(f"""
        import sys
        import socket
        base = set(sys.modules)
        import {module}
        print(" ".join(sorted(base)))
        print(" ".join(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=base_env())
    assert done.returncode == 0, done.stderr
    base, after = done.stdout.splitlines()
    return set(base.split()), set(after.split())


@pytest.mark.parametrize("module", sorted(SERVICE_PATHS))
def test_service_paths_import_nothing_heavy(module: str) -> None:
    _, loaded = _loaded_by(module)
    heavy = [name for name in CORE_HEAVY if name in loaded and name not in SERVICE_PATHS[module]]
    assert heavy == [], f"importing {module} loads {heavy}"


def test_echo_path_adds_nothing_to_the_socket_module_but_struct() -> None:
    """The whole C-ECHO SCU (Upper Layer, DIMSE, driver, client, session) costs our own modules plus
    ``struct``: any other standard-library module on this path is start-up every ``dcmnet echo`` pays."""
    base, loaded = _loaded_by("dcmnet_cli.services.scu.echo")
    extra = sorted(name for name in loaded - base if not name.startswith("dcmnet_cli"))
    assert set(extra) <= {"__future__", "struct", "_struct"}, extra
