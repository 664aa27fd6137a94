"""Shared fixtures for the network tests (every address is 127.0.0.1).

The helpers themselves live in ``tests/helpers/`` so test modules can use them in module-scoped fixtures.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.procs import find_dcmtk, free_port, run_dcmnet, running_server, shared_dir  # noqa: E402

__all__ = ["free_port", "run_dcmnet", "running_server", "shared_dir"]


@pytest.fixture(scope="session")
def dcmtk() -> dict[str, str]:
    """Paths of the DCMTK tools; a missing tool fails the test under CI=true and skips it otherwise."""
    found, missing = find_dcmtk()
    if missing:
        message = f"DCMTK tool(s) not found on PATH: {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def start_server():
    """Start server processes for one test: ``start_server(argv, port, dcmtk=False)``; all stopped after."""
    with ExitStack() as stack:
        yield lambda argv, port, **kwargs: stack.enter_context(running_server(argv, port, **kwargs))


@pytest.fixture
def storescp(dcmtk, start_server, tmp_path):  # type: ignore[no-untyped-def]
    """``storescp(*flags)`` → (port, output folder): DCMTK storescp (bit-preserving, +B) on 127.0.0.1,
    stopped after the test."""
    from store_helpers import storescp_argv

    def start(*flags: str) -> tuple[int, Path]:
        port = free_port()
        out = tmp_path / f"received-{port}"
        out.mkdir()
        start_server(storescp_argv(port, out, *flags), port, dcmtk=True)
        return port, out

    return start
