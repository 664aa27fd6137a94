"""The output options (-q, -v, --debug, --no-color, --json) before or after the command name, same meaning.

Every peer listens on 127.0.0.1 on a free port and is always stopped: DCMTK storescp for echo and store
(the ``storescp`` fixture), DCMTK dcmqrscp for find, and ``dcmnet listen`` itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from dcmnet_cli.cli.app import App
from dcmnet_cli.cli.main import main
from helpers.procs import LOOPBACK, dcmnet_argv, free_port, run_dcmnet, running_server
from qr_helpers import dcmqrscp_server, make_datasets
from store_helpers import closed_port, make_file

ECHO_DETAIL = "C-ECHO-RQ (message 1) -> C-ECHO-RSP status 0x0000"


# --------------------------------------------------------------------------- echo (storescp)


@pytest.mark.parametrize("where", ["before", "after"])
def test_echo_quiet_silences_the_result(storescp, where: str) -> None:
    port, _ = storescp()
    args = ["-q", "echo", LOOPBACK, str(port)] if where == "before" else ["echo", LOOPBACK, str(port), "-q"]
    code, out, err = run_dcmnet(*args)
    assert code == 0, err
    assert out == "" and err == ""
    code, out, _ = run_dcmnet("echo", LOOPBACK, str(port))
    assert code == 0 and "Success" in out  # the result line -q removed


@pytest.mark.parametrize("where", ["before", "after"])
def test_echo_verbose_adds_dimse_detail(storescp, where: str) -> None:
    port, _ = storescp()
    args = ["-v", "echo", LOOPBACK, str(port)] if where == "before" else ["echo", LOOPBACK, str(port), "-v"]
    code, out, err = run_dcmnet(*args)
    assert code == 0, err
    assert ECHO_DETAIL in err and "Success" in out
    code, _, err = run_dcmnet("echo", LOOPBACK, str(port))
    assert code == 0 and ECHO_DETAIL not in err


def test_echo_debug_and_json_after_the_command(storescp) -> None:
    port, _ = storescp()
    code, out, err = run_dcmnet("echo", LOOPBACK, str(port), "--debug", "--json")
    assert code == 0, err
    assert "-> A-ASSOCIATE-RQ" in err and ECHO_DETAIL in err  # --debug implies -vv
    assert json.loads(out)["statuses"] == ["0x0000"]


def test_json_before_the_command_is_the_commands_json(storescp) -> None:
    port, _ = storescp()
    code, out, err = run_dcmnet("--json", "echo", LOOPBACK, str(port))
    assert code == 0, err
    assert json.loads(out)["exit_code"] == 0


def test_quiet_keeps_errors() -> None:
    code, out, err = run_dcmnet("echo", LOOPBACK, str(closed_port()), "-q")
    assert code == 4
    assert out == "" and "dcmnet echo: error: connection refused" in err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so colours would be used."""

    def isatty(self) -> bool:
        return True


