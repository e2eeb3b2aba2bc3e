"""A revisioned document store on one SQLite file in WAL mode. Threads of a process share
one connection under a lock; other processes open their own Store on the same file. The file
is its owner's only (0600); SQLite gives its -wal and -shm files the same mode."""

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 10.0
_FIELD = re.compile(r"[a-z_][a-z0-9_]{0,31}")
POLL_INTERVAL_S = 0.02

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0)",
    "CREATE TABLE IF NOT EXISTS documents ("
    " kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, revision INTEGER NOT NULL,"
    " PRIMARY KEY (kind, id))",
)


class StoreError(Exception):
    """Misuse of the store (closed, nested or finished transaction, bad body)."""


class StoreBusy(StoreError):
    """Another writer held the database for longer than the busy timeout."""


@dataclass(frozen=True, slots=True)
class Document:
    kind: str
    id: str
    body: dict[str, Any]
    revision: int  # the revision of the transaction that last wrote it


def _encode(body: dict[str, Any]) -> str:
    if not isinstance(body, dict):
        raise StoreError(f"a document body must be a JSON object, got {type(body).__name__}")
    try:
        # canonical text, so that rewriting an equal body is recognised as no change
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"document body is not JSON: {e}") from e


def _field(name: str) -> str:
    """A field name safe to put into SQL text (it becomes part of a JSON path)."""
    if not _FIELD.fullmatch(name):
        raise StoreError(f"cannot index or find by field {name!r}")
    return name


