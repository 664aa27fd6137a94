"""``dcmnet store``'s start-up path, like ``--help`` and ``echo`` in test_docs.py: ``store --help`` and a
streamed store (one association, ``--async`` included) load none of the heavy modules; and the services
themselves (the echo, store and find SCUs imported without the CLI) load none of a longer list, ``typing``
and ``re`` included; the echo SCU nothing but a listed few standard modules, and no client ``socket``
(transport/sockets.py).

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


def _loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter has once ``module`` is imported, less those it starts with."""
    probe = textwrap.dedent(f"""
        import sys
        base = set(sys.modules)
        import {module}
        print(" ".join(sorted(set(sys.modules) - base)))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=base_env())
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", sorted(SERVICE_PATHS))
def test_service_paths_import_nothing_heavy(module: str) -> None:
    loaded = _loaded_by(module)
    heavy = [name for name in CORE_HEAVY if name in loaded and name not in SERVICE_PATHS[module]]
    assert heavy == [], f"importing {module} loads {heavy}"


ECHO_PATH_STDLIB = {"__future__", "_collections", "_functools", "_operator", "_socket", "_struct", "collections",
                    "collections.abc", "enum", "errno", "functools", "itertools", "keyword", "operator", "reprlib",
                    "select", "struct", "types"}
"""The standard library the whole C-ECHO SCU needs beyond what the interpreter starts with: ``_socket``, not
``socket`` (transport/sockets.py), ``enum`` for the state machine's tables, ``struct`` for the PDUs."""


def test_echo_path_loads_only_its_listed_standard_modules() -> None:
    """The whole C-ECHO SCU (Upper Layer, DIMSE, driver, client, session): our own modules and the list
    above. Any other standard-library module on this path is start-up every ``dcmnet echo`` pays."""
    loaded = _loaded_by("dcmnet_cli.services.scu.echo")
    extra = sorted(name for name in loaded if not name.startswith("dcmnet_cli"))
    assert set(extra) <= ECHO_PATH_STDLIB, sorted(set(extra) - ECHO_PATH_STDLIB)


@pytest.mark.parametrize("module", ["dcmnet_cli.services.scu.echo", "dcmnet_cli.services.scu.store",
                                    "dcmnet_cli.services.scu.find", "dcmnet_cli.transport.client"])
def test_client_paths_do_without_the_socket_module(module: str) -> None:
    """``import socket`` is ~2.4 ms (selectors, array, enum-converted constants): clients connect with
    ``_socket`` (transport/sockets.py)."""
    loaded = _loaded_by(module)
    assert not {"socket", "selectors"} & loaded, sorted({"socket", "selectors"} & loaded)


def _program_imports(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the ``dcmnet`` program itself (the click-free fast path included) under ``-X importtime``:
    its result and every module it imported."""
    launcher = "import sys; from dcmnet_cli.cli.main import entry; entry()"  # as the installed script, without runpy
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", launcher, *args], capture_output=True,
                          text=True, timeout=60, env=base_env())
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done, names


DONE_WITHOUT = {"socket", "selectors", "threading", "queue", "contextlib", "importlib"}
"""Standard modules a one-association echo or store does without (~5 ms together here): ``_socket``
(transport/sockets.py), ``_thread`` locks, an inline pool (transport/pool.py), no ``contextmanager``, and
``__import__`` for the fast path's runner."""


def test_echo_and_store_programs_load_none_of_what_they_do_without(tmp_path: Path) -> None:
    """Whole runs that really connect, as a user types them: ``dcmnet echo`` and ``dcmnet store``."""
    files = [str(make_file(tmp_path, f"nosocket-{n}", rows=8, columns=8)) for n in range(2)]
    with scripted_scp() as (port, scp):
        echo, echo_loaded = _program_imports("echo", "-q", "127.0.0.1", str(port))
        store, store_loaded = _program_imports("store", "-q", "127.0.0.1", str(port), *files)
    assert echo.returncode == 0 and store.returncode == 0, (echo.stderr[-500:], store.stderr[-500:])
    assert len(scp.stored) == 2
    assert "dcmnet_cli.transport.channel" in echo_loaded and "dcmnet_cli.transport.channel" in store_loaded
    assert not DONE_WITHOUT & (echo_loaded | store_loaded), sorted(DONE_WITHOUT & (echo_loaded | store_loaded))
