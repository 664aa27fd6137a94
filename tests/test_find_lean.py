"""``dcmnet find`` without pydicom (issue 13): a plain query imports neither pydicom, numpy nor rich in
any output format, and what it prints from our own reader is what pydicom's reading printed (every VR,
sequences, character sets, the reader's fallbacks), against our scripted SCP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydicom import Dataset

from dcmnet_cli.cli.main import main
from dcmnet_cli.part10.dataset_codec import keyword_of
from dcmnet_cli.services.query import encode_identifier
from helpers.procs import LOOPBACK, base_env
from qr_helpers import JAPANESE_NAME, scripted_find_scp
from test_dataset_codec import many_vrs, pydicom_read, shown, with_sequences

PENDING, SUCCESS = 0xFF00, 0x0000
EXPLICIT_LE = "1.2.840.10008.1.2.1"
HEAVY = ("pydicom", "numpy", "rich")

PROBE = ("import sys\nfrom dcmnet_cli.cli.main import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
         f"print('LOADED', code, *sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})), file=sys.stderr)\n")


def match(name: str = "Doe^Jane", charset: str | list[str] | None = None) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.PatientID = "X1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    return ds


@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "json"])
def test_a_plain_find_imports_no_pydicom_numpy_or_rich(fmt: str) -> None:
    """Also when the table names a SOP class (from our copy of the registry) and one match has none."""
    dx = match()
    dx.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    script = lambda ident: [(PENDING, dx), (PENDING, match("Roe^R", "ISO_IR 192")), (SUCCESS, None)]  # noqa: E731
    with scripted_find_scp(script) as (port, _scp):
        done = subprocess.run([sys.executable, "-c", PROBE, "find", "-aec", "FINDSCP", LOOPBACK, str(port),
                               "-k", "PatientName=D*", "-k", "StudyDate=2024-01-01-", "-k", "SOPClassUID",
                               "--format", fmt],
                              capture_output=True, text=True, env={**base_env(), "COLUMNS": "200"}, timeout=30)
    loaded = [line for line in done.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED 0"], done.stderr
    assert "Doe^Jane" in done.stdout and "Roe^R" in done.stdout
    if fmt == "table":
        assert "Digital X-Ray Image Storage - For Presentation" in done.stdout


def test_an_iso_2022_match_falls_back_to_pydicom_and_prints_the_same(capsys) -> None:
    script = lambda ident: [(PENDING, match(JAPANESE_NAME, ["", "ISO 2022 IR 87"])), (SUCCESS, None)]  # noqa: E731
    with scripted_find_scp(script) as (port, _scp):
        with pytest.raises(SystemExit) as done:
            main(["find", "-aec", "FINDSCP", LOOPBACK, str(port), "--format", "tsv", "-k", "PatientName"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert out.splitlines() == ["PatientName", JAPANESE_NAME]


def _everything() -> Dataset:
    ds = many_vrs()
    for element in with_sequences(True):
        ds.add(element)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstitutionName = "Hôpital Saint-Éloi"
    ds.StudyDescription = "tab\there, newline\nthere"
    return ds


def test_json_and_tsv_show_what_pydicom_read(capsys) -> None:
    """Every VR, empty values, sequences of undefined length and Latin-1 text: --json equals pydicom's
    DICOM JSON of the same bytes, and each TSV cell what find printed when pydicom decoded it."""
    sent = _everything()
    expected = pydicom_read(encode_identifier(sent, EXPLICIT_LE), False, True)
    keywords = [keyword_of(int(element.tag)) for element in expected]
    keys = [keyword for keyword in keywords if keyword and keyword not in ("SpecificCharacterSet", "QueryRetrieveLevel")]
    with scripted_find_scp(lambda ident: [(PENDING, sent), (SUCCESS, None)]) as (port, scp):
        with pytest.raises(SystemExit) as done:
            main(["find", "-aec", "FINDSCP", LOOPBACK, str(port), "--json"])
        as_json, err = capsys.readouterr()
        assert done.value.code == 0, err
        with pytest.raises(SystemExit) as done:
            main(["find", "-aec", "FINDSCP", LOOPBACK, str(port), "--format", "tsv", *[a for k in keys for a in ("-k", k)]])
        as_tsv, err = capsys.readouterr()
        assert done.value.code == 0, err
    assert scp.requests[0][1] == EXPLICIT_LE
    assert json.loads(as_json) == json.loads(json.dumps(expected.to_json_dict()))
    header, row = as_tsv.splitlines()
    cells = dict(zip(header.split("\t"), row.split("\t")))
    for element in expected:
        keyword = keyword_of(int(element.tag))
        if keyword in keys:
            want = shown(element).replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            assert cells[keyword] == want, keyword


def test_table_shortening_fast_path_equals_the_per_character_walk() -> None:
    """ASCII cells are cut by slicing (2 000 rows on a narrow terminal in milliseconds): same result as
    the per-character walk the wide/combining characters still take."""
    from dcmnet_cli.cli.find_output import ELLIPSIS, _take, shorten, width_of

    def walked(text: str, width: int) -> str:
        if width_of(text) <= width:
            return text
        if width <= 1:
            return ELLIPSIS[:width]
        if all(c.isdigit() or c == "." for c in text) and "." in text and not text.startswith("."):
            tail = (width - 1) // 2
            return _take(text, width - 1 - tail) + ELLIPSIS + _take(text, tail, from_end=True)
        return _take(text, width - 1) + ELLIPSIS

    for text in ("1.2.840.10008.5.1.4.1.1.2", "CT HEAD NECK", "Doe^John", "1.2", "12", "x" * 30, "1.2.3.4.5"):
        for width in range(0, 32):
            assert shorten(text, width) == walked(text, width), (text, width)
    assert width_of("1.2.8…1.1.2") == 11 and width_of("山田…") == 5
