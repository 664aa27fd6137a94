"""C-FIND and retrieve selections over the index (PS3.4 C.2.2.2, C.4.1.3, C.6.1/C.6.2).

A C-FIND search runs in two steps: SQL narrows the rows with the conditions matching.sql_condition
builds for the keys that have a column (a superset of the answer, never less), then every candidate is
built as a pydicom Dataset (the attributes of its level and the levels above it, plus the computed ones
the identifier asks for) and kept only when matching.matches accepts it.

Keys the index does not keep at the query level (sequences, attributes not in
:data:`.extraction.ATTRIBUTES`, keys of levels below the query level) are not matched: they are
returned zero-length and :func:`unsupported_keys` names them, for the 0xFF01 pending status of PS3.4
C.4.1.1.4 ("one or more Optional Keys were not supported").
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Iterator

from .extraction import BY_KEYWORD, IMAGE, LEVELS, PATIENT, SERIES, STUDY
from .schema import ALIASES, COLUMNS, PARENT, TABLES

MODEL_LEVELS = {"patient": (PATIENT, STUDY, SERIES, IMAGE), "study": (STUDY, SERIES, IMAGE),
                "patient-study": (PATIENT, STUDY)}
"""The query levels each information model has (PS3.4 C.6.1, C.6.2, C.6.3)."""

COMPUTED: dict[str, tuple[int, str, str]] = {
    "NumberOfPatientRelatedStudies": (0x00201200, "IS", PATIENT),
    "NumberOfPatientRelatedSeries": (0x00201202, "IS", PATIENT),
    "NumberOfPatientRelatedInstances": (0x00201204, "IS", PATIENT),
    "NumberOfStudyRelatedSeries": (0x00201206, "IS", STUDY),
    "NumberOfStudyRelatedInstances": (0x00201208, "IS", STUDY),
    "ModalitiesInStudy": (0x00080061, "CS", STUDY),
    "SOPClassesInStudy": (0x00080062, "UI", STUDY),
    "NumberOfSeriesRelatedInstances": (0x00201209, "IS", SERIES),
}
"""Attributes the SCP computes per entity (PS3.4 C.3.4 Table C.3-4 … C.3-7)."""

_NEVER_MATCHED = frozenset({0x00080005, 0x00080052, 0x00080054, 0x00080056})
"""SpecificCharacterSet, QueryRetrieveLevel, RetrieveAETitle, InstanceAvailability."""

_JOIN = {STUDY: "JOIN study s ON s.patient_pk = p.pk", SERIES: "JOIN series r ON r.study_pk = s.pk",
         IMAGE: "JOIN instance i ON i.series_pk = r.pk"}

_COUNTS = {
    "NumberOfPatientRelatedStudies": "SELECT patient_pk, COUNT(*) FROM study WHERE patient_pk IN ({}) GROUP BY patient_pk",
    "NumberOfPatientRelatedSeries": "SELECT s.patient_pk, COUNT(*) FROM series r JOIN study s ON r.study_pk = s.pk "
                                    "WHERE s.patient_pk IN ({}) GROUP BY s.patient_pk",
    "NumberOfPatientRelatedInstances": "SELECT s.patient_pk, COUNT(DISTINCT i.sop_instance_uid) FROM instance i JOIN series r "
                                       "ON i.series_pk = r.pk JOIN study s ON r.study_pk = s.pk WHERE s.patient_pk IN ({}) "
                                       "GROUP BY s.patient_pk",
    "NumberOfStudyRelatedSeries": "SELECT study_pk, COUNT(*) FROM series WHERE study_pk IN ({}) GROUP BY study_pk",
    "NumberOfStudyRelatedInstances": "SELECT r.study_pk, COUNT(DISTINCT i.sop_instance_uid) FROM instance i JOIN series r "
                                     "ON i.series_pk = r.pk WHERE r.study_pk IN ({}) GROUP BY r.study_pk",
    "ModalitiesInStudy": "SELECT DISTINCT study_pk, modality FROM series WHERE study_pk IN ({}) ORDER BY study_pk, modality",
    "SOPClassesInStudy": "SELECT DISTINCT r.study_pk, i.sop_class_uid FROM instance i JOIN series r ON i.series_pk = r.pk "
                         "WHERE r.study_pk IN ({}) ORDER BY r.study_pk, i.sop_class_uid",
    "NumberOfSeriesRelatedInstances": "SELECT series_pk, COUNT(DISTINCT sop_instance_uid) FROM instance "
                                      "WHERE series_pk IN ({}) GROUP BY series_pk",
}
"""Per computed attribute: (owner pk, value) rows for a batch of owners (counts grouped, lists distinct)."""
CHUNK = 64
"""Rows read (and computed attributes looked up) per step of a search."""

UNIQUE_KEYS = {PATIENT: ("PatientID", "p.patient_id"), STUDY: ("StudyInstanceUID", "s.study_instance_uid"),
               SERIES: ("SeriesInstanceUID", "r.series_instance_uid"), IMAGE: ("SOPInstanceUID", "i.sop_instance_uid")}


def key_values(identifier: Any, keyword: str) -> list[str]:
    """The values of ``keyword`` in a Dataset or dict identifier, split on backslashes; [] when absent/empty."""
    value = identifier.get(keyword) if isinstance(identifier, dict) else getattr(identifier, keyword, None)
    if value is None or value == "":
        return []
    parts = value.split("\\") if isinstance(value, str) else [str(v) for v in value]
    return [part.strip() for part in parts if part.strip()]


def retrieve_rows(conn: sqlite3.Connection, sql: Callable[[str], str], level: str, identifier: Any) -> list[tuple[Any, ...]]:
    """(path, sop class, sop instance, syntax, size, study pk, series pk, instance number, pk) of every
    instance selected by the unique keys of the identifier (see Index.instances)."""
    if not key_values(identifier, UNIQUE_KEYS[level][0]):
        return []
    where, params = [], []
    for keyword, column in UNIQUE_KEYS.values():
        values = key_values(identifier, keyword)
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    text = ("SELECT i.path, i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax, i.size, s.pk, r.pk, "
            "i.instance_number, i.pk FROM patient p " + " ".join(_JOIN.values()) + " WHERE " + " AND ".join(where))
    return list(conn.execute(sql(text), params))


def level_of(keyword: str) -> str | None:
    """The level an attribute belongs to in the index (computed ones included), None if not kept."""
    attribute = BY_KEYWORD.get(keyword)
    if attribute is not None:
        return attribute.level
    computed = COMPUTED.get(keyword)
    return computed[2] if computed else None


def unsupported_keys(identifier: Any, level: str) -> list[str]:
    """Keys with a value the index cannot match at ``level`` (see the module docstring)."""
    depth = LEVELS.index(level)
    found = []
    for element in identifier:
        if element.tag in _NEVER_MATCHED or element.tag >> 16 in (0, 2):
            continue
        kept = level_of(element.keyword)
        if kept is None or LEVELS.index(kept) > depth or element.VR == "SQ":
            if not _universal(element):
                found.append(element.keyword or f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X})")
    return found


def _universal(element: Any) -> bool:
    value = element.value
    if element.VR == "SQ":
        return not value or all(len(item) == 0 for item in value)
    return value is None or value == "" or (not isinstance(value, str) and len(value) == 0)


def search(index: Any, model: str, level: str, identifier: Any, options: Any = None,
           only_keys: bool = False) -> Iterator[Any]:
    """The matching candidates (pydicom Datasets), see the module docstring. ``identifier`` is a Dataset.
    ``only_keys``: a candidate holds only the identifier's keys (what the C-FIND SCP needs, and faster)."""
    keywords = {element.keyword for element in identifier if element.keyword} if only_keys else None
    for attrs in search_attrs(index, model, level, identifier, options):
        yield to_dataset(attrs, keywords)


