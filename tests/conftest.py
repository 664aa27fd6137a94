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
