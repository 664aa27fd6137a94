"""Attribute matching of C-FIND keys (PS3.4 C.2.2.2) and what a response holds (PS3.4 C.4.1.1.3).

Pure functions over pydicom Datasets, shared by the Query/Retrieve C-FIND SCP (through the index) and the
Modality Worklist SCP. The rules, per key of the request identifier:

- Universal (C.2.2.2.3): a zero-length value, a sequence with no item or one empty item, and (wild card
  VRs) a value of only ``*``: every entity matches, also one without the attribute.
- Empty value (C.2.2.2.1, 2019+): ``""`` (two QUOTATION MARKs) matches an absent or zero-length attribute.
- Single value (C.2.2.2.1): exact, case-sensitive; PN case-insensitive with ``fuzzy_names``. Leading and
  trailing spaces are padding (not for LT/ST/UT, which keep leading ones); PN trailing ``^``/``=`` too.
  Numbers (IS, DS, US, ...) compare as numbers. A DA/TM/DT value without full precision covers its span
  ("2024" is the year 2024, TM "1030" is 10:30:00-10:30:59.999999).
- List of UIDs (C.2.2.2.2): ``a\\b\\c``: any of them. Other multi-valued keys match when any value does.
- Wild card (C.2.2.2.4): ``*`` any run of characters (also none), ``?`` exactly one character, for
  AE, CS, LO, LT, PN, SH, ST, UC, UR, UT only; every other character is literal (regex metacharacters too).
- Range (C.2.2.2.5): DA, TM, DT ``a-b``, ``a-``, ``-b``, inclusive; the lower end is padded with the
  earliest, the upper with the latest value of its precision. DT offsets from UTC are applied when the
  value reaches the hour. With ``combined_datetime`` (extended negotiation, C.2.2.2.5.4) a DA key and its
  TM partner (StudyDate/StudyTime, ...) of the same range form match as one DT range.
- Sequence (C.2.2.2.6): the key's one item matches when all its keys match one item of the candidate.

A non-universal key against an absent or zero-length candidate attribute never matches. A multi-valued
candidate attribute (ModalitiesInStudy ``CT\\MR``) matches when any of its values does.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any, Callable, Container, Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .columns import MatchOptions  # noqa: F401 - defined there (no pydicom), used here and by callers
from .columns import LOWEST, RANGE_VRS, SINGLE_VALUED, _clean, _pad, _point, _strip_form, _valid_offset, clean_texts


SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
NEVER_MATCHED = frozenset({SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL})
WILDCARD_VRS = frozenset("AE CS LO LT PN SH ST UC UR UT".split())
NUMBER_VRS = frozenset("IS DS US SS UL SL UV SV FL FD".split())
TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
# DA key -> its TM partner for combined date-time matching (PS3.4 C.2.2.2.5.4)
DATE_TIME_PAIRS = {0x00080020: 0x00080030, 0x00080021: 0x00080031, 0x00080022: 0x00080032,
                   0x00080023: 0x00080033, 0x00100030: 0x00100032, 0x00400002: 0x00400003,
                   0x00400004: 0x00400005, 0x00400244: 0x00400245, 0x00400250: 0x00400251}
PAIRED_TIMES = frozenset(DATE_TIME_PAIRS.values())
EMPTY_VALUE = '""'
MAX_SQL_LIST = 500  # a longer list of values is left to matches() (SQLite allows 32 766 parameters in all)
_DT = r"\d{1,14}(?:\.\d{0,6})?(?:[+-]\d{4})?"
_DT_RANGE = re.compile(rf"\s*({_DT})?\s*-\s*({_DT})?\s*")

Predicate = Callable[[str], bool]


# ---------------------------------------------------------------- values as text


def _items(value: Any) -> list[Any]:
    """The values of a (possibly multi-valued) element value."""
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    original = getattr(value, "original_string", None)  # pydicom DA/TM/DT/IS/DS objects
    return original if isinstance(original, str) else str(value)


def element_strings(element: DataElement, vr: str | None = None) -> list[str]:
    """The values of a (non-sequence) element as cleaned text; [] when it is empty."""
    vr = vr or element.VR
    value = element.value
    if value is None or value == "" or value == b"":
        return []
    items = _items(value)
    out: list[str] = []
    for item in items:
        if item is None:
            continue
        text = _text(item)
        parts = [text] if vr in SINGLE_VALUED or isinstance(item, (int, float)) else text.split("\\")
        out.extend(_clean(vr, part) for part in parts)
    return out if any(out) else []


def _vr_of(key: DataElement, candidate: DataElement | None) -> str:
    vr = key.VR
    if (vr == "UN" or " or " in vr) and candidate is not None and candidate.VR != "UN" and " or " not in candidate.VR:
        return str(candidate.VR)
    if " or " in vr:
        return vr.split(" or ")[0]
    return str(vr)


def _fold(text: str) -> str:
    """Lower case, one character for one (never mapping non-ASCII to ASCII), so SQL ``lower()`` agrees."""
    out = []
    for char in text:
        lower = char.lower()
        out.append(lower if len(lower) == 1 and (char.isascii() or not lower.isascii()) else char)
    return "".join(out)


# ---------------------------------------------------------------- dates and times


def split_range(vr: str, key: str) -> tuple[str, str] | None:
    """The (low, high) texts of a DA/TM/DT range key ('' for an open end), None for a single value."""
    key = _strip_form(vr, key)
    if vr == "DT":
        offset = re.search(r"[+-]\d{4}$", key)
        if re.fullmatch(_DT, key) and (not offset or _valid_offset(offset.group())):
            return None
        found = _DT_RANGE.fullmatch(key)
        return None if found is None else (found.group(1) or "", found.group(2) or "")
    if key.count("-") != 1:
        return None
    low, _sep, high = key.partition("-")
    return low.strip(), high.strip()


def range_bounds(vr: str, key: str) -> tuple[str | None, str | None]:
    """(lowest, highest) sortable texts a DA/TM/DT key accepts, None for an open end; for a single value
    the span of its precision ("2024" is the whole year)."""
    parts = split_range(vr, key)
    if parts is None:
        key = _strip_form(vr, key)
        return _point(vr, key), _point(vr, key, True)
    low, high = parts
    return (_point(vr, low) if low else None), (_point(vr, high, True) if high else None)


def _range_form(vr: str, key: str) -> str:
    """'a-b', 'a-', '-b' or '' (a single value): the form combined date-time matching compares."""
    parts = split_range(vr, key)
    return "" if parts is None else ("a" if parts[0] else "") + "-" + ("b" if parts[1] else "")


def _in_range(vr: str, low: str | None, high: str | None) -> Predicate:
    def accept(text: str) -> bool:
        point = _point(vr, text)
        return bool(point) and (low is None or point >= low) and (high is None or point <= high)
    return accept


# ---------------------------------------------------------------- one key value


def _collapse(key: str) -> str:
    """Runs of ``*`` as one (same meaning, and keeps :func:`wildcard_match` within len(pattern) x len(text))."""
    return re.sub(r"\*{2,}", "*", key)


def wildcard_match(pattern: str, text: str) -> bool:
    """``*`` any run of characters, ``?`` exactly one, everything else literal (C.2.2.2.4). Not a regular
    expression: a hostile key such as ``*a*a*a...*b`` makes a backtracking regex run for hours; this
    walks back only to the last ``*`` (at most len(pattern) x len(text) steps)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def value_predicate(vr: str, key: str, fuzzy: bool = False) -> Predicate:
    """A test of one cleaned candidate value against one key value (not universal, not ``""``)."""
    fuzzy = fuzzy and vr == "PN"
    if vr in RANGE_VRS:
        return _in_range(vr, *range_bounds(vr, key))
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        pattern = _collapse(_fold(key) if fuzzy else key)
        if fuzzy:
            return lambda text: wildcard_match(pattern, _fold(text))
        return lambda text: wildcard_match(pattern, text)
    if vr in NUMBER_VRS:
        number = _number(key)
        if number is not None:
            return lambda text: _number(text) == number
    if fuzzy:
        folded = _fold(key)
        return lambda text: _fold(text) == folded
    return lambda text: text == key


