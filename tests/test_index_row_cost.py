"""The index's per-object fast path (issue 13): the next instance of a remembered series is one INSERT built
from the instance's own attributes, trusted only while every patient, study and series attribute is as
remembered (present or absent alike); the ``attrs`` text stays ``json.dumps(sort_keys=True,
ensure_ascii=False)``, so an index written before (or by another process) compares equal and is not
rewritten. Checked through what a reader of the index file sees."""

from __future__ import annotations

import json
import sqlite3

from dcmnet_cli.services.archive.index import Index, _Queued

ROOT = "1.2.826.0.1.3680043.8.498.78"


def values(instance: int, **extra: str) -> dict[str, str]:
    found = {"PatientID": "P1", "PatientName": "DOE^JOHN", "StudyInstanceUID": f"{ROOT}.1",
             "SeriesInstanceUID": f"{ROOT}.1.1", "Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
             "SOPInstanceUID": f"{ROOT}.1.1.{instance}", "InstanceNumber": str(instance)}
    found.update(extra)
    return found


def rows(tmp_path, sql: str) -> list[tuple]:
    with sqlite3.connect(str(tmp_path / ".dcmnet-index.sqlite")) as conn:
        return conn.execute(sql).fetchall()


def stored(tmp_path, *objects: dict[str, str], first: int = 1) -> None:
    """Index each object as the Storage SCP does (queued, committed by the index thread)."""
    index = Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))
    try:
        for number, attributes in enumerate(objects, first):
            index.submit(str(tmp_path / f"{number}.dcm"), attributes, "1.2.840.10008.1.2.1", 100 + number)
        assert index.sync(10)
    finally:
        index.close()


def test_an_attribute_appearing_above_the_instance_level_is_written(tmp_path):
    stored(tmp_path, values(1), values(2, StudyDescription="", SeriesDescription="AXIAL"), values(3, StudyDescription=""))
    study = rows(tmp_path, "SELECT study_description, attrs FROM study")
    assert len(study) == 1 and json.loads(study[0][1])["StudyDescription"] == ""
    series = rows(tmp_path, "SELECT series_description, attrs FROM series")
    assert series == [("", json.dumps({"Modality": "CT", "SeriesInstanceUID": f"{ROOT}.1.1"}, sort_keys=True))]
    assert rows(tmp_path, "SELECT count(*) FROM instance") == [(3,)]


def test_the_instance_row_of_a_remembered_series(tmp_path):
    own = {"ImageType": 'ORIGINAL\\PRIMARY\\"Q"', "ContentTime": "1015", "Rows": "64"}
    stored(tmp_path, values(1), values(2, **own))
    found = rows(tmp_path, "SELECT path, sop_instance_uid, sop_class_uid, instance_number, transfer_syntax, size, "
                           "attrs FROM instance WHERE path = '2.dcm'")
    image = {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": f"{ROOT}.1.1.2", "InstanceNumber": "2", **own}
    assert found == [("2.dcm", f"{ROOT}.1.1.2", "1.2.840.10008.5.1.4.1.1.2", "2", "1.2.840.10008.1.2.1", 102,
                      json.dumps(image, sort_keys=True, ensure_ascii=False))]


def test_attrs_text_is_what_json_dumps_writes(tmp_path):
    name = 'MÜLLER^"JO"\\ANNA'
    stored(tmp_path, values(1, PatientName=name), values(2, PatientName=name))
    (attrs,), = rows(tmp_path, "SELECT attrs FROM patient")
    assert attrs == json.dumps({"PatientID": "P1", "PatientName": name}, sort_keys=True, ensure_ascii=False)
    before = rows(tmp_path, "SELECT pk, attrs FROM patient")
    stored(tmp_path, values(3, PatientName=name), first=3)  # rows another process wrote: found as they are
    assert rows(tmp_path, "SELECT pk, attrs FROM patient") == before
    assert rows(tmp_path, "SELECT count(*) FROM instance") == [(3,)]


def test_a_batch_writes_rows_in_order_around_a_replaced_file(tmp_path):
    """f2 (new, series 1, remembered) then f1 again (indexed in series 1, now in series 2): f1's old series
    keeps f2, so it is not pruned; f3 written twice in the batch keeps its last values."""
    moved = values(1, SeriesInstanceUID=f"{ROOT}.1.2", SOPInstanceUID=f"{ROOT}.1.2.1")
    index = Index.open(str(tmp_path / ".dcmnet-index.sqlite"), str(tmp_path))
    try:
        index._write_batch([_Queued(str(tmp_path / "f1"), values(1), "1.2.840.10008.1.2.1", 10, None),
                            _Queued(str(tmp_path / "f2"), values(2), "1.2.840.10008.1.2.1", 10, None),
                            _Queued(str(tmp_path / "f1"), moved, "1.2.840.10008.1.2.1", 10, None),
                            _Queued(str(tmp_path / "f3"), values(3), "1.2.840.10008.1.2.1", 10, None),
                            _Queued(str(tmp_path / "f3"), values(4), "1.2.840.10008.1.2.1", 10, None),
                            _Queued(str(tmp_path / "f4"), values(5), "1.2.840.10008.1.2.1", 10, None)])
        assert index.counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 2, "IMAGE": 4}
        found = {instance.sop_instance_uid: instance.path for instance in index.instances(
            "study", "SERIES", _keys(SeriesInstanceUID=f"{ROOT}.1.1", StudyInstanceUID=f"{ROOT}.1"))}
        assert found == {f"{ROOT}.1.1.2": str(tmp_path / "f2"), f"{ROOT}.1.1.4": str(tmp_path / "f3"),
                         f"{ROOT}.1.1.5": str(tmp_path / "f4")}
    finally:
        index.close()
    assert rows(tmp_path, "SELECT path, sop_instance_uid FROM instance ORDER BY path") == [
        ("f1", f"{ROOT}.1.2.1"), ("f2", f"{ROOT}.1.1.2"), ("f3", f"{ROOT}.1.1.4"), ("f4", f"{ROOT}.1.1.5")]
    assert rows(tmp_path, "SELECT count(*) FROM series s WHERE EXISTS "
                          "(SELECT 1 FROM instance i WHERE i.series_pk = s.pk)") == [(2,)]


def _keys(**keys: str):
    from pydicom import Dataset

    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds
