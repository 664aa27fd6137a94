"""The index's tables: patient → study → series → instance, one row per stored file.

Each level has the columns the SQL prefilter of a C-FIND uses (text, normalised as
:func:`~.matching.normalise_for_column` says: DA ``YYYYMMDD``, TM ``HHMMSS.FFFFFF``) and ``attrs``, a JSON
object of every indexed attribute of that level as received (keyword → DICOM string form), from which
candidates and responses are built. Missing values are stored as ''.

An instance row is keyed by its file's path (relative to the storage folder, '/'-separated), not by its
SOP Instance UID: ``--on-duplicate rename`` keeps two files of one instance, and the index lists both
(queries and retrieves answer each SOP Instance UID once, the newest file).

The DDL below is SQLite's; the queries elsewhere are portable (``?`` parameters, no SQLite functions).
A PostgreSQL backend (issue 14) swaps ``INTEGER PRIMARY KEY`` for ``BIGSERIAL PRIMARY KEY`` and nothing else.
"""

from __future__ import annotations

from .extraction import IMAGE, PATIENT, SERIES, STUDY

SCHEMA_VERSION = "1"

COLUMNS: dict[str, dict[str, str]] = {
    PATIENT: {"PatientID": "patient_id", "IssuerOfPatientID": "issuer_of_patient_id", "PatientName": "patient_name",
              "PatientBirthDate": "patient_birth_date", "PatientSex": "patient_sex"},
    STUDY: {"StudyInstanceUID": "study_instance_uid", "StudyDate": "study_date", "StudyTime": "study_time",
            "AccessionNumber": "accession_number", "StudyID": "study_id",
            "ReferringPhysicianName": "referring_physician_name", "StudyDescription": "study_description"},
    SERIES: {"SeriesInstanceUID": "series_instance_uid", "Modality": "modality", "SeriesNumber": "series_number",
             "SeriesDate": "series_date", "SeriesDescription": "series_description"},
    IMAGE: {"SOPInstanceUID": "sop_instance_uid", "SOPClassUID": "sop_class_uid", "InstanceNumber": "instance_number"},
}
"""Per level: attribute keyword → column (the columns a query can filter on in SQL)."""

TABLES = {PATIENT: "patient", STUDY: "study", SERIES: "series", IMAGE: "instance"}
ALIASES = {PATIENT: "p", STUDY: "s", SERIES: "r", IMAGE: "i"}
PARENT = {STUDY: "patient_pk", SERIES: "study_pk", IMAGE: "series_pk"}
"""The column of each level's row that points at its parent."""
UNIQUE = {PATIENT: "patient_key", STUDY: "study_instance_uid", SERIES: "series_instance_uid", IMAGE: "path"}
"""The column that identifies a row of each level (patient_key = PatientID + '\\' + IssuerOfPatientID)."""


def _table(level: str, extra: str) -> str:
    columns = "".join(f", {column} TEXT NOT NULL DEFAULT ''" for column in COLUMNS[level].values()
                      if column != UNIQUE[level])
    parent = f", {PARENT[level]} INTEGER NOT NULL" if level in PARENT else ""
    return (f"CREATE TABLE IF NOT EXISTS {TABLES[level]} (pk INTEGER PRIMARY KEY{parent}, "
            f"{UNIQUE[level]} TEXT NOT NULL{extra}{columns}, attrs TEXT NOT NULL DEFAULT '{{}}')")


DDL = (
    "CREATE TABLE IF NOT EXISTS dcmnet_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    _table(PATIENT, " UNIQUE"),
    _table(STUDY, " UNIQUE"),
    _table(SERIES, " UNIQUE"),
    _table(IMAGE, " UNIQUE, transfer_syntax TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0"),
    "CREATE INDEX IF NOT EXISTS patient_name_ix ON patient (patient_name)",
    "CREATE INDEX IF NOT EXISTS patient_id_ix ON patient (patient_id)",
    "CREATE INDEX IF NOT EXISTS study_patient_ix ON study (patient_pk)",
    "CREATE INDEX IF NOT EXISTS study_date_ix ON study (study_date)",
    "CREATE INDEX IF NOT EXISTS study_accession_ix ON study (accession_number)",
    "CREATE INDEX IF NOT EXISTS series_study_ix ON series (study_pk)",
    "CREATE INDEX IF NOT EXISTS instance_series_ix ON instance (series_pk)",
    "CREATE INDEX IF NOT EXISTS instance_sop_ix ON instance (sop_instance_uid)",
)
