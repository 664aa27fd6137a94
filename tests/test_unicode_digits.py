"""Text that ``str.isdigit`` calls digits but ``int`` refuses (superscripts: ``²``) or that only Unicode calls
decimal (Arabic-Indic ``١٠٤``): every number read from a user or a file takes ASCII digits only, so such
text is refused with the usual message instead of ending in an internal error (exit 70)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcmnet_cli.cli.find_output import terminal_width
from dcmnet_cli.services.query_values import value_problem
from dcmnet_cli.services.scp.identity import parse_hash
from helpers.procs import base_env

ODD_DIGITS = ["²", "1²", "١٠٤"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dcmnet_cli", *args], capture_output=True, text=True, timeout=60,
                          env=base_env())


@pytest.mark.parametrize("port", ODD_DIGITS)
def test_a_peer_port_of_other_digits_is_a_usage_error(port: str) -> None:
    done = run("echo", "127.0.0.1", port)
    assert done.returncode == 2, done.stderr
    assert f"{port!r} is not a port number (1-65535)" in done.stderr and "internal error" not in done.stderr
    done = run("echo", f"127.0.0.1:{port}")  # not HOST:PORT (``²`` is no decimal digit), or a port refused
    assert done.returncode == 2, done.stderr
    assert "is not" in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize("port", ODD_DIGITS)
def test_a_move_destination_port_of_other_digits_is_a_usage_error(port: str, tmp_path) -> None:
    done = run("listen", "--move-destination", f"STORESCP=127.0.0.1:{port}", "-od", str(tmp_path), "127.0.0.1", "0")
    assert done.returncode == 2, done.stderr
    assert "is not AET=HOST:PORT" in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize("columns", ODD_DIGITS)
def test_a_columns_variable_of_other_digits_is_ignored(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)

    class NotATerminal:
        def fileno(self) -> int:
            raise OSError("not a terminal")

    assert terminal_width(NotATerminal()) == 80  # type: ignore[arg-type]
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width(NotATerminal()) == 132  # type: ignore[arg-type]


@pytest.mark.parametrize("date", ["2024010²", "٢٠٢٤٠١٠١"])
def test_a_query_date_of_other_digits_is_refused(date: str) -> None:
    problem = value_problem("DA", date)
    assert problem is not None and problem[0] == date
    assert value_problem("DA", "20240101") is None


def test_a_password_hash_with_other_digits_is_not_a_hash() -> None:
    good = "scrypt$16384$8$1$c2FsdA==$MDEyMzQ1Njc4OWFiY2RlZjAxMjM="
    assert parse_hash(good) is not None
    for odd in ("scrypt$16384$8$¹$c2FsdA==$MDEyMzQ1Njc4OWFiY2RlZjAxMjM=", "scrypt$١٦٣٨٤$8$1$c2FsdA==$MDEyMzQ1Njc4OWFiY2RlZjAxMjM="):
        assert parse_hash(odd) is None
