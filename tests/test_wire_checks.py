"""What goes on the wire, checked on the wire (issue 15): the peer records what it received.

- ``echo --abort`` ends with an A-ABORT PDU (and without it, an A-RELEASE-RQ): a raw peer reads the PDUs.
- ``find --cancel-after-matches N`` sends a C-CANCEL-RQ for its own request after N matches: the scripted
  C-FIND SCP waits for it and answers Cancel (0xFE00) only when it arrived.
- ``-q`` prints nothing at all on success, for every command (find keeps its data on stdout: the TSV
  header of zero matches), and still prints the error on failure.
- ``store`` against DCMTK storescp's own fault options (``--abort-during``, ``--abort-after``,
  ``--sleep-during``): abort → 6, retries reconnect exactly ``--retries`` times, a DIMSE timeout → 6.
"""

from __future__ import annotations

import re
import time

import pytest
from helpers.inprocess import in_process
from helpers.matrix_peer import CT, STUDY, Handler, answer, matrix_peer
from helpers.procs import LOOPBACK, run_dcmnet
from helpers.rawdicom import ScriptedPeer, echo_rsp_bytes, read_command, read_pdu
from pydicom import Dataset
from store_helpers import make_file

from dcmnet_cli.dimse.assembler import CommandReceived
from dcmnet_cli.dimse.commandset import C_CANCEL_RQ, C_ECHO_RQ, VERIFICATION_SOP_CLASS, c_find_rsp
from dcmnet_cli.services.query import encode_identifier
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED
from dcmnet_cli.ul.negotiation import AcceptorPolicy, negotiate_acceptor
from dcmnet_cli.ul.pdu import Abort, AssociateAC, ReleaseRP, ReleaseRQ

RAW_POLICY = AcceptorPolicy(ae_title="RAWPEER", contexts={VERIFICATION_SOP_CLASS: ALL_UNCOMPRESSED})


# --------------------------------------------------------------------------- echo --abort

@pytest.mark.parametrize("flag", ["--abort", None])
def test_echo_abort_sends_a_abort_on_the_wire(flag):
    seen: list[object] = []

    def script(conn):
        ac = negotiate_acceptor(read_pdu(conn), RAW_POLICY)
        assert isinstance(ac, AssociateAC)
        conn.sendall(ac.encode())
        request = read_command(conn)
        assert request.command_field == C_ECHO_RQ
        conn.sendall(echo_rsp_bytes(ac.presentation_contexts[0].context_id, request.message_id))
        last = read_pdu(conn, 5.0)
        seen.append(last)
        if isinstance(last, ReleaseRQ):
            conn.sendall(ReleaseRP().encode())
        peer.drain_until_closed(conn)

    with ScriptedPeer(script) as peer:
        code, _out, err = run_dcmnet("echo", *([flag] if flag else []), LOOPBACK, str(peer.port))
    assert not peer.errors, peer.errors
    assert code == 0, err
    assert len(seen) == 1 and isinstance(seen[0], Abort if flag else ReleaseRQ), seen


# --------------------------------------------------------------------------- find --cancel-after-matches

def _matches_until_cancel(count: int, wait: float = 3.0):
    """Send ``count`` pending matches, then wait up to ``wait`` s for a C-CANCEL-RQ: 0xFE00 when it came
    (and record it), else 0x0000 after sending nothing more."""
    def script(h: Handler) -> None:
        channel = h.session.driver
        syntax = channel.assoc.contexts[h.context_id].transfer_syntax
        for n in range(count):
            ds = Dataset()
            ds.QueryRetrieveLevel, ds.StudyInstanceUID, ds.PatientID = "STUDY", f"{STUDY}.{n}", f"P{n}"
            channel.send_message(h.context_id, c_find_rsp(h.message.message_id, 0xFF00, h.message.affected_sop_class_uid,
                                                          has_dataset=True), encode_identifier(ds, syntax))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = channel.next_event(left)
            except Exception:  # noqa: BLE001 - the wait ran out
                break
            if event is None:
                break
            if isinstance(event, CommandReceived) and event.message.command_field == C_CANCEL_RQ:
                h.peer.cancels.append(event.message.message_id_being_responded_to)
                break
        h.status(0xFE00 if h.peer.cancels else 0x0000)
    return script


@pytest.mark.parametrize("option", ["--cancel-after-matches", "--cancel-after"])
def test_find_cancel_after_matches_sends_c_cancel_rq(option):
    with matrix_peer(_matches_until_cancel(5)) as (port, peer):
        peer.cancels = []
        code, out, err = run_dcmnet("find", "-aec", "MATRIX", LOOPBACK, str(port), "-k", "PatientID", option, "2")
    assert peer.cancels == [1], "no C-CANCEL-RQ for the C-FIND-RQ (message 1) reached the peer"
    assert code == 0, err  # a cancel we asked for, confirmed with 0xFE00
    assert out.count("P0") == 1 and "P1" in out and "P2" not in out, out


