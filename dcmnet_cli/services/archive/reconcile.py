"""Make the index and the storage folder agree (run by ``listen`` at start, before any association).

- A file below the folder without a row (stored before the index existed, or by a process killed between
  the rename and the commit of its row, or copied in by hand) is read (File Meta and the top-level elements before
  Pixel Data, nothing decoded that is skipped) and indexed; a file whose size differs from its row's is
  indexed again. Files that are not DICOM are left alone and counted.
- A row whose file is gone is removed (with the series, study and patient left empty).
- Names starting with ``.dcmnet-`` are ours (temporaries, the index and its -wal/-shm files) and never
  read; nor are other hidden files and folders (names starting with a dot).

``progress(done, total)`` is called as files are read (``listen`` draws a bar on a terminal). Their rows
go through :meth:`~.index.Index.submit` (many per transaction) and are all committed before this returns;
a row that cannot be written counts as skipped.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

from .extraction import read_file_attributes

BATCH = 500
"""Rows removed per transaction."""


class Reconciled(NamedTuple):
    indexed: int
    removed: int
    skipped: int


def folder_files(root: str) -> dict[str, int]:
    """Every regular file below ``root`` (hidden names excluded): relative '/'-path → size."""
    found: dict[str, int] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        prefix = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for name in names:
            if name.startswith("."):
                continue
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if st.st_mode & 0o170000 == 0o100000:  # a regular file (symlinks are not followed)
                found[prefix + name] = st.st_size
    return found


def reconcile(index: Any, progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """See the module docstring; (files indexed, rows removed)."""
    result = reconcile_counts(index, progress)
    return result.indexed, result.removed


def reconcile_counts(index: Any, progress: Callable[[int, int], None] | None = None) -> Reconciled:
    on_disk = folder_files(index.root)
    rows = index.files()
    gone = [path for path in rows if not os.path.isabs(path) and path not in on_disk]
    for start in range(0, len(gone), BATCH):
        index.remove_relative(gone[start:start + BATCH])
    todo = [path for path, size in on_disk.items() if rows.get(path) != size]
    indexed = skipped = 0
    failed: list[str] = []  # rows the index thread could not write (reported from it)
    for done, rel in enumerate(todo, 1):
        path = index.absolute(rel)
        try:
            attributes, syntax = read_file_attributes(path)
            index.submit(path, attributes, syntax, on_disk[rel], lambda failed_path, error: failed.append(failed_path))
            indexed += 1
        except (ValueError, OSError):
            skipped += 1
        if progress is not None:
            progress(done, len(todo))
    index.sync()  # batched like the Storage SCP's rows: many files per transaction, all committed here
    return Reconciled(indexed - len(failed), len(gone), skipped + len(failed))
