"""What ``store`` sends: paths, folders (recursive, filtered by a glob) and DICOMDIRs become files whose
File Meta has been read; unusable inputs become outcomes with the reason (exit 3), the rest still go."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from ...errors import InputError
from ..dicomfiles import DicomFile, read_meta
from .store_results import FileOutcome

CONTENT_BUDGET = 16 << 20
"""Bytes of small files' data sets kept in memory from the meta read (sent without another read)."""


def collect(paths: Iterable[str], recursive: bool = True, pattern: str | None = None) -> tuple[list[DicomFile], list[FileOutcome]]:
    """Files to send (deduplicated, in order) and the inputs that cannot be sent, with the reason.

    ``pattern`` filters the names of files found in folders (DCMTK's ``--scan-pattern`` habit); files
    named explicitly are always taken.
    """
    files: list[DicomFile] = []
    problems: list[FileOutcome] = []
    seen: set[tuple[int, int] | None] = set()
    budget = CONTENT_BUDGET

    def take(path: str, from_folder: bool) -> None:
        nonlocal budget
        try:
            meta = read_meta(path, keep_content=budget > 0)
        except InputError as error:
            problems.append(FileOutcome(path, error=error))
            return
        if meta.identity in seen:  # the same file by another path or link: (st_dev, st_ino) from its fstat
            return
        seen.add(meta.identity)
        if meta.is_dicomdir:
            if not from_folder:  # a folder walk finds the referenced files anyway
                for referenced in _dicomdir_files(meta, problems):
                    take(referenced, False)
            return
        if meta.content is not None:
            budget -= len(meta.content)
        files.append(meta)

    for path in paths:
        if os.path.isdir(path):
            for found in _walk(path, recursive, pattern):
                take(found, True)
        elif os.path.exists(path):
            take(path, False)
        else:
            problems.append(FileOutcome(path, error=InputError(f"{path}: no such file or folder")))
    return files, problems


OWN_FILES = ".dcmnet-"
"""Names ``listen`` keeps beside stored objects (its index and -wal/-shm, in-flight temporaries): a
folder walk skips them, so a folder a listener wrote can be stored onwards as it is."""


def _walk(folder: str, recursive: bool, pattern: str | None) -> Iterator[str]:
    if pattern is not None:
        import fnmatch  # only with --scan-pattern: it imports re (start-up)

        match = fnmatch.fnmatch
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        if not recursive:
            dirs.clear()
        for name in sorted(names):
            if name.startswith(OWN_FILES):
                continue
            if pattern is None or match(name, pattern):
                yield os.path.join(root, name)


def _dicomdir_files(meta: DicomFile, problems: list[FileOutcome]) -> list[str]:
    """ReferencedFileID of every directory record (PS3.10 §8.6, PS3.3 F.3); paths relative to the DICOMDIR."""
    import pydicom

    base = os.path.dirname(meta.path)
    try:
        dicomdir = pydicom.dcmread(meta.path, force=True)
        records = dicomdir.get("DirectoryRecordSequence", [])
    except Exception as error:  # pydicom raises many types for a broken file
        problems.append(FileOutcome(meta.path, error=InputError(f"{meta.path}: cannot read the DICOMDIR: {error}")))
        return []
    found = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        found.append(_on_disk(base, [str(p).strip() for p in parts]))
    if not found:
        problems.append(FileOutcome(meta.path, error=InputError(f"{meta.path}: the DICOMDIR references no files")))
    return found


def _on_disk(base: str, parts: list[str]) -> str:
    """The referenced file's path; where it does not exist as written, matched case-insensitively one
    component at a time (a CD's upper-case IDs mounted on Linux as lower-case names, PS3.10 §8.2)."""
    exact = os.path.join(base, *parts)
    if os.path.exists(exact):
        return exact
    folder = base
    for part in parts:
        candidate = os.path.join(folder, part)
        if not os.path.exists(candidate):
            try:
                names = os.listdir(folder)
            except OSError:
                return exact
            match = next((name for name in sorted(names) if name.casefold() == part.casefold()), None)
            if match is None:
                return exact
            candidate = os.path.join(folder, match)
        folder = candidate
    return folder
