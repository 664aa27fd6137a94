"""``store --async N``: the Asynchronous Operations Window (PS3.7 D.3.3.3) and pipelined C-STOREs.

The window is negotiated over the in-memory wire; pipelining runs against an SCP that answers out of
order (responses matched by Message ID, statuses still per file), against ``dcmnet listen`` (granted,
every file stored, failures attributed per file) and against DCMTK's storescp (not granted: one at a time,
as before). ``-j auto`` says what it chose with -v.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, MRImageStorage

from dcmnet_cli.dimse.commandset import C_STORE_RQ, c_store_rsp
from dcmnet_cli.services.dicomfiles import DicomFile, read_meta
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity, MessageHandler
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_plan import auto_jobs
from dcmnet_cli.ul.async_window import grant, granted, propose
from dcmnet_cli.ul.association import Association
from dcmnet_cli.ul.items import AsyncOperationsWindow, ImplementationClassUID, MaximumLength
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request
from dcmnet_cli.ul.pdu import AssociateAC

from helpers.procs import listen_server, run_dcmnet
from store_helpers import make_file
from wire import events, memory_peer, pump
from dcmnet_cli.dimse.connection import Role

HOST = "127.0.0.1"
POLICY = AcceptorPolicy(ae_title="SCP", contexts=lambda uid: ALL_UNCOMPRESSED)


# --------------------------------------------------------------------------- negotiation (in-memory wire)


def _negotiate(proposed: int, limit: int) -> tuple[AssociateAC, int]:
    """Requestor proposing ``proposed`` (1: nothing), acceptor (listen's entity) granting up to ``limit``,
    joined by the in-memory wire: the AC the requestor received and the window it may use."""
    rq = propose(build_request("SCP", "SCU", build_contexts([(CTImageStorage, ["1.2.840.10008.1.2.1"])])), proposed)
    req, acc = Association(Role.REQUESTOR), Association(Role.ACCEPTOR)
    acc.connection_made()
    req.request(rq)
    req.connection_made()
    pump(req, acc)
    received = events(acc)[0].request
    answer = ApplicationEntity(POLICY, async_window=limit).negotiate(received, "scu")
    assert isinstance(answer, AssociateAC)
    acc.accept(answer)
    pump(req, acc)
    assert req.is_established
    return req.accept_pdu, granted(req.request_pdu, req.accept_pdu)


def test_window_proposed_and_granted_up_to_the_listener_limit() -> None:
    ac, window = _negotiate(8, 16)
    assert ac.user_info.async_window == AsyncOperationsWindow(8, 1) and window == 8
    ac, window = _negotiate(32, 16)
    assert ac.user_info.async_window == AsyncOperationsWindow(16, 1) and window == 16


def test_no_window_without_a_proposal_or_with_limit_one() -> None:
    for proposed, limit in ((1, 16), (8, 1)):
        ac, window = _negotiate(proposed, limit)
        assert ac.user_info.async_window is None and window == 1


def test_window_sub_item_sits_after_max_length_and_implementation_uid() -> None:
    rq = propose(build_request("SCP", "SCU", build_contexts([(CTImageStorage, ["1.2.840.10008.1.2.1"])])), 4)
    kinds = [type(s) for s in rq.user_info.sub_items][:3]
    assert kinds == [MaximumLength, ImplementationClassUID, AsyncOperationsWindow]
    unlimited = rq._replace(user_info=rq.user_info._replace(sub_items=tuple(
        AsyncOperationsWindow(0, 0) if isinstance(s, AsyncOperationsWindow) else s for s in rq.user_info.sub_items)))
    ac = AssociateAC("SCP", "SCU", rq.user_info._replace(sub_items=()))
    assert grant(unlimited, ac, 5).user_info.async_window == AsyncOperationsWindow(5, 1)
    with pytest.raises(ValueError):
        propose(rq, 0x10000)


# --------------------------------------------------------------------------- out-of-order answers (in memory)


class _Swapping(MessageHandler):
    """Answers C-STOREs in swapped pairs (2, 1, 4, 3, ...): a peer allowed to answer in any order."""

    def __init__(self, scp: "SwappingSCP") -> None:
        self.scp = scp

    def complete(self, dataset: bytes | None) -> None:
        message = self.message
        uid = message.affected_sop_instance_uid
        status = 0xA700 if uid in self.scp.failing else 0x0000
        response = (self.context_id, c_store_rsp(message.message_id, status, message.affected_sop_class_uid, uid))
        with self.scp.lock:
            held, self.scp.held = self.scp.held, None
            if held is None:
                self.scp.held = response
                return
            for context_id, rsp in (response, held):
                self.scp.answered.append(rsp.message_id_being_responded_to)
                self.session.send(context_id, rsp)


class SwappingSCP(ApplicationEntity):
    def __init__(self, failing: set[str]) -> None:
        super().__init__(AcceptorPolicy(ae_title="SWAP", contexts=lambda uid: ALL_UNCOMPRESSED), async_window=4)
        self.handlers[C_STORE_RQ] = lambda: _Swapping(self)
        self.failing, self.lock, self.held, self.answered = failing, threading.Lock(), None, []


def test_out_of_order_responses_are_matched_by_message_id(tmp_path: Path, monkeypatch) -> None:
    paths = [make_file(tmp_path, f"{'bad' if n % 3 == 1 else 'good'}-{n}", rows=8, columns=8) for n in range(6)]
    files = [read_meta(p) for p in paths]
    failing = {f.sop_instance_uid for f in files if "bad" in f.path}
    scp = SwappingSCP(failing)
    with memory_peer(scp, monkeypatch) as failures:
        result = store(Peer(HOST, 104), files, window=4)
    assert not failures
    assert scp.answered == [2, 1, 4, 3, 6, 5]  # really out of order
    assert [(Path(o.path).name, o.status) for o in result.files] == [
        (Path(f.path).name, 0xA700 if "bad" in f.path else 0) for f in files]


# --------------------------------------------------------------------------- against dcmnet listen / storescp


def _mixed(folder: Path, count: int) -> list[Path]:
    """CT and MR files interleaved."""
    return [make_file(folder, f"async-{n}", sop_class=CTImageStorage if n % 2 else MRImageStorage, rows=8, columns=8)
            for n in range(count)]


def test_async_into_listen_stores_everything_and_attributes_failures(tmp_path: Path) -> None:
    sources = _mixed(tmp_path / "in", 24)
    out = tmp_path / "out"
    out.mkdir()
    (out / "CT").write_text("a file where the CT folder would go: every CT object fails, MR ones are stored")
    with listen_server("-od", str(out), "--no-fsync", "--filepath", "{Modality}/{SOPInstanceUID}.dcm") as server:
        code, stdout, err = run_dcmnet("store", "-v", "--async", "8", "--json", HOST, str(server.port),
                                       str(tmp_path / "in"))
    assert "the peer granted 8" in err, err
    assert code == 7, err
    by_name = {Path(e["path"]).name: e for e in json.loads(stdout)["files"]}
    assert len(by_name) == 24
    for path in sources:
        entry = by_name[path.name]
        modality = "CT" if read_meta(path).sop_class_uid == CTImageStorage else "MR"
        assert (entry["status"] != "0x0000", entry["exit_code"]) == ((True, 7) if modality == "CT" else (False, 0)), entry
    assert len(list((out / "MR").glob("*.dcm"))) == 12


def test_async_into_listen_all_files(tmp_path: Path) -> None:
    sources = _mixed(tmp_path / "in", 30)
    with listen_server("-od", str(tmp_path / "out"), "--no-fsync", "--async-window", "4") as server:
        code, _, err = run_dcmnet("store", "-v", "--async", "8", HOST, str(server.port), str(tmp_path / "in"))
    assert code == 0, err
    assert "proposed 8, the peer granted 4" in err
    assert len(list((tmp_path / "out").glob("*.dcm"))) == len(sources)


def test_async_against_storescp_is_not_granted_and_works_as_before(storescp, tmp_path: Path) -> None:
    sources = _mixed(tmp_path / "in", 10)
    port, out = storescp()
    code, _, err = run_dcmnet("store", "-v", "--async", "8", HOST, str(port), str(tmp_path / "in"))
    assert code == 0, err
    assert "the peer granted 1 (one request at a time)" in err
    assert len(list(out.glob("*"))) == len(sources)


# --------------------------------------------------------------------------- -j auto


def test_jobs_auto_says_what_it_chose(storescp, tmp_path: Path) -> None:
    _mixed(tmp_path / "in", 4)
    port, out = storescp()
    code, _, err = run_dcmnet("store", "-v", "-j", "auto", HOST, str(port), str(tmp_path / "in"))
    assert code == 0, err
    assert "-j auto: 1 association for 4 files" in err
    assert len(list(out.iterdir())) == 4
    code, _, err = run_dcmnet("store", "-j", "lots", HOST, str(port), str(tmp_path / "in"))
    assert code == 2 and "'lots' is not a number from 1 to 64 or 'auto'" in err


def test_auto_jobs_rule() -> None:
    def files(count: int, size: int) -> list[DicomFile]:
        return [DicomFile(f"f{n}", CTImageStorage, f"1.2.{n}", "1.2.840.10008.1.2.1", 132, 132 + size) for n in range(count)]

    assert auto_jobs(files(500, 10_000), 8, False) == 1  # small objects: one association
    assert auto_jobs(files(100, 500_000), 8, False) == 8
    assert auto_jobs(files(100, 500_000), 8, True) == 4  # the peer shares our CPUs
    assert auto_jobs(files(100, 500_000), 32, False) == 8  # at most 8
    assert auto_jobs(files(3, 50_000_000), 8, False) == 3  # one per file
    assert auto_jobs(files(100, 500_000), 1, True) == 1


def test_pipelined_requests_leave_together(tmp_path: Path, monkeypatch) -> None:
    """With a window, requests held in memory go out with the next flush: fewer writes than requests."""
    from dcmnet_cli.transport.channel import Driver

    writes: list[str] = []
    original = Driver._write

    def counting(self, buffers) -> None:  # type: ignore[no-untyped-def]
        writes.append(self.peer)
        original(self, buffers)

    monkeypatch.setattr(Driver, "_write", counting)
    files = [read_meta(make_file(tmp_path, f"held-{n}", rows=8, columns=8)) for n in range(8)]
    with memory_peer(SwappingSCP(set()), monkeypatch) as failures:
        result = store(Peer(HOST, 104), files, window=4)
    assert not failures and [o.status for o in result.files] == [0] * 8
    ours = writes.count(f"{HOST}:104")  # the A-ASSOCIATE-RQ, the requests, the A-RELEASE-RQ
    assert ours <= 2 + 8 // 2, writes
