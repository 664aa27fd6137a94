"""What a user types in ``-k``: attribute names and values, checked and put in DICOM form before any
association (PS3.4 C.2.2.2 matching, PS3.5 Table 6.2-1 value representations).

Names: a keyword (``PatientName``), ``gggg,eeee`` or ``(gggg,eeee)``. A keyword typed in another case
(``patientname``) is accepted with a note; an unknown one is an error that suggests the nearest
keywords (difflib over the data dictionary's keywords, listed only on that error path).

Values, per VR:

- DA, TM, DT: the DICOM forms (``20240101``, ``1015``, ranges ``A-B`` with either end left out) and
  the ISO forms people type (``2024-01-01``, ``10:15``, ``2024-01-01T10:15``, also in ranges), turned
  into DICOM forms by :func:`normalize`; impossible dates (month 13, 30 February), times past 23:59,
  reversed ranges and words (``yesterday``) are refused with the reason;
- binary numbers, IS, DS: must fit the VR; UI: UIDs (a list with ``\\``);
- AE, AS, CS, LO, SH, PN (and ST, LT): their length limits, counted in characters; AS is ``nnnD``,
  ``nnnW``, ``nnnM`` or ``nnnY``; CS is upper-case letters, digits, space and ``_``. Wildcards ``*`` and
  ``?`` are allowed in these string VRs (C.2.2.2.4) and count toward the length.
"""

from __future__ import annotations

import re


class _Lazy:
    """A regular expression compiled on its first match, not at import (find's start-up: most runs
    check a handful of values and need one or two of these)."""

    __slots__ = ("pattern", "compiled")

    def __init__(self, pattern: str) -> None:
        self.pattern: str = pattern
        self.compiled: re.Pattern[str] | None = None

    def match(self, text: str) -> "re.Match[str] | None":
        if self.compiled is None:
            self.compiled = re.compile(self.pattern)
        return self.compiled.match(text)


_INT_RANGES: dict[str, tuple[int, int]] = {
    "US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
    "UV": (0, 0xFFFFFFFFFFFFFFFF), "SV": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    "IS": (-0x80000000, 0x7FFFFFFF),  # PS3.5 Table 6.2-1
}
_MAX_CHARS = {"AE": 16, "AS": 4, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}
"""Length limits in characters (PS3.5 Table 6.2-1); PN: per component group."""
_FLOAT32_MAX = 3.4028234663852886e38
_IS = _Lazy(r"^ *[+-]?[0-9]+ *$")
_DS = _Lazy(r"^ *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *$")
_TM = _Lazy(r"^([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?$")
_DT = _Lazy(r"^([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?)?)?)?"
                 r"(?:[+-]([0-9]{2})([0-9]{2}))?$")
_UID = _Lazy(r"^[0-9]+(\.[0-9]+)*$")
_AS = _Lazy(r"^[0-9]{3}[DWMY]$")
_CS = _Lazy(r"^[A-Z0-9 _*?]*$")
_ISO_DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
_ISO_TIME = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]{1,6})?)?"
_ISO = {
    "DA": _Lazy(rf"^{_ISO_DATE}$"),
    "TM": _Lazy(rf"^{_ISO_TIME}$"),
    "DT": _Lazy(rf"^{_ISO_DATE}(?:[T ]{_ISO_TIME})?(Z|[+-][0-9]{{2}}:?[0-9]{{2}})?$"),
}
RANGE_VRS = frozenset(("DA", "TM", "DT"))
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


# ------------------------------------------------------------------------------------ names

