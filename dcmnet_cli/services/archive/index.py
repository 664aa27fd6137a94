"""The embedded index of ``dcmnet listen``: every stored file at patient, study, series and instance level.

Rules (issue 11):

- An object is in the index only once its file is complete: the Storage SCP queues the row
  (:meth:`Index.submit`) only after the file was renamed into place (and fsynced), just before its
  C-STORE-RSP; a row whose file went away is removed by :meth:`Index.reconcile` (run at start), which also
  indexes every file without a row.
- Rows are written in batches (transport/batcher.py): :meth:`Index.submit` appends a row to a queue, with
  the values the Storage SCP's walk kept still undecoded (:class:`.extraction.RawValues`); the rows queued
  within :data:`BATCH_DELAY` of the first (at most :data:`BATCH_LIMIT`) go in one transaction
  (``BEGIN IMMEDIATE``, so ``--workers N`` processes queue on SQLite's lock instead of failing) and one
  commit. Who writes them: the association thread whose C-STORE-RSP was just sent when a batch is due
  (:meth:`Index.write_due`), a query that needs them (:meth:`sync`), or, for the tail of a run, the
  index's background thread :data:`BATCH_GAP` after the last row. A writer thread beside the association
  threads cost twice the CPU per object (GIL hand-offs), so it only writes what nobody else does.
  :meth:`Index.add` writes and commits at once (reconciliation, tools). Readers take a connection of
  their own from a small pool: WAL lets them read while a batch is committed.
- What a query sees: every query and retrieve of this process (:meth:`search`, :func:`.search.search_attrs`,
  :meth:`instances`, :meth:`files`) first waits until the rows queued before it are committed
  (:meth:`sync`: at once, not after the batch delay), so it sees every object whose C-STORE-RSP this process
  sent. Another process (``--workers``, a tool reading the file) sees a row once its batch is committed:
  :data:`BATCH_GAP` after the last object of a run, :data:`BATCH_DELAY` at most while objects keep coming,
  plus one batch's write; and the rows of an association before it counts as ended (the Storage SCP's
  ``association_ended`` calls :meth:`sync`).
- What a crash loses: a process killed (kill -9, power loss) loses the rows still queued (those of the
  last :data:`BATCH_DELAY` or so) and, after a power loss, the last commits (``synchronous=NORMAL`` in
  WAL: a commit survives a crash of the process, not of the machine). Their files are complete on disk,
  so the next start's reconciliation indexes them again; no row ever names a file that was not complete.
  A normal stop (SIGTERM, Ctrl-C; ``StorageSCP.close``) commits the queue first (:meth:`close`).
- The next instance of a series is one row of one INSERT per batch (``executemany``): each process
  remembers the patient/study/series rows of the series it wrote (the series pk and every attribute
  value above the instance level; for a row from a Storage SCP's walk, those values as the bytes
  received, with their layout, byte order and character set, so that only the instance level's values
  are decoded) and trusts them only while no other connection has committed
  (``PRAGMA data_version``, read under the write lock) and the values are the same; any write of its own
  that moves or prunes a parent row forgets them all (tests/test_index_parent_cache.py). Such rows wait
  for the batch's other statements in order (tests/test_index_row_cost.py); bench/index.py (b) measures
  the cost per object.
- Portable SQL: every query uses ``?`` parameters and standard SQL only (``INSERT … RETURNING`` is in
  SQLite ≥ 3.35 and PostgreSQL); :meth:`Index.sql` is where another driver's placeholder style goes. A
  shared PostgreSQL index (postgres.py) writes each row before the C-STORE-RSP instead (no index thread).
- No pydicom on the storage path: column values are normalised by :mod:`.columns` (``import pydicom``
  alone costs about 0.4 s of CPU).

The schema is in :mod:`.schema`; the attributes kept in :mod:`.extraction`; C-FIND search in :mod:`.search`.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
from typing import Any, Callable, Iterator, NamedTuple

from ...transport.batcher import Batcher
from ...transport.threads import Lock
from .columns import column_text
from .extraction import (BY_KEYWORD, IMAGE, LEVELS, PATIENT, SERIES, STUDY, RawValues, ascii_text, attributes_of,
                         dataset_attributes, decode_items, decode_values, row_plan)
from .schema import COLUMNS, DDL, PARENT, SCHEMA_VERSION, TABLES, UNIQUE

DEFAULT_NAME = ".dcmnet-index.sqlite"
"""The index file's name in the storage folder (a dot file: never taken for a received object)."""
MAX_CACHED_SERIES = 256
"""Series remembered by :meth:`Index._cached_series` (all forgotten when full: bounded memory)."""
BUSY_TIMEOUT = 30.0
"""Seconds a writer waits for another process's transaction (``--workers``) before failing."""
BATCH_DELAY = 0.02
"""Seconds a row waits in the queue (:meth:`Index.submit`) before its batch is due: while objects keep
arriving, about the longest it stays invisible to another process (``--workers``)."""
BATCH_GAP = 0.02
"""Seconds without a new row after which the index's background thread writes the rows queued: the rows
of a run of objects are visible to other processes this long after the run's last object (plus one
write)."""
BATCH_LIMIT = 256
"""Rows per transaction at most."""
EXIT_FLUSH = 10.0
"""Seconds an exiting process waits for its queued rows to be committed."""


