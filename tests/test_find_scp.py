"""``dcmnet listen`` as a C-FIND SCP (issue 11), on 127.0.0.1: DCMTK findscu (-P and -S, every level)
against listen and against dcmqrscp holding the same data, answers compared; our own ``dcmnet find``;
computed attributes; character sets; wrong levels; C-CANCEL; --read-only; --case-insensitive-names.

Half of the data is placed in the folder before listen starts (reconciliation indexes it: "listen -od DIR
on a folder that already holds DICOM files serves them"), the other half (the UTF-8 and Japanese
patients) is stored over the network with storescu.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from helpers.procs import LOOPBACK, listen_server, run_dcmnet, run_tool
from qr_helpers import JAPANESE_NAME, UTF8_NAME, dcmqrscp_server, load_into, make_datasets, uid, write_part10

AET = "DCMNET"


def require_tools() -> None:
    if not all(shutil.which(t) for t in ("dcmqrscp", "storescu", "findscu")):
        import os

        message = "DCMTK dcmqrscp/storescu/findscu not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, dcmtk):
    """(listen port, dcmqrscp (port, aet), listen's folder), both holding make_datasets()."""
    require_tools()
    root = tmp_path_factory.mktemp("findscp")
    store = root / "store"
    datasets = make_datasets()
    for n, ds in enumerate(datasets[:5]):
        write_part10(store / "pre" / f"{n}.dcm", ds)
    late = [write_part10(root / "late" / f"{n}.dcm", ds) for n, ds in enumerate(datasets[5:])]
    with listen_server("-aet", AET, "-od", str(store)) as listen, dcmqrscp_server(root, datasets) as qr:
        load_into(listen.port, AET, late)
        yield listen.port, qr, store


def findscu(port: int, aet: str, out: Path, model: str, *keys: str, extra: tuple[str, ...] = ()) -> tuple[list, str]:
    """findscu's responses (pydicom Datasets, from -X files) and its log."""
    out.mkdir(parents=True)
    argv = ["findscu", "-v", model, "-aec", aet, "-X", "-od", str(out), *extra]
    for key in keys:
        argv += ["-k", key]
    code, stdout, stderr = run_tool([*argv, LOOPBACK, str(port)])
    assert code == 0, stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], stdout + stderr


def answers(datasets: list, keep: set[str] | None = None) -> set[frozenset]:
    """Each response as the set of its (keyword, value) pairs (only ``keep`` keywords when given),
    padding and character set aside."""
    result = set()
    for ds in datasets:
        pairs = []
        for element in ds:
            if element.keyword in ("SpecificCharacterSet", "QueryRetrieveLevel", "RetrieveAETitle"):
                continue
            if keep is not None and element.keyword not in keep:
                continue
            value = element.value
            text = "\\".join(str(v) for v in value) if element.VM > 1 else ("" if value is None else str(value))
            pairs.append((element.keyword, text.strip()))
        result.add(frozenset(pairs))
    return result


S1, S4 = uid("s1"), uid("s4")
QUERIES = [
    ("-P", "QueryRetrieveLevel=PATIENT", "PatientID=", "PatientName=", "PatientBirthDate="),
    ("-P", "QueryRetrieveLevel=STUDY", "PatientID=PAT001", "StudyInstanceUID=", "StudyDate=", "AccessionNumber="),
    ("-P", "QueryRetrieveLevel=SERIES", "PatientID=PAT001", f"StudyInstanceUID={S1}", "SeriesInstanceUID=",
     "Modality=", "SeriesNumber="),
    ("-P", "QueryRetrieveLevel=IMAGE", "PatientID=PAT001", f"StudyInstanceUID={S1}", f"SeriesInstanceUID={uid('s1a')}",
     "SOPInstanceUID=", "InstanceNumber="),
    ("-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240101-20241231", "StudyInstanceUID=", "PatientName=",
     "StudyDescription="),
    ("-S", "QueryRetrieveLevel=STUDY", "PatientName=Doe*", "StudyInstanceUID=", "StudyID="),
    ("-S", "QueryRetrieveLevel=STUDY", "StudyDate=-20231231", "StudyTime=", "StudyInstanceUID="),
    ("-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={S4}", "SeriesInstanceUID=", "Modality=",
     "SeriesDescription="),
    ("-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={S1}", f"SeriesInstanceUID={uid('s1b')}", "SOPInstanceUID=",
     "SOPClassUID="),
    ("-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={S1}\\{S4}", "PatientID=", "AccessionNumber=ACC*"),
]


