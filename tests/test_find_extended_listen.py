"""SOP Class Extended Negotiation for C-FIND, granted by ``dcmnet listen`` (PS3.4 C.5.1.1.1, Table C.5-1;
services/scp/find_extended.py): fuzzy semantic PN matching and combined date-time matching, asked by our
own ``dcmnet find`` (DCMTK's findscu has no flag for them), granted in the A-ASSOCIATE-AC and honoured by
the query; without them the same query is matched literally. 127.0.0.1 only."""

from __future__ import annotations

import json

import pytest

from helpers.procs import LOOPBACK, listen_server, run_dcmnet
from store_helpers import make_dataset, write

AET = "ARCHIVE"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A listen -od holding one CT of "Doe^Jane", StudyDate 20240102, StudyTime 101500."""
    folder = tmp_path_factory.mktemp("src")
    ds = make_dataset("extended-negotiation", rows=8, columns=8)
    ds.PatientName = "Doe^Jane"
    with listen_server("-aet", AET, "-od", str(tmp_path_factory.mktemp("od"))) as server:
        code, out, err = run_dcmnet("store", f"{AET}@{LOOPBACK}:{server.port}", str(write(folder / "ct.dcm", ds)))
        assert code == 0, out + err
        yield server.port


def find(port: int, *args: str) -> tuple[int, list[dict], str]:
    code, out, err = run_dcmnet("-v", "find", "-aec", AET, LOOPBACK, str(port), "-S", "-L", "STUDY", "--json",
                                "-k", "StudyInstanceUID", *args, timeout=30)
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def accepted_line(err: str) -> str:
    return next(line for line in err.splitlines() if "extended negotiation" in line)


def test_fuzzy_person_name_matching_is_granted_and_used(archive) -> None:
    code, matches, err = find(archive, "-k", "PatientName=DOE^jane", "--fuzzy")
    assert code == 0, err
    assert len(matches) == 1, err
    assert "fuzzy" in accepted_line(err).split("accepted", 1)[1], err
    code, matches, err = find(archive, "-k", "PatientName=DOE^jane")  # not asked: PN matching is exact
    assert code == 0 and matches == [], err


def test_combined_date_time_matching_is_granted_and_used(archive) -> None:
    """20240101-20240103 with 1200-1300: one range from 1 Jan 12:00 to 3 Jan 13:00 when combined
    (2 Jan 10:15 is inside); a date range and a separate time range otherwise (10:15 is not in 12-13)."""
    keys = ("-k", "StudyDate=20240101-20240103", "-k", "StudyTime=1200-1300")
    code, matches, err = find(archive, *keys, "--datetime-matching")
    assert code == 0, err
    assert len(matches) == 1, err
    assert "datetime-matching" in accepted_line(err).split("accepted", 1)[1], err
    code, matches, err = find(archive, *keys)
    assert code == 0 and matches == [], err


@pytest.mark.parametrize("asked, granted", [
    (b"\x01", b"\x01"),  # relational only
    (b"\x00\x01\x01", b"\x00\x01\x01"),  # combined date-time and fuzzy PN
    (b"\x01\x01\x01\x01", b"\x01\x01\x01\x00"),  # timezone query adjustment refused
    (b"\x02\x01\x01\x00\x01\x01", b"\x00\x01\x01\x00\x00"),  # only 1 means "asked"; at most 5 bytes answered
])
def test_extended_reply_bytes(asked: bytes, granted: bytes) -> None:
    from dcmnet_cli.services.scp.find_extended import extended_reply

    assert extended_reply(asked) == granted
