"""The association line of ``listen`` says what a query/retrieve association did (issue 11): "1 query",
"1 retrieval", not "0 echoes, 0 stored" alone; the JSON association event carries the same counts."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pydicom

from helpers.procs import LOOPBACK, listen_server, run_dcmnet
from store_helpers import make_file


def test_find_and_get_are_counted_on_the_association_line(tmp_path: Path) -> None:
    source = make_file(tmp_path / "src", "assoc-line")
    with listen_server("-od", str(tmp_path / "pacs"), "-v", "--json") as server:
        port = str(server.port)
        assert run_dcmnet("store", LOOPBACK, port, str(source))[0] == 0
        rc, _out, err = run_dcmnet("find", LOOPBACK, port, "-k", "PatientID", "-k", "StudyInstanceUID")
        assert rc == 0, err
        rc, _out, err = run_dcmnet("find", LOOPBACK, port, "-k", "PatientID", "-k", "StudyInstanceUID")
        assert rc == 0, err
        study = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
        rc, _out, err = run_dcmnet("get", LOOPBACK, port, "-k", f"StudyInstanceUID={study}", "-od", str(tmp_path / "got"))
        assert rc == 0, err
        server.proc.send_signal(signal.SIGTERM)  # in-flight associations finish and log their events
        assert server.proc.wait(15) == 0
        events = [json.loads(line) for line in server.stdout().splitlines() if line.startswith("{")]
    ended = [e for e in events if e["event"] == "association"]
    counts = [(e["queries"], e["retrievals"], e["stored"]) for e in ended]
    assert counts[:3] == [(0, 0, 1), (1, 0, 0), (1, 0, 0)], counts  # the store, then the two finds
    assert sum(retrievals for _, retrievals, _ in counts[3:]) == 1, counts  # get (after its own C-FIND probe)


def test_log_line_names_queries_and_retrievals() -> None:
    from dcmnet_cli.cli.storage_options import log_line
    from dcmnet_cli.services.scp.events import AssociationEnded

    line = log_line(AssociationEnded("127.0.0.1:1", "A", "B", 0, 0, 0, 0, "released", 1.0, 2, 1))
    assert "released, 2 queries, 1 retrieval, 0 echoes, 0 stored" in line
    line = log_line(AssociationEnded("127.0.0.1:1", "A", "B", 1, 3, 0, 10, "released", 1.0))
    assert "released, 1 echo, 3 stored" in line
