"""Rows made from the values a Storage SCP's walk kept (``Index.submit`` of RawValues): only the instance
level's values and the Series Instance UID are decoded when the series is remembered, the values above
compared as the bytes received (issue 13). These cases would be wrong if that comparison ignored what
gives the bytes their meaning: the character set, which tag each value belongs to, the rows written
since by another way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dcmnet_cli.services.archive.extraction import BY_KEYWORD, RawValues, decode_values
from dcmnet_cli.services.archive.index import Index

ROOT = "1.2.826.0.1.3680043.8.498.78"


def raw(**values: bytes) -> RawValues:
    """Values by keyword, in tag order as the walk keeps them."""
    return RawValues(dict(sorted((BY_KEYWORD[k].tag, v) for k, v in values.items())), True)


def base(n: int, **more: bytes) -> dict[str, bytes]:
    values = {"PatientID": b"P1", "StudyInstanceUID": f"{ROOT}.1".encode(), "SeriesInstanceUID": f"{ROOT}.1.1\0".encode(),
              "SOPClassUID": b"1.2.840.10008.5.1.4.1.1.2\0", "SOPInstanceUID": f"{ROOT}.1.1.{n}".encode()}
    values.update(more)
    return values


def opened(root: Path) -> Index:
    return Index.open(str(root / ".dcmnet-index.sqlite"), str(root))


def submit(index: Index, root: Path, name: str, values: RawValues) -> None:
    index.submit(str(root / name), values, "1.2.840.10008.1.2.1", 100)
    assert index.sync(10)


def rows(root: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(str(root / ".dcmnet-index.sqlite"))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_same_bytes_in_another_character_set_are_new_values(tmp_path):
    index = opened(tmp_path)
    name = "Ren\u00e9".encode("utf-8")  # b"Ren\xc3\xa9": "RenÃ©" in ISO_IR 100
    submit(index, tmp_path, "1.dcm", raw(**base(1, SpecificCharacterSet=b"ISO_IR 100", PatientName=name)))
    assert rows(tmp_path, "SELECT patient_name FROM patient") == [("Ren\u00c3\u00a9",)]
    submit(index, tmp_path, "2.dcm", raw(**base(2, SpecificCharacterSet=b"ISO_IR 192", PatientName=name)))
    assert rows(tmp_path, "SELECT patient_name FROM patient") == [("Ren\u00e9",)]
    index.close()


def test_the_same_bytes_under_another_tag_are_new_values(tmp_path):
    """Study Description "X" then, in the next instance, Patient Name "X" and no Study Description: the
    values above the instance level are the same bytes in the same places of their list, not the same
    attributes."""
    index = opened(tmp_path)
    submit(index, tmp_path, "1.dcm", raw(**base(1, StudyDescription=b"X")))
    submit(index, tmp_path, "2.dcm", raw(**base(2, PatientName=b"X")))
    assert rows(tmp_path, "SELECT patient_name FROM patient") == [("X",)]
    assert rows(tmp_path, "SELECT study_description FROM study") == [("",)]
    index.close()


def test_rows_written_from_decoded_values_between_are_not_taken_for_the_received_ones(tmp_path):
    """A received row remembers the series; a decoded row (reconciliation, ``Index.add``) changes the
    patient's name; the next received row, with the first bytes, writes them back."""
    index = opened(tmp_path)
    submit(index, tmp_path, "1.dcm", raw(**base(1, PatientName=b"DOE^JOHN")))
    changed = decode_values(raw(**base(2, PatientName=b"DOE^JANE")).values)
    index.add(str(tmp_path / "2.dcm"), changed, size=100)
    assert rows(tmp_path, "SELECT patient_name FROM patient") == [("DOE^JANE",)]
    submit(index, tmp_path, "3.dcm", raw(**base(3, PatientName=b"DOE^JOHN")))
    assert rows(tmp_path, "SELECT patient_name FROM patient") == [("DOE^JOHN",)]
    assert rows(tmp_path, "SELECT count(*) FROM instance") == [(3,)]
    index.close()


def test_received_rows_are_the_rows_of_their_decoded_values(tmp_path):
    """Every table, column and attrs text the same whether the rows came as received bytes or decoded
    first: text in a character set, US values in either byte order, several values, padding."""
    series = [raw(**base(n, SpecificCharacterSet=b"ISO_IR 100", PatientName=b"M\xfcller^Hans ",
                         StudyDescription=b"T\xeate ", Modality=b"CT", ImageType=b"ORIGINAL\\PRIMARY ",
                         InstanceNumber=f"{n} ".encode(), Rows=b"\x00\x02", Columns=b"\x02\x00",
                         StudyDate=b"20240131", SeriesNumber=b"3 "))
              for n in range(1, 4)]
    series.append(RawValues(series[0].values | {BY_KEYWORD["SOPInstanceUID"].tag: f"{ROOT}.1.1.9".encode()}, False))
    received, decoded = tmp_path / "received", tmp_path / "decoded"
    for root in (received, decoded):
        root.mkdir()
    first, second = opened(received), opened(decoded)
    for n, values in enumerate(series):
        submit(first, received, f"{n}.dcm", values)
        second.add(str(decoded / f"{n}.dcm"), decode_values(values.values, values.little), "1.2.840.10008.1.2.1", 100)
    first.close()
    second.close()
    for table in ("patient", "study", "series", "instance"):
        assert rows(received, f"SELECT * FROM {table} ORDER BY pk") == rows(decoded, f"SELECT * FROM {table} ORDER BY pk")
    assert ("512", "2") in {(r[0], r[1]) for r in rows(received, "SELECT json_extract(attrs, '$.Rows'), "
                                                                 "json_extract(attrs, '$.Columns') FROM instance")}


def test_us_values_in_either_byte_order():
    rows_tag = BY_KEYWORD["Rows"].tag
    assert decode_values({rows_tag: b"\x00\x02"}, True) == {"Rows": "512"}
    assert decode_values({rows_tag: b"\x00\x02"}, False) == {"Rows": "2"}
    assert decode_values({rows_tag: b"\x01\x00\x02\x01"}, True) == {"Rows": "1\\258"}
    assert decode_values({rows_tag: b"\x01\x00\x02\x01"}, False) == {"Rows": "256\\513"}
    assert decode_values({rows_tag: b"\x01\x00\x02"}, True) == {"Rows": "1"}  # an odd byte left out
    assert decode_values({rows_tag: b""}, True) == {"Rows": ""}