def test_find_without_cancel_sends_none():
    with matrix_peer(_matches_until_cancel(3, wait=1.0)) as (port, peer):
        peer.cancels = []
        code, out, err = run_dcmnet("find", "-aec", "MATRIX", LOOPBACK, str(port), "-k", "PatientID")
    assert peer.cancels == [] and code == 0, err
    assert all(f"P{n}" in out for n in range(3))


# --------------------------------------------------------------------------- -q

def _quiet_args(command: str, port: int, tmp_path) -> list[str]:
    peer = ["-aec", "MATRIX", LOOPBACK, str(port)]
    return {
        "echo": ["echo", *peer],
        "store": ["store", *peer, str(make_file(tmp_path / "in", "quiet"))],
        "find": ["find", *peer, "-k", "PatientID=NOBODY"],
        "move": ["move", *peer, "--dest", "ELSEWHERE", "-k", f"StudyInstanceUID={STUDY}"],
        "get": ["get", *peer, "-od", str(tmp_path / "got"), "--storage-class", CT, "-k", f"StudyInstanceUID={STUDY}"],
    }[command]


@pytest.mark.parametrize("command", ["echo", "store", "find", "move", "get"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_nothing_on_success(tmp_path, capsys, monkeypatch, command, where):
    run_dcmnet = in_process(capsys, monkeypatch)
    with matrix_peer(answer(0x0000, remaining=0, completed=0, failed=0, warning=0)) as (port, peer):
        args = _quiet_args(command, port, tmp_path)
        argv = ["-q", *args] if where == "before" else [args[0], "-q", *args[1:]]
        code, out, err = run_dcmnet(*argv)
        assert peer.received, "the request never reached the peer"
        if command == "find":  # stdout is find's data (a TSV when piped: its header, no match): only logs go
            out = "".join(line for line in out.splitlines(True) if not line.startswith("PatientID\t"))
        assert (code, out, err) == (0, "", "")
        code, out, err = run_dcmnet(*args)  # the same without -q says something
    assert code == 0 and (out or err)


@pytest.mark.parametrize("command", ["echo", "store", "find"])
def test_quiet_still_prints_the_error(tmp_path, capsys, monkeypatch, command):
    run_dcmnet = in_process(capsys, monkeypatch)
    with matrix_peer(answer(0xA700)) as (port, _peer):
        code, out, err = run_dcmnet("-q", *_quiet_args(command, port, tmp_path))
    assert code == 7
    assert out == "" or command == "find" and out.startswith("PatientID\t") and out.count("\n") == 1, out
    assert "A700" in err.upper(), err


# --------------------------------------------------------------------------- storescp's own faults

def _attempts(err: str) -> int:
    return 1 + len(re.findall(r"retrying in", err))


def test_store_to_storescp_aborting_during_receipt_exits_6_after_its_retries(storescp, tmp_path):
    port, _out = storescp("--abort-during")  # storescp may keep its own partial file: not ours to judge
    src = make_file(tmp_path / "in", "abort-during")
    code, _out, err = run_dcmnet("store", "--retries", "2", "--retry-delay", "0.05", LOOPBACK, str(port), str(src))
    assert code == 6, err
    assert _attempts(err) == 3, err
    assert "aborted" in err and "Traceback" not in err
    assert "stored 0 of 1 files" in err, err


def test_store_to_storescp_aborting_after_receipt_exits_6_without_retries(storescp, tmp_path):
    port, out = storescp("--abort-after")
    src = make_file(tmp_path / "in", "abort-after")
    code, _out, err = run_dcmnet("store", LOOPBACK, str(port), str(src))
    assert code == 6, err
    assert _attempts(err) == 1 and "aborted by the peer" in err, err


def test_store_to_storescp_sleeping_during_receipt_hits_the_dimse_timeout(storescp, tmp_path):
    port, _out = storescp("--sleep-during", "10")  # far longer than -td 1 plus a slow start-up under load
    src = make_file(tmp_path / "in", "sleep-during")
    started = time.monotonic()
    code, _out, err = run_dcmnet("store", "-td", "1", LOOPBACK, str(port), str(src))
    elapsed = time.monotonic() - started
    assert code == 6, err
    assert "timeout" in err.lower() and "Traceback" not in err
    assert elapsed < 7, f"took {elapsed:.1f} s: the 1 s DIMSE timeout did not end the wait"
