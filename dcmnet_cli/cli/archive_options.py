"""``listen``'s query/retrieve node options: the index (``--index``, ``--no-index``), ``--read-only``,
``--case-insensitive-names``, and the wiring from them to the index and the C-FIND SCP.

When the index is used: with ``-od DIR`` (the index file is ``DIR/.dcmnet-index.sqlite`` unless
``--index PATH`` says otherwise), with ``--index PATH``, or when the default folder (the current one)
already holds ``.dcmnet-index.sqlite``; never with ``--no-index``, ``--ignore`` or ``--verify-only``.
A bare ``dcmnet listen PORT`` storing into the current folder does not start indexing it (that would
walk whatever folder it was started in, a home folder perhaps). With the index, the C-FIND classes are
accepted (and engineers' C-MOVE/C-GET and worklist services register next to them in listen.py).
"""

from __future__ import annotations

import os
from typing import Any

import click

from .app import App
from .options import stack

INDEX_NAME = ".dcmnet-index.sqlite"

archive_options = stack(
    click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="The index (SQLite) of the stored objects, for C-FIND/C-MOVE/C-GET [default: "
                      "DIR/.dcmnet-index.sqlite with -od DIR]. Created if missing; reconciled with the folder at start. "
                      "postgresql://USER@HOST/DB: one index shared by several nodes (pip install 'dcmnet[postgresql]')."),
    click.option("--no-index", is_flag=True,
                 help="Keep no index (storage only; no C-FIND/C-MOVE/C-GET), even with -od."),
    click.option("--read-only", is_flag=True,
                 help="Serve C-FIND/C-MOVE/C-GET from the index but refuse every C-STORE (0x0124 not authorized; "
                      "storage contexts stay accepted, as C-GET needs them)."),
    click.option("--case-insensitive-names", is_flag=True,
                 help="C-FIND matches person names (PN) case-insensitively for every client (a client can also "
                      "ask for it on its association: fuzzy semantic matching, e.g. dcmnet find --fuzzy)."),
)


def index_path(options: dict[str, Any]) -> str | None:
    """Where the index is, or None when listen keeps none (see the module docstring)."""
    if options.get("no_index") or options.get("ignore") or options.get("verify_only"):
        return None
    folder = options.get("output_directory")
    if options.get("index_path"):
        if options["index_path"].startswith(("postgresql://", "postgres://")):  # issue 14 (services/archive/postgres.py)
            return options["index_path"]
        return os.path.abspath(options["index_path"])
    if options.get("output_directory_given"):
        return os.path.join(folder, INDEX_NAME) if folder else None
    default = os.path.join(folder or ".", INDEX_NAME)
    return os.path.abspath(default) if os.path.exists(default) else None


def check_archive_options(options: dict[str, Any]) -> None:
    """Usage errors between the archive options and the others."""
    if options.get("no_index") and (options.get("index_path") or options.get("read_only")):
        raise click.UsageError("--no-index contradicts --index and --read-only")
    if options.get("read_only") and (options.get("ignore") or options.get("verify_only")):
        raise click.UsageError("--read-only serves the index: drop --ignore/--verify-only")


def open_archive(app: App, options: dict[str, Any], storage: Any) -> Any:
    """Open and reconcile the index (a progress bar on a terminal for large folders), attach it to the
    Storage SCP, and return the C-FIND SCP's QueryConfig; None without an index. InputError (exit 3)
    when the index file cannot be opened."""
    from ..errors import InputError
    from ..services.archive.columns import MatchOptions  # not matching: no pydicom at start-up
    from ..services.archive.index import IndexRef
    from ..services.scp.find_handler import QueryConfig

    path = index_path(options)
    if path is None:
        if options.get("read_only"):
            raise click.UsageError("--read-only needs an index: give -od DIR or --index PATH")
        return None
    from ..services.archive.postgres import PostgresRef, is_url, safe_url  # issue 14 (no password printed)

    ref = IndexRef(path, storage.root) if not is_url(path) else PostgresRef(path, storage.root)
    try:  # kept open: its -wal/-shm files exist before the first store (each --workers process opens its own)
        indexed, removed = _reconcile(app, ref.get())
    except OSError as error:
        raise InputError(f"cannot use index {safe_url(path)}: {error}") from None
    if indexed or removed:
        app.info(f"index {safe_url(path)}: {indexed} file{'' if indexed == 1 else 's'} indexed, "
                 f"{removed} row{'' if removed == 1 else 's'} of missing files removed")
    storage.config.index = ref
    storage.config.read_only = bool(options.get("read_only"))
    return QueryConfig(ref, MatchOptions(fuzzy_names=bool(options.get("case_insensitive_names"))))


PROGRESS_FROM = 2000
"""Folders with at least this many files to index get a progress bar (on a terminal)."""


def _reconcile(app: App, index: Any) -> tuple[int, int]:
    import sqlite3

    from ..services.archive.reconcile import reconcile

    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total >= PROGRESS_FROM and app.err_is_terminal and not app.quiet:
            from .progress import TransferProgress

            bar = TransferProgress(app.err, total, total, color=app.color, label="indexing")
            bar.__enter__()
        if bar is not None:
            bar.advance(1)
            bar.file_done()

    try:
        return reconcile(index, progress)
    except sqlite3.Error as error:
        raise OSError(str(error)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
