"""The index in PostgreSQL (``listen --index postgresql://…``, issue 14): one index for several nodes.

The same :class:`~.index.Index` (its queries, :mod:`.search`, :mod:`.reconcile`) over psycopg 3 (the
optional extra ``dcmnet[postgresql]``) instead of sqlite3. What differs:

- Placeholders: the portable queries use ``?``; :meth:`PostgresIndex.sql` rewrites them to ``%s`` (and
  a literal ``%`` to ``%%``).
- Schema: :data:`.schema.DDL` with ``BIGSERIAL`` keys and a ``BIGINT`` size, plus two instance columns:
  ``node_id`` (the node that stored the file, ``listen --node-id``) and ``checksum`` (SHA-256 of the
  file as indexed). Created once, under an advisory lock, when nodes start together.
- Writes: every level is one ``INSERT … ON CONFLICT (unique key) DO UPDATE … RETURNING pk``, so two
  nodes storing objects of one study at the same moment never fail on each other's rows: the database
  decides duplicates (an instance row is keyed by its path relative to the shared folder). The whole
  :meth:`~PostgresIndex.add` is one transaction, committed after the file was renamed and fsynced by
  the Storage SCP, which answers Success only after the commit.
- Removing rows of missing files (:meth:`~PostgresIndex.remove_relative`, used by the reconciler) skips
  a path whose file exists again: another node may have stored it after this node listed the folder.
- A lost connection (the server restarted) is opened again once per failing write.
- Not done here (the SQLite backend does it): pruning a series left empty when an instance moves to
  another series under the same path.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ...transport.threads import Lock
from .extraction import IMAGE, PATIENT, SERIES, STUDY, RawValues, attributes_of, dataset_attributes
from .index import Index, IndexRef, split_levels
from .schema import DDL, PARENT, SCHEMA_VERSION, TABLES, UNIQUE

NODE_ID: list[str] = [""]
"""This process's node id (``listen --node-id``), stored with every row it writes."""
_LOCK_KEY = 0x64636D6E6574  # "dcmnet": the advisory lock of schema creation


def set_node(node_id: str) -> None:
    NODE_ID[0] = node_id


def is_url(path: str) -> bool:
    return path.startswith(("postgresql://", "postgres://"))


def safe_url(url: str) -> str:
    """``url`` without its password (for messages)."""
    head, sep, tail = url.partition("://")
    user, at, host = tail.rpartition("@")
    if not at or ":" not in user:
        return url
    return f"{head}{sep}{user.split(':', 1)[0]}:***@{host}"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise OSError("PostgreSQL needs psycopg 3: pip install 'dcmnet[postgresql]'") from None
    return psycopg


def ddl() -> list[str]:
    statements = [s.replace("pk INTEGER PRIMARY KEY", "pk BIGSERIAL PRIMARY KEY")
                  .replace("size INTEGER", "size BIGINT").replace("_pk INTEGER", "_pk BIGINT") for s in DDL]
    statements += ["ALTER TABLE instance ADD COLUMN IF NOT EXISTS node_id TEXT NOT NULL DEFAULT ''",
                   "ALTER TABLE instance ADD COLUMN IF NOT EXISTS checksum TEXT NOT NULL DEFAULT ''"]
    return statements


