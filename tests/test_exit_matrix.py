"""The exit-code contract (DESIGN.md) provoked per command against a real peer on 127.0.0.1 (issue 15).

Every case runs the real ``dcmnet`` program in a child process and checks its exit code and that stderr
carries no traceback. The peer is our own ``Server`` in a thread, scripted per case: answer a status,
abort, hang until released, send a C-STORE sub-operation; it requires the called AE title MATRIX, so
``-aec WRONG`` is rejected. A closed port gives 4. 70 comes from an injected bug (a prelude that makes
opening an association raise RuntimeError: the code has no bug hook of its own); 130 from SIGINT sent
while the command waits for the peer's answer. ``combine()`` precedence is a table.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from helpers.matrix_peer import CT, INSTANCE, STUDY, Handler, abort, answer, get_stores_then_success, hang, matrix_peer
from helpers.inprocess import in_process
from helpers.patched import patched_argv
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port
from store_helpers import closed_port, make_file

from dcmnet_cli.cli.exitcodes import PRECEDENCE, ExitCode, combine, for_status

E = ExitCode


# --------------------------------------------------------------------------- commands

def command_args(command: str, port: int, tmp_path: Path, aec: str = "MATRIX") -> list[str]:
    peer = ["-aec", aec, LOOPBACK, str(port)]
    if command == "echo":
        return ["echo", *peer]
    if command == "store":
        return ["store", *peer, str(make_file(tmp_path / "in", "matrix"))]
    if command == "find":
        return ["find", *peer, "-k", "PatientID=*"]
    if command == "move":
        return ["move", *peer, "--dest", "ELSEWHERE", "-k", f"StudyInstanceUID={STUDY}"]
    if command == "get":
        return ["get", *peer, "-od", str(tmp_path / "got"), "--storage-class", CT, "-k", f"StudyInstanceUID={STUDY}"]
    raise AssertionError(command)


def run(argv: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=base_env(),
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def dcmnet(capsys, monkeypatch):
    return in_process(capsys, monkeypatch)


def check(code: int, out: str, err: str, expected: ExitCode) -> None:
    assert code == expected, f"exit {code}, expected {int(expected)}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- statuses from the peer

STATUS_CASES = [
    ("echo", answer(0x0000), E.SUCCESS),
    ("echo", answer(0x0001), E.WARNING),
    ("echo", answer(0x0110), E.FAILURE),
    ("store", answer(0x0000), E.SUCCESS),
    ("store", answer(0xB000), E.WARNING),
    ("store", answer(0xA700), E.FAILURE),
    ("store", answer(0xFE00), E.CANCELLED),
    ("find", answer(0x0000), E.SUCCESS),
    ("find", answer(0xB000), E.WARNING),
    ("find", answer(0xA700), E.FAILURE),
    ("find", answer(0xFE00), E.CANCELLED),
    ("move", answer(0x0000, remaining=0, completed=1, failed=0, warning=0), E.SUCCESS),
    ("move", answer(0xB000, remaining=0, completed=0, failed=0, warning=1), E.WARNING),
    ("move", answer(0xA702, remaining=0, completed=0, failed=1, warning=0), E.FAILURE),
    ("move", answer(0xFE00, remaining=0, completed=0, failed=0, warning=0), E.CANCELLED),
    ("get", answer(0x0000, remaining=0, completed=0, failed=0, warning=0), E.SUCCESS),
    ("get", answer(0xB000, remaining=0, completed=0, failed=0, warning=1), E.WARNING),
    ("get", answer(0xA702, remaining=0, completed=0, failed=1, warning=0), E.FAILURE),
    ("get", answer(0xFE00, remaining=0, completed=0, failed=0, warning=0), E.CANCELLED),
    ("echo", abort, E.ABORTED),
    ("store", abort, E.ABORTED),
    ("find", abort, E.ABORTED),
    ("move", abort, E.ABORTED),
    ("get", abort, E.ABORTED),
]


@pytest.mark.parametrize(("command", "script", "expected"), STATUS_CASES,
                         ids=[f"{c}-{int(e)}-{i}" for i, (c, _s, e) in enumerate(STATUS_CASES)])
def test_peer_answers(tmp_path, dcmnet, command, script, expected):
    with matrix_peer(script) as (port, peer):
        check(*dcmnet(*command_args(command, port, tmp_path)), expected)
    assert peer.received, "the peer never got the request"


# --------------------------------------------------------------------------- before any operation

COMMANDS = ["echo", "store", "find", "move", "get"]


@pytest.mark.parametrize("command", COMMANDS)
def test_connection_refused_is_4(tmp_path, dcmnet, command):
    check(*dcmnet(*command_args(command, closed_port(), tmp_path)), E.CONNECT)


@pytest.mark.parametrize("command", COMMANDS)
def test_association_rejected_is_5(tmp_path, dcmnet, command):
    with matrix_peer(answer(0)) as (port, peer):
        code, out, err = dcmnet(*command_args(command, port, tmp_path, aec="WRONG"))
    check(code, out, err, E.REJECTED)
    assert peer.received == []


@pytest.mark.parametrize("command", COMMANDS + ["listen"])
def test_usage_error_is_2(tmp_path, command):
    args = ["listen", "--max-associations", "nope", "0"] if command == "listen" else \
        [*command_args(command, closed_port(), tmp_path), "--dimse-timeout", "-5"]
    check(*run(dcmnet_argv(*args)), E.USAGE)


@pytest.mark.parametrize("command", ["store", "find", "move", "get"])
def test_local_input_problem_is_3(tmp_path, dcmnet, command):
    """Nothing usable to send: a non-DICOM file for store, a non-DICOM query file (-f) for the others."""
    junk = tmp_path / "junk.txt"
    junk.write_text("not DICOM")
    with matrix_peer(answer(0)) as (port, peer):
        if command == "store":
            args = ["store", "-aec", "MATRIX", LOOPBACK, str(port), str(junk)]
        else:
            args = [a for a in command_args(command, port, tmp_path) if not a.startswith(("PatientID", "StudyInst"))]
            args = [a for a in args if a != "-k"] + ["-f", str(junk)]
        check(*dcmnet(*args), E.INPUT)
    assert peer.received == []


def test_rejection_outranks_a_bad_input_file(tmp_path, dcmnet):
    """One good file and one non-DICOM file to a peer that rejects the association: 5, not 3 (the
    precedence 6, 5, 4, 7, 8, 3, 1, 0 provoked for real)."""
    junk = tmp_path / "junk.txt"
    junk.write_text("not DICOM")
    with matrix_peer(answer(0)) as (port, _peer):
        args = ["store", "-aec", "WRONG", LOOPBACK, str(port), str(make_file(tmp_path / "in", "m1")), str(junk)]
        check(*dcmnet(*args), E.REJECTED)


def test_failure_outranks_a_bad_input_file(tmp_path, dcmnet):
    junk = tmp_path / "junk.txt"
    junk.write_text("not DICOM")
    with matrix_peer(answer(0xA700)) as (port, _peer):
        args = ["store", "-aec", "MATRIX", LOOPBACK, str(port), str(make_file(tmp_path / "in", "m2")), str(junk)]
        check(*dcmnet(*args), E.FAILURE)


# --------------------------------------------------------------------------- our own side

def test_get_local_store_failure_is_7(tmp_path, dcmnet):
    """The peer reports its sub-operation completed, but our side could not store the object (a folder
    sits at its final name): the run is a failure, 7, and the folder is left alone."""
    got = tmp_path / "got"
    (got / f"{INSTANCE}.dcm").mkdir(parents=True)
    answered: list[int] = []

    def script(h: Handler) -> None:
        answered.append(h.sub_store())
        h.status(0x0000, remaining=0, completed=1, failed=0, warning=0)

    with matrix_peer(script) as (port, _peer):
        check(*dcmnet(*command_args("get", port, tmp_path)), E.FAILURE)
    assert answered == [0xA700]
    assert (got / f"{INSTANCE}.dcm").is_dir()


def test_move_local_store_failure_is_7(tmp_path, dcmnet):
    """C-MOVE to our own --store-port: the peer stores the object there (a C-STORE association back to
    us) and reports the sub-operation completed, but our side could not store it (a folder at its final
    name): 7."""
    from pydicom import dcmread

    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scu.store import store
    from dcmnet_cli.services.scu.store_inputs import collect
    from dcmnet_cli.transport.client import Timeouts

    source = make_file(tmp_path / "in", "moved")
    instance = dcmread(source, stop_before_pixels=True).SOPInstanceUID
    got, store_port = tmp_path / "got", free_port()
    (got / f"{instance}.dcm").mkdir(parents=True)
    statuses: list[int | None] = []

    def script(h: Handler) -> None:
        files, _problems = collect([str(source)])
        result = store(Peer(LOOPBACK, store_port, "DCMNET"), files, "MATRIX", Timeouts(5, 5, 5, 5))
        statuses.extend(o.status for o in result.files)
        h.status(0x0000, remaining=0, completed=1, failed=0, warning=0)

    with matrix_peer(script) as (port, _peer):
        code, out, err = dcmnet("move", "-aec", "MATRIX", LOOPBACK, str(port), "--store-port", str(store_port),
                                "--bind", LOOPBACK, "-od", str(got), "-k", f"StudyInstanceUID={STUDY}")
    assert statuses == [0xA700]
    check(code, out, err, E.FAILURE)
    assert (got / f"{instance}.dcm").is_dir()


def test_get_stored_sub_operation_is_0(tmp_path, dcmnet):
    with matrix_peer(get_stores_then_success) as (port, _peer):
        check(*dcmnet(*command_args("get", port, tmp_path)), E.SUCCESS)
    assert (tmp_path / "got" / f"{INSTANCE}.dcm").is_file()


BUG = """
    import dcmnet_cli.services.scu.association as _association
    def _bug(*args, **kwargs):
        raise RuntimeError("injected bug")
    _association.open_association = _bug