def _echo_error_on_a_terminal(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.delenv("NO_COLOR", raising=False)
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 4
    return err.getvalue()


@pytest.mark.parametrize("where", ["before", "after"])
def test_no_color(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    port = str(closed_port())
    coloured = _echo_error_on_a_terminal(monkeypatch, "echo", LOOPBACK, port)
    assert "\x1b[31m" in coloured and "connection refused" in coloured
    args = ["--no-color", "echo", LOOPBACK, port] if where == "before" else ["echo", LOOPBACK, port, "--no-color"]
    plain = _echo_error_on_a_terminal(monkeypatch, *args)
    assert "\x1b[" not in plain and "dcmnet echo: error: connection refused" in plain


# --------------------------------------------------------------------------- store (storescp)


def test_store_quiet_and_verbose_after_the_command(storescp, tmp_path: Path) -> None:
    port, out = storescp()
    source = tmp_path / "src"
    source.mkdir()
    path = make_file(source, "output-options")
    code, stdout, err = run_dcmnet("store", LOOPBACK, str(port), str(path), "-v")
    assert code == 0, err
    assert f"{path}: 0x0000" in err and "association to" in err  # one line per file, association detail
    code, stdout, err = run_dcmnet("store", LOOPBACK, str(port), str(path), "-q")
    assert code == 0, err
    assert stdout == "" and err == ""
    code, stdout, err = run_dcmnet("store", LOOPBACK, str(port), str(path))
    assert code == 0 and f"{path}: 0x0000" not in err
    assert len(list(out.rglob("*"))) >= 1


# --------------------------------------------------------------------------- find (dcmqrscp)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, dcmtk):  # type: ignore[no-untyped-def]
    """DCMTK dcmqrscp holding one study: (port, aet); stopped after the module."""
    if not all(shutil.which(tool) for tool in ("dcmqrscp", "storescu")):
        message = "DCMTK dcmqrscp/storescu not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), make_datasets()[:1]) as (port, aet):
        yield port, aet


@pytest.mark.parametrize("where", ["before", "after"])
def test_find_quiet_and_verbose(capsys: pytest.CaptureFixture[str], archive: tuple[int, str], where: str) -> None:
    port, aet = archive

    def find(*flags: str) -> tuple[int, str, str]:
        base = ["find", "-aec", aet, LOOPBACK, str(port), "-k", "PatientID=PAT001"]
        with pytest.raises(SystemExit) as done:
            main([*flags, *base] if where == "before" else [*base, *flags])
        out, err = capsys.readouterr()
        return int(done.value.code or 0), out, err

    code, out, err = find()
    assert code == 0, err
    assert "1 match" in err and "PAT001" in out and "associated with" not in err
    code, out, err = find("-q")
    assert code == 0, err
    assert err == "" and "PAT001" in out  # -q silences the stderr summary, not the results
    code, out, err = find("-v")
    assert code == 0, err
    assert "associated with" in err and "1 match" in err
    code, out, err = find("--json")
    assert code == 0, err
    assert [json.loads(line)["00100020"]["Value"] for line in out.splitlines()] == [["PAT001"]]


# --------------------------------------------------------------------------- listen


def _listen(*options: str) -> tuple[int, str, str]:
    """Run ``dcmnet listen PORT OPTIONS`` (options after the command name), echo it once, SIGTERM it."""
    port = free_port()
    argv = dcmnet_argv("listen", "--bind", LOOPBACK, "--shutdown-grace", "1", str(port), *options)
    with running_server(argv, port) as server:
        code, _, err = run_dcmnet("echo", LOOPBACK, str(port))
        assert code == 0, err
        server.proc.send_signal(signal.SIGTERM)  # in-flight associations finish (and are logged) first
        assert server.proc.wait(10) == 0
        return server.proc.returncode, server.stdout(), server.stderr()


def test_listen_quiet_after_the_port() -> None:
    code, out, err = _listen("-q")
    assert code == 0
    assert out == "" and err == ""


def test_listen_verbose_after_the_port() -> None:
    _, _, plain = _listen()
    assert "listening on" in plain and "stopped:" in plain and "associated (1 contexts)" not in plain
    _, _, verbose = _listen("-v")
    assert "associated (1 context)" in verbose and "released, 1 echo," in verbose


def test_listen_json_after_the_port() -> None:
    _, out, _ = _listen("--json", "-q")
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events[0] == "listening" and "association" in events and events[-1] == "stopped"


# --------------------------------------------------------------------------- how the two places combine


def test_app_apply_combines() -> None:
    app = App(verbose=1, color=True)
    app.apply(verbose=1)
    assert app.verbose == 2  # -v echo ... -v is -vv
    app.apply(quiet=True, no_color=True, json_output=True)
    assert app.quiet and not app.color and app.json_output
    app.apply()  # nothing given after the name changes nothing given before it
    assert app.quiet and not app.color and app.json_output and app.verbose == 2
    debug = App()
    debug.apply(debug=True)
    debug.apply(debug=True)
    assert debug.debug and debug.verbose == 2  # --debug in both places is still -vv


def test_say_levels() -> None:
    err = io.StringIO()
    app = App(err=err, color=False, command="dcmnet probe")
    app.say("detail line", "detail")
    app.say("info line")
    app.say("careful", "warning")
    app.say("broken", "error")
    assert err.getvalue().splitlines() == ["info line", "dcmnet probe: warning: careful", "dcmnet probe: error: broken"]
    err.seek(0), err.truncate()
    app.apply(quiet=True, verbose=2)
    for level in ("detail", "info", "warning", "error"):
        app.say(level, level)
    assert err.getvalue().splitlines() == ["dcmnet probe: error: error"]  # -q wins over -v
