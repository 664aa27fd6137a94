"""The likely cause of a failed C-MOVE, named against DCMTK's dcmqrscp (127.0.0.1 only, always stopped):
its HostTable sends AE DCMNET to a port where nobody listens, and knows no AE ELSEWHERE."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.procs import LOOPBACK, free_port, run_dcmnet
from qr_helpers import dcmqrscp_server, make_datasets, uid
from test_move_dcmtk import require_tools

WRONG_PORT = free_port()  # where dcmqrscp believes DCMNET listens: nothing does


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[int, str]:
    require_tools()
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), make_datasets(),
                         move_destinations={"DCMNET": (LOOPBACK, WRONG_PORT)}) as served:
        yield served


def test_store_port_nothing_arrived_names_the_peer_entry(archive, tmp_path: Path) -> None:
    port, aet = archive
    store_port = free_port()
    code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--store-port", str(store_port), "--bind",
                              LOOPBACK, "-od", str(tmp_path), "-k", f"StudyInstanceUID={uid('s1')}")
    assert code == 7, err
    assert "3 failed" in err or "failed" in err
    assert (f"no association arrived on :{store_port}; check that {aet}'s entry for AE DCMNET points at this host "
            f"and port {store_port}") in err, err


def test_unknown_destination_names_the_ae(archive) -> None:
    port, aet = archive
    code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--dest", "ELSEWHERE",
                              "-k", f"StudyInstanceUID={uid('s1')}")
    assert code == 7, err
    assert "0xA801" in err and "hint: the peer does not know AE ELSEWHERE: add ELSEWHERE" in err and aet in err, err
