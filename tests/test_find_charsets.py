"""Match values in ISO 2022 and other character sets, against DCMTK's dcmqrscp (127.0.0.1 only).

dcmqrscp compares the bytes of a match value with the bytes it stored, so a query only finds what it
should when we encode as the stored values are encoded: no escape sequence before the first non-ASCII
run, the G1 designation repeated after each delimiter (PS3.5 Annex H, I, J). The stored names below are
the standard's own example bytes, written into the files as they are (neither our encoder nor pydicom's
made them).
"""

from __future__ import annotations

import warnings

import pytest
from pydicom import Dataset
from pydicom.valuerep import PersonName

from dcmnet_cli.cli.main import main
from dcmnet_cli.services.query import encode_identifier
from helpers.procs import LOOPBACK
from qr_helpers import CT_IMAGE_STORAGE, dcmqrscp_server, uid

EXPLICIT_LE = "1.2.840.10008.1.2.1"

# PatientID: (Specific Character Set, name as text, name as the standard's example bytes)
PEOPLE = {
    "JP87": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう",
             b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"),  # PS3.5 H.3.1
    "JP13": (["ISO 2022 IR 13", "ISO 2022 IR 87"], "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
             b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"),  # H.3.2
    "KR149": (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동",
              b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf"),  # I.2
    "CN58": (["", "ISO 2022 IR 58"], "Zhang^XiaoDong=张^小东",
             b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab"),  # J.2 (without the empty third group)
    "CNGB": (["GB18030"], "Wang^XiaoDong=王^小东", b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab"),  # J.3
}


def _instance(patient_id: str, charset: list[str], raw_name: bytes) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = uid(f"cs-{patient_id}-img")
    ds.StudyInstanceUID = uid(f"cs-{patient_id}-study")
    ds.SeriesInstanceUID = uid(f"cs-{patient_id}-series")
    ds.PatientID = patient_id
    with warnings.catch_warnings():  # pydicom cannot decode bytes without their character set: not the test
        warnings.simplefilter("ignore")
        ds.PatientName = PersonName(raw_name, encodings=None)  # the example bytes, written as they are
    ds.Modality = "CT"
    return ds


@pytest.fixture(scope="module")
def archive(tmp_path_factory, dcmtk):
    datasets = [_instance(pid, charset, raw) for pid, (charset, _text, raw) in PEOPLE.items()]
    with dcmqrscp_server(tmp_path_factory.mktemp("charsets"), datasets) as (port, aet):
        yield port, aet


def found(capsys, archive, charset: list[str], name: str) -> tuple[int, dict[str, str], str]:
    """``dcmnet find -P -L PATIENT`` for ``name`` in ``charset``: (exit code, {PatientID: PatientName}, stderr)."""
    port, aet = archive
    with pytest.raises(SystemExit) as done:
        main(["find", "-aec", aet, LOOPBACK, str(port), "-P", "-L", "PATIENT", "--format", "tsv",
              "-k", "SpecificCharacterSet=" + "\\".join(charset), "-k", f"PatientName={name}", "-k", "PatientID"])
    out, err = capsys.readouterr()
    header, *lines = out.splitlines() or [""]
    rows = [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]
    return done.value.code, {row["PatientID"]: row["PatientName"] for row in rows}, err


@pytest.mark.parametrize("patient_id, name", [
    ("JP87", "*山田*"), ("JP87", "Yamada^Tarou=山田^太郎=やまだ^たろう"), ("JP87", "*やまだ*"),
    ("JP13", "*山田*"), ("JP13", "ﾔﾏﾀﾞ*"), ("JP13", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
    ("KR149", "*길동*"), ("KR149", "Hong^Gildong=洪^吉洞=홍^길동"),
    ("CN58", "*张*"), ("CN58", "Zhang^XiaoDong=张^小东"),
    ("CNGB", "*王*"), ("CNGB", "Wang^XiaoDong=王^小东"),
])
def test_wildcard_and_exact_matches_in_each_character_set(capsys, archive, patient_id: str, name: str) -> None:
    charset = PEOPLE[patient_id][0]
    code, ids, err = found(capsys, archive, charset, name)
    assert code == 0, err
    assert ids == {patient_id: PEOPLE[patient_id][1]}, (name, ids, err)  # found, and shown as the name it is


def test_a_name_not_stored_matches_nothing(capsys, archive) -> None:
    code, ids, err = found(capsys, archive, ["", "ISO 2022 IR 87"], "*田中*")
    assert code == 0 and ids == {}, err


@pytest.mark.parametrize("charset, name, expected", [
    (["", "ISO 2022 IR 87"], "*田中*", b"*\x1b$BEDCf\x1b(B*"),
    (["ISO 2022 IR 13", "ISO 2022 IR 87"], "*山田*", b"*\x1b$B;3ED\x1b(J*"),
    (["", "ISO 2022 IR 149"], "*김*", b"*\x1b$)C\xb1\xe8*"),
    (["", "ISO 2022 IR 58"], "*张*", b"*\x1b$)A\xd5\xc5*"),
])
def test_no_escape_sequence_before_the_first_non_ascii_run(charset, name: str, expected: bytes) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    data = encode_identifier(ds, EXPLICIT_LE)
    assert data.endswith(b"PN" + len(expected + b" " * (len(expected) % 2)).to_bytes(2, "little")
                         + expected + b" " * (len(expected) % 2))