def _is_universal(vr: str, values: list[str]) -> bool:
    return not values or (vr in WILDCARD_VRS and any(value and set(value) == {"*"} for value in values))


# ---------------------------------------------------------------- keys of an identifier


Test = Callable[[Dataset], bool]


def _candidate_strings(candidate: Dataset, tag: int, vr: str) -> list[str]:
    found = candidate[tag] if tag in candidate else None
    return [] if found is None or found.VR == "SQ" else element_strings(found, vr)


def _key_test(key: DataElement, candidate: Dataset, options: MatchOptions) -> bool:
    """One key (not a sequence) whose VR the candidate decides (UN or ambiguous in the identifier)."""
    found = candidate[key.tag] if key.tag in candidate else None
    test = _compile_key(key, _vr_of(key, found), options)
    return test is None or test(candidate)


def _compile_key(key: DataElement, vr: str, options: MatchOptions) -> Test | None:
    """The test of one non-sequence key, None when it is universal."""
    values = element_strings(key, vr)
    if _is_universal(vr, values):
        return None
    tag = key.tag
    if values == [EMPTY_VALUE]:
        return lambda candidate: not _candidate_strings(candidate, tag, vr)
    plain = vr not in NUMBER_VRS and vr not in RANGE_VRS
    wanted = frozenset(value for value in values if plain and value and _kind(vr, value, options) == "exact")
    tests = [value_predicate(vr, value, options.fuzzy_names) for value in values if value and value not in wanted]

    def test(candidate: Dataset) -> bool:  # a list of 10 000 UIDs costs one set lookup per value
        return any(text in wanted or any(accept(text) for accept in tests)
                   for text in _candidate_strings(candidate, tag, vr))
    return test


