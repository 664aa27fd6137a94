"""``dcmnet`` run in the test's own process (``main``, as the program runs it): no interpreter start per
case. Exit code, stdout and stderr as a child process would give them, in the environment of one."""

from __future__ import annotations

from typing import Callable

import pytest

from .procs import base_env


def in_process(capsys, monkeypatch) -> Callable[..., tuple[int, str, str]]:  # type: ignore[no-untyped-def]
    """``call(*args)`` → (exit code, stdout, stderr); no user config, no colour (see ``procs.base_env``)."""
    from dcmnet_cli.cli.main import main

    env = base_env()
    monkeypatch.setenv("DCMNET_CONFIG", env["DCMNET_CONFIG"])
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("DCMNET_CALLED_AET", raising=False)
    monkeypatch.delenv("DCMNET_CALLING_AET", raising=False)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out, err = capsys.readouterr()
        return int(done.value.code), out, err

    return call
