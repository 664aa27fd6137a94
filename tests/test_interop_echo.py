"""``dcmnet echo`` and ``dcmnet listen`` against DCMTK and scripted peers, and the exit-code contract.

Every peer is on 127.0.0.1. Each exit code of DESIGN.md that echo can produce is provoked against a real
peer: a DCMTK tool, a ``dcmnet listen`` process, or a raw-socket thread that plays scripted PDUs.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time

import pytest

from dcmnet_cli.dimse.commandset import VERIFICATION_SOP_CLASS
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED
from dcmnet_cli.ul.items import ContextResult, PresentationContextAC, PresentationContextRQ
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import Abort, AssociateAC, ReleaseRQ

from helpers.procs import (
    LOOPBACK,
    base_env,
    dcmnet_argv,
    free_port,
    listen_server,
    run_dcmnet,
    run_tool,
    running_server,
    stop_process,
    _default_sigint,
)
from helpers.rawdicom import (
    CT_IMAGE_STORAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    ScriptedPeer,
    echo_rsp_bytes,
    read_command,
    read_pdu,
    release,
)

PEER_POLICY = AcceptorPolicy(ae_title="RAWPEER", contexts={VERIFICATION_SOP_CLASS: ALL_UNCOMPRESSED})


def one_error_line(err: str, *needles: str) -> str:
    """stderr holds exactly one clear error line (no traceback) containing every needle."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    line = lines[0]
    assert line.startswith("dcmnet echo: error:"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def storescp(dcmtk):
    port = free_port()
    with running_server([dcmtk["storescp"], "--ignore", str(port)], port, dcmtk=True) as server:
        yield server


@pytest.fixture(scope="module")
def storescp_refuse(dcmtk):
    port = free_port()
    with running_server([dcmtk["storescp"], "--refuse", str(port)], port, dcmtk=True) as server:
        yield server


@pytest.fixture(scope="module")
def listener():
    with listen_server("--artim-timeout", "2", "--verify-only") as server:
        yield server


@pytest.fixture(scope="module")
def strict_listener():
    with listen_server("--artim-timeout", "2", "--require-called-aet", "-aet", "NODE",
                       "--allow-calling-aet", "GOOD") as server:
        yield server


# --------------------------------------------------------------------------- dcmnet echo -> DCMTK storescp


def test_echo_to_storescp(storescp):
    rc, out, err = run_dcmnet("echo", LOOPBACK, str(storescp.port))
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and re.search(r": Success in [0-9.]+ ms$", lines[0]), out
    assert err == ""


def test_echo_count_ping_statistics(storescp):
    rc, out, err = run_dcmnet("echo", "--count", "3", f"{LOOPBACK}:{storescp.port}")
    assert rc == 0, err
    lines = out.splitlines()
    assert [int(m) for line in lines for m in re.findall(r"seq=(\d+) Success", line)] == [1, 2, 3], out
    stats = re.search(r"rtt min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+) ms", out)
    assert stats, out
    low, avg, high = map(float, stats.groups())
    assert 0 <= low <= avg <= high
    assert "3 echoes" in out


def test_echo_json(storescp):
    rc, out, err = run_dcmnet("echo", "--json", "--count", "2", "--interval", "0.01", LOOPBACK, str(storescp.port))
    assert rc == 0, err
    report = json.loads(out)
    assert report["exit_code"] == 0
    assert report["statuses"] == ["0x0000", "0x0000"]
    assert len(report["rtt_ms"]) == 2 and report["called_ae"] == "ANY-SCP"


# --------------------------------------------------------------------------- DCMTK echoscu -> dcmnet listen


@pytest.mark.parametrize("extra", [[], ["-pdu", "4096"], ["-pdu", "131072"], ["--propose-pc", "128", "--propose-ts", "38"]],
                         ids=["default", "pdu4096", "pdu131072", "128pc-38ts"])
def test_echoscu_to_listen(dcmtk, listener, extra):
    rc, out, err = run_tool([dcmtk["echoscu"], "-d", *extra, LOOPBACK, str(listener.port)])
    log = out + err
    assert rc == 0, log
    assert "Association Accepted" in log and "Received Echo Response (Success)" in log, log
    # The AC as echoscu decoded it: every proposed context is Verification, so every one is accepted.
    ac = log.split("BEGIN A-ASSOCIATE-AC", 1)[1].split("END A-ASSOCIATE-AC", 1)[0]
    proposed = 128 if "--propose-pc" in extra else 1
    assert ac.count("(Accepted)") == proposed, ac
    assert "(Rejected" not in ac
    assert ac.count("Abstract Syntax: =VerificationSOPClass") == proposed
    if "-pdu" in extra:
        assert f"Our Max PDU Receive Size:    {extra[1]}" in ac
    assert listener.alive()


def test_listen_accepts_verification_only(listener):
    """Verification plus CT Image Storage: result 0 for Verification, 3 (abstract syntax) for CT."""
    rq = build_request("ANY-SCP", "RAWPEER", (
        PresentationContextRQ(1, VERIFICATION_SOP_CLASS, (EXPLICIT_LE, IMPLICIT_LE)),
        PresentationContextRQ(3, CT_IMAGE_STORAGE, (EXPLICIT_LE, IMPLICIT_LE)),
    ))
    with socket.create_connection((LOOPBACK, listener.port), timeout=2) as sock:
        sock.sendall(rq.encode())
        ac = read_pdu(sock)
        assert isinstance(ac, AssociateAC), ac
        results = {c.context_id: c.result for c in ac.presentation_contexts}
        assert results == {1: ContextResult.ACCEPTANCE, 3: ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED}
        accepted = next(c for c in ac.presentation_contexts if c.context_id == 1)
        assert accepted.transfer_syntax in (EXPLICIT_LE, IMPLICIT_LE)
        release(sock)


def test_echo_to_listen(listener):
    mark = listener.mark()
    rc, out, err = run_dcmnet("echo", "--count", "2", LOOPBACK, str(listener.port))
    assert rc == 0, err
    assert "min/avg/max" in out
    assert listener.wait_for_stderr("DCMNET -> ANY-SCP: released, 2 echoes", since=mark)


# --------------------------------------------------------------------------- exit 4: cannot connect


def test_exit4_connection_refused():
    port = free_port()  # nothing listens there
    rc, out, err = run_dcmnet("echo", LOOPBACK, str(port))
    assert rc == 4
    assert out == ""
    one_error_line(err, "refused")


def test_exit4_connect_timeout_full_backlog():
    """A loopback listener that never accepts and whose queue is full drops further SYNs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect((LOOPBACK, port))
            except BlockingIOError:
                pass
        time.sleep(0.05)
        start = time.monotonic()
        rc, out, err = run_dcmnet("echo", "--connect-timeout", "1", LOOPBACK, str(port), timeout=10)
        elapsed = time.monotonic() - start
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert rc == 4, err
    assert elapsed < 4, elapsed
    one_error_line(err, "timed out")


# --------------------------------------------------------------------------- exit 5: rejected


def test_exit5_storescp_refuse(storescp_refuse):
    rc, out, err = run_dcmnet("echo", LOOPBACK, str(storescp_refuse.port))
    assert rc == 5
    one_error_line(err, "rejected", "hint")


def test_exit5_wrong_called_aet(strict_listener):
    rc, out, err = run_dcmnet("echo", "-aet", "GOOD", "-aec", "WRONG", LOOPBACK, str(strict_listener.port))
    assert rc == 5
    one_error_line(err, "called AE title", "hint", "-aec")


def test_exit5_calling_aet_not_allowed(strict_listener):
    rc, out, err = run_dcmnet("echo", "-aet", "STRANGER", f"NODE@{LOOPBACK}:{strict_listener.port}")
    assert rc == 5
    one_error_line(err, "calling AE", "hint")
    rc, out, err = run_dcmnet("echo", "-aet", "GOOD", f"NODE@{LOOPBACK}:{strict_listener.port}")
    assert rc == 0, err


def test_exit5_no_context_accepted():
    """An AC that accepts nothing usable: no presentation context for Verification."""

    def script(conn):
        raw = read_pdu(conn)
        ac = negotiate_acceptor(raw, PEER_POLICY)
        refused = tuple(PresentationContextAC(c.context_id, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)
                        for c in ac.presentation_contexts)
        conn.sendall(AssociateAC(ac.called_ae, ac.calling_ae, ac.user_info, presentation_contexts=refused).encode())
        peer.drain_until_closed(conn)

    with ScriptedPeer(script) as peer:
        rc, out, err = run_dcmnet("echo", "-ta", "10", LOOPBACK, str(peer.port))
    assert not peer.errors, peer.errors
    assert rc == 5
    one_error_line(err, "no presentation context")


# --------------------------------------------------------------------------- exit 6: aborted / timed out


def _accept(conn) -> AssociateAC:
    rq = read_pdu(conn)
    ac = negotiate_acceptor(rq, PEER_POLICY)
    assert isinstance(ac, AssociateAC)
    conn.sendall(ac.encode())
    return ac


@pytest.mark.parametrize("same_segment", [True, False], ids=["ac+abort-one-segment", "abort-after-echo-rq"])
def test_exit6_peer_aborts_after_accept(same_segment):
    def script(conn):
        rq = read_pdu(conn)
        ac = negotiate_acceptor(rq, PEER_POLICY)
        if same_segment:  # the client reads AC and A-ABORT in one recv, before it sends anything
            conn.sendall(ac.encode() + Abort(0, 0).encode())
        else:
            conn.sendall(ac.encode())
            read_command(conn)
            conn.sendall(Abort(0, 0).encode())
        peer.drain_until_closed(conn)

    with ScriptedPeer(script) as peer:
        start = time.monotonic()
        rc, out, err = run_dcmnet("echo", "-ta", "10", "-td", "10", LOOPBACK, str(peer.port))
        elapsed = time.monotonic() - start
    assert not peer.errors, peer.errors
    assert rc == 6, err
    assert elapsed < 5  # the abort ended it, not a timeout
    one_error_line(err, "abort")


def _echo_against(script, *flags: str) -> tuple[int, str, float]:
    """Run ``dcmnet echo FLAGS`` against a scripted peer; returns (exit code, stderr, seconds taken)."""
    with ScriptedPeer(lambda conn: script(peer, conn)) as peer:
        start = time.monotonic()
        rc, _out, err = run_dcmnet("echo", *flags, LOOPBACK, str(peer.port))
        elapsed = time.monotonic() - start
    assert not peer.errors, peer.errors
    return rc, err, elapsed


def test_exit6_silent_peer_dimse_timeout():
    def script(peer, conn):
        _accept(conn)
        peer.drain_until_closed(conn)  # reads the C-ECHO-RQ and never answers

    rc, err, elapsed = _echo_against(script, "-td", "1")
    assert rc == 6, err
    assert 0.9 < elapsed < 5, elapsed
    one_error_line(err, "DIMSE timeout")


def test_exit6_no_answer_to_associate_rq():
    def script(peer, conn):
        peer.drain_until_closed(conn)  # TCP accepted, A-ASSOCIATE-RQ never answered

    rc, err, elapsed = _echo_against(script, "-ta", "1")
    assert rc == 6, err
    assert 0.9 < elapsed < 5, elapsed
    one_error_line(err, "ACSE timeout")


def test_exit6_no_answer_to_release_rq():
    def script(peer, conn):
        _accept(conn)
        request = read_command(conn)
        conn.sendall(echo_rsp_bytes(1, request.message_id))
        assert isinstance(read_pdu(conn), ReleaseRQ)
        peer.drain_until_closed(conn)  # never sends A-RELEASE-RP

    rc, err, elapsed = _echo_against(script, "-ta", "1")
    assert rc == 6, err
    assert elapsed < 5, elapsed
    one_error_line(err, "A-RELEASE-RP")


def test_exit6_malformed_pdu_from_peer():
    """Garbage after the AC: dcmnet aborts (protocol error) and exits 6."""

    def script(conn):
        _accept(conn)
        read_command(conn)
        conn.sendall(b"\x42\x00\x00\x00\x00\x04abcd")
        peer.drain_until_closed(conn)

    with ScriptedPeer(script) as peer:
        rc, out, err = run_dcmnet("echo", "-td", "2", LOOPBACK, str(peer.port))
    assert not peer.errors, peer.errors
    assert rc == 6, err
    one_error_line(err)


# --------------------------------------------------------------------------- exit 2: usage


@pytest.mark.parametrize("args", [
    ["echo", "--bogus-flag", LOOPBACK, "104"],
    ["echo", LOOPBACK, "99999"],
    ["echo", LOOPBACK, "0"],
    ["echo", LOOPBACK, "port"],
    ["echo", LOOPBACK],
    ["echo", f"{LOOPBACK}:"],
    ["echo", "a", "b", "c"],
    ["echo", f"MUCH-TOO-LONG-AE-TITLE@{LOOPBACK}:104"],
    ["echo", "-aec", "BAD\\AET", LOOPBACK, "104"],
    ["echo", "--count", "0", LOOPBACK, "104"],
    ["echo", "--connect-timeout", "-1", LOOPBACK, "104"],
    ["echo"],
    ["listen", "70000"],
], ids=lambda a: " ".join(a))
def test_exit2_usage(args):
    rc, out, err = run_dcmnet(*args)
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    assert "Error:" in err
    assert out == ""


# --------------------------------------------------------------------------- exit 130: Ctrl-C


def _read_line_within(proc, timeout: float) -> str:
    """The next stdout line of ``proc`` (text mode), or fail after ``timeout`` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout:g} s"
    return proc.stdout.readline()


def test_exit130_sigint(listener):
    proc = subprocess.Popen(dcmnet_argv("echo", "--count", "1000", "--interval", "0.05", LOOPBACK, str(listener.port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=base_env(), preexec_fn=_default_sigint)
    try:
        first = _read_line_within(proc, 10.0)  # wait for the first answer instead of sleeping
        assert "seq=1 Success" in first, first  # it was really echoing when interrupted
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        stop_process(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    # The listener saw the association end and still serves.
    rc, _, err = run_dcmnet("echo", LOOPBACK, str(listener.port))
    assert rc == 0, err
