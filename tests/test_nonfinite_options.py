"""Float options given ``nan``, ``inf``, ``1e999`` (all floats to Python) or a finite value too large for a
timeout (``1e20`` overflows ``settimeout``, ``time.sleep``, ``Event.wait``): a usage error (exit 2) naming the
option, never an internal error (70), nor an endless wait."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcmnet_cli.cli import values
from helpers.procs import base_env

PEER = ["127.0.0.1", "1"]  # nothing listens there: a command that got past its options fails with exit 4

POSITIVE = "must be a positive number of seconds, at most 1000000"
UNLIMITED = "must be a number of seconds up to 1000000 (0 = no limit)"
FROM_ZERO = "must be a number of seconds from 0 to 1000000"
CASES = [
    ("echo", "--connect-timeout", POSITIVE),
    ("echo", "--acse-timeout", POSITIVE),
    ("echo", "--dimse-timeout", UNLIMITED),
    ("echo", "--network-timeout", UNLIMITED),
    ("echo", "--interval", FROM_ZERO),
    ("store", "--retry-delay", FROM_ZERO),
    ("find", "--deadline", POSITIVE),
    ("get", "--deadline", POSITIVE),
    ("listen", "--shutdown-grace", FROM_ZERO),
    ("listen", "--artim-timeout", POSITIVE),
    ("listen", "--exec-timeout", POSITIVE),
    ("listen", "--idle-timeout", UNLIMITED),
]


def argv(command: str, option: str, value: str, tmp: str) -> list[str]:
    rest = {"echo": ["-c", "2", *PEER], "store": [*PEER, tmp], "find": [*PEER, "-k", "PatientID=X"],
            "get": [*PEER, "-k", "StudyInstanceUID=1.2"], "listen": ["-od", tmp, "127.0.0.1", "0"]}[command]
    return [sys.executable, "-m", "dcmnet_cli", command, f"{option}={value}", *rest]


@pytest.mark.parametrize("value", ["nan", "inf", "1e999", "1e20", "1000000.5", "-1"])
@pytest.mark.parametrize("command,option,message", CASES)
def test_a_non_finite_value_is_a_usage_error(command: str, option: str, message: str, value: str, tmp_path) -> None:
    done = subprocess.run(argv(command, option, value, str(tmp_path)), capture_output=True, text=True, timeout=30,
                          env=base_env())
    assert done.returncode == 2, done.stderr
    assert "Invalid value for" in done.stderr and option in done.stderr and message in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_rate_must_be_finite(value: str, tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "dcmnet_cli", "store", f"--max-rate={value}", *PEER, str(tmp_path)],
                          capture_output=True, text=True, timeout=30, env=base_env())
    assert done.returncode == 2 and f"{value} is not a finite number" in done.stderr, done.stderr


def test_the_bounds_themselves_pass() -> None:
    assert values.positive_seconds(1_000_000) == 1_000_000 and values.positive_seconds(0.001) == 0.001
    assert values.positive_seconds(None) is None
    assert values.seconds_or_unlimited(0) is None and values.seconds_or_unlimited(1_000_000) == 1_000_000
    assert values.seconds_from_zero(0) == 0 and values.seconds_from_zero(1_000_000) == 1_000_000
    assert values.finite_number(-2.5) == -2.5 and values.finite_number(None) is None
    for check in (values.positive_seconds, values.seconds_or_unlimited, values.seconds_from_zero, values.finite_number):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ValueError):
                check(bad)


def test_the_longest_wait_a_timeout_takes_is_one_every_waiting_call_takes() -> None:
    """MAX_SECONDS fits a socket timeout, a kernel SO_RCVTIMEO and ``Event.wait``: a run never fails on it."""
    import socket
    import threading

    from dcmnet_cli.transport.channel import _timeval

    assert values.MAX_SECONDS < threading.TIMEOUT_MAX
    a, b = socket.socketpair()
    try:
        a.settimeout(values.MAX_SECONDS)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(values.MAX_SECONDS))
    finally:
        a.close()
        b.close()


def test_every_float_option_of_every_command_is_checked() -> None:
    """A float option added without one of the checks above would take nan, inf or 1e20 again."""
    import click

    from dcmnet_cli.cli import options
    from dcmnet_cli.cli.main import cli

    checks = {options.positive_seconds, options.seconds_or_unlimited, options.seconds_from_zero, options.finite_number}
    ctx = click.Context(cli)
    unchecked, seen = [], 0
    commands = [(name, cli.get_command(ctx, name)) for name in cli.list_commands(ctx)] + [("dcmnet", cli)]
    for name, command in commands:
        for param in command.params:
            if isinstance(param.type, (click.types.FloatParamType, click.FloatRange)):
                seen += 1
                if param.callback not in checks:
                    unchecked.append(f"{name} {param.opts[-1]}")
    assert seen >= 12 and unchecked == []