_TAG = _Lazy(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


def tag_of(name: str, notes: list[str] | None = None) -> int:
    """A keyword or ``gggg,eeee`` as an integer tag. A keyword in the wrong case is accepted (a note is
    appended to ``notes``); an unknown one raises ValueError suggesting the nearest keywords. The data
    dictionary is our generated table (:mod:`..part10.dictionary`), not pydicom's."""
    from ..part10.dataset_codec import all_keywords, tag_for_keyword

    name = name.strip()
    match = _TAG.match(name)
    if match:
        return (int(match[1], 16) << 16) | int(match[2], 16)
    tag = tag_for_keyword(name)
    if tag is not None:
        return tag
    keyword_dict = all_keywords()
    folded = {keyword.lower(): keyword for keyword in keyword_dict if keyword}
    if name.lower() in folded:
        keyword = folded[name.lower()]
        if notes is not None:
            notes.append(f"{name!r} read as {keyword} (keywords are case-sensitive: write {keyword})")
        return int(keyword_dict[keyword])
    hint = suggest(name, folded)
    raise ValueError(f"unknown attribute {name!r}: " + (hint or "use a DICOM keyword (e.g. PatientName) or gggg,eeee"))


def vr_of(tag: int) -> str:
    """A tag's VR for a query (the first of "US or SS"); UL for group lengths, UN for private tags;
    ValueError for a public tag the dictionary does not know."""
    from ..part10.dataset_codec import entry

    found = entry(tag)
    if found is None or found[0] == "NONE":
        if (tag & 0xFFFF) == 0:
            return "UL"  # group length
        if (tag >> 16) & 1:
            return "UN"  # a private element: no dictionary entry; sent as bytes
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the DICOM dictionary")
    return found[0].split(" or ")[0]  # US or SS etc.: the first is as good as any for a query


def suggest(name: str, folded: dict[str, str]) -> str:
    """``"did you mean PatientName?"`` for the nearest keyword (case ignored), or ""."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.75)
    return f"did you mean {folded[close[0]]}? (or give the tag as gggg,eeee)" if close else ""


def to_int(text: str) -> int:
    """A decimal integer (leading zeros allowed), else Python's 0x / 0o / 0b forms; ValueError otherwise."""
    try:
        return int(text, 10)
    except ValueError:
        return int(text, 0)


# ------------------------------------------------------------------------------ ISO forms

def normalize(vr: str, value: str) -> str:
    """``value`` with the ISO date/time forms of DA, TM and DT turned into DICOM forms (``2024-01-01`` →
    ``20240101``, ``10:15`` → ``1015``, ``2024-01-01-2024-01-31`` → ``20240101-20240131``); other VRs
    and values that are not ISO forms come back unchanged (and are checked afterwards)."""
    if vr not in RANGE_VRS:
        return value
    return "\\".join(_normalize_one(vr, text) for text in value.split("\\"))


def _normalize_one(vr: str, text: str) -> str:
    point = _iso_point(vr, text)
    if point is not None:
        return point
    for at, char in enumerate(text):
        if char == "-":
            start, end = text[:at], text[at + 1:]
            first = _iso_point(vr, start) if start else ""
            last = _iso_point(vr, end) if end else ""
            if first is not None and last is not None and (start or end):
                return f"{first}-{last}"
    return text


def _iso_point(vr: str, text: str) -> str | None:
    """One ISO point in DICOM form; ``text`` itself when it has no ISO punctuation; None otherwise."""
    match = _ISO[vr].match(text)
    if match is None:
        return None if ("-" in text or ":" in text) else text
    if vr == "DA":
        return "".join(match.groups())
    if vr == "TM":
        return "".join(part or "" for part in match.groups())
    zone = (match[8] or "").replace(":", "")
    return "".join(part or "" for part in match.groups()[:7]) + ("+0000" if zone == "Z" else zone)


# ----------------------------------------------------------------------------------- checks

def allowed(vr: str) -> str:
    """What a value of ``vr`` may be, for the error message ("" for VRs not checked)."""
    if vr in _INT_RANGES:
        low, high = _INT_RANGES[vr]
        return f"an integer {low}..{high}" + (" of at most 12 characters" if vr == "IS" else "")
    if vr in ("AE", "SH", "LO", "ST", "LT"):
        return f"at most {_MAX_CHARS[vr]} characters"
    return {
        "FL": f"a finite number within +-{_FLOAT32_MAX:.7g}",
        "FD": "a finite number",
        "DS": "a decimal number of at most 16 characters, e.g. 1.5 or -2e3",
        "AT": "a tag gggg,eeee or a keyword",
        "DA": "a date YYYYMMDD (or 2024-01-31) or a range YYYYMMDD-YYYYMMDD (either end may be left out)",
        "TM": "a time HH[MM[SS[.FFFFFF]]] (or 10:15) or a range of two (either end may be left out)",
        "DT": "a date-time YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][+-ZZZZ] (or 2024-01-31T10:15) or a range of two",
        "UI": "a UID (digits and dots, at most 64 characters), or a list UID1\\UID2",
        "AS": "an age nnnD, nnnW, nnnM or nnnY (e.g. 045Y)",
        "CS": "upper-case letters, digits, space and _, at most 16 characters",
        "PN": "a name of at most 64 characters per component group (Family^Given=...)",
    }.get(vr, "")


def value_problem(vr: str, value: str) -> tuple[str, str] | None:
    """``(bad value, why and what is allowed)`` when ``value`` (one ``-k`` value in DICOM form, ``\\``
    separating several) cannot be sent as ``vr``; None when it can, or when ``vr`` is not checked."""
    expected = allowed(vr)
    if not expected:
        return None
    for text in value.split("\\"):
        reason = problem_one(vr, text)
        if reason is not None:
            return text, (f"{reason} (expected {expected})" if reason else expected)
    return None


def problem_one(vr: str, text: str) -> str | None:
    """None when ``text`` is one acceptable query value of ``vr``; else the reason ("" when the
    expected form says it all)."""
    if vr in _INT_RANGES or vr in ("FL", "FD", "DS", "AT", "UI"):
        return None if _number_or_uid_ok(vr, text) else ""
    if vr in RANGE_VRS:
        return _range_problem(vr, text)
    return _string_problem(vr, text)


def _number_or_uid_ok(vr: str, text: str) -> bool:
    import math

    if vr in _INT_RANGES:
        if vr == "IS" and (not _IS.match(text) or len(text) > 12):
            return False
        try:
            number = int(text, 10) if vr == "IS" else to_int(text)
        except ValueError:
            return False
        low, high = _INT_RANGES[vr]
        return low <= number <= high
    if vr in ("FL", "FD", "DS"):
        if vr == "DS" and (not _DS.match(text) or len(text) > 16):
            return False
        try:
            real = float(text)
        except ValueError:
            return False
        return math.isfinite(real) and (vr != "FL" or abs(real) <= _FLOAT32_MAX)
    if vr == "AT":
        try:
            tag_of(text)
        except ValueError:
            return False
        return True
    return text == "*" or (len(text) <= 64 and _UID.match(text) is not None)


def _string_problem(vr: str, text: str) -> str | None:
    wildcard = "*" in text or "?" in text
    if vr == "AS" and not wildcard and not _AS.match(text):
        return "not an age"
    if vr == "CS" and not _CS.match(text):
        upper = text.upper()
        return f"code strings are upper case: did you mean {upper}?" if _CS.match(upper) else "not a code string"
    limit = _MAX_CHARS.get(vr, 0)
    parts = text.split("=") if vr == "PN" else [text]
    for part in parts:
        if len(part) > limit:
            return f"{len(part)} characters, more than the {limit} that {vr} holds"
    return None


def _range_problem(vr: str, text: str) -> str | None:
    """Reason a DA/TM/DT value or range is refused, or None when it is fine."""
    if text == "*":
        return None
    reason = _point_problem(vr, text)
    if reason is None:
        return None  # (a DT with a negative offset contains "-" and is still one value)
    if text.isalpha():
        return f"{text!r} is a word, not a {'date' if vr == 'DA' else 'time'}: give digits"
    for at, char in enumerate(text):
        if char != "-":
            continue
        start, end = text[:at], text[at + 1:]
        if not (start or end):
            continue
        problems = [_point_problem(vr, part) for part in (start, end) if part]
        if all(problem is None for problem in problems):
            if start and end and _comparable(vr, start, end) and _key(vr, start) > _key(vr, end):
                midnight = " (a time range cannot cross midnight, PS3.4 C.2.2.2.5.2)" if vr == "TM" else ""
                return f"the range is reversed (it starts after it ends){midnight}: did you mean {end}-{start}?"
            return None
        reason = next(problem for problem in problems if problem is not None) or reason
    return reason


def _comparable(vr: str, start: str, end: str) -> bool:
    """Can the two ends be compared as strings? (DT values with UTC offsets cannot.)"""
    return vr != "DT" or not any(sign in point[4:] for point in (start, end) for sign in "+-")


def _key(vr: str, point: str) -> str:
    """A sortable form of a DA/TM/DT point (missing trailing parts are the earliest)."""
    return point.ljust(21, "0") if vr != "TM" else point.ljust(13, "0")


def _point_problem(vr: str, text: str) -> str | None:
    """Reason one DA, TM or DT value (not a range) is refused ("" = not in the form), or None."""
    if vr == "DA":
        if len(text) != 8 or not (text.isascii() and text.isdigit()):
            return ""
        year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
        return _date_problem(year, month, day)
    if vr == "TM":
        match = _TM.match(text)
        return "" if match is None else _clock_problem(match[1], match[2], match[3])
    match = _DT.match(text)
    if match is None:
        return ""
    if match[2] is not None and not 1 <= int(match[2]) <= 12:
        return f"month {match[2]} does not exist"
    if match[3] is not None:
        reason = _date_problem(int(match[1]), int(match[2]), int(match[3]))
        if reason is not None:
            return reason
    if match[7] is not None and not (int(match[7]) <= 14 and int(match[8]) <= 59):
        return f"time zone offset {match[7]}{match[8]} does not exist"
    return _clock_problem(match[4], match[5], match[6])


def _date_problem(year: int, month: int, day: int) -> str | None:
    import datetime  # only when a date key is checked: not on every find's start-up

    if not 1 <= month <= 12:
        return f"month {month:02d} does not exist"
    try:
        datetime.date(year, month, day)
    except ValueError:
        return f"{_MONTHS[month - 1]} {year} has no day {day}"
    return None


def _clock_problem(hour: str | None, minute: str | None, second: str | None) -> str | None:
    if hour is not None and int(hour) > 23:
        return f"hour {hour} does not exist"
    if minute is not None and int(minute) > 59:
        return f"minute {minute} does not exist"
    if second is not None and int(second) > 60:  # 60: a leap second
        return f"second {second} does not exist"
    return None
