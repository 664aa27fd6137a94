"""``dcmnet echo`` without click (cli/fastpath.py): a whole run imports no click, and what a user sees —
exit code, stdout, stderr — is what the click path gives (usage errors included: they are click's).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Callable

import pytest

from helpers.inprocess import in_process
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, listen_server


@pytest.fixture(scope="module")
def echo_server() -> Any:
    with listen_server("--ignore") as server:
        yield server


def test_plain_echo_imports_no_click(echo_server: Any) -> None:
    argv = [*dcmnet_argv("echo", LOOPBACK, str(echo_server.port))]
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, timeout=30,
                          env=base_env())
    assert done.returncode == 0, done.stderr
    assert "Success" in done.stdout
    loaded = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "dcmnet_cli.cli.fastpath" in loaded
    assert not [m for m in loaded if m == "click" or m.startswith("click.")], "the fast path imported click"
    heavy = {"typing", "re", "inspect", "ast", "dis", "tokenize", "dataclasses", "difflib", "pydicom", "numpy",
             "rich", "ssl", "json", "sqlite3", "asyncio", "pathlib", "subprocess", "tomllib", "uuid", "platform"}
    assert not heavy & set(loaded), f"a plain dcmnet echo imported {sorted(heavy & set(loaded))}"


def test_echo_help_is_still_clicks() -> None:
    done = subprocess.run(dcmnet_argv("echo", "--help"), capture_output=True, text=True, timeout=30, env=base_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: dcmnet echo [OPTIONS] PEER") and "--calling-aet" in done.stdout


@pytest.fixture
def both(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Any, Any, bool]]:
    """``both(*args)`` → (fast result, click result, whether the fast path ran it), each (code, out, err)."""
    call = in_process(capsys, monkeypatch)
    from dcmnet_cli.cli import fastpath

    real = fastpath.run_fast
    used: list[bool] = []

    def spy(argv: list[str]) -> int | None:
        code = real(argv)
        used.append(code is not None)
        return code

    def run(*args: str) -> tuple[Any, Any, bool]:
        used.clear()
        monkeypatch.setattr(fastpath, "run_fast", spy)
        fast = call(*args)
        monkeypatch.setattr(fastpath, "run_fast", lambda argv: None)
        slow = call(*args)
        return fast, slow, bool(used and used[0])

    return run


@pytest.mark.parametrize("args", [
    ("echo", "104", "pacs.example.org"), ("echo", LOOPBACK, "99999"), ("echo", "a", "b", "c"), ("echo", "104"),
    ("echo", "no-such-node"), ("echo", "A" * 17 + "@h:104"), ("echo", "h", "PatientName=X"), ("echo", "-c", "0", "h", "1"),
    ("echo", "--tls-ca", "ca.pem", LOOPBACK, "104"), ("echo", "-aet", "BAD\\AE", "h", "1"), ("echo",),
])
def test_usage_errors_are_clicks(both: Callable[..., tuple[Any, Any, bool]], args: tuple[str, ...]) -> None:
    fast, slow, _ = both(*args)
    assert fast == slow
    assert fast[0] == 2 and "Usage: dcmnet echo" in fast[2] and "Traceback" not in fast[2]


def test_refused_connection_same_on_both_paths(both: Callable[..., tuple[Any, Any, bool]]) -> None:
    fast, slow, used = both("echo", LOOPBACK, str(free_port()))
    assert used, "the fast path declined a plain echo"
    assert fast == slow and fast[0] == 4


def _shape(result: tuple[int, str, str]) -> tuple[int, Any, str]:
    """Exit code, stdout (JSON keys, or lines with the times taken out), stderr."""
    code, out, err = result
    if out.startswith("{"):
        return code, sorted(json.loads(out)), err
    return code, [line.split(" in ")[0] for line in out.splitlines()], err


@pytest.mark.parametrize("args", [(), ("--json",), ("-q",), ("-c", "2", "-v"), ("--abort",)])
def test_echo_output_same_on_both_paths(both: Callable[..., tuple[Any, Any, bool]], echo_server: Any,
                                        args: tuple[str, ...]) -> None:
    fast, slow, used = both("echo", *args, f"{LOOPBACK}:{echo_server.port}")
    assert used, "the fast path declined"
    assert fast[0] == slow[0] == 0
    if "-v" in args:  # detail lines carry times: compare their count
        assert len(fast[2].splitlines()) == len(slow[2].splitlines()) and fast[1].count("seq=") == 2
    else:
        assert _shape(fast) == _shape(slow)


def _loaded(argv: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``dcmnet ARGV`` with -X importtime: (the process, the modules it imported)."""
    full = dcmnet_argv(*argv)
    done = subprocess.run([full[0], "-X", "importtime", *full[1:]], capture_output=True, text=True, timeout=30,
                          env=base_env(), **kwargs)
    return done, [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]


def _no_click(loaded: list[str]) -> bool:
    return "dcmnet_cli.cli.fastpath" in loaded and not [m for m in loaded if m == "click" or m.startswith("click.")]


