"""The embedded index of ``listen`` (issue 11), without sockets: rows per level, replace/rename/remove,
retrieve selections, C-FIND search with computed attributes, reconciliation with the folder, and the
attribute extraction from the received data set's walk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dcmnet_cli.part10.received import ReceivedDataset
from dcmnet_cli.services.archive.extraction import INDEXED, decode_values, read_file_attributes
from dcmnet_cli.services.archive.index import Index
from dcmnet_cli.services.archive.matching import MatchOptions
from qr_helpers import UTF8_NAME, make_datasets, uid, write_part10


def attrs(ds: Dataset) -> dict[str, str]:
    from dcmnet_cli.services.archive.extraction import dataset_attributes

    return dataset_attributes(ds)


@pytest.fixture
def loaded(tmp_path):
    """An index of the qr_helpers data set: 3 patients, 4 studies, 6 series, 8 images (files on disk)."""
    index = Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))
    for n, ds in enumerate(make_datasets()):
        path = write_part10(tmp_path / f"{n:02d}.dcm", ds)
        index.add(str(path), attrs(ds), "1.2.840.10008.1.2.1")
    yield index, tmp_path
    index.close()


def query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_rows_per_level(loaded):
    index, _ = loaded
    assert index.counts() == {"PATIENT": 3, "STUDY": 4, "SERIES": 6, "IMAGE": 8}


def test_replace_keeps_one_row_rename_adds_one_remove_prunes(loaded):
    index, root = loaded
    ds = make_datasets()[0]
    index.add(str(root / "00.dcm"), attrs(ds))  # the same file again (--on-duplicate replace)
    assert index.counts()["IMAGE"] == 8
    write_part10(root / "00_1.dcm", ds)  # --on-duplicate rename: a second file of the instance
    index.add(str(root / "00_1.dcm"), attrs(ds))
    assert index.counts()["IMAGE"] == 9
    found = index.instances("study", "IMAGE", query("IMAGE", StudyInstanceUID=ds.StudyInstanceUID,
                                                    SeriesInstanceUID=ds.SeriesInstanceUID,
                                                    SOPInstanceUID=ds.SOPInstanceUID))
    assert [Path(i.path).name for i in found] == ["00_1.dcm"]  # each instance once, its newest file
    # the last instance of study s3 (patient PAT002): removing it removes series, study and patient
    s3 = [n for n, d in enumerate(make_datasets()) if d.StudyInstanceUID == uid("s3")]
    assert len(s3) == 1
    index.remove(str(root / f"{s3[0]:02d}.dcm"))
    assert index.counts() == {"PATIENT": 2, "STUDY": 3, "SERIES": 5, "IMAGE": 8}


def test_instances_hierarchical_keys(loaded):
    index, _ = loaded
    s1 = index.instances("patient", "STUDY", query("STUDY", PatientID="PAT001", StudyInstanceUID=uid("s1")))
    assert [i.sop_instance_uid for i in s1] == [uid("s1a-img1"), uid("s1a-img2"), uid("s1b-img1")]
    both = index.instances("study", "STUDY", query("STUDY", StudyInstanceUID=f"{uid('s1')}\\{uid('s2')}"))
    assert len(both) == 5
    assert index.instances("study", "STUDY", query("STUDY", StudyInstanceUID="")) == []  # no unique key: nothing
    wrong_patient = index.instances("patient", "STUDY", query("STUDY", PatientID="PAT002", StudyInstanceUID=uid("s1")))
    assert wrong_patient == []
    assert all(os.path.isabs(i.path) and os.path.exists(i.path) for i in s1)


def test_search_levels_and_computed_attributes(loaded):
    index, _ = loaded
    studies = list(index.search("study", "STUDY", query(
        "STUDY", PatientName="Doe*", StudyDate="20240101-20241231", StudyInstanceUID="",
        NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="", ModalitiesInStudy="",
        SOPClassesInStudy=""), MatchOptions()))
    by_uid = {str(s.StudyInstanceUID): s for s in studies}
    assert set(by_uid) == {uid("s1"), uid("s2")}
    s1 = by_uid[uid("s1")]
    assert (int(s1.NumberOfStudyRelatedSeries), int(s1.NumberOfStudyRelatedInstances)) == (2, 3)
    assert s1.ModalitiesInStudy == "CT" and s1.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.2"
    patients = list(index.search("patient", "PATIENT", query(
        "PATIENT", PatientID="PAT001", NumberOfPatientRelatedStudies="", NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="")))
    assert [(int(p.NumberOfPatientRelatedStudies), int(p.NumberOfPatientRelatedSeries),
             int(p.NumberOfPatientRelatedInstances)) for p in patients] == [(2, 3, 5)]
    mr = list(index.search("study", "STUDY", query("STUDY", ModalitiesInStudy="MR", StudyInstanceUID="")))
    assert {str(s.StudyInstanceUID) for s in mr} == {uid("s2"), uid("s4")}
    images = list(index.search("study", "IMAGE", query("IMAGE", SeriesInstanceUID=uid("s1a"), SOPInstanceUID="")))
    assert {str(i.SOPInstanceUID) for i in images} == {uid("s1a-img1"), uid("s1a-img2")}


def test_search_utf8_names_and_case_insensitive_option(loaded):
    index, _ = loaded
    found = list(index.search("patient", "PATIENT", query("PATIENT", PatientName="Mü*")))
    assert [str(p.PatientName) for p in found] == [UTF8_NAME]
    assert list(index.search("patient", "PATIENT", query("PATIENT", PatientName="doe^john"))) == []
    fuzzy = list(index.search("patient", "PATIENT", query("PATIENT", PatientName="doe^john"), MatchOptions(True)))
    assert [str(p.PatientID) for p in fuzzy] == ["PAT001"]


def test_reconcile_indexes_files_and_drops_missing_rows(tmp_path):
    datasets = make_datasets()
    for n, ds in enumerate(datasets[:5]):
        write_part10(tmp_path / "sub" / f"{n}.dcm", ds)
    (tmp_path / "notes.txt").write_text("not DICOM")
    index = Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))
    try:
        assert index.reconcile() == (5, 0)
        assert index.counts()["IMAGE"] == 5
        assert index.reconcile() == (0, 0)  # nothing changed: nothing read again
        os.unlink(tmp_path / "sub" / "0.dcm")
        write_part10(tmp_path / "5.dcm", datasets[5])
        assert index.reconcile() == (1, 1)
        assert sorted(index.files()) == ["5.dcm", "sub/1.dcm", "sub/2.dcm", "sub/3.dcm", "sub/4.dcm"]
    finally:
        index.close()


def test_read_file_attributes_stops_before_pixels(tmp_path):
    ds = make_datasets()[2]
    ds.Rows, ds.Columns = 2, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 15, 0, 1
    ds.PixelData = b"\0" * 8
    path = write_part10(tmp_path / "x.dcm", ds)
    values, syntax = read_file_attributes(str(path))
    assert values["PatientName"] == "Doe^John" and values["Rows"] == "2" and values["StudyDate"] == "20240115"
    assert syntax == "1.2.840.10008.1.2.1"
    with pytest.raises(ValueError):
        read_file_attributes(str(tmp_path / "missing.dcm"))


@pytest.mark.parametrize("implicit, little", [(True, True), (False, True), (False, False)])
def test_received_walk_keeps_indexed_values(implicit, little):
    ds = make_datasets()[5]  # the UTF-8 patient
    ds.Rows = 512
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_dataset(buffer, ds)
    data = buffer.getvalue()
    check = ReceivedDataset(implicit, little, False, wanted=INDEXED)
    for start in range(0, len(data), 7):  # fragments cut anywhere
        check.feed(memoryview(data)[start:start + 7])
    check.finish()
    values = decode_values(check.values, check.little)
    assert values["PatientName"] == UTF8_NAME
    assert values["Rows"] == "512"
    assert values["SOPInstanceUID"] == ds.SOPInstanceUID
    assert check.uids == (ds.SOPClassUID, ds.SOPInstanceUID)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
@pytest.mark.parametrize("asked", [[], ["ISO_IR 100"], ["ISO_IR 192"]])
def test_fast_answer_encoding_equals_the_pydicom_path(loaded, syntax, asked):
    """find_encode (bytes straight from the candidate) answers what matching.response + pydicom answer."""
    from dcmnet_cli.services.query import decode_identifier
    from dcmnet_cli.services.scp.find_encode import answer_bytes, plan
    from dcmnet_cli.services.scp.find_handler import _charset
    from dcmnet_cli.services.archive.matching import response
    from dcmnet_cli.services.archive.search import search_attrs, to_dataset

    index, _ = loaded
    identifier = query("IMAGE", PatientName="", PatientID="", StudyInstanceUID=uid("s3"), SOPInstanceUID="",
                       InstanceNumber="", Rows=None, AccessionNumber="", StudyDate="")
    if asked:
        identifier.SpecificCharacterSet = asked[0]
    layout = plan(identifier, "IMAGE", asked, syntax)
    assert layout is not None
    found = list(search_attrs(index, "study", "IMAGE", identifier))
    assert len(found) == 1
    fast = decode_identifier(answer_bytes(layout, found[0]), syntax)
    slow = _charset(response(identifier, to_dataset(found[0]), "IMAGE"), list(asked))
    assert {e.keyword: str(e.value) for e in fast} == {e.keyword: str(e.value) for e in slow}
    assert str(fast.PatientName) == UTF8_NAME
    assert fast.SpecificCharacterSet == (asked[0] if asked else "ISO_IR 192")