class StoredInstance(NamedTuple):
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int


def _unencodable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_json() -> Callable[[dict[str, str]], str]:
    """``json.dumps(values, sort_keys=True, ensure_ascii=False)`` for a flat ``{str: str}`` dict: the C
    encoder made once (``JSONEncoder.encode`` makes one per call, half its cost), else the encoder's own."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
    encoder = make(None, _unencodable, json.encoder.encode_basestring, None, ": ", ", ", True, False, True)
    return lambda values: "".join(encoder(values, 0))


_json = _make_json()
"""The text of an ``attrs`` column (what :meth:`Index._unchanged_series` and :meth:`Index._upsert` compare)."""

def normalise(vr: str, value: str) -> str:
    """How a value is stored in its column (:func:`.columns.column_text`: what matching's SQL conditions
    compare against), without importing pydicom."""
    return column_text(vr, value)


def split_levels(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Indexed attributes grouped by the level they belong to."""
    levels: dict[str, dict[str, str]] = {level: {} for level in LEVELS}
    for keyword, value in attributes.items():
        level = _LEVEL_OF.get(keyword)
        if level is not None:
            levels[level][keyword] = value
    return levels


_LEVEL_OF = {keyword: attribute.level for keyword, attribute in BY_KEYWORD.items()}
_SPECS = {level: [(keyword, column, BY_KEYWORD[keyword].vr) for keyword, column in COLUMNS[level].items()
                  if column != UNIQUE[level]] for level in LEVELS}
"""Per level: (keyword, column, VR) of each filterable column but the unique one (built once)."""
_ABOVE = tuple(keyword for level in (PATIENT, STUDY, SERIES) for keyword, attribute in BY_KEYWORD.items()
               if attribute.level == level)
"""Every indexed attribute above the instance level: their values (None: absent) identify a remembered series."""
_OWN = tuple(keyword for keyword, attribute in BY_KEYWORD.items() if attribute.level == IMAGE)
"""The instance level's attributes."""
_INSERT_INSTANCE = (f"INSERT INTO {TABLES[IMAGE]} ({', '.join([column for _k, column, _vr in _SPECS[IMAGE]])}, attrs, "
                    f"{UNIQUE[IMAGE]}, {PARENT[IMAGE]}, transfer_syntax, size) VALUES ({', '.join('?' * (len(_SPECS[IMAGE]) + 5))})")
"""The instance INSERT (the column order of :meth:`Index._add_instance`'s parameters)."""


def _instance_params(rel: str, values: dict[str, str], parent: int | None, transfer_syntax: str,
                     size: int) -> list[Any]:
    """The parameters of :data:`_INSERT_INSTANCE` for the file ``rel`` with the instance level's ``values``
    (the series pk at :data:`_PARENT_AT`: None until the row is written)."""
    params: list[Any] = [column_text(vr, values.get(keyword, "")) for keyword, _column, vr in _SPECS[IMAGE]]
    params += (_json(values), rel, parent, transfer_syntax, size)
    return params


