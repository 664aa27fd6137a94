"""Float options given ``nan``, ``inf`` or ``1e999`` (all floats to Python): a usage error (exit 2) naming the
option, never an internal error from ``time.sleep`` or a socket timeout, nor an endless wait."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcmnet_cli.cli import values
from helpers.procs import base_env

PEER = ["127.0.0.1", "1"]  # nothing listens there: a command that got past its options fails with exit 4

CASES = [
    ("echo", "--connect-timeout", "must be a positive number of seconds"),
    ("echo", "--acse-timeout", "must be a positive number of seconds"),
    ("echo", "--dimse-timeout", "must be a number of seconds (0 = no limit)"),
    ("echo", "--network-timeout", "must be a number of seconds (0 = no limit)"),
    ("echo", "--interval", "is not a finite number"),
    ("store", "--retry-delay", "is not a finite number"),
    ("store", "--max-rate", "is not a finite number"),
    ("find", "--deadline", "must be a positive number of seconds"),
    ("listen", "--shutdown-grace", "is not a finite number"),
    ("listen", "--artim-timeout", "must be a positive number of seconds"),
    ("listen", "--idle-timeout", "must be a number of seconds (0 = no limit)"),
]


def argv(command: str, option: str, value: str, tmp: str) -> list[str]:
    rest = {"echo": ["-c", "2", *PEER], "store": [*PEER, tmp], "find": [*PEER, "-k", "PatientID=X"],
            "listen": ["-od", tmp, "127.0.0.1", "0"]}[command]
    return [sys.executable, "-m", "dcmnet_cli", command, f"{option}={value}", *rest]


@pytest.mark.parametrize("value", ["nan", "inf", "1e999"])
@pytest.mark.parametrize("command,option,message", CASES)
def test_a_non_finite_value_is_a_usage_error(command: str, option: str, message: str, value: str, tmp_path) -> None:
    done = subprocess.run(argv(command, option, value, str(tmp_path)), capture_output=True, text=True, timeout=30,
                          env=base_env())
    assert done.returncode == 2, done.stderr
    assert "Invalid value for" in done.stderr and option in done.stderr and message in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_finite_values_still_pass_the_checks() -> None:
    assert values.positive_seconds(0.5) == 0.5 and values.positive_seconds(None) is None
    assert values.seconds_or_unlimited(0) is None and values.seconds_or_unlimited(1e9) == 1e9
    assert values.finite_number(0.0) == 0.0 and values.finite_number(-2.5) == -2.5 and values.finite_number(None) is None
    for check in (values.positive_seconds, values.seconds_or_unlimited, values.finite_number):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ValueError):
                check(bad)
