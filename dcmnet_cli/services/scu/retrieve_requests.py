"""What to retrieve: C-MOVE/C-GET requests from ``-k`` keys or from ``find --json`` output (PS3.4 C.4.2.2.1)."""

from __future__ import annotations

from typing import Any, Sequence

from .retrieve import RetrieveRequest


_KEY_TAGS = {"PatientID": "00100020", "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
             "SOPInstanceUID": "00080018"}
_LEVEL_TAG = "00080052"


def _json_value(obj: dict, tag: str) -> str | None:
    """The first value of ``tag`` in a DICOM JSON object (PS3.18 F.2), as text; None if absent."""
    entry = obj.get(tag, obj.get(tag.lower()))
    if not isinstance(entry, dict):
        return None
    values = entry.get("Value")
    if not isinstance(values, list) or not values or not isinstance(values[0], (str, int, float)):
        return None
    text = str(values[0]).strip()
    return text or None


def _deepest_level(obj: dict, levels: Sequence[str]) -> str | None:
    from ..query import UNIQUE_KEYS

    present = [level for level in levels if _json_value(obj, _KEY_TAGS[UNIQUE_KEYS[level]])]
    return present[-1] if present else None


def requests_from_ndjson(lines: Sequence[str], model: str, level: str | None) -> tuple[list[RetrieveRequest], list[str]]:
    """One request per distinct match printed by ``find --json`` (one DICOM JSON object per line).

    Each line is retrieved at its own QueryRetrieveLevel (0008,0052), else at ``level``, else at the
    deepest level whose unique key it carries; the identifier holds that level's unique key and those of
    the levels above it that the model requires (PS3.4 C.4.2.2.1). Returns the requests and one message
    per unusable line (exit 3 for those lines).
    """
    import json

    from ..query import HIGHER_KEYS, MODEL_LEVELS, UNIQUE_KEYS

    levels = MODEL_LEVELS[model]
    requests: list[RetrieveRequest] = []
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as error:
            problems.append(f"--from-json line {number}: not JSON ({error})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"--from-json line {number}: not a DICOM JSON object")
            continue
        raw_level = _json_value(obj, _LEVEL_TAG)
        line_level = (raw_level or level or _deepest_level(obj, levels) or "").upper()
        if line_level not in levels:
            problems.append(f"--from-json line {number}: level {line_level or '(none)'} is not in the {model} root model "
                            f"({', '.join(levels)})")
            continue
        keys = (*HIGHER_KEYS[model][line_level], UNIQUE_KEYS[line_level])
        values = {key: _json_value(obj, _KEY_TAGS[key]) for key in keys}
        missing = [key for key, value in values.items() if not value]
        if missing:
            problems.append(f"--from-json line {number}: a {line_level} retrieve needs {', '.join(missing)}")
            continue
        identity = (line_level, *(values[k] or "" for k in keys))
        if identity in seen:
            continue
        seen.add(identity)
        requests.append(_request_for(line_level, values))
    return requests, problems


def _request_for(level: str, values: dict[str, str | None]) -> RetrieveRequest:
    from pydicom import Dataset

    from ..query import UNIQUE_KEYS, encode_identifier

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(ds, keyword, value)

    def encode(syntax: str) -> bytes:
        return encode_identifier(ds, syntax)

    return RetrieveRequest(encode, f"{level} {values[UNIQUE_KEYS[level]]}", ds, level)


def request_for_dataset(ds: Any, level: str | None) -> RetrieveRequest:
    """The request for an identifier built from -k/-f (``QuerySpec.identifier``)."""
    from ..query import UNIQUE_KEYS, encode_identifier

    label = level or "?"
    key = UNIQUE_KEYS.get(level or "")
    value = ds.get(key) if key else None
    if value not in (None, ""):
        label += f" {value}"
    return RetrieveRequest(lambda syntax: encode_identifier(ds, syntax), label, ds, level)