def test_plain_store_and_find_import_no_click(tmp_path: Any) -> None:
    from qr_helpers import scripted_find_scp
    from store_helpers import make_file, scripted_scp
    from pydicom import Dataset

    path = str(make_file(tmp_path, "fast", rows=8, columns=8))
    with scripted_scp() as (port, scp):
        done, loaded = _loaded(["store", LOOPBACK, str(port), path])
        assert done.returncode == 0 and "stored 1 of 1 files" in done.stderr, done.stderr
        assert _no_click(loaded)
    assert len(scp.stored) == 1
    match = Dataset()
    match.QueryRetrieveLevel, match.PatientName, match.PatientID = "STUDY", "Doe^Jane", "X1"
    with scripted_find_scp(lambda ident: [(0xFF00, match), (0x0000, None)]) as (port, _scp):
        done, loaded = _loaded(["find", "-aec", "FINDSCP", LOOPBACK, str(port), "-k", "PatientName=D*"])
    assert done.returncode == 0 and "Doe^Jane" in done.stdout, done.stderr
    assert _no_click(loaded)


@pytest.mark.parametrize("args", [
    ("store",), ("store", LOOPBACK, "104"), ("store", "104", "pacs.example.org", "f.dcm"), ("store", "-j", "0", "h", "1", "f"),
    ("find", "a", "b", "c"), ("find", "-P", "-S", "h", "1"), ("find", "-L", "SERIES", "-W", "h", "1"),
    ("find", "--json", "--format", "csv", "h", "1"), ("find", "h", "1", "-k", "NoSuchKeyword=1"),
    ("find", "-od", "/proc/no/such/dir", "h", "1"), ("find", "-k", "PatientName=A", "h"),
])
def test_store_and_find_usage_errors_are_clicks(both: Callable[..., tuple[Any, Any, bool]], args: tuple[str, ...]) -> None:
    fast, slow, _ = both(*args)
    assert fast == slow
    assert fast[0] == 2 and f"Usage: dcmnet {args[0]}" in fast[2] and "Traceback" not in fast[2]


def test_store_output_same_on_both_paths(both: Callable[..., tuple[Any, Any, bool]], tmp_path: Any) -> None:
    from store_helpers import make_file, scripted_scp

    path = str(make_file(tmp_path, "fast", rows=8, columns=8))
    missing = str(tmp_path / "missing.dcm")
    with scripted_scp() as (port, _scp):
        for args in (("--json",), ("-q",), ()):
            fast, slow, used = both("store", *args, LOOPBACK, str(port), path, missing)
            assert used, "the fast path declined"
            assert fast[0] == slow[0] == 3
            if args == ("--json",):
                assert sorted(json.loads(fast[1])) == sorted(json.loads(slow[1]))
            assert [line.split(", ")[0] for line in fast[2].splitlines()] == \
                   [line.split(", ")[0] for line in slow[2].splitlines()]


@pytest.mark.parametrize("args", [(), ("--json",), ("--format", "csv", "-k", "PatientID"), ("-q", "-P"), ("-v",)])
def test_find_output_same_on_both_paths(both: Callable[..., tuple[Any, Any, bool]], args: tuple[str, ...]) -> None:
    from pydicom import Dataset
    from qr_helpers import scripted_find_scp

    match = Dataset()
    match.QueryRetrieveLevel, match.PatientName, match.PatientID = "STUDY", "Doe^Jane", "X1"
    with scripted_find_scp(lambda ident: [(0xFF00, match), (0x0000, None)]) as (port, _scp):
        fast, slow, used = both("find", *args, "-aec", "FINDSCP", f"{LOOPBACK}:{port}", "-k", "PatientName=D*")
    assert used, "the fast path declined"
    assert fast[0] == slow[0] == 0
    assert fast[1] == slow[1] and ("Doe^Jane" in fast[1] or "-q" in args)
    assert len(fast[2].splitlines()) == len(slow[2].splitlines())


def test_node_names_same_on_both_paths(both: Callable[..., tuple[Any, Any, bool]], echo_server: Any,
                                       tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes of the config file work on the fast path; a node with TLS, a file with [defaults] go to click."""
    config = tmp_path / "config.toml"
    config.write_text(f"[nodes.pacs]\nhost = '{LOOPBACK}'\nport = {echo_server.port}\naet = 'PACS'\ncalling_aet = 'ME'\n"
                      f"[nodes.secure]\nhost = '{LOOPBACK}'\nport = 1\ntls = true\n"
                      f"[nodes.broken]\nhost = '{LOOPBACK}'\nport = 'x'\n")
    monkeypatch.setenv("DCMNET_CONFIG", str(config))  # after in_process's (a file read is cached by its path)
    for args, code, used_expected in ((("echo", "--json", "pacs"), 0, True), (("echo", "nosuch"), 2, False),
                                      (("echo", "broken"), 2, False), (("echo", "secure"), None, False)):
        fast, slow, used = both(*args)
        assert used is used_expected, args
        assert fast[0] == slow[0] and fast[2] == slow[2], args
        if code is not None:
            assert fast[0] == code, (args, fast)
        if "--json" in args:
            fields = json.loads(fast[1])
            assert (fields["called_ae"], fields["calling_ae"]) == ("PACS", "ME") and sorted(fields) == sorted(json.loads(slow[1]))
    with_defaults = tmp_path / "with-defaults.toml"
    with_defaults.write_text(config.read_text() + "[defaults]\nretries = 1\n")
    monkeypatch.setenv("DCMNET_CONFIG", str(with_defaults))
    fast, slow, used = both("echo", "pacs")
    assert not used and fast[0] == slow[0] == 0