def search_attrs(index: Any, model: str, level: str, identifier: Any, options: Any = None) -> Iterator[dict[str, str]]:
    """The matches as ``{keyword: DICOM string form}`` (the levels' attributes and the computed ones the
    identifier asks for). A pydicom candidate is built only for the keys SQL could not decide exactly,
    and only when there are such keys: the C-FIND SCP encodes its answers from these dicts."""
    from .matching import MatchOptions

    index.sync()  # the rows this process queued (Index.submit): every object whose C-STORE-RSP was sent
    options = options or MatchOptions()
    matching = _matching_identifier(identifier, level)
    where, params, skip = _conditions(matching, level, options)
    depth = LEVELS.index(level)
    chain = LEVELS[:depth + 1]
    columns = ", ".join(f"{ALIASES[lvl]}.pk, {ALIASES[lvl]}.attrs" for lvl in chain)
    joins = " ".join(_JOIN[lvl] for lvl in chain[1:])
    text = f"SELECT {columns} FROM patient p {joins}"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += " ORDER BY " + ", ".join(f"{ALIASES[lvl]}.pk" for lvl in chain)
    wanted = [keyword for keyword in COMPUTED if keyword in identifier and LEVELS.index(COMPUTED[keyword][2]) <= depth]
    undecided = {e.keyword for e in matching if int(e.tag) not in skip and not _universal(e) and e.keyword}
    seen: set[str] = set()
    with index.reader() as conn:
        cursor = conn.execute(index.sql(text), params)
        while True:
            rows = cursor.fetchmany(CHUNK)
            if not rows:
                return
            computed = {keyword: _compute(conn, index.sql, keyword, {row[2 * chain.index(COMPUTED[keyword][2])]
                                                                     for row in rows}) for keyword in wanted}
            yield from _candidates(rows, chain, level, computed, seen, matching, undecided, options, skip)