def file_checksum(path: str) -> str:
    import hashlib  # here: its OpenSSL start-up is paid only with a PostgreSQL index

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class PostgresIndex(Index):
    """See the module docstring. Thread-safe; one per process."""

    def __init__(self, path: str, root: str) -> None:  # noqa: super().__init__ opens SQLite: not called
        self.url, self.path = path, safe_url(path)
        self.root = os.path.realpath(root)
        self._write_lock, self._pool_lock, self.gate = Lock(), Lock(), Lock()
        self._pool: list[Any] = []
        self.node_id = NODE_ID[0]
        self._psycopg = _psycopg()
        self._writer = self._connect()
        self._create()

    @classmethod
    def open(cls, path: str, root: str) -> "PostgresIndex":
        psycopg = _psycopg()
        try:
            return cls(path, root)
        except (psycopg.Error, ValueError) as error:
            raise OSError(_first_line(error)) from None

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def _create(self) -> None:
        conn: Any = self._writer
        with self._write_lock, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for statement in ddl():
                conn.execute(statement)
            conn.execute("INSERT INTO dcmnet_meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                         ("schema", SCHEMA_VERSION))
            row = conn.execute("SELECT value FROM dcmnet_meta WHERE name = %s", ("schema",)).fetchone()
            if row[0] != SCHEMA_VERSION:
                raise ValueError(f"schema version {row[0]}, this dcmnet knows {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ connections

    def _take(self) -> Any:
        with self._pool_lock:
            if self._pool:
                conn = self._pool.pop()
                if not conn.closed:
                    return conn
        return self._connect()

    def _give(self, conn: Any) -> None:
        if conn.closed or conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
            conn.close()  # broken, or left mid-transaction by an error: never reused
            return
        super()._give(conn)

    def _writing(self, work: Callable[[Any], Any]) -> Any:
        """``work(conn)`` in one transaction on the writer; a connection lost meanwhile is opened again
        and the work retried once. psycopg errors become OSError (the Storage SCP answers 0xA700)."""
        psycopg = self._psycopg
        with self._write_lock:
            for attempt in (0, 1):
                writer: Any = self._writer
                try:
                    if writer.closed:
                        writer = self._writer = self._connect()
                    with writer.transaction():
                        return work(writer)
                except psycopg.OperationalError as error:
                    if attempt or not writer.closed:
                        raise OSError(f"index: {_first_line(error)}") from None
                except psycopg.Error as error:
                    raise OSError(f"index: {_first_line(error)}") from None

    # ------------------------------------------------------------------ writing

    def add(self, path: str, attributes: Any, transfer_syntax: str = "", size: int | None = None) -> None:
        if not isinstance(attributes, dict):
            attributes = dataset_attributes(attributes)
        if size is None:
            size = os.stat(path).st_size
        checksum = file_checksum(path)
        levels = split_levels(attributes)
        rel = self.relative(path)
        patient = levels[PATIENT]
        keys = {PATIENT: patient.get("PatientID", "") + "\\" + patient.get("IssuerOfPatientID", ""),
                STUDY: levels[STUDY].get("StudyInstanceUID", ""), SERIES: levels[SERIES].get("SeriesInstanceUID", "")}
        extra = {"transfer_syntax": transfer_syntax, "size": size, "node_id": self.node_id, "checksum": checksum}

        def work(conn: Any) -> None:
            parent: int | None = None
            for level in (PATIENT, STUDY, SERIES):
                parent = self._merge(conn, level, keys[level], levels[level], parent)
            self._merge(conn, IMAGE, rel, levels[IMAGE], parent, extra)

        self._writing(work)

    def submit(self, path: str, attributes: dict[str, str] | RawValues, transfer_syntax: str, size: int,
               on_error: Callable[[str, BaseException], None] | None = None) -> None:
        """Written and committed now (no index thread): a shared index answers Success only with the row
        (the Storage SCP calls this before its C-STORE-RSP); errors raise (OSError) as :meth:`add`'s do."""
        self.add(path, attributes_of(attributes), transfer_syntax, size)

    def _merge(self, conn: Any, level: str, key: str, values: dict[str, str], parent: int | None,
               extra: dict[str, Any] | None = None) -> int:
        """The pk of ``level``'s row with this key, inserted or updated (the database decides: ON CONFLICT)."""
        table, unique = TABLES[level], UNIQUE[level]
        row = self._values(level, values)
        row[unique] = key
        parent_column = PARENT.get(level)
        if parent_column is not None:
            row[parent_column] = parent
        row.update(extra or {})
        names = list(row)
        changed = [name for name in names if name != unique]
        text = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
                f"ON CONFLICT ({unique}) DO UPDATE SET {', '.join(f'{n} = EXCLUDED.{n}' for n in changed)}")
        if extra is None:  # patient/study/series: no write (no row lock held) when nothing changed
            compared = ["attrs"] + ([parent_column] if parent_column else [])
            text += (f" WHERE ({', '.join(f'{table}.{c}' for c in compared)}) IS DISTINCT FROM "
                     f"({', '.join(f'EXCLUDED.{c}' for c in compared)})")
        params = [row[name] for name in names]
        if extra is None:  # unchanged: the existing row's pk, in the same round trip
            text = (f"WITH merged AS ({text} RETURNING pk) SELECT pk FROM merged UNION ALL "
                    f"SELECT pk FROM {table} WHERE {unique} = %s LIMIT 1")
            params.append(key)
        else:
            text += " RETURNING pk"
        found = conn.execute(text, params).fetchone()
        if found is None:  # committed by another node while this statement ran: its snapshot missed it
            found = conn.execute(f"SELECT pk FROM {table} WHERE {unique} = %s", (key,)).fetchone()
        return int(found[0])

    def remove_relative(self, keys: list[str]) -> None:
        gone = [rel for rel in keys if not os.path.lexists(self.absolute(rel))]

        def work(conn: Any) -> None:
            for rel in gone:
                found = conn.execute("DELETE FROM instance WHERE path = %s RETURNING series_pk", (rel,)).fetchone()
                if found is not None:
                    self._prune(conn, SERIES, found[0])

        if gone:
            self._writing(work)

    def files(self) -> dict[str, int]:
        try:
            return super().files()
        except self._psycopg.Error as error:
            raise OSError(f"index: {_first_line(error)}") from None

class PostgresRef(IndexRef):
    """:class:`~.index.IndexRef` for a PostgreSQL URL: one connection set per process (opened after a fork)."""

    index_class = PostgresIndex
    commit_before_success = True
    """The Storage SCP commits the row before it answers Success (a failure answers 0xA700): other nodes
    answer queries from this index at once, and no restart of this node may be needed to repair it."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


__all__ = ["PostgresIndex", "PostgresRef", "ddl", "is_url", "safe_url", "set_node"]