@pytest.mark.parametrize("query", QUERIES, ids=[" ".join(q[:2]) + f" #{n}" for n, q in enumerate(QUERIES)])
def test_findscu_same_answers_as_dcmqrscp(nodes, tmp_path, query):
    port, (qport, qaet), _ = nodes
    model, *keys = query
    ours, _ = findscu(port, AET, tmp_path / "ours", model, *keys)
    theirs, _ = findscu(qport, qaet, tmp_path / "theirs", model, *keys)
    assert ours, "no match at all: the comparison would prove nothing"
    # dcmqrscp leaves out of its answers the optional keys its index does not keep (SeriesDescription,
    # SOPClassUID at IMAGE level); PS3.4 C.4.1.1.3.2 lets an SCP answer them, which we do (with values).
    # The keys both answer must agree.
    kept = {element.keyword for ds in theirs for element in ds}
    assert answers(ours, kept) == answers(theirs, kept)
    asked = {key.split("=")[0] for key in keys}
    assert all(keyword in ds for ds in ours for keyword in asked)
    level = keys[0].split("=")[1]
    assert all(ds.QueryRetrieveLevel.strip() == level for ds in ours)


def test_computed_attributes(nodes, tmp_path):
    port, _, _ = nodes
    ours, _ = findscu(port, AET, tmp_path / "s", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={S1}",
                      "NumberOfStudyRelatedSeries=", "NumberOfStudyRelatedInstances=", "ModalitiesInStudy=",
                      "SOPClassesInStudy=")
    assert [(int(d.NumberOfStudyRelatedSeries), int(d.NumberOfStudyRelatedInstances), d.ModalitiesInStudy,
             d.SOPClassesInStudy) for d in ours] == [(2, 3, "CT", "1.2.840.10008.5.1.4.1.1.2")]
    patients, _ = findscu(port, AET, tmp_path / "p", "-P", "QueryRetrieveLevel=PATIENT", "PatientID=PAT001",
                          "NumberOfPatientRelatedStudies=", "NumberOfPatientRelatedSeries=",
                          "NumberOfPatientRelatedInstances=")
    assert [(int(d.NumberOfPatientRelatedStudies), int(d.NumberOfPatientRelatedSeries),
             int(d.NumberOfPatientRelatedInstances)) for d in patients] == [(2, 3, 5)]
    series, _ = findscu(port, AET, tmp_path / "r", "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={S1}",
                        "SeriesInstanceUID=", "NumberOfSeriesRelatedInstances=")
    assert sorted(int(d.NumberOfSeriesRelatedInstances) for d in series) == [1, 2]
    mr, _ = findscu(port, AET, tmp_path / "m", "-S", "QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR",
                    "StudyInstanceUID=")
    assert {d.StudyInstanceUID for d in mr} == {uid("s2"), S4}


def test_utf8_name_stored_over_network_found_with_wildcard(nodes, tmp_path):
    port, _, _ = nodes
    ours, _ = findscu(port, AET, tmp_path / "u", "-S", "QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 192",
                      "PatientName=Mü*", "StudyInstanceUID=")
    assert [(str(d.PatientName), d.SpecificCharacterSet, d.StudyInstanceUID) for d in ours] == [
        (UTF8_NAME, "ISO_IR 192", uid("s3"))]
    # the query's own character set is kept when every value fits it (Latin-1 here)
    latin, _ = findscu(port, AET, tmp_path / "l", "-S", "QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 100",
                       "PatientID=PAT002", "PatientName=")
    assert [(str(d.PatientName), d.SpecificCharacterSet) for d in latin] == [(UTF8_NAME, "ISO_IR 100")]
    # a name that does not fit the query's set is answered in UTF-8
    japanese, _ = findscu(port, AET, tmp_path / "j", "-S", "QueryRetrieveLevel=STUDY",
                          "SpecificCharacterSet=ISO_IR 100", "PatientID=PAT003", "PatientName=")
    assert {(str(d.PatientName), d.SpecificCharacterSet) for d in japanese} == {(JAPANESE_NAME, "ISO_IR 192")}


def test_dcmnet_find_against_listen(nodes):
    port, _, _ = nodes
    code, out, err = run_dcmnet("find", "-aec", AET, LOOPBACK, str(port), "-S", "-L", "STUDY",
                                "-k", "PatientName=Mü*", "-k", "StudyInstanceUID", "--format", "tsv")
    assert code == 0, err
    assert uid("s3") in out and UTF8_NAME in out
    code, out, err = run_dcmnet("find", "-aec", AET, LOOPBACK, str(port), "-P", "-L", "IMAGE", "-k", "PatientID=PAT001",
                                "-k", f"StudyInstanceUID={S1}", "-k", f"SeriesInstanceUID={uid('s1a')}",
                                "-k", "SOPInstanceUID", "--format", "tsv")
    assert code == 0, err
    assert {uid("s1a-img1"), uid("s1a-img2")} <= set(out.split())