def _compile_sequence(key: DataElement, options: MatchOptions) -> Test | None:
    """Sequence matching (C.2.2.2.6): None for no item or an empty item (universal)."""
    items = key.value or []
    if not items or len(items[0]) == 0:
        return None
    inner, tag = compile_matcher(items[0], options), key.tag

    def test(candidate: Dataset) -> bool:
        found = candidate[tag] if tag in candidate else None
        return found is not None and found.VR == "SQ" and any(inner(item) for item in found.value or [])
    return test


def _compile_combined(date_key: DataElement, time_key: DataElement) -> Test | None:
    """A DA key and its TM partner as one DT range (C.2.2.2.5.4), or None when they do not qualify
    (not both single ranges of the same form)."""
    date_values, time_values = element_strings(date_key, "DA"), element_strings(time_key, "TM")
    if len(date_values) != 1 or len(time_values) != 1:
        return None
    form = _range_form("DA", date_values[0])
    if not form or form != _range_form("TM", time_values[0]):
        return None
    date_low, date_high = split_range("DA", date_values[0]) or ("", "")
    time_low, time_high = split_range("TM", time_values[0]) or ("", "")
    low = _pad("DA", date_low, False) + _pad("TM", time_low, False) if date_low else None
    high = _pad("DA", date_high, True) + _pad("TM", time_high, True) if date_high else None
    date_tag, time_tag = date_key.tag, time_key.tag

    def test(candidate: Dataset) -> bool:
        have_date = _candidate_strings(candidate, date_tag, "DA")
        if not have_date:
            return False
        have_time = _candidate_strings(candidate, time_tag, "TM")
        moment = _point("DA", have_date[0]) + (_point("TM", have_time[0]) if have_time else LOWEST["TM"])
        return (low is None or moment >= low) and (high is None or moment <= high)
    return test


def compile_matcher(identifier: Dataset, options: MatchOptions = MatchOptions(), skip: Container[int] = ()) -> Test:
    """:func:`matches` with the identifier parsed once, for many candidates of one query."""
    tests: list[Test] = []
    combined: set[int] = set()
    if options.combined_datetime:
        for date_tag, time_tag in DATE_TIME_PAIRS.items():
            if date_tag in identifier and time_tag in identifier:
                pair = _compile_combined(identifier[date_tag], identifier[time_tag])
                if pair is not None:
                    tests.append(pair)
                    combined.update((date_tag, time_tag))
    for key in identifier:
        tag = key.tag
        if tag.group in (0x0000, 0x0002) or tag in NEVER_MATCHED or tag in skip or tag in combined:
            continue
        if key.VR == "SQ":
            test = _compile_sequence(key, options)
        elif key.VR == "UN" or " or " in key.VR:
            test = (lambda candidate, key=key: _key_test(key, candidate, options))
        else:
            test = _compile_key(key, key.VR, options)
        if test is not None:
            tests.append(test)
    return lambda candidate: all(test(candidate) for test in tests)


def matches(identifier: Dataset, candidate: Dataset, options: MatchOptions = MatchOptions(),
            skip: Container[int] = ()) -> bool:
    """Every matching key in ``identifier`` matches ``candidate`` (PS3.4 C.2.2.2). Never matched:
    SpecificCharacterSet, QueryRetrieveLevel, groups 0000/0002, and the tags in ``skip`` (decided by SQL).
    For many candidates of one query, :func:`compile_matcher` parses the identifier once."""
    return compile_matcher(identifier, options, skip)(candidate)