def _candidates(rows: list[Any], chain: tuple[str, ...], level: str, computed: dict[str, dict[int, str]],
                seen: set[str], matching: Any, undecided: set[str], options: Any, skip: set[int]) -> Iterator[dict[str, str]]:
    """The matches among one batch of rows (see search_attrs)."""
    from .matching import matches

    for row in rows:
        attrs: dict[str, str] = {}
        for n in range(len(chain)):
            attrs.update(json.loads(row[2 * n + 1]))
        if level == IMAGE:
            uid = attrs.get("SOPInstanceUID", "")
            if uid in seen:
                continue  # --on-duplicate rename: one answer per instance
            seen.add(uid)
        attrs.pop("SpecificCharacterSet", None)
        for keyword, values in computed.items():
            default = "0" if COMPUTED[keyword][1] == "IS" else ""
            attrs[keyword] = values.get(row[2 * chain.index(COMPUTED[keyword][2])], default)
        if undecided and not matches(matching, to_dataset(attrs, undecided), options, skip):
            continue
        yield attrs


def _matching_identifier(identifier: Any, level: str) -> Any:
    """The identifier less the keys the index cannot match at this level (they are answered zero-length)."""
    unsupported = set(unsupported_keys(identifier, level))
    if not unsupported:
        return identifier
    from pydicom import Dataset

    kept = Dataset()
    for element in identifier:
        if (element.keyword or f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X})") not in unsupported:
            kept.add(element)
    return kept


def _conditions(identifier: Any, level: str, options: Any) -> tuple[list[str], list[Any], set[int]]:
    """SQL conditions (a superset of the matches) for the keys that have a column at or above ``level``,
    and the tags SQL decided exactly (matches() skips them)."""
    from .matching import sql_condition, sql_exact

    depth = LEVELS.index(level)
    where: list[str] = []
    params: list[Any] = []
    skip: set[int] = set()
    for element in identifier:
        if element.VR == "SQ" or _universal(element):
            continue
        keyword = element.keyword
        if keyword == "ModalitiesInStudy" and depth >= LEVELS.index(STUDY):
            condition = sql_condition(element, "m.modality", options)
            if condition is not None:
                where.append(f"EXISTS (SELECT 1 FROM series m WHERE m.study_pk = s.pk AND {condition[0]})")
                params.extend(condition[1])
            continue
        kept = BY_KEYWORD.get(keyword)
        if kept is None or LEVELS.index(kept.level) > depth:
            continue
        column = COLUMNS[kept.level].get(keyword)
        if column is None:
            continue
        condition = sql_condition(element, f"{ALIASES[kept.level]}.{column}", options)
        if condition is not None:
            where.append(f"({condition[0]})")
            params.extend(condition[1])
            if sql_exact(element, options):
                skip.add(int(element.tag))
    return where, params, skip


def _compute(conn: sqlite3.Connection, sql: Callable[[str], str], keyword: str, pks: set[int]) -> dict[int, str]:
    """A computed attribute for a batch of entities: pk → value in DICOM string form (several values
    joined by backslashes); entities without rows are left out (0 or empty)."""
    owners = sorted(pks)
    rows = conn.execute(sql(_COUNTS[keyword].format(", ".join("?" * len(owners)))), owners).fetchall()
    if COMPUTED[keyword][1] == "IS":
        return {int(pk): str(count) for pk, count in rows}
    joined: dict[int, list[str]] = {}
    for pk, value in rows:
        if value:
            joined.setdefault(int(pk), []).append(str(value))
    return {pk: "\\".join(values) for pk, values in joined.items()}


def to_dataset(attrs: dict[str, str], wanted: Any = None) -> Any:
    """A pydicom Dataset of indexed attributes (``{keyword: DICOM string form}``); only the keywords in
    ``wanted`` when given (a candidate needs no more than the identifier asks: building elements is most
    of a search's cost). Values come from our own index, so pydicom's value validation is skipped."""
    from pydicom import Dataset
    from pydicom.config import IGNORE
    from pydicom.dataelem import DataElement

    ds = Dataset()
    for keyword, value in attrs.items():
        if wanted is not None and keyword not in wanted:
            continue
        attribute = BY_KEYWORD.get(keyword)
        if attribute is not None:
            tag, vr = attribute.tag, attribute.vr
        elif keyword in COMPUTED:
            tag, vr = COMPUTED[keyword][0], COMPUTED[keyword][1]
        else:
            continue
        parts: Any = value.split("\\") if "\\" in value else value
        if vr == "US":
            parts = [int(p) for p in parts] if isinstance(parts, list) else (int(parts) if parts else None)
        ds[tag] = DataElement(tag, vr, parts, validation_mode=IGNORE)
    return ds


__all__ = ["search", "retrieve_rows", "unsupported_keys", "MODEL_LEVELS", "COMPUTED", "to_dataset", "TABLES", "PARENT"]