_PARENT_AT = len(_SPECS[IMAGE]) + 2
"""Where the series pk is in :func:`_instance_params`."""


class _Row(NamedTuple):
    """A row made ready to write, all but its series pk: what is known without the database."""
    rel: str
    attributes: dict[str, str] | None
    """Every attribute, decoded; None for a row made from the walk's values (``raw``): decoded only if its
    series is not remembered (:meth:`Index._add_parents` needs them)."""
    above: tuple[Any, ...]
    """What identifies the values above the instance level of a remembered series: the values of
    :data:`_ABOVE` (None: absent), or, for a row made from the walk's values, their layout, byte order and
    bytes as received (the same bytes decode to the same values; other bytes only cost a look-up)."""
    series_uid: str
    params: list[Any]
    """:func:`_instance_params` with the series pk None."""
    raw: RawValues | None = None


class _Queued:
    """A row :meth:`Index.submit` queued: its values still as the walk kept them, until whoever gets to it
    first (the association thread after its response, or the batch's writer) makes it ready (``row``)."""

    __slots__ = ("path", "values", "transfer_syntax", "size", "on_error", "row", "taken")

    def __init__(self, path: str, values: "dict[str, str] | RawValues", transfer_syntax: str, size: int,
                 on_error: Callable[[str, BaseException], None] | None) -> None:
        self.path, self.values, self.transfer_syntax, self.size, self.on_error = (path, values, transfer_syntax,
                                                                                   size, on_error)
        self.row: _Row | None = None
        self.taken = False
        """Set by the batch's writer: preparing it any more is wasted work."""


