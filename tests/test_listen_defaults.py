"""``listen`` as a DCMTK user expects it: stores by default (like storescp), checks its folder and port
at start (exit 3 with the reason), survives a --json reader that goes away, --workers children that die
with their parent, hooks killed with their whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, listen_server, run_dcmnet, wait_port
from store_helpers import make_file


def _store(port: int, *files: Path) -> tuple[int, str, str]:
    return run_dcmnet("store", LOOPBACK, str(port), *map(str, files), timeout=30)


def test_listen_without_od_stores_into_the_current_folder(tmp_path):
    source = make_file(tmp_path, "one")
    here = tmp_path / "here"
    here.mkdir()
    with listen_server(cwd=here) as srv:
        assert f"storing into {here}" in srv.stderr(), srv.stderr()
        rc, out, err = _store(srv.port, source)
        assert rc == 0, err
        srv.proc.terminate()
        assert srv.proc.wait(10) == 0
        err = srv.stderr()
    assert len([p for p in here.iterdir() if p.suffix == ".dcm"]) == 1
    stopped = [line for line in err.splitlines() if line.startswith("stopped:")][0]
    assert "1 stored" in stopped and " kB" in stopped, stopped  # a human size, not "12345 bytes"
    assert "(s)" not in err and "(es)" not in err, err


def test_verify_only_accepts_no_storage(tmp_path):
    source = make_file(tmp_path, "one")
    with listen_server("--verify-only", cwd=tmp_path) as srv:
        assert "verification only" in srv.stderr()
        rc, _out, _err = _store(srv.port, source)
        assert rc == 5
        assert run_dcmnet("echo", LOOPBACK, str(srv.port))[0] == 0


def test_verify_only_with_storage_options_is_a_usage_error():
    rc, _out, err = run_dcmnet("listen", "--verify-only", "-od", "x", str(free_port()))
    assert rc == 2 and "--verify-only" in err, err


def test_unwritable_output_folder_exits_3(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _out, err = run_dcmnet("listen", "--bind", LOOPBACK, "-od", str(blocker / "sub"), str(free_port()))
    assert rc == 3, err
    assert str(blocker / "sub") in err and "Traceback" not in err, err


def test_get_from_an_unwritable_folder_exits_3_before_any_association():
    port = free_port()  # nothing listens: exit 3 proves the check ran before connecting (that would be 4)
    done = subprocess.run(dcmnet_argv("get", LOOPBACK, str(port), "-k", "PatientID=1"), cwd="/proc",
                          capture_output=True, text=True, timeout=20, env=base_env())
    assert done.returncode == 3, done.stderr
    assert "output folder /proc" in done.stderr, done.stderr


def test_port_in_use_exits_3_and_names_the_holder():
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        rc, _out, err = run_dcmnet("listen", "--verify-only", "--bind", LOOPBACK, str(port))
    assert rc == 3, err
    assert f"cannot listen on {LOOPBACK}:{port}" in err and f"process {os.getpid()}" in err, err


@pytest.mark.parametrize("mark", ["#p", "#f", "#a", "#c", "#r"])
def test_dcmtk_placeholders_are_a_usage_error(mark):
    rc, _out, err = run_dcmnet("listen", "--exec-on-receive", f"echo {mark}", str(free_port()))
    assert rc == 2, err
    assert mark in err and "DCMNET_PATH" in err, err


# --------------------------------------------------------------------------- --json output


def test_json_reader_gone_stores_go_on(tmp_path):
    """stdout a pipe whose reader closed: every store still succeeds, one warning, exit 0 at SIGTERM."""
    port = free_port()
    files = [make_file(tmp_path, f"f{n}") for n in range(3)]
    out_dir = tmp_path / "out"
    read_end, write_end = os.pipe()
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen(dcmnet_argv("listen", "--json", "--bind", LOOPBACK, "-od", str(out_dir),
                                            "--shutdown-grace", "1", str(port)),
                                stdout=write_end, stderr=err_file, stdin=subprocess.DEVNULL, env=base_env())
    os.close(write_end)
    try:
        wait_port(port, proc)
        os.close(read_end)  # the reader goes away
        for source in files:
            rc, _out, err = _store(port, source)
            assert rc == 0, (err, err_path.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = err_path.read_text()
    assert err.count("stdout was closed") == 1, err
    assert "Traceback" not in err and "internal" not in err, err
    assert len(list(out_dir.glob("*.dcm"))) == 3


def test_workers_json_lines_whole_and_say_which_worker(tmp_path):
    port = free_port()
    env = dict(base_env(), PYTHONUNBUFFERED="1")
    out_path = tmp_path / "stdout"
    with open(out_path, "wb") as out, open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(dcmnet_argv("listen", "--json", "--verify-only", "--workers", "2", "--bind", LOOPBACK,
                                            "--shutdown-grace", "1", str(port)),
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 10  # the second worker is forked after the bind: wait for it
        while not _children(proc.pid):
            assert time.monotonic() < deadline, "no worker process"
            time.sleep(0.02)
        echoes = [subprocess.Popen(dcmnet_argv("echo", LOOPBACK, str(port)), env=base_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(12)]
        assert all(p.wait(30) == 0 for p in echoes)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    records = [json.loads(line) for line in out_path.read_text().splitlines()]  # one object per line
    ends = [r for r in records if r["event"] == "association"]
    assert len(ends) >= 12 and all(r["worker"] in (0, 1) for r in ends), records


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_workers_die_with_a_killed_parent(tmp_path):
    port = free_port()
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(dcmnet_argv("listen", "--verify-only", "--workers", "3", "--bind", LOOPBACK, str(port)),
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=base_env())
    children: list[int] = []
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 10
        while len(children) < 2 and time.monotonic() < deadline:
            children = _children(proc.pid)
            time.sleep(0.1)
        assert len(children) == 2
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{c}/stat") and _state(c) != "Z" for c in children):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.1)
        started = time.monotonic()
        rc, _out, _err = run_dcmnet("echo", "-ta", "3", LOOPBACK, str(port))
        assert rc == 4 and time.monotonic() - started < 10  # refused, no hang
    finally:
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# --------------------------------------------------------------------------- hooks


def test_exec_timeout_kills_the_hooks_background_children(tmp_path):
    marker = tmp_path / "bg.pid"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {marker}\nsleep 300\n")
    script.chmod(0o755)
    source = make_file(tmp_path, "one")
    with listen_server("-od", str(tmp_path / "out"), "--exec-on-receive", str(script), "--exec-timeout", "1") as srv:
        assert _store(srv.port, source)[0] == 0
        deadline = time.monotonic() + 5
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        background = int(marker.read_text())
        time.sleep(1.5)
        assert _store(srv.port, make_file(tmp_path, "two"))[0] == 0  # a hook start checks the timeouts
        assert srv.wait_for_stderr("killed after 1 s", timeout=5), srv.stderr()
        deadline = time.monotonic() + 5
        while _state(background) not in ("gone", "Z"):
            assert time.monotonic() < deadline, "the hook's background child outlived the timeout"
            time.sleep(0.05)


def test_pydicom_warnings_go_to_the_verbose_log(tmp_path):
    """A warnings.warn raised while serving is one -v line, never a bare warning per object on stderr."""
    code = ("import warnings, sys\n"
            "from dcmnet_cli.cli.app import App\n"
            "app = App(verbose=0); app.capture_warnings(); warnings.warn('peer value X')\n"
            "app = App(verbose=1); app.capture_warnings(); warnings.warn('peer value Y')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                          cwd=tempfile.gettempdir(), env=dict(base_env(), PYTHONPATH=str(Path(__file__).parents[1])))
    assert "peer value X" not in done.stderr and "UserWarning: peer value Y" in done.stderr, done.stderr
