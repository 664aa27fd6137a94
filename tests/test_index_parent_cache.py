"""The index remembers the patient/study/series rows of the series it wrote (one INSERT per next instance):
that memory must never go stale. Each case below changes the rows above a series in a way a remembered
entry would miss, then checks what a C-FIND (patient-root, through Index.search) answers: the instance
under the right series, study and patient, with the latest values."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from dcmnet_cli.services.archive.extraction import BY_KEYWORD, RawValues
from dcmnet_cli.services.archive.index import Index
from dcmnet_cli.services.archive.matching import MatchOptions

ROOT = "1.2.826.0.1.3680043.8.498.77"


def values(study: int, series: int, instance: int, patient: str = "P1", name: str = "DOE^JOHN",
           description: str = "CHEST") -> dict[str, str]:
    return {"PatientID": patient, "PatientName": name, "StudyInstanceUID": f"{ROOT}.{study}",
            "StudyDescription": description, "SeriesInstanceUID": f"{ROOT}.{study}.{series}", "Modality": "CT",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": f"{ROOT}.{study}.{series}.{instance}",
            "InstanceNumber": str(instance)}


@pytest.fixture(params=["decoded", "received"])
def way(request) -> str:
    """How rows arrive: decoded values (``Index.add``: reconciliation, tools) or the bytes a Storage SCP's
    walk kept (``Index.submit`` of RawValues), whose rows compare the values above the instance level as
    bytes: every case must come out the same both ways."""
    return str(request.param)


def put(index: Index, way: str, path: str, attributes: dict[str, str], size: int) -> None:
    if way == "decoded":
        index.add(path, attributes, size=size)
        return
    tags = sorted((BY_KEYWORD[keyword].tag, value) for keyword, value in attributes.items())
    index.submit(path, RawValues({tag: value.encode() for tag, value in tags}, True), "", size)
    assert index.sync(10)


def image(index: Index, sop: str) -> tuple[str, str, str, str]:
    """(PatientID, PatientName, StudyDescription, SeriesInstanceUID) of the instance, found by a patient-root
    IMAGE query walked down from its patient (as C-FIND would), or ('', '', '', '') if not findable."""
    for patient in index.search("patient", "PATIENT", _query("PATIENT", PatientID="", PatientName=""), MatchOptions()):
        for study in index.search("patient", "STUDY", _query("STUDY", PatientID=patient.PatientID,
                                                              StudyInstanceUID="", StudyDescription="")):
            for series in index.search("patient", "SERIES", _query(
                    "SERIES", PatientID=patient.PatientID, StudyInstanceUID=study.StudyInstanceUID, SeriesInstanceUID="")):
                found = list(index.search("patient", "IMAGE", _query(
                    "IMAGE", PatientID=patient.PatientID, StudyInstanceUID=study.StudyInstanceUID,
                    SeriesInstanceUID=series.SeriesInstanceUID, SOPInstanceUID=sop)))
                if found:
                    return (str(patient.PatientID), str(patient.PatientName), str(study.StudyDescription),
                            str(series.SeriesInstanceUID))
    return ("", "", "", "")


def _query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def opened(tmp_path) -> Index:
    return Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))


def test_changed_patient_values_of_the_same_series_are_written(tmp_path, way):
    index = opened(tmp_path)
    put(index, way, str(tmp_path / "1.dcm"), values(1, 1, 1), size=1)
    put(index, way, str(tmp_path / "2.dcm"), values(1, 1, 2, name="DOE^JANE", description="HEAD"), size=1)
    assert image(index, f"{ROOT}.1.1.1") == ("P1", "DOE^JANE", "HEAD", f"{ROOT}.1.1")
    put(index, way, str(tmp_path / "3.dcm"), values(1, 1, 3), size=1)  # back to the first values
    assert image(index, f"{ROOT}.1.1.2") == ("P1", "DOE^JOHN", "CHEST", f"{ROOT}.1.1")
    index.close()


def test_a_study_moved_to_another_patient_by_one_series_is_moved_back_by_the_other(tmp_path, way):
    """Series 1 and 2 of study 1 remembered under P1; an object of series 1 moves the study to P2; the
    next object of series 2 says P1 again: the study must be under P1 (a remembered entry would say so
    already and skip the write)."""
    index = opened(tmp_path)
    put(index, way, str(tmp_path / "a.dcm"), values(1, 1, 1), size=1)
    put(index, way, str(tmp_path / "b.dcm"), values(1, 2, 1), size=1)
    put(index, way, str(tmp_path / "c.dcm"), values(1, 1, 2, patient="P2", name="ROE^RICHARD"), size=1)
    assert image(index, f"{ROOT}.1.2.1") == ("P2", "ROE^RICHARD", "CHEST", f"{ROOT}.1.2")
    put(index, way, str(tmp_path / "d.dcm"), values(1, 2, 2), size=1)
    for sop in (f"{ROOT}.1.1.1", f"{ROOT}.1.2.2"):
        assert image(index, sop)[:2] == ("P1", "DOE^JOHN")
    assert index.counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 2, "IMAGE": 4}
    index.close()


def test_another_writer_process_changing_the_rows_is_noticed(tmp_path, way):
    """``listen --workers 2``: two processes, each with its own connection, store the same series."""
    first, second = opened(tmp_path), opened(tmp_path)
    put(first, way, str(tmp_path / "1.dcm"), values(1, 1, 1), size=1)
    put(second, way, str(tmp_path / "2.dcm"), values(1, 1, 2, name="DOE^JANE"), size=1)
    put(first, way, str(tmp_path / "3.dcm"), values(1, 1, 3), size=1)
    assert image(first, f"{ROOT}.1.1.3")[1] == "DOE^JOHN"
    second.remove(str(tmp_path / "1.dcm"))
    second.remove(str(tmp_path / "2.dcm"))
    second.remove(str(tmp_path / "3.dcm"))  # series, study and patient pruned by the other process
    put(first, way, str(tmp_path / "4.dcm"), values(1, 1, 4), size=1)
    assert image(second, f"{ROOT}.1.1.4") == ("P1", "DOE^JOHN", "CHEST", f"{ROOT}.1.1")
    first.close()
    second.close()


def test_rows_pruned_by_a_remove_or_a_replace_are_written_again(tmp_path, way):
    index = opened(tmp_path)
    put(index, way, str(tmp_path / "1.dcm"), values(1, 1, 1), size=1)
    index.remove(str(tmp_path / "1.dcm"))  # the series, study and patient go with their last instance
    put(index, way, str(tmp_path / "2.dcm"), values(1, 1, 2), size=1)
    assert image(index, f"{ROOT}.1.1.2") == ("P1", "DOE^JOHN", "CHEST", f"{ROOT}.1.1")
    # the same file replaced by an object of another study: the old series, study and patient are pruned
    put(index, way, str(tmp_path / "2.dcm"), values(2, 1, 1, patient="P2"), size=1)
    assert index.counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 1, "IMAGE": 1}
    put(index, way, str(tmp_path / "3.dcm"), values(1, 1, 3), size=1)
    assert image(index, f"{ROOT}.1.1.3") == ("P1", "DOE^JOHN", "CHEST", f"{ROOT}.1.1")
    assert index.counts() == {"PATIENT": 2, "STUDY": 2, "SERIES": 2, "IMAGE": 2}
    # both series known; 3.dcm replaced by an object of the other series (a remembered one): series 1.1 goes
    put(index, way, str(tmp_path / "3.dcm"), values(2, 1, 2, patient="P2"), size=1)
    assert index.counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 1, "IMAGE": 2}
    put(index, way, str(tmp_path / "4.dcm"), values(1, 1, 4), size=1)
    assert image(index, f"{ROOT}.1.1.4") == ("P1", "DOE^JOHN", "CHEST", f"{ROOT}.1.1")
    index.close()


def test_interleaved_studies_keep_their_own_parents(tmp_path, way):
    """Two studies of two patients arriving interleaved (two associations), each findable under its own."""
    index = opened(tmp_path)
    for n in range(6):
        study = 1 + n % 2
        put(index, way, str(tmp_path / f"{n}.dcm"), values(study, 1, n, patient=f"P{study}", name=f"PAT^{study}",
                                                     description=f"D{study}"), size=1)
    for n in range(6):
        study = 1 + n % 2
        assert image(index, f"{ROOT}.{study}.1.{n}") == (f"P{study}", f"PAT^{study}", f"D{study}", f"{ROOT}.{study}.1")
    index.close()