# ---------------------------------------------------------------- responses (PS3.4 C.4.1.1.3)


def _filled(key: DataElement, candidate: Dataset, options: MatchOptions) -> DataElement:
    found = candidate[key.tag] if key.tag in candidate else None
    if key.VR == "SQ":
        return DataElement(key.tag, "SQ", _filled_items(key, found, options))
    if found is None or found.VR == "SQ":
        vr = key.VR if " or " not in key.VR and key.VR != "UN" else _vr_of(key, None)
        return DataElement(key.tag, vr, None)
    return DataElement(key.tag, found.VR, copy.deepcopy(found.value))


def _filled_items(key: DataElement, found: DataElement | None, options: MatchOptions) -> Sequence:
    """The candidate's items: all of them for an empty key item, else those that match the key item, each
    holding only the key item's attributes (C.2.2.2.6)."""
    if found is None or found.VR != "SQ" or not found.value:
        return Sequence([])
    items = key.value or []
    if not items or len(items[0]) == 0:
        return Sequence([copy.deepcopy(item) for item in found.value])
    wanted = items[0]
    out = []
    for item in found.value:
        if matches(wanted, item, options):
            reduced = Dataset()
            for inner in wanted:
                if inner.tag != SPECIFIC_CHARACTER_SET and inner.tag.group not in (0x0000, 0x0002):
                    reduced.add(_filled(inner, item, options))
            out.append(reduced)
    return Sequence(out)


def has_non_ascii(dataset: Dataset) -> bool:
    """Any text value (at any depth) outside ASCII."""
    for element in dataset:
        if element.VR == "SQ":
            if any(has_non_ascii(item) for item in element.value or []):
                return True
        elif element.VR in TEXT_VRS and element.value is not None:
            values = _items(element.value)
            if any(not _text(value).isascii() for value in values if value is not None):
                return True
    return False


def response(identifier: Dataset, candidate: Dataset, level: str,
             options: MatchOptions = MatchOptions()) -> Dataset:
    """What a C-FIND SCP returns for one match: exactly the keys of ``identifier``, each filled from
    ``candidate`` (zero-length when it lacks it; sequences item-wise), QueryRetrieveLevel = ``level`` (not
    set when ``level`` is empty, as for the worklist), RetrieveAETitle when the candidate has one (Q/R), and
    SpecificCharacterSet 'ISO_IR 192' when any text value is not ASCII (values stay str)."""
    out = Dataset()
    for key in identifier:
        tag = key.tag
        if tag.group in (0x0000, 0x0002) or tag in NEVER_MATCHED:
            continue
        out.add(_filled(key, candidate, options))
    if level:
        out.QueryRetrieveLevel = level
    if level and RETRIEVE_AE_TITLE in candidate and RETRIEVE_AE_TITLE not in out:  # Q/R only (C.4.1.1.3.2)
        out.add(DataElement(RETRIEVE_AE_TITLE, "AE", copy.deepcopy(candidate[RETRIEVE_AE_TITLE].value)))
    if has_non_ascii(out):
        out.SpecificCharacterSet = "ISO_IR 192"
    return out


# ---------------------------------------------------------------- SQL prefilter


def normalise_for_column(vr: str, value: Any) -> str:
    """The text the index stores for a value: DA/TM/DT as fixed-width sortable text (see ``_point``),
    others cleaned of padding; several values joined with a backslash. ``value``: str, list or element value."""
    if value is None:
        return ""
    items = _items(value)
    texts: list[str] = []
    for item in items:
        if item is None:
            continue
        text = _text(item)
        texts.extend([text] if vr in SINGLE_VALUED else text.split("\\"))
    return clean_texts(vr, texts)  # the same text as columns.column_text, which the index writes with


def _escape_like(text: str) -> str:
    """``text`` literal in a LIKE pattern with ESCAPE '\\'."""
    return "".join("\\" + char if char in "%_\\" else char for char in text)


def _like(key: str) -> str:
    """A wild card key as a LIKE pattern with ESCAPE '\\': %, _ and \\ literal, * -> %, ? -> _."""
    return "".join("%" if char == "*" else "_" if char == "?" else _escape_like(char) for char in key)


