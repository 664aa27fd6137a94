"""What a user sees being the same across commands (issue 10, items 8 and 11): the shared --json fields,
option names (old spellings still work, hidden), one usage form for PEER, help in sections with examples,
and named UIDs in the -v association line. Every server binds 127.0.0.1 and is stopped by the test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.procs import LOOPBACK, listen_server, run_dcmnet
from qr_helpers import dcmqrscp_server, uid, write_part10
from storage_helpers import wait_until
from test_move_dcmtk import DATASETS, PORTS, require_tools

SHARED = {"peer": str, "called_ae": str, "calling_ae": str, "status": str, "elapsed_s": float, "exit_code": int}
STATUS = re.compile(r"^0x[0-9A-F]{4}$")
COMMANDS = ("echo", "store", "find", "move", "get", "listen", "nodes", "completion")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[int, str]:
    require_tools()
    destinations = {aet: (LOOPBACK, port) for aet, port in PORTS.items()}
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), DATASETS, move_destinations=destinations) as served:
        yield served


def _shared(obj: dict, command: str) -> None:
    for name, kind in SHARED.items():
        assert name in obj, f"{command} --json lacks {name}: {obj}"
        assert type(obj[name]) is kind, f"{command} --json {name} is {type(obj[name]).__name__}: {obj[name]!r}"
    assert STATUS.match(obj["status"]), obj["status"]
    assert obj["calling_ae"] == "CONSIST"


def _events(server, kind: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in server.stdout().splitlines() if line.startswith("{"))
            if e.get("event") == kind]


def test_json_summaries_share_field_names_and_types(archive, tmp_path: Path) -> None:
    port, aet = archive
    study = uid("s1")
    source = write_part10(tmp_path / "in" / "one.dcm", DATASETS[0])
    with listen_server("--json", "-od", str(tmp_path / "listened")) as server:
        runs = {
            "echo": run_dcmnet("echo", "-aet", "CONSIST", LOOPBACK, str(server.port), "--json"),
            "store": run_dcmnet("store", "-aet", "CONSIST", LOOPBACK, str(server.port), str(source), "--json"),
        }
        assert wait_until(lambda: len(_events(server, "association")) >= 2)
        stored, ended = _events(server, "stored"), _events(server, "association")
    runs["move"] = run_dcmnet("move", "-aet", "CONSIST", "--dest", "DCMNET", "-aec", aet, LOOPBACK, str(port), "--store-port",
                              str(PORTS["DCMNET"]), "--bind", LOOPBACK, "-od", str(tmp_path / "moved"),
                              "-k", f"StudyInstanceUID={study}", "--json", timeout=30)
    runs["get"] = run_dcmnet("get", "-aet", "CONSIST", "-aec", aet, LOOPBACK, str(port), "-od", str(tmp_path / "got"),
                             "-k", f"StudyInstanceUID={study}", "--json", timeout=30)
    for command, (code, out, err) in runs.items():
        assert code == 0, f"{command}: {err}"
        obj = json.loads(out)
        _shared(obj, command)
        assert obj["status"] == "0x0000" and obj["exit_code"] == 0
    # listen: the same names for the same things in its events
    assert stored and stored[0]["status"] == "0x0000" and stored[0]["calling_ae"] == "CONSIST"
    for event in ended:
        assert type(event["elapsed_s"]) is float and "duration_ms" not in event
        assert event["calling_ae"] == "CONSIST" and isinstance(event["called_ae"], str)
        assert isinstance(event["peer"], str)


def test_echo_json_on_error_has_the_shared_fields(tmp_path: Path) -> None:
    from store_helpers import closed_port

    code, out, _ = run_dcmnet("echo", "-aet", "CONSIST", LOOPBACK, str(closed_port()), "--json")
    obj = json.loads(out)
    assert code == 4 and obj["status"] is None and obj["exit_code"] == 4
    assert {k: type(v) for k, v in obj.items() if k in SHARED and k != "status"} == \
        {k: v for k, v in SHARED.items() if k != "status"}


# --------------------------------------------------------------------------- option names and help


def _help(command: str) -> str:
    code, out, err = run_dcmnet(command, "--help")
    assert code == 0, err
    return out


@pytest.mark.parametrize("command", ["echo", "find", "move", "get"])
def test_one_usage_form_for_peer(command: str) -> None:
    usage = _help(command).splitlines()[0]
    assert usage == f"Usage: dcmnet {command} [OPTIONS] PEER"


def test_store_usage() -> None:
    assert _help("store").splitlines()[0] == "Usage: dcmnet store [OPTIONS] PEER PATH..."


@pytest.mark.parametrize("command", ["move", "get"])
def test_find_only_options_are_not_listed_for_retrieves(command: str) -> None:
    text = _help(command)
    assert "-W, --worklist" not in text and "find only" not in text and "--cancel-after-seconds S" in text


def test_cancel_option_names() -> None:
    text = _help("find")
    assert "--cancel-after-matches N" in text
    assert not re.search(r"--cancel-after\b(?!-)", text.split("Examples:")[0].replace("--cancel-after-matches", ""))


def test_old_option_spellings_still_work(tmp_path: Path) -> None:
    """--cancel-after (find) still parses: the run gets past option parsing to the connection (exit 4)."""
    from store_helpers import closed_port

    code, _, err = run_dcmnet("find", LOOPBACK, str(closed_port()), "--cancel-after", "2", "-k", "PatientID=1")
    assert code == 4, err
    code, _, err = run_dcmnet("find", LOOPBACK, "1", "--cancel-after", "0")
    assert code == 2 and "--cancel-after" in err


def test_worklist_refused_by_retrieves_with_a_clear_message(tmp_path: Path) -> None:
    code, _, err = run_dcmnet("move", LOOPBACK, "104", "-W", "-k", "PatientID=1", "--dest", "X")
    assert code == 2 and "find only" in err and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_in_sections_with_examples(command: str) -> None:
    text = _help(command)
    headings = [line for line in text.splitlines() if re.match(r"^[A-Z][A-Za-z ]+:$", line)]
    assert "Output options:" in headings and "Examples:" in headings and "Options:" not in headings
    examples = text.split("Examples:\n", 1)[1].splitlines()
    assert 2 <= len([line for line in examples if line.strip().startswith("dcmnet") or "| dcmnet" in line]) <= 3
    if command not in ("listen", "nodes", "completion"):
        assert "Connection options:" in headings and "TLS options:" in headings
        conn = text.split("Connection options:", 1)[1].split("\n\n", 1)[0]
        assert "--calling-aet" in conn and "--tls-ca" not in conn


# --------------------------------------------------------------------------- named UIDs in -v


def test_verbose_association_line_names_the_syntaxes(tmp_path: Path) -> None:
    with listen_server() as server:
        code, _, err = run_dcmnet("-v", "echo", LOOPBACK, str(server.port))
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("associated with"))
    assert "Verification SOP Class (1.2.840.10008.1.1)" in line
    assert re.search(r"(implicit|explicit) VR little endian \(1\.2\.840\.10008\.1\.2(\.1)?\)", line, re.I), line