"""
LISTEN_BUG = """
    from dcmnet_cli.transport import server as _server
    def _bug(self, *args, **kwargs):
        raise RuntimeError("injected bug")
    _server.Server.serve_forever = _bug
"""


@pytest.mark.parametrize("command", COMMANDS + ["listen"])
def test_internal_error_is_70_with_one_line(tmp_path, command):
    """A bug (an exception no code path expects) exits 70 with one line asking for a report; the
    traceback only with --debug."""
    with matrix_peer(answer(0)) as (port, _peer):
        if command == "listen":
            argv = ["listen", "--bind", LOOPBACK, "-od", str(tmp_path / "out"), str(free_port())]
            prelude = LISTEN_BUG
        else:
            argv, prelude = command_args(command, port, tmp_path), BUG
        code, out, err = run(patched_argv(prelude, *argv))
        check(code, out, err, E.INTERNAL)
        assert "internal error" in err and "injected bug" in err and "--debug" in err
        code, out, err = run(patched_argv(prelude, "--debug", *argv))
    assert code == E.INTERNAL
    assert "Traceback" in err and "RuntimeError: injected bug" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_while_waiting_for_the_peer_is_130(tmp_path, command):
    with matrix_peer(hang) as (port, peer):
        proc = subprocess.Popen(dcmnet_argv(*command_args(command, port, tmp_path)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=base_env(), stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert peer.requested.wait(15), "the request never arrived"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    check(proc.returncode, out, err, E.INTERRUPTED)


# --------------------------------------------------------------------------- listen

def test_listen_on_a_port_in_use_is_3(tmp_path):
    """The port is taken (a local problem, like an unusable output folder): one line naming it, exit 3."""
    with matrix_peer(answer(0)) as (port, _peer):
        code, out, err = run(dcmnet_argv("listen", "--bind", LOOPBACK, "-od", str(tmp_path), str(port)))
    check(code, out, err, E.INPUT)
    assert any(f"{port}" in line and "in use" in line for line in err.splitlines()), err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listen_stops_on_ctrl_c_or_sigterm_with_0(tmp_path, sig):
    """listen's own help: Ctrl-C or SIGTERM stops accepting, lets in-flight associations finish and
    exits 0 with a summary (stopping a server is its normal end, not an interruption of work)."""
    from helpers.procs import listen_server

    with listen_server("-od", str(tmp_path / "out")) as server:
        code, _out, err = run(dcmnet_argv("echo", LOOPBACK, str(server.port)))
        assert code == 0, err
        server.proc.send_signal(sig)
        assert server.proc.wait(15) == 0, server.stderr()
        assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------- the precedence itself

ORDER = [E.ABORTED, E.REJECTED, E.CONNECT, E.FAILURE, E.CANCELLED, E.INPUT, E.WARNING, E.SUCCESS]
"""DESIGN.md: "the highest-severity wins in this order: 6, 5, 4, 7, 8, 3, 1, 0"."""


@pytest.mark.parametrize("higher", range(len(ORDER)))
def test_combine_precedence_pairwise(higher):
    for lower in ORDER[higher + 1:]:
        assert combine([ORDER[higher], lower]) is ORDER[higher]
        assert combine([lower, ORDER[higher], lower]) is ORDER[higher]


@pytest.mark.parametrize(("codes", "warnings_ok", "expected"), [
    ([], False, E.SUCCESS),
    ([E.SUCCESS], False, E.SUCCESS),
    ([E.WARNING], False, E.WARNING),
    ([E.WARNING], True, E.SUCCESS),
    ([E.WARNING, E.INPUT], True, E.INPUT),
    ([E.WARNING, E.SUCCESS, E.WARNING], False, E.WARNING),
    ([E.INPUT, E.REJECTED], False, E.REJECTED),
    ([E.INPUT, E.FAILURE, E.CANCELLED], False, E.FAILURE),
    ([E.CANCELLED, E.INPUT, E.WARNING], False, E.CANCELLED),
    ([E.CONNECT, E.FAILURE], False, E.CONNECT),
    ([E.ABORTED, E.REJECTED, E.CONNECT], False, E.ABORTED),
    ([E.INTERRUPTED, E.ABORTED], False, E.INTERRUPTED),
    ([E.INTERNAL, E.INTERRUPTED], False, E.INTERNAL),
    ([E.USAGE, E.ABORTED], False, E.USAGE),
    ({E.FAILURE, E.SUCCESS}, False, E.FAILURE),
])
def test_combine_table(codes, warnings_ok, expected):
    assert combine(codes, warnings_ok=warnings_ok) is expected


def test_precedence_lists_every_code_once_and_keeps_design_order():
    assert sorted(PRECEDENCE) == sorted(ExitCode) and len(set(PRECEDENCE)) == len(PRECEDENCE)
    assert [c for c in PRECEDENCE if c in ORDER] == ORDER


@pytest.mark.parametrize(("status", "expected"), [
    (0x0000, E.SUCCESS), (0x0001, E.WARNING), (0x0107, E.WARNING), (0x0116, E.WARNING), (0xB000, E.WARNING),
    (0xB007, E.WARNING), (0xA700, E.FAILURE), (0xA900, E.FAILURE), (0xC000, E.FAILURE), (0x0110, E.FAILURE),
    (0x0122, E.FAILURE), (0x0211, E.FAILURE), (0xFE00, E.CANCELLED), (0xFF00, E.SUCCESS), (0xFF01, E.SUCCESS),
    (0x1234, E.FAILURE),
])
def test_status_to_exit_code(status, expected):
    assert for_status(status) is expected