def _exact_in_list(column: str, value: str) -> tuple[str, list[Any]]:
    """``value`` is one of the backslash-joined values of the column."""
    escaped = _escape_like(value)
    sql = (f"({column} = ? OR {column} LIKE ? ESCAPE '\\' OR {column} LIKE ? ESCAPE '\\' "
           f"OR {column} LIKE ? ESCAPE '\\')")
    return sql, [value, escaped + "\\\\%", "%\\\\" + escaped, "%\\\\" + escaped + "\\\\%"]


def sql_condition(element: DataElement, column: str, options: MatchOptions = MatchOptions(),
                  multi_valued: bool = False) -> tuple[str, list[Any]] | None:
    """A portable SQL prefilter for one key on a TEXT column holding ``normalise_for_column`` values
    (``?`` placeholders, ESCAPE '\\'): never excludes a row :func:`matches` accepts, but may keep more
    (SQLite's LIKE ignores ASCII case), so keep filtering with :func:`matches`; see :func:`sql_exact`.
    None when there is nothing SQL can decide (universal keys, sequences, numbers, ``""``...).
    ``multi_valued``: the column may hold several values (ModalitiesInStudy)."""
    tag = element.tag
    vr = _vr_of(element, None)
    if tag.group in (0x0000, 0x0002) or tag in NEVER_MATCHED or vr in ("SQ", "UN") or vr in NUMBER_VRS:
        return None
    if options.combined_datetime and (tag in PAIRED_TIMES):
        return None
    values = element_strings(element, vr)
    if _is_universal(vr, values) or EMPTY_VALUE in values or "" in values:
        return None
    if len(values) > 1:
        if multi_valued or len(values) > MAX_SQL_LIST or any(_kind(vr, value, options) != "exact" for value in values):
            return None
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
    return _one_condition(vr, values[0], column, options, multi_valued)


def _kind(vr: str, key: str, options: MatchOptions) -> str:
    if vr in RANGE_VRS:
        return "range"
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        return "wildcard"
    if options.fuzzy_names and vr == "PN":
        return "fuzzy"
    return "exact"


def _one_condition(vr: str, key: str, column: str, options: MatchOptions,
                   multi_valued: bool) -> tuple[str, list[Any]] | None:
    kind = _kind(vr, key, options)
    fuzzy = options.fuzzy_names and vr == "PN"
    if fuzzy and not key.isascii():
        return None  # SQL lower() folds ASCII only: let matches() decide
    if kind == "range":
        if multi_valued:
            return None
        low, high = range_bounds(vr, key)
        parts = [(f"{column} >= ?", low), (f"{column} <= ?", high)]
        kept = [(sql, value) for sql, value in parts if value is not None]
        if not kept:
            return None
        return " AND ".join(sql for sql, _v in kept), [value for _s, value in kept]
    if kind == "wildcard":
        if multi_valued:
            return None
        if fuzzy:
            return f"lower({column}) LIKE ? ESCAPE '\\'", [_like(key.lower())]
        return f"{column} LIKE ? ESCAPE '\\'", [_like(key)]
    if fuzzy:
        return (None if multi_valued else (f"lower({column}) = ?", [key.lower()]))
    if multi_valued:
        return _exact_in_list(column, key)
    return f"{column} = ?", [key]


def sql_exact(element: DataElement, options: MatchOptions = MatchOptions(), multi_valued: bool = False) -> bool:
    """True when :func:`sql_condition` decides this key exactly on any SQL database, so the tag may go in
    ``matches(skip=...)``: UID lists, exact values (not PN with fuzzy_names) and DA/TM/DT ranges, on a
    single-valued column (on a multi-valued one SQLite's LIKE would ignore case)."""
    vr = _vr_of(element, None)
    if multi_valued:
        return False
    if sql_condition(element, "c", options, multi_valued) is None:
        return False
    if options.combined_datetime and (element.tag in DATE_TIME_PAIRS or element.tag in PAIRED_TIMES):
        return False
    values = element_strings(element, vr)
    return all(_kind(vr, value, options) in ("exact", "range") for value in values) and not (
        vr == "PN" and options.fuzzy_names)


def plain_values(elements: Iterable[DataElement]) -> dict[str, list[str]]:
    """Keyword -> cleaned values, for logs and tests."""
    return {element.keyword or str(element.tag): element_strings(element) for element in elements}
