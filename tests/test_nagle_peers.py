"""DCMTK as its users run it: Nagle's algorithm on, its default since 3.6.2 (the rest of the suite gives
DCMTK ``TCP_NODELAY=1``). Such a peer writes a message in parts and holds the next part until the first
is acknowledged; a receiver that delays its ACK (Linux: up to ~40 ms) then stalls every exchange. dcmnet
acknowledges at once (TCP_QUICKACK before each read, transport/channel.py), in both roles.

Measured without a clock: the delayed ACKs this network namespace's kernel sent (``TcpExt: DelayedACKs``
in /proc/net/netstat) over N exchanges stay near zero, where each exchange cost one (and ~40 ms) before.
(dcmqrscp's C-FIND answers to ``dcmnet find`` never waited: a side that only reads acknowledges at once.)
The tests run one at a time, so little else moves the counter; the bound leaves room for a few strays.
Linux only (the option and the counter); 127.0.0.1 only. The TLS case is in tests/test_tls.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.procs import LOOPBACK, free_port, listen_server, run_dcmnet, run_tool, running_server
from helpers.socket_checks import delayed_acks
from storage_helpers import image_dataset, require_tool
from store_helpers import storescp_argv

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK and the counter are Linux's")

COUNT = 40
"""Exchanges per test: before TCP_QUICKACK each cost one delayed ACK (~40 ms)."""
STRAYS = 10
"""Delayed ACKs allowed from anything else on the machine meanwhile, or a starved listener (each of the
COUNT exchanges cost one without TCP_QUICKACK)."""
STUDY = "1.2.826.0.1.3680043.9.7781.99.1"  # image_dataset's


def corpus(folder: Path, count: int = COUNT) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(count):
        path = folder / f"{n:03d}.dcm"
        image_dataset(f"1.2.826.0.1.3680043.9.7781.99.8.{n + 1}", seed=n).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_storescu_with_nagle_into_listen(tmp_path):
    storescu = require_tool("storescu")
    files = corpus(tmp_path / "in")
    out = tmp_path / "out"
    with listen_server("-q", "-od", str(out), "--no-fsync") as server:
        before = delayed_acks()
        code, _stdout, stderr = run_tool([storescu, "-aec", "ANY-SCP", LOOPBACK, str(server.port),
                                          *map(str, files)], timeout=60, nagle=True)
        late = delayed_acks() - before
    assert code == 0, stderr
    assert len(list(out.glob("*.dcm"))) == COUNT
    assert late <= STRAYS, f"{late} delayed ACKs for {COUNT} objects from a Nagle sender"


def test_store_into_storescp_with_nagle(tmp_path):
    require_tool("storescp")
    corpus(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    with running_server(storescp_argv(port, out), port, dcmtk=True, nagle=True):
        before = delayed_acks()
        code, _stdout, stderr = run_dcmnet("store", "-q", "--no-progress", "-aec", "ANY-SCP", LOOPBACK, str(port),
                                           str(tmp_path / "in"), timeout=60)
        late = delayed_acks() - before
    assert code == 0, stderr
    assert len(list(out.iterdir())) == COUNT
    assert late <= STRAYS, f"{late} delayed ACKs for {COUNT} answers from a Nagle receiver"


def test_findscu_with_nagle_against_listen(tmp_path):
    findscu = require_tool("findscu")
    corpus(tmp_path / "in", 3)
    with listen_server("-q", "-od", str(tmp_path / "out"), "--no-fsync") as server:
        code, _stdout, stderr = run_dcmnet("store", "-q", "--no-progress", LOOPBACK, str(server.port),
                                           str(tmp_path / "in"))
        assert code == 0, stderr
        before = delayed_acks()
        code, _stdout, stderr = run_tool([findscu, "-S", "--repeat", str(COUNT), "-k", "QueryRetrieveLevel=STUDY",
                                          "-k", f"StudyInstanceUID={STUDY}", "-k", "NumberOfStudyRelatedInstances",
                                          LOOPBACK, str(server.port)], timeout=60, nagle=True)
        late = delayed_acks() - before
    assert code == 0, stderr
    assert late <= STRAYS, f"{late} delayed ACKs for {COUNT} queries from a Nagle sender"



def test_getscu_with_nagle_from_listen(tmp_path):
    """C-GET: listen sends each object on getscu's association and reads its C-STORE-RSP."""
    getscu = require_tool("getscu")
    corpus(tmp_path / "in")
    got = tmp_path / "got"
    got.mkdir()
    with listen_server("-q", "-od", str(tmp_path / "out"), "--no-fsync") as server:
        code, _stdout, stderr = run_dcmnet("store", "-q", "--no-progress", LOOPBACK, str(server.port),
                                           str(tmp_path / "in"))
        assert code == 0, stderr
        before = delayed_acks()
        code, _stdout, stderr = run_tool([getscu, "-aec", "DCMNET", "-S", "-od", str(got),
                                          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}",
                                          LOOPBACK, str(server.port)], timeout=60, nagle=True)
        late = delayed_acks() - before
    assert code == 0, stderr
    assert len(list(got.iterdir())) == COUNT
    assert late <= STRAYS, f"{late} delayed ACKs for {COUNT} C-STORE answers from a Nagle receiver"