def connect(path: str) -> sqlite3.Connection:
    """A connection to the index file: WAL, NORMAL sync, writers wait for each other (busy timeout)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level="IMMEDIATE", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class Index:
    """See the module docstring. Thread-safe; open one per process (after a fork, open again)."""

    _batcher: "Batcher[_Queued] | None" = None
    """The queue of :meth:`submit` (and its background thread), made with its first row."""
    _insert_instance: str | None = None
    """:data:`_INSERT_INSTANCE` in this driver's placeholder style (:meth:`sql`), made at first use."""

    def __init__(self, path: str, root: str) -> None:
        self.path = os.path.abspath(path)
        self.root = os.path.realpath(root)
        self._write_lock = Lock()
        self._pool_lock = Lock()
        self._pool: list[sqlite3.Connection] = []
        self._parents: dict[str, tuple[Any, ...]] = {}
        """Series UID → (series pk, the values of every attribute above the instance level, :data:`_ABOVE`)
        of the series this process wrote or checked, valid while ``PRAGMA data_version`` stays ``_version``."""
        self._version: int | None = None
        self.gate = Lock()
        """Held by a C-FIND while it computes a batch of answers (search, match, encode) and released while
        it sends them: one query computes at a time per process, so a store thread waiting for the GIL
        competes with one busy thread, not with twenty (bench/index.py (c) measures the difference)."""
        self._writer = connect(self.path)
        self._create()

    @classmethod
    def open(cls, path: str, root: str) -> "Index":
        """Open (creating the file and schema if needed) the index of the files below ``root``.
        Raises OSError (sqlite3.Error is turned into it) when the file cannot be used."""
        try:
            return cls(path, root)
        except sqlite3.Error as error:
            raise OSError(str(error)) from None

    def sql(self, text: str) -> str:
        """The query text for this driver (SQLite takes ``?`` as written)."""
        return text

    def _create(self) -> None:
        with self._write_lock:
            conn = self._writer
            for statement in DDL:
                conn.execute(statement)
            row = conn.execute(self.sql("SELECT value FROM dcmnet_meta WHERE name = ?"), ("schema",)).fetchone()
            if row is None:
                conn.execute(self.sql("INSERT INTO dcmnet_meta (name, value) VALUES (?, ?)"), ("schema", SCHEMA_VERSION))
            elif row[0] != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {row[0]}, this dcmnet knows {SCHEMA_VERSION}")
            conn.commit()

    # ------------------------------------------------------------------ reading connections

    def reader(self) -> "_Reader":
        """``with index.reader() as conn:`` a connection for reading, from the pool."""
        return _Reader(self)

    def _take(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._pool:
                return self._pool.pop()
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
        conn.isolation_level = None  # autocommit: each query sees the latest commit
        return conn

    def _give(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if len(self._pool) < 32:
                self._pool.append(conn)
                return
        conn.close()

    # ------------------------------------------------------------------ writing

    def relative(self, path: str) -> str:
        """A file's key in the index: its path below the root, '/'-separated (absolute if outside)."""
        prefix = self.root + os.sep
        if path.startswith(prefix) and os.sep + ".." not in path and os.sep + "." + os.sep not in path:
            rel = path[len(prefix):]  # the Storage SCP's own paths: no normalising needed
            return rel if os.sep == "/" else rel.replace(os.sep, "/")
        full = os.path.abspath(path)
        rel = os.path.relpath(full, self.root)
        if rel.startswith(".." + os.sep) or rel == "..":
            return full
        return rel.replace(os.sep, "/")

    def absolute(self, relative: str) -> str:
        return relative if os.path.isabs(relative) else os.path.join(self.root, *relative.split("/"))

    def add(self, path: str, attributes: Any, transfer_syntax: str = "", size: int | None = None) -> None:
        """Index (or re-index) the complete file ``path`` with its attributes (``{keyword: text}`` as
        :mod:`.extraction` gives them, or a pydicom Dataset); replaces the row of the same file. Commits
        before it returns (after the rows :meth:`submit` queued before it).

        The usual case, the next instance of a series this process indexed since the database last changed
        under it, is one INSERT: see :meth:`_cached_series`."""
        if not isinstance(attributes, dict):
            attributes = dataset_attributes(attributes)
        if size is None:
            size = os.stat(path).st_size
        self.sync()
        self._write([self._ready(path, attributes, transfer_syntax, size)])

    def submit(self, path: str, attributes: dict[str, str] | RawValues, transfer_syntax: str, size: int,
               on_error: Callable[[str, BaseException], None] | None = None) -> object:
        """Queue the row of the complete file ``path`` (renamed and fsynced); the rows of a run of objects
        are committed in one transaction (see the module docstring: who writes them, what a query sees,
        what a crash loses). Returns at once; a row that cannot be written (nor decoded) is reported to
        ``on_error(path, error)`` from the thread that writes it (the file stays; the next start's
        reconciliation indexes it). Returns what :meth:`write_due` takes to make the row ready."""
        if BATCH_DELAY <= 0:  # no batching: written and committed now, in the caller's thread
            try:
                self._write([self._ready_any(path, attributes, transfer_syntax, size)])
            except Exception as error:
                if on_error is None:
                    raise
                on_error(path, error)
            return None
        batcher = self._batcher
        if batcher is None:
            with self._pool_lock:
                if self._batcher is None:
                    self._batcher = Batcher(self._write_batch, BATCH_DELAY, BATCH_LIMIT, "dcmnet-index",
                                            gap=BATCH_GAP)
                    atexit.register(self._batcher.close, EXIT_FLUSH)
                batcher = self._batcher
        queued = _Queued(path, attributes, transfer_syntax, size, on_error)
        batcher.put(queued)
        return queued

    def write_due(self, queued: object = None) -> None:
        """Write the queued rows now, in this thread, if their batch is due and no other thread is writing
        (the Storage SCP calls it after each C-STORE-RSP: see the module docstring); else make ``queued``
        (what :meth:`submit` returned) ready to write: its values decoded and its parameters made now, while
        the sender reads the answer, leave only the SQL to the batch (which stops the next request)."""
        batcher = self._batcher
        if batcher is None or batcher.run_due() or type(queued) is not _Queued:
            return
        if queued.row is None and not queued.taken:
            try:
                queued.row = self._ready_any(queued.path, queued.values, queued.transfer_syntax, queued.size)
            except Exception:  # undecodable: the batch's writer reports it, with the row's path
                pass

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until every row :meth:`submit` queued before this call is committed (queries and retrieves
        call it first: they see every object whose C-STORE-RSP this process sent); False on timeout."""
        batcher = self._batcher
        return batcher is None or batcher.flush(timeout)

    def _write_batch(self, queued: list[_Queued]) -> None:
        """A batch of queued rows in one transaction; if that fails because of one row, each row on its own
        (one bad row loses no other), its error reported to its ``on_error``; a database that cannot be
        written (locked past the busy timeout, I/O error) fails them all at once. A row whose values
        cannot be decoded is reported alone."""
        items: list[tuple[_Row, _Queued]] = []
        for item in queued:
            item.taken = True
            row = item.row
            if row is None:
                try:
                    row = self._ready_any(item.path, item.values, item.transfer_syntax, item.size)
                except Exception as error:
                    if item.on_error is not None:
                        item.on_error(item.path, error)
                    continue
            items.append((row, item))
        try:
            self._write([row for row, _item in items])
            return
        except Exception as error:
            if isinstance(error, sqlite3.OperationalError):  # locked, I/O, disk full: not one row's fault
                for _row, item in items:
                    if item.on_error is not None:
                        item.on_error(item.path, error)
                return
        for row, item in items:
            try:
                self._write([row])
            except Exception as error:  # sqlite3.Error, OSError: the store itself succeeded
                if item.on_error is not None:
                    item.on_error(item.path, error)

    def _ready(self, path: str, attributes: dict[str, str], transfer_syntax: str, size: int) -> _Row:
        """The row of the complete file ``path``, all but its series pk (see :class:`_Row`)."""
        rel = self.relative(path)
        own = {k: attributes[k] for k in _OWN if k in attributes}
        return _Row(rel, attributes, tuple(map(attributes.get, _ABOVE)), attributes.get("SeriesInstanceUID", ""),
                    _instance_params(rel, own, None, transfer_syntax, size))

    def _ready_any(self, path: str, values: "dict[str, str] | RawValues", transfer_syntax: str, size: int) -> _Row:
        if type(values) is RawValues:
            return self._ready_raw(path, values, transfer_syntax, size)
        return self._ready(path, attributes_of(values), transfer_syntax, size)

    def _ready_raw(self, path: str, raw: RawValues, transfer_syntax: str, size: int) -> _Row:
        """:meth:`_ready` from the walk's values, decoding only the instance level's and the Series
        Instance UID: the next instance of a remembered series needs no more (issue 13)."""
        values, little = raw.values, raw.little
        layout = tuple(values)
        plan = row_plan(layout)
        kept = tuple(values.values())
        own = decode_items(zip(plan.own_tags, plan.own(kept)), values, little)
        series_uid = ascii_text(kept[plan.series_at]) if plan.series_at >= 0 else ""
        rel = self.relative(path)
        return _Row(rel, None, (layout, little, plan.above(kept)), series_uid,
                    _instance_params(rel, own, None, transfer_syntax, size), raw)

    def _write(self, rows: list[_Row]) -> None:
        """Rows of complete files in one transaction (``BEGIN IMMEDIATE``: the write lock first, so no other
        writer commits until ours), one commit."""
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._version:  # another connection (process) committed since our last write
                    self._parents.clear()
                self._add_rows(conn, rows)
                conn.commit()
            except BaseException:
                self._parents.clear()
                self._version = None
                conn.rollback()
                raise
            self._version = version

    def _add_rows(self, conn: sqlite3.Connection, rows: list[_Row]) -> None:
        """The rows, in order. The usual row, a new file of a series remembered with the same
        values above the instance level (:meth:`_cached_series`), costs no split of its attributes by level
        and no statement of its own: such rows wait in ``pending`` and go in with one ``executemany`` (one
        GIL hand-off for them all instead of one per row) before any other row's statements and at the end,
        so every statement sees the rows before it as one at a time would. Files with a row already (one
        query per batch tells which) and rows repeating a path of the batch take :meth:`_add_instance`."""
        known = self._indexed(conn, [row.rel for row in rows])
        pending: list[list[Any]] = []
        for row in rows:
            rel, series_uid, above = row.rel, row.series_uid, row.above
            parent = self._cached_series(series_uid, above)
            params = row.params.copy()  # a row written again on its own (a failed batch) starts as made
            if parent is not None and rel not in known:
                params[_PARENT_AT] = parent
                pending.append(params)
            else:
                self._insert_pending(conn, pending)
                if parent is None:
                    attributes = row.attributes
                    if attributes is None:
                        assert row.raw is not None
                        attributes = decode_values(row.raw.values, row.raw.little)
                    parent = self._add_parents(conn, attributes, series_uid)
                params[_PARENT_AT] = parent
                self._add_instance(conn, rel, params, parent)
            known.add(rel)
            if len(self._parents) >= MAX_CACHED_SERIES:
                self._parents.clear()
            self._parents[series_uid] = (parent, above)
        self._insert_pending(conn, pending)

    def _indexed(self, conn: sqlite3.Connection, rels: list[str]) -> set[str]:
        """Which of these files have a row (a replaced file, a row left by a file removed behind our back)."""
        found: set[str] = set()
        for start in range(0, len(rels), 500):
            chunk = rels[start:start + 500]
            text = f"SELECT path FROM instance WHERE path IN ({', '.join('?' * len(chunk))})"
            found.update(row[0] for row in conn.execute(self.sql(text), chunk))
        return found

    def _insert_pending(self, conn: sqlite3.Connection, pending: list[list[Any]]) -> None:
        """The instance rows of new files waiting in ``pending`` (emptied): one statement, many rows."""
        if pending:
            conn.executemany(self._instance_insert(), pending)
            pending.clear()

    def _add_parents(self, conn: sqlite3.Connection, attributes: dict[str, str], series_uid: str) -> int:
        """The series row's pk for a series not remembered as it is: one look-up when its rows are as the
        attributes say, else each level's row inserted or updated (forgetting every remembered series)."""
        levels = split_levels(attributes)
        patient = levels[PATIENT]
        keys = {PATIENT: patient.get("PatientID", "") + "\\" + patient.get("IssuerOfPatientID", ""),
                STUDY: levels[STUDY].get("StudyInstanceUID", ""), SERIES: series_uid}
        parent = self._unchanged_series(conn, keys, levels)
        if parent is None:
            self._parents.clear()  # rows above may move or go: no entry can be trusted
            for level in (PATIENT, STUDY, SERIES):
                parent = self._upsert(conn, level, keys[level], levels[level], parent)
        assert parent is not None
        return parent

    def _cached_series(self, series_uid: str, above: tuple[str | None, ...]) -> int | None:
        """The series row's pk from this process's memory of the series it indexed: valid while no other
        connection committed (``PRAGMA data_version`` unchanged since our last commit, read under the write
        lock) and as long as every write of our own keeps it (an upsert or a prune clears it). A hit
        needs the same values (present or not) of every patient, study and series attribute (so the same
        study and patient keys), else the rows are looked up and updated as without it."""
        entry = self._parents.get(series_uid)
        if entry is None or entry[1] != above:
            return None
        return int(entry[0])

    def _instance_insert(self) -> str:
        text = self._insert_instance
        if text is None:
            text = self._insert_instance = self.sql(_INSERT_INSTANCE)
        return text

    def _add_instance(self, conn: sqlite3.Connection, rel: str, params: list[Any], parent: int) -> None:
        """The instance row of file ``rel`` (its :func:`_instance_params`): one INSERT for a new file; a file
        indexed before (replaced, or a row left by a file removed behind our back) has its row replaced, its
        old series pruned."""
        text = self._instance_insert()
        try:
            conn.execute(text, params)
            return
        except sqlite3.IntegrityError:  # this path has a row: the statement alone was undone
            pass
        old = conn.execute(self.sql("DELETE FROM instance WHERE path = ? RETURNING series_pk"), (rel,)).fetchone()
        conn.execute(text, params)
        if old is not None and old[0] != parent:
            self._parents.clear()
            self._prune(conn, SERIES, old[0])

    def _unchanged_series(self, conn: sqlite3.Connection, keys: dict[str, str],
                          levels: dict[str, dict[str, str]]) -> int | None:
        """The series row's pk when the series, its study and its patient exist exactly as ``levels`` say
        (the next instance of a series another process indexed last): one query instead of three look-ups."""
        found = conn.execute(self.sql(
            "SELECT r.pk, r.attrs, s.study_instance_uid, s.attrs, p.patient_key, p.attrs FROM series r "
            "JOIN study s ON r.study_pk = s.pk JOIN patient p ON s.patient_pk = p.pk WHERE r.series_instance_uid = ?"),
            (keys[SERIES],)).fetchone()
        if found is None or found[2] != keys[STUDY] or found[4] != keys[PATIENT]:
            return None
        for values, text in zip((levels[SERIES], levels[STUDY], levels[PATIENT]), (found[1], found[3], found[5])):
            if _json(values) != text:
                return None
        return int(found[0])

    def _values(self, level: str, values: dict[str, str], attrs: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {column: column_text(vr, values.get(keyword, "")) for keyword, column, vr in _SPECS[level]}
        row["attrs"] = attrs if attrs is not None else _json(values)
        return row

    def _insert(self, conn: sqlite3.Connection, level: str, key: str, values: dict[str, str], parent: int | None,
                extra: dict[str, Any] | None = None) -> int:
        row = self._values(level, values)
        row[UNIQUE[level]] = key
        if level in PARENT:
            row[PARENT[level]] = parent
        row.update(extra or {})
        names = list(row)
        text = f"INSERT INTO {TABLES[level]} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        if level == IMAGE:  # nothing refers to an instance row: no pk to read back
            conn.execute(self.sql(text), [row[name] for name in names])
            return 0
        return int(conn.execute(self.sql(text + " RETURNING pk"), [row[name] for name in names]).fetchone()[0])

    def _upsert(self, conn: sqlite3.Connection, level: str, key: str, values: dict[str, str],
                parent: int | None) -> int:
        """The pk of the row of ``level`` with this key, inserted or updated to these values."""
        table, unique = TABLES[level], UNIQUE[level]
        parent_column = PARENT.get(level)
        select = f"SELECT pk, attrs{', ' + parent_column if parent_column else ''} FROM {table} WHERE {unique} = ?"
        found = conn.execute(self.sql(select), (key,)).fetchone()
        if found is None:
            return self._insert(conn, level, key, values, parent)
        pk = int(found[0])
        attrs = _json(values)
        moved = parent_column is not None and found[2] != parent
        if attrs == found[1] and not moved:
            return pk
        row = self._values(level, values, attrs)
        if parent_column is not None:
            row[parent_column] = parent
        assignments = ", ".join(f"{name} = ?" for name in row)
        conn.execute(self.sql(f"UPDATE {table} SET {assignments} WHERE pk = ?"), [*row.values(), pk])
        if moved and parent_column is not None:
            self._prune(conn, LEVELS[LEVELS.index(level) - 1], found[2])
        return pk

    def _prune(self, conn: sqlite3.Connection, level: str, pk: int) -> None:
        """Delete the row ``pk`` of ``level`` if nothing is below it any more, then its parent likewise."""
        while True:
            child = LEVELS[LEVELS.index(level) + 1]
            parent_column = PARENT.get(level)
            parent = None
            if parent_column is not None:
                found = conn.execute(self.sql(f"SELECT {parent_column} FROM {TABLES[level]} WHERE pk = ?"), (pk,)).fetchone()
                parent = None if found is None else found[0]
            deleted = conn.execute(self.sql(
                f"DELETE FROM {TABLES[level]} WHERE pk = ? AND NOT EXISTS "
                f"(SELECT 1 FROM {TABLES[child]} WHERE {PARENT[child]} = ?)"), (pk, pk)).rowcount
            if not deleted or parent is None:
                return
            level, pk = LEVELS[LEVELS.index(level) - 1], parent

    def remove(self, path: str) -> None:
        """Forget the file ``path`` (and the series, study, patient left empty). Commits."""
        self.remove_relative([self.relative(path)])

    def remove_relative(self, keys: list[str]) -> None:
        self.sync()  # a queued row of one of these files must not come back after its removal
        with self._write_lock:
            conn = self._writer
            self._parents.clear()  # a prune may delete a remembered series, study or patient
            try:
                for rel in keys:
                    found = conn.execute(self.sql("SELECT series_pk FROM instance WHERE path = ?"), (rel,)).fetchone()
                    if found is None:
                        continue
                    conn.execute(self.sql("DELETE FROM instance WHERE path = ?"), (rel,))
                    self._prune(conn, SERIES, found[0])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    # ------------------------------------------------------------------ reading

    def files(self) -> dict[str, int]:
        """Every indexed file: relative path → size."""
        self.sync()
        with self.reader() as conn:
            return {path: size for path, size in conn.execute(self.sql("SELECT path, size FROM instance"))}

    def counts(self) -> dict[str, int]:
        """Rows per level (for logs and tests)."""
        self.sync()
        with self.reader() as conn:
            return {level: int(conn.execute(f"SELECT COUNT(*) FROM {TABLES[level]}").fetchone()[0]) for level in LEVELS}

    def instances(self, model: str, level: str, identifier: Any) -> list[StoredInstance]:
        """Every stored instance below the entities the identifier's unique keys select (PS3.4
        C.4.2.2.1 / C.4.3.2.1): the key of ``level`` must be present and not empty, keys above it (and
        below it, for relational retrieve) narrow the selection; UID lists are allowed. Sorted by study,
        series, instance number; each SOP Instance UID once (its newest file)."""
        from .search import retrieve_rows

        self.sync()
        with self.reader() as conn:
            rows = retrieve_rows(conn, self.sql, level, identifier)
        newest: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            newest[row[2]] = row
        ordered = sorted(newest.values(), key=lambda r: (r[5], r[6], _number(r[7]), r[8]))
        return [StoredInstance(self.absolute(r[0]), r[1], r[2], r[3], int(r[4])) for r in ordered]

    def search(self, model: str, level: str, identifier: Any, options: Any = None,
               only_keys: bool = False) -> Iterator[Any]:
        """C-FIND candidates at ``level`` (PATIENT/STUDY/SERIES/IMAGE) for the query model ('patient',
        'study', 'patient-study'), filtered with matching.matches(); see :mod:`.search`."""
        from .search import search

        self.sync()
        return search(self, model, level, identifier, options, only_keys)

    def reconcile(self, progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """Make the index and the folder agree; (files indexed, rows removed). See :mod:`.reconcile`."""
        from .reconcile import reconcile

        return reconcile(self, progress)

    def close(self) -> None:
        """Commit the queued rows (:meth:`submit`), stop the index thread, close every connection."""
        batcher = self._batcher
        if batcher is not None:
            batcher.close(EXIT_FLUSH)
            atexit.unregister(batcher.close)
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        with self._write_lock:
            self._writer.close()


class _Reader:
    def __init__(self, index: Index) -> None:
        self.index = index

    def __enter__(self) -> sqlite3.Connection:
        self.conn = self.index._take()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.index._give(self.conn)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


_pid = os.getpid()
"""This process's id, renewed in a forked child (``listen --workers``) before any of its code runs."""


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class IndexRef:
    """The index of one storage folder, opened once per process (an SQLite connection must not cross a
    fork: ``listen --workers N`` forks after start-up, so each process opens its own on first use)."""

    index_class: type[Index] = Index
    """What ``get`` opens (the PostgreSQL reference names its own)."""

    def __init__(self, path: str, root: str) -> None:
        self.path, self.root = path, root
        self._lock = Lock()
        self._opened: tuple[int, Index] | None = None

    def get(self) -> Index:
        opened = self._opened
        if opened is not None and opened[0] == _pid:  # not os.getpid(): a syscall, twice per stored object
            return opened[1]
        pid = os.getpid()
        with self._lock:
            if self._opened is None or self._opened[0] != pid:
                self._opened = (pid, self.index_class.open(self.path, self.root))
            return self._opened[1]

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, None
        if opened is not None and opened[0] == os.getpid():
            opened[1].close()
