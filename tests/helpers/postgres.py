"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, one free port on 127.0.0.1,
always stopped (pg_ctl stop -m immediate) and removed, even when the test fails.

initdb refuses to run as root: as root the server runs as the ``postgres`` user (runuser). Missing
binaries or psycopg: the test is skipped, or fails when CI=true (.ci/run installs postgresql).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from .procs import LOOPBACK, free_port


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def find_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yields the URL of a fresh cluster's ``postgres`` database (user ``dcmnet``, trust auth)."""
    if importlib.util.find_spec("psycopg") is None:
        _missing("psycopg not installed (pip install 'dcmnet[postgresql]')")
    bindir = find_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries (initdb) not found")
    assert bindir is not None
    folder = Path(tempfile.mkdtemp(prefix="dcmnet-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, log, port = folder / "data", folder / "log", free_port()
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "dcmnet", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=60)
        options = f"-p {port} -k {folder} -h {LOOPBACK} -c fsync=off -c max_connections=200"
        started = True
        subprocess.run([*pg_ctl, "-l", str(log), "-w", "-t", "30", "-o", options, "start"], check=True,
                       capture_output=True, timeout=40)
        yield f"postgresql://dcmnet@{LOOPBACK}:{port}/postgres"
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or b"").decode(errors="replace")
        detail += log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {detail}") from None
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "-t", "20", "stop"], capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(url: str, name: str) -> str:
    """Create database ``name`` in the cluster of ``url``; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name