class Transaction:
    """Reads and writes inside one SQLite transaction; valid only inside its `with` block."""

    def __init__(self, conn: sqlite3.Connection, revision: int, readonly: bool) -> None:
        self._conn = conn
        self._readonly = readonly
        self._open = True
        self.changed = False
        self.revision = revision  # what this transaction sees (before its own writes)

    def get(self, kind: str, id: str) -> Document | None:
        self._check()
        row = self._conn.execute(
            "SELECT body, revision FROM documents WHERE kind = ? AND id = ?", (kind, id)
        ).fetchone()
        return None if row is None else Document(kind, id, json.loads(row[0]), row[1])

    def find(self, kind: str, field: str, value: str | int, **also: str | int) -> list[Document]:
        """Documents of `kind` whose top-level `field` equals `value` (and each field named in
        `also` its value), sorted by id; fast when the store was asked to `index` `field`."""
        self._check()
        where = "".join(f" AND json_extract(body, '$.{_field(f)}') = ?" for f in also)
        # sorted here: ORDER BY id would lead SQLite to walk the primary key instead
        rows = sorted(
            self._conn.execute(
                "SELECT id, body, revision FROM documents WHERE kind = ? AND "
                f"json_extract(body, '$.{_field(field)}') = ?{where}",
                (kind, value, *also.values()),
            ).fetchall()
        )
        return [Document(kind, r[0], json.loads(r[1]), r[2]) for r in rows]

    def list(self, kind: str) -> list[Document]:
        """Every document of `kind`, sorted by id."""
        self._check()
        rows = self._conn.execute(
            "SELECT id, body, revision FROM documents WHERE kind = ? ORDER BY id", (kind,)
        ).fetchall()
        return [Document(kind, r[0], json.loads(r[1]), r[2]) for r in rows]

    def exists(self, kind: str, id: str) -> bool:
        self._check()
        return (
            self._conn.execute(
                "SELECT 1 FROM documents WHERE kind = ? AND id = ?", (kind, id)
            ).fetchone()
            is not None
        )

    def put(self, kind: str, id: str, body: dict[str, Any]) -> bool:
        """Create or replace a document; False (and no write) when the body is unchanged."""
        self._check_writable()
        text = _encode(body)
        row = self._conn.execute(
            "SELECT body FROM documents WHERE kind = ? AND id = ?", (kind, id)
        ).fetchone()
        if row is not None and row[0] == text:
            return False
        self._conn.execute(
            "INSERT INTO documents (kind, id, body, revision) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body,"
            " revision = excluded.revision",
            (kind, id, text, self.revision + 1),
        )
        self.changed = True
        return True

    def delete(self, kind: str, id: str) -> bool:
        """Remove a document; False when there was none."""
        self._check_writable()
        cur = self._conn.execute("DELETE FROM documents WHERE kind = ? AND id = ?", (kind, id))
        if cur.rowcount:
            self.changed = True
        return cur.rowcount > 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested part of this transaction that an exception undoes alone (then re-raised)."""
        self._check_writable()
        self._conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO part")
            self._conn.execute("RELEASE part")
            raise
        self._conn.execute("RELEASE part")

    def _check(self) -> None:
        if not self._open:
            raise StoreError("the transaction has ended")

    def _check_writable(self) -> None:
        self._check()
        if self._readonly:
            raise StoreError("write in a read-only transaction")

    def _close(self) -> None:
        self._open = False


def _make_private(path: Path) -> None:
    """Create the database file 0600 (before SQLite creates it with the umask's mode), or
    tighten one of ours that is open to others."""
    if str(path) == ":memory:":
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{path}{suffix}")
        try:
            if extra.stat().st_mode & 0o077 and extra.stat().st_uid == os.geteuid():
                extra.chmod(0o600)
        except FileNotFoundError:
            pass


class Store:
    """Documents in one SQLite file; `transaction()` is the only way to read or write them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread inside a transaction: nesting would deadlock
        _make_private(self.path)
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is crash-safe in WAL mode; it only risks the last commits on power loss
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._begin(self._conn, readonly=False)
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._conn.execute("COMMIT")
        except (sqlite3.Error, StoreError):
            self.close()
            raise

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Transaction]:
        """Commit on normal exit, roll back on an exception; bumps the revision once if
        anything changed. Writers take the write lock up front (BEGIN IMMEDIATE) so that a
        read-then-write never fails half way because another process wrote in between."""
        me = threading.get_ident()
        if self._owner == me:
            raise StoreError("nested transactions are not supported")
        with self._lock:
            self._owner = me
            try:
                yield from self._run(readonly)
            finally:
                self._owner = None

    def _run(self, readonly: bool) -> Iterator[Transaction]:
        conn = self._connection()
        self._begin(conn, readonly)
        tx: Transaction | None = None
        try:
            tx = Transaction(conn, self._read_revision(conn), readonly)
            yield tx
            if tx.changed:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (tx.revision + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            if tx is not None:
                tx._close()

    def index(self, field: str) -> None:
        """Look documents up by their top-level `field` in `Transaction.find` without a scan
        (an index on the expression; creating it again is a no-op)."""
        name = _field(field)
        with self.transaction() as tx:
            tx._conn.execute(
                f"CREATE INDEX IF NOT EXISTS documents_by_{name} ON documents "
                f"(kind, json_extract(body, '$.{name}'))"
            )

    def revision(self) -> int:
        """The latest committed revision (0 for a new store)."""
        with self.transaction(readonly=True) as tx:
            return tx.revision

    def wait_for_change(self, after_revision: int, timeout: float) -> int:
        """Poll until the revision differs from `after_revision` or `timeout` seconds pass;
        returns the revision last read."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            current = self.revision()
            remaining = deadline - time.monotonic()
            if current != after_revision or remaining <= 0:
                return current
            time.sleep(min(POLL_INTERVAL_S, remaining))

    def close(self) -> None:
        if self._owner == threading.get_ident():
            raise StoreError("close() inside a transaction")
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def _begin(self, conn: sqlite3.Connection, readonly: bool) -> None:
        try:
            conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StoreBusy(f"{self.path}: {e}") from e
            raise StoreError(f"{self.path}: {e}") from e

    @staticmethod
    def _read_revision(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return 0 if row is None else int(row[0])
