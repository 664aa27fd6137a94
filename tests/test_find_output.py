"""What ``dcmnet find`` shows a person: the table on a terminal (through a real pseudo-terminal at 80 and
120 columns, against DCMTK's dcmqrscp), TSV/CSV/JSON with full values, nothing on stdout before the
association, -v identifier dumps and UIDs by name (against our scripted SCP), -od and the old --write."""

from __future__ import annotations

import csv
import io
import unicodedata

import pytest
from pydicom import Dataset

from dcmnet_cli.cli.main import main
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, run_on_pty
from qr_helpers import dcmqrscp_server, make_datasets, scripted_find_scp, uid

PENDING, SUCCESS = 0xFF00, 0x0000
STUDIES = {uid(name) for name in ("s1", "s2", "s3", "s4")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, dcmtk):
    with dcmqrscp_server(tmp_path_factory.mktemp("qr-output"), make_datasets()) as (port, aet):
        yield port, aet


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def on_terminal(argv: list[str], columns: int) -> tuple[int, str, str]:
    """Run ``argv`` with stdout on a pseudo-terminal ``columns`` wide (no COLUMNS variable)."""
    env = base_env()
    env.pop("COLUMNS", None)
    return run_on_pty(argv, env, columns=columns)


@pytest.mark.parametrize("columns", [80, 120])
def test_table_fits_the_terminal(archive, columns: int) -> None:
    port, aet = archive
    code, out, err = on_terminal(dcmnet_argv("find", "-aec", aet, LOOPBACK, str(port)), columns)
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(cells(line) <= columns for line in lines), "\n" + out
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 4, "\n" + out  # one line per match: no row wraps
    header = [line for line in lines if line.startswith("┃")]
    words = {word for line in header for part in line.split("┃") for word in part.split()}
    known = {"Patient", "Name", "ID", "Study", "Date", "Time", "Accession", "Number", "Description", "Modalities",
             "In", "Of", "Related", "Instances", "Instance", "UID"}
    assert words and words <= known, words  # headers wrap between words, never inside one
    assert "…" in out  # long UIDs shortened on the terminal...
    assert "Study" in out and "Doe^John" in out


def test_tsv_csv_json_carry_full_values_in_k_order(capsys, archive) -> None:
    port, aet = archive
    base = ["find", "-aec", aet, LOOPBACK, str(port), "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "StudyDate"]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert lines[0] == ["StudyInstanceUID", "PatientID", "StudyDate"]
    assert {line[0] for line in lines[1:]} == STUDIES  # ...and whole in TSV
    code, out, err = run(capsys, *base, "--format", "csv")
    assert code == 0, err
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["StudyInstanceUID", "PatientID", "StudyDate"] and {r[0] for r in table[1:]} == STUDIES
    code, out, err = run(capsys, *base, "--format", "json")
    assert code == 0, err
    assert {Dataset.from_json(line).StudyInstanceUID for line in out.splitlines()} == STUDIES


def test_json_and_format_must_agree(capsys) -> None:
    code, out, err = run(capsys, "find", LOOPBACK, str(free_port()), "--json", "--format", "csv")
    assert code == 2 and out == "" and "--json" in err


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json"])
def test_nothing_on_stdout_when_the_connection_is_refused(capsys, fmt: str) -> None:
    code, out, err = run(capsys, "find", LOOPBACK, str(free_port()), "--connect-timeout", "2", "--format", fmt)
    assert code == 4 and out == "", out
    assert "refused" in err


def test_zero_matches_prints_the_header_after_the_query(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, _scp):
        code, out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "-k", "PatientID",
                             "--format", "csv")
    assert code == 0, err
    assert out.splitlines() == ["PatientID"]


def _match() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "X1"
    ds.StudyInstanceUID = "1.2.9"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    return ds


def test_verbose_dumps_the_identifiers_and_names_uids(capsys) -> None:
    with scripted_find_scp(lambda ident: [(PENDING, _match()), (SUCCESS, None)]) as (port, _scp):
        code, out, err = run(capsys, "find", "-v", "-aec", "FINDSCP", LOOPBACK, str(port), "-k", "PatientName=Doe*",
                             "-k", "PatientID")
        assert code == 0, err
        assert "(0010,0010) PN [Doe*]" in err  # the identifier sent
        assert "(0008,0052) CS [STUDY]" in err
        assert "received match 1:" in err and "(0010,0010) PN [Doe^Jane]" in err  # each identifier received
        assert "(0008,0016) UI [1.2.840.10008.5.1.4.1.1.2] = CT Image Storage" in err
        assert "Study Root Query/Retrieve Information Model – FIND (1.2.840.10008.5.1.4.1.2.2.1)" in err
        assert "Doe^Jane" in out
        code, out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "-k", "PatientName=Doe*")
    assert code == 0, err
    assert "(0010,0010)" not in err and "received match" not in err  # only with -v


def test_missing_worklist_context_is_named(capsys, archive) -> None:
    """dcmqrscp has no worklist: it accepts the association and rejects the one context we propose."""
    port, aet = archive
    code, out, err = run(capsys, "find", "-aec", aet, LOOPBACK, str(port), "-W")
    assert code == 5 and out == ""
    assert ("Modality Worklist Information Model – FIND (1.2.840.10008.5.1.4.31): the peer does not support "
            "worklist queries") in err


def test_output_directory_and_the_old_write_alias(capsys, tmp_path) -> None:
    with scripted_find_scp(lambda ident: [(PENDING, _match()), (SUCCESS, None)]) as (port, _scp):
        code, _out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "-od", str(tmp_path / "new"))
        assert code == 0, err
        assert [p.name for p in (tmp_path / "new").iterdir()] == ["rsp00001-1.2.9.dcm"]
        code, _out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "--write", str(tmp_path / "old"))
    assert code == 0, err
    assert "deprecated" in err and [p.name for p in (tmp_path / "old").iterdir()] == ["rsp00001-1.2.9.dcm"]


@pytest.mark.parametrize("args", [("--deadline", "0"), ("--deadline", "-1"), ("--max-identifier", "0")])
def test_limits_must_be_positive(capsys, args) -> None:
    code, out, err = run(capsys, "find", LOOPBACK, str(free_port()), *args)
    assert code == 2 and out == "", err


def test_deadline_bounds_the_whole_query(capsys) -> None:
    """Pending responses keep coming (each restarts -td); --deadline still ends the query (exit 6)."""
    import time

    def slow(ident):
        for _ in range(20):
            time.sleep(0.3)
            yield PENDING, _match()
        yield SUCCESS, None

    with scripted_find_scp(slow) as (port, _scp):
        started = time.monotonic()
        code, _out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "--deadline", "1", "-td", "5")
        elapsed = time.monotonic() - started  # (the scripted SCP itself only stops when its script ends)
    assert code == 6, err
    assert elapsed < 4, (elapsed, err)
    assert "deadline" in err


def test_max_identifier_caps_each_response(capsys) -> None:
    big = _match()
    big.StudyDescription = "x" * 60
    with scripted_find_scp(lambda ident: [(PENDING, big), (SUCCESS, None)]) as (port, _scp):
        code, out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "--max-identifier", "64")
        assert code == 6 and out == "", err
        code, out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "--max-identifier", "4096")
    assert code == 0 and "Doe^Jane" in out, err