def test_level_not_in_model_is_a900(nodes, tmp_path):
    port, _, _ = nodes
    ours, log = findscu(port, AET, tmp_path / "w", "-S", "QueryRetrieveLevel=PATIENT", "PatientID=")
    assert ours == [] and "DataSetDoesNotMatchSOPClass" in log
    ours, log = findscu(port, AET, tmp_path / "x", "-S", "QueryRetrieveLevel=FOO", "PatientID=")
    assert ours == [] and "DataSetDoesNotMatchSOPClass" in log


@pytest.mark.parametrize("keys", [
    ("-P", "QueryRetrieveLevel=STUDY", "StudyInstanceUID="),
    ("-P", "QueryRetrieveLevel=SERIES", "PatientID=PAT001", "SeriesInstanceUID="),
    ("-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={S1}", "SOPInstanceUID="),
    ("-S", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=", "SeriesInstanceUID="),
], ids=["patient-root study without PatientID", "series without StudyInstanceUID", "image without series UID",
        "empty StudyInstanceUID"])
def test_hierarchical_query_without_upper_unique_key_is_c000(nodes, tmp_path, keys):
    """Without relational queries negotiated, every level above the query level needs its unique key with
    a value (PS3.4 C.4.1.3.1.1, hierarchical search): 0xC000 unable to process, as dcmqrscp answers when
    the key is absent. dcmqrscp is wrong by the standard for a zero-length (universal) upper unique key:
    it answers every series of every study instead of refusing the query."""
    port, (qport, qaet), _ = nodes
    model, *rest = keys
    ours, log = findscu(port, AET, tmp_path / "ours", model, *rest)
    assert ours == [] and "Failed: UnableToProcess" in log
    theirs, log = findscu(qport, qaet, tmp_path / "theirs", model, *rest)
    if rest == ["QueryRetrieveLevel=SERIES", "StudyInstanceUID=", "SeriesInstanceUID="]:
        assert len(theirs) == 6 and "Success" in log  # dcmqrscp's lenient (non-standard) answer
    else:
        assert theirs == [] and "Failed: UnableToProcess" in log


def test_optional_key_not_kept_answers_ff01_zero_length(nodes, tmp_path):
    port, _, _ = nodes
    ours, log = findscu(port, AET, tmp_path / "o", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={S1}",
                        "PatientComments=anything")
    assert len(ours) == 1 and ours[0].PatientComments in (None, "")
    assert "Pending: WarningUnsupportedOptionalKeys" in log  # 0xFF01


def test_case_insensitive_names_option(tmp_path, dcmtk):
    require_tools()
    for n, ds in enumerate(make_datasets()[:3]):
        write_part10(tmp_path / "store" / f"{n}.dcm", ds)
    for flag, expected in (((), 0), (("--case-insensitive-names",), 1)):
        with listen_server("-aet", AET, "-od", str(tmp_path / "store"), *flag) as listen:
            found, _ = findscu(listen.port, AET, tmp_path / f"c{len(flag)}", "-P", "QueryRetrieveLevel=PATIENT",
                               "PatientName=doe^JOHN", "PatientID=")
            assert len(found) == expected


def test_cancel_stops_the_answers(tmp_path, dcmtk):
    require_tools()
    template = make_datasets()[0]
    count = 600
    for n in range(count):
        ds = template.copy()
        ds.SOPInstanceUID = f"{uid('cancel')}.{n}"
        ds.InstanceNumber = n
        write_part10(tmp_path / "store" / f"{n}.dcm", ds)
    with listen_server("-aet", AET, "-od", str(tmp_path / "store")) as listen:
        found, log = findscu(listen.port, AET, tmp_path / "c", "-S", "QueryRetrieveLevel=IMAGE",
                             f"StudyInstanceUID={template.StudyInstanceUID}",
                             f"SeriesInstanceUID={template.SeriesInstanceUID}", "SOPInstanceUID=",
                             extra=("--cancel", "1"))
        assert "Cancel" in log.split("Final Find Response")[-1].splitlines()[0], log[-500:]
        assert len(found) < count
        code, out, err = run_dcmnet("find", "-aec", AET, LOOPBACK, str(listen.port), "-S", "-L", "IMAGE",
                                    "-k", f"StudyInstanceUID={template.StudyInstanceUID}",
                                    "-k", f"SeriesInstanceUID={template.SeriesInstanceUID}", "-k", "SOPInstanceUID",
                                    "--cancel-after-matches", "2", "--format", "tsv")
        assert code == 0, err
        assert len(out.splitlines()) < count


def test_read_only_serves_find_and_refuses_storage(tmp_path, dcmtk):
    require_tools()
    datasets = make_datasets()
    write_part10(tmp_path / "store" / "0.dcm", datasets[0])
    extra = write_part10(tmp_path / "in" / "1.dcm", datasets[1])
    with listen_server("-aet", AET, "-od", str(tmp_path / "store"), "--read-only") as listen:
        code, out, err = run_tool(["storescu", "-v", "-aec", AET, LOOPBACK, str(listen.port), str(extra)])
        assert "Received Store Response (Unknown Status: 0x124)" in out + err  # Refused: Not Authorized
        found, _ = findscu(listen.port, AET, tmp_path / "f", "-S", "QueryRetrieveLevel=IMAGE",
                           f"StudyInstanceUID={datasets[0].StudyInstanceUID}",
                           f"SeriesInstanceUID={datasets[0].SeriesInstanceUID}", "SOPInstanceUID=")
        assert [d.SOPInstanceUID for d in found] == [datasets[0].SOPInstanceUID]
    assert sorted(p.name for p in (tmp_path / "store").iterdir() if not p.name.startswith(".")) == ["0.dcm"]


def test_listen_without_od_keeps_no_index(tmp_path, dcmtk):
    """The default listen (storing into the current folder) indexes nothing unless asked: no C-FIND."""
    require_tools()
    with listen_server("-aet", AET, cwd=tmp_path) as listen:
        code, out, err = run_tool(["findscu", "-S", "-aec", AET, "-k", "QueryRetrieveLevel=STUDY", LOOPBACK,
                                   str(listen.port)])
        assert code != 0
    assert not (tmp_path / ".dcmnet-index.sqlite").exists()


def test_relational_query_negotiated_and_answered(nodes):
    """SOP class extended negotiation: relational granted (only that), then a SERIES-level query without
    the study's unique key (relational, PS3.4 C.4.1.2.2) finds the series of every study."""
    port, _, _ = nodes
    code, out, err = run_dcmnet("-v", "find", "-aec", AET, LOOPBACK, str(port), "-S", "-L", "SERIES", "--relational",
                                "--datetime-matching", "-k", "Modality=MR", "-k", "SeriesInstanceUID",
                                "--format", "tsv")
    assert code == 0, err
    assert "accepted relational" in err and "date-time" not in err.split("accepted", 1)[1].splitlines()[0], err
    assert {uid("s2a"), uid("s4a"), uid("s4b")} <= set(out.split())


def test_sequence_key_answered_by_the_pydicom_path(nodes, tmp_path):
    """A sequence key (not kept by the index) is answered empty, with the other keys filled as usual."""
    port, _, _ = nodes
    ours, log = findscu(port, AET, tmp_path / "q", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={S1}",
                        "ProcedureCodeSequence[0].CodeValue=", "AccessionNumber=", "SpecificCharacterSet=ISO_IR 100")
    assert len(ours) == 1, log
    assert ours[0].AccessionNumber == "ACCS1" and "ProcedureCodeSequence" in ours[0]
    assert ours[0].SpecificCharacterSet == "ISO_IR 100"


def test_default_folder_with_an_index_serves_it(tmp_path, dcmtk):
    """``dcmnet listen PORT`` (no -od) in a folder that holds an index keeps using it: C-FIND works."""
    from dcmnet_cli.services.archive.index import Index

    require_tools()
    ds = make_datasets()[0]
    write_part10(tmp_path / "one.dcm", ds)
    Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path)).close()
    with listen_server("-aet", AET, cwd=tmp_path) as listen:
        found, _ = findscu(listen.port, AET, tmp_path / "f", "-S", "QueryRetrieveLevel=IMAGE",
                           f"StudyInstanceUID={ds.StudyInstanceUID}", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                           "SOPInstanceUID=")
        assert [d.SOPInstanceUID for d in found] == [ds.SOPInstanceUID]


def test_iso2022_query_answered_in_its_own_character_set(nodes, tmp_path):
    """A query in ISO 2022 IR 87 (Japanese) is answered in it when the values fit (the pydicom path,
    escape sequences where PS3.5 puts them), found with a wildcard on the Romaji component."""
    port, _, _ = nodes
    ours, log = findscu(port, AET, tmp_path / "j", "-S", "QueryRetrieveLevel=STUDY",
                        "SpecificCharacterSet=\\ISO 2022 IR 87", "PatientName=Yamada*", "StudyInstanceUID=")
    assert [str(d.PatientName) for d in ours] == [JAPANESE_NAME], log
    assert list(ours[0].SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
