"""The shared query module (services/query.py) and option parsing (cli/query_options.py), no network."""

from __future__ import annotations

import json

import click
import pytest
from pydicom import Dataset

from dcmnet_cli.cli.query_options import query_from_options
from dcmnet_cli.errors import DIMSEError, InputError
from dcmnet_cli.services.query import (
    DEFAULT_RETURN_KEYS,
    MODELS,
    build_identifier,
    decode_identifier,
    encode_identifier,
    load_query_file,
)
from qr_helpers import write_part10

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def test_models_carry_the_ps34_uids() -> None:
    assert MODELS["patient"] == ("patient", "1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2",
                                 "1.2.840.10008.5.1.4.1.2.1.3")
    assert MODELS["study"].move == "1.2.840.10008.5.1.4.1.2.2.2"
    assert MODELS["patient-study"].get == "1.2.840.10008.5.1.4.1.2.3.3"
    assert MODELS["worklist"] == ("worklist", "1.2.840.10008.5.1.4.31", "", "")


def test_key_forms() -> None:
    ds = build_identifier(["PatientName=Doe*", "0010,0020=ID1", "(0008,0020)=20240101-20241231", "StudyTime",
                           "ModalitiesInStudy=CT\\MR", "ProcedureCodeSequence[0].CodeValue=X",
                           "ProcedureCodeSequence[1].CodeMeaning"], "STUDY", None, True)
    assert ds.PatientName == "Doe*" and ds.PatientID == "ID1" and ds.StudyDate == "20240101-20241231"
    assert ds["StudyTime"].is_empty and list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert ds.ProcedureCodeSequence[0].CodeValue == "X" and ds.ProcedureCodeSequence[1]["CodeMeaning"].is_empty
    assert ds.QueryRetrieveLevel == "STUDY"
    assert "StudyDescription" not in ds  # a return key was given: no defaults


def test_default_return_keys_only_without_return_keys() -> None:
    ds = build_identifier(["PatientID=1"], "STUDY", None, True)
    assert ds.PatientID == "1"
    for keyword in DEFAULT_RETURN_KEYS["STUDY"]:
        assert keyword in ds
    bare = build_identifier(["PatientID=1"], "STUDY", None, False)
    assert set(bare.dir()) == {"PatientID", "QueryRetrieveLevel"}


def test_non_ascii_keys_get_utf8() -> None:
    ds = build_identifier(["PatientName=Müller*"], "STUDY", None, False)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert "Müller".encode() in encode_identifier(ds, EXPLICIT_LE)


@pytest.mark.parametrize("key, message", [
    ("NoSuchThing=1", "unknown attribute"),
    ("=1", "bad key"),
    ("PatientName[0].PatientID=1", "not a sequence"),
    ("ProcedureCodeSequence=1", "is a sequence"),
    ("PatientName.=x", "malformed component"),
    ("SeriesNumber=abc", "not a valid value"),
])
def test_bad_keys_raise_value_error(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_identifier([key], "STUDY", None, True)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(DIMSEError):
        decode_identifier(b"\x10\x00\x10\x00PN\x20\x00Doe", EXPLICIT_LE)
    with pytest.raises(DIMSEError):
        decode_identifier(b"\x10\x00\x10\x00P", EXPLICIT_LE)
    assert len(decode_identifier(b"", EXPLICIT_LE)) == 0


def test_load_query_file_dicom_and_json(tmp_path) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "Doe^J*"
    dicom = write_part10(tmp_path / "q.dcm", ds)
    assert load_query_file(dicom).PatientName == "Doe^J*"
    (tmp_path / "q.json").write_text(json.dumps(ds.to_json_dict()))
    assert load_query_file(tmp_path / "q.json").PatientName == "Doe^J*"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError):
        load_query_file(tmp_path / "bad.json")
    with pytest.raises(InputError):
        load_query_file(tmp_path / "missing.dcm")


def options(**kwargs):  # type: ignore[no-untyped-def]
    return {"model": "study", "level": None, "keys": (), "query_file": None, **kwargs}


def test_query_from_options_levels() -> None:
    assert query_from_options(options(), for_retrieve=False).level == "STUDY"
    assert query_from_options(options(model="patient"), for_retrieve=False).level == "PATIENT"
    assert query_from_options(options(keys=("QueryRetrieveLevel=SERIES",)), for_retrieve=False).level == "SERIES"
    worklist = query_from_options(options(model="worklist"), for_retrieve=False)
    assert worklist.level is None and worklist.model.find == "1.2.840.10008.5.1.4.31"
    spec = query_from_options(options(keys=("StudyInstanceUID=1.2.3",)), for_retrieve=True)
    assert set(spec.identifier.dir()) == {"StudyInstanceUID", "QueryRetrieveLevel"}
    with pytest.raises(click.UsageError):
        query_from_options(options(model="worklist"), for_retrieve=True)
    with pytest.raises(click.BadParameter):
        query_from_options(options(model="patient-study", level="SERIES"), for_retrieve=False)
