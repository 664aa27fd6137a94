"""How the index stores a value in its TEXT columns, without pydicom (the Storage SCP's path).

The C-FIND SQL prefilter (:mod:`.matching`, ``sql_condition``) compares against exactly this text, so both
use these functions: padding removed (PS3.5 6.2; leading spaces kept for LT/ST/UT, PN trailing ``^`` and
``=`` dropped), several values joined with a backslash, DA/TM/DT as fixed-width sortable text (the lowest
moment of their precision; DT with an offset from UTC reaching the hour moved to UTC).

Kept free of pydicom on purpose: ``import pydicom`` costs about 0.4 s of CPU, and a ``listen`` that only
stores must not pay it at its first indexed object (bench/index.py (b)).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple


class MatchOptions(NamedTuple):
    """C-FIND matching options (:mod:`.matching`; here so that ``listen`` builds them without pydicom)."""

    fuzzy_names: bool = False  # case-insensitive PN matching (listen --case-insensitive-names)
    combined_datetime: bool = False  # DA+TM pairs as one DT range (extended negotiation, C.2.2.2.5.4)


RANGE_VRS = frozenset({"DA", "TM", "DT"})
KEEP_LEADING = frozenset({"LT", "ST", "UT"})  # leading spaces significant (PS3.5 6.2)
SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash in them is text, not a separator
# the earliest and latest value of each precision: a partial value is padded from these
LOWEST = {"DA": "00000101", "TM": "000000.000000", "DT": "00000101000000.000000"}
HIGHEST = {"DA": "99991231", "TM": "235959.999999", "DT": "99991231235959.999999"}
_DT_PARTS = re.compile(r"(\d{1,14}(?:\.\d{0,6})?)([+-])(\d\d)(\d\d)")


def _clean(vr: str, text: str) -> str:
    """Padding removed: trailing spaces/NULs always, leading spaces except LT/ST/UT, PN trailing ^ and =."""
    text = text.rstrip(" \x00")
    if vr not in KEEP_LEADING:
        text = text.lstrip(" ")
    if vr == "PN":
        text = "=".join(group.rstrip("^ ") for group in text.split("=")).rstrip("=")
    return text


def _pad(vr: str, text: str, high: bool) -> str:
    template = (HIGHEST if high else LOWEST)[vr]
    return text[:len(template)] if len(text) >= len(template) else text + template[len(text):]


def _strip_form(vr: str, text: str) -> str:
    """ACR-NEMA separators dropped (``2024.01.31``, ``10:15``) and blanks removed."""
    text = text.strip()
    if vr == "DA":
        return text.replace(".", "")
    if vr == "TM":
        return text.replace(":", "")
    return text


def _valid_offset(sign_hh_mm: str) -> bool:
    return int(sign_hh_mm[1:3]) <= 14 and int(sign_hh_mm[3:5]) < 60


@lru_cache(maxsize=65536)
def _point(vr: str, text: str, high: bool = False) -> str:
    """A DA/TM/DT value as fixed-width sortable text (the lowest or highest moment of its precision);
    DT with an offset from UTC reaching the hour is moved to UTC. Also what a column holds."""
    text = _strip_form(vr, text)
    if not text:
        return ""
    if vr != "DT":
        return _pad(vr, text, high)
    parts = _DT_PARTS.fullmatch(text)
    if parts is None or not _valid_offset(parts.group(2) + parts.group(3) + parts.group(4)):
        return _pad(vr, re.sub(r"[+-]\d{4}$", "", text), high)
    digits, sign, hours, minutes = parts.groups()
    padded = _pad(vr, digits, high)
    if len(digits) < 10:
        return padded
    from datetime import datetime, timedelta  # DT values only (rare in the index)

    try:  # not strptime: ten times slower
        moment = datetime(int(padded[0:4]), int(padded[4:6]), int(padded[6:8]), int(padded[8:10]),
                          int(padded[10:12]), int(padded[12:14]), int(padded[15:21]))
    except ValueError:
        return padded
    shift = timedelta(hours=int(hours), minutes=int(minutes))
    moment = moment - shift if sign == "+" else moment + shift
    return moment.strftime("%Y%m%d%H%M%S.%f")


def clean_texts(vr: str, texts: list[str]) -> str:
    """Values (text, before cleaning) as one column value: cleaned, DA/TM/DT as points, backslash-joined;
    '' when every value is empty."""
    cleaned = [_clean(vr, text) for text in texts]
    if vr in RANGE_VRS:
        cleaned = [_point(vr, text) for text in cleaned]
    return "\\".join(cleaned) if any(cleaned) else ""


def column_text(vr: str, value: str) -> str:
    """What the column of an attribute of ``vr`` holds for ``value`` (its DICOM string form, several values
    backslash-separated): :func:`.matching.normalise_for_column` for a str, without pydicom."""
    if not value:
        return ""
    if vr not in RANGE_VRS and vr != "PN" and "\\" not in value:  # the usual case: one value, no form to change
        text = value.rstrip(" \x00")
        return text if vr in KEEP_LEADING else text.lstrip(" ")
    return clean_texts(vr, [value] if vr in SINGLE_VALUED else value.split("\\"))
