"""The metadata index in an embedded SQLite file, for one machine and no database server."""

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import (
    InvalidArgumentError,
    MigrationError,
    StorageConfigError,
    StorageError,
)
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.migrations import MIGRATIONS_TABLE, pending_migrations
from pipecat_audio_capture.records import SegmentMetadata, TranscriptRecord, TurnLatencyRecord
from pipecat_audio_capture.storage.batching import BatchedWrites, IndexBatcher, row_params
from pipecat_audio_capture.storage.index import (
    DeletedRows,
    IndexReader,
    checked_latency,
    checked_segment,
    checked_transcript,
    insert_sql,
    latency_insert,
    latency_row,
    segment_insert,
    view_queries,
)

T = TypeVar("T")

MIN_SQLITE_VERSION = (3, 25, 0)
"""The views use window functions, which arrived in SQLite 3.25."""

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How timestamps are stored: UTC, fixed width, so text order is time order."""

_TIMESTAMP_COLUMNS = frozenset(
    {"started_at", "ended_at", "occurred_at", "user_started_at", "user_ended_at", "bot_started_at"}
)
_BOOLEAN_COLUMNS = frozenset({"interrupted", "audio_interrupted", "transcript_interrupted"})

_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def _param(column: str) -> str:
    return f":{column}"


_INSERT_SEGMENT = segment_insert(_param)

# The WHERE skips a rewrite when a retry sends the same transcript again.
_UPSERT_TRANSCRIPT = insert_sql(
    "session_transcripts",
    TranscriptRecord,
    _param,
    """ON CONFLICT (session_id, turn_id, role) DO UPDATE
SET text = excluded.text, interrupted = excluded.interrupted, occurred_at = excluded.occurred_at
WHERE text IS NOT excluded.text
    OR interrupted IS NOT excluded.interrupted
    OR occurred_at IS NOT excluded.occurred_at""",
)

_INSERT_LATENCY = latency_insert(_param)

_DEFER_SUMMARY = "INSERT OR IGNORE INTO session_summary_deferred (session_id) VALUES (?)"
_REFRESH_DEFERRED_SUMMARIES = (
    "INSERT INTO session_summary_refresh (session_id) "
    "SELECT session_id FROM session_summary_deferred"
)
_CLEAR_DEFERRED_SUMMARIES = "DELETE FROM session_summary_deferred"
_DELETE_SEGMENTS = "DELETE FROM session_audio_segments WHERE session_id = ?"
_DELETE_TRANSCRIPTS = "DELETE FROM session_transcripts WHERE session_id = ?"
_DELETE_LATENCIES = "DELETE FROM session_turn_latencies WHERE session_id = ?"


class SQLiteAudioMetaStorage(BatchedWrites, IndexReader):
    """Indexes segments and transcripts in a SQLite file, with the same views as PostgreSQL.

    It is the metadata side of a
    :class:`~pipecat_audio_capture.CompositeAudioStorage`: it stores no audio, so it has no
    ``store_segment``. The file is opened, switched to WAL (so a viewer can read while a bot
    writes) and migrated on first use, or by :meth:`run_migrations` to fail fast at startup.
    All database work runs in worker threads. Writes share one connection, one at a time;
    reads go through up to ``read_connections`` read-only connections side by side, so a read
    never waits for a write (or for another read) to finish. An in-memory database has one
    connection, for both.

    Rows are written by one :class:`~pipecat_audio_capture.storage.batching.IndexBatcher` per
    storage object, shared by every call saving through it: one transaction and one
    ``executemany`` per batch. Each save still returns only once its own row is committed, and
    fails alone if its row does.

    Writes are idempotent. A segment is immutable once indexed: saving the same ``segment_id``
    again is ignored. A transcript is replaced by a later save for the same session, turn and
    role: the latest save is the writer's best knowledge of the final text.

    Timestamps are stored as UTC text in :data:`TIMESTAMP_FORMAT` and read back as aware UTC
    datetimes. Every failure is raised as :class:`~pipecat_audio_capture.errors.StorageError`
    (a CHECK constraint refusing an impossible row included), chained to the sqlite3 error.
    """

    _queries = view_queries("?")

    def _timestamp(self, value: datetime) -> object:
        # Timestamps are stored as fixed-width UTC text, so a cutoff is compared as that text.
        return _to_text(value)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = defaults.SQLITE_BUSY_TIMEOUT_S,
        read_connections: int = defaults.SQLITE_READ_CONNECTIONS,
        batch_max_rows: int = defaults.INDEX_BATCH_MAX_ROWS,
        batch_max_delay_s: float = defaults.INDEX_BATCH_MAX_DELAY_S,
    ) -> None:
        """Initialize the storage; nothing is opened until first use.

        Args:
            path: The database file, created with its folder when missing, or ``":memory:"``.
            busy_timeout_s: Longest a statement waits for another process's write lock.
            batch_max_rows: Most rows written by one transaction.
            batch_max_delay_s: Longest a row waits for rows of other calls to join its batch.
            read_connections: Most read-only connections open at once (at least 1).

        Raises:
            InvalidArgumentError: If ``read_connections`` is below 1.
        """
        if read_connections < 1:
            raise InvalidArgumentError(
                f"read_connections must be at least 1, got {read_connections}"
            )
        self._path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._busy_timeout_s = busy_timeout_s
        # One writing connection serves every thread; the lock keeps its calls one at a time.
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._migrated = False
        self._closed = False
        self._readers = _ReaderPool(self._path, busy_timeout_s, read_connections)
        self._rows = IndexBatcher(
            self._write_batch,
            # InterfaceError: a value of a type SQLite cannot bind.
            row_errors=(sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError),
            transient=is_transient_sqlite_error,
            max_rows=batch_max_rows,
            max_delay_s=batch_max_delay_s,
            name="sqlite index",
        )

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self._path

    async def run_migrations(self) -> list[int]:
        """Open the database if needed and create or upgrade the tables and views.

        Pending migrations run in one ``BEGIN IMMEDIATE`` transaction, so processes sharing the
        file take turns and all but the first find nothing to do. No data is dropped.

        Returns:
            The versions this call applied, oldest first.

        Raises:
            StorageConfigError: If the file cannot be opened.
            MigrationError: If a migration fails (nothing of the run is kept).
        """
        return await asyncio.to_thread(self._run_migrations)

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Index a stored segment; a second save of the same ``segment_id`` is ignored.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused (impossible values, naive timestamps) or the
                database fails.
        """
        row = row_params(checked_segment(session_id, meta))
        row["started_at"] = _to_text(row["started_at"])
        row["ended_at"] = _to_text(row["ended_at"])
        await self._rows.write(_INSERT_SEGMENT, row, f"segment {row['segment_id']}")

    async def save_transcript(self, record: TranscriptRecord) -> None:
        """Index a turn's transcript, replacing an earlier one for the same session, turn and role.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused or the database fails.
        """
        row = row_params(checked_transcript(record))
        row["occurred_at"] = _to_text(row["occurred_at"])
        await self._rows.write(
            _UPSERT_TRANSCRIPT, row, f"the {row['role']} transcript of turn {row['turn_id']}"
        )

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        """Index a bot turn's latency breakdown; a second save for the same turn is ignored.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused (impossible values, naive timestamps, no stages)
                or the database fails.
        """
        row = latency_row(checked_latency(record))
        row["started_at"] = _to_text(row["started_at"])
        row["bot_started_at"] = _to_text(row["bot_started_at"])
        await self._rows.write(_INSERT_LATENCY, row, f"the latency of turn {row['turn_id']}")

    async def delete_session(self, session_id: str) -> DeletedRows:
        """Remove a session's segment, transcript and latency rows in one transaction.

        Deleting a session that has no rows left does nothing, so a re-run after a partial
        failure is safe.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the database fails (nothing is removed then).
        """
        session = require_uuid(session_id, "session_id")
        return await self._call(
            lambda conn: _delete_session(conn, session),
            f"could not delete the rows of session {session}",
        )

    async def close(self) -> None:
        """Write the rows still queued, then close the database; later calls raise StorageError."""
        await self._rows.close()
        await asyncio.to_thread(self._close)

    async def _write_batch(self, groups: Sequence[tuple[str, list[dict[str, Any]]]]) -> None:
        await asyncio.to_thread(self._locked, lambda conn: _write_batch(conn, groups))

    async def _read(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        def fetch(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = conn.cursor()
            cursor.row_factory = _decoded_row
            return cursor.execute(query, params).fetchall()

        try:
            return await asyncio.to_thread(self._unlocked_read, fetch)
        except sqlite3.Error as exc:
            raise StorageError(
                f"could not read the audio index: {exc}", transient=is_transient_sqlite_error(exc)
            ) from exc

    def _unlocked_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._path == ":memory:":
            # Another connection would open another, empty, database.
            return self._locked(work)
        if not self._migrated:
            # The first use brings the file up to date, as a write would.
            with self._lock:
                if not self._migrated:
                    self._apply_migrations(self._connection())
        with self._readers.connection(self._closed_error) as conn:
            return work(conn)

    def _closed_error(self) -> StorageError | None:
        return (
            StorageError(f"the audio index {self._path} is closed", transient=False)
            if self._closed
            else None
        )

    async def _call(self, work: Callable[[sqlite3.Connection], T], failure: str) -> T:
        try:
            return await asyncio.to_thread(self._locked, work)
        except sqlite3.Error as exc:
            raise StorageError(
                f"{failure}: {exc}", transient=is_transient_sqlite_error(exc)
            ) from exc

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._connection()
            if not self._migrated:
                self._apply_migrations(conn)
            return work(conn)

    def _run_migrations(self) -> list[int]:
        with self._lock:
            return self._apply_migrations(self._connection())

    def _connection(self) -> sqlite3.Connection:
        closed = self._closed_error()
        if closed is not None:
            raise closed
        if self._conn is None:
            self._conn = _open(self._path, self._busy_timeout_s)
        return self._conn

    def _apply_migrations(self, conn: sqlite3.Connection) -> list[int]:
        try:
            applied = _migrate(conn)
        except sqlite3.Error as exc:
            raise MigrationError(
                f"SQLite migrations of {self._path} failed: {exc}",
                transient=is_transient_sqlite_error(exc),
            ) from exc
        self._migrated = True
        return applied

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._readers.close()


class _ReaderPool:
    """Read-only connections to one file, opened as needed up to a maximum, reused."""

    def __init__(self, path: str, busy_timeout_s: float, size: int) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    @contextlib.contextmanager
    def connection(self, closed: Callable[[], StorageError | None]) -> Iterator[sqlite3.Connection]:
        """Lend a connection for one read, waiting while all are lent.

        Raises:
            StorageError: What ``closed`` returns, once the index is closed.
        """
        with self._slots:
            error = closed()
            if error is not None:
                raise error
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = _open_read_only(self._path, self._busy_timeout_s)
            try:
                yield conn
            finally:
                with self._lock:
                    keep = not self._closed
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()

    def close(self) -> None:
        """Close the idle connections; a lent one is closed when it comes back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _open(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        raise StorageConfigError(
            f"SQLite {sqlite3.sqlite_version} is too old for the audio index; 3.25 or newer needed"
        )
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None leaves transactions to the SQL: each write commits on its own,
        # and migrations open theirs explicitly.
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise StorageConfigError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise StorageConfigError(f"cannot open SQLite database {path}: {exc}") from exc
    if mode != "wal" and path != ":memory:":
        logger.warning(f"SQLite database {path} runs in {mode} journal mode, not WAL")
    # A checkpoint runs inside the commit that crosses the threshold, while every caller of the
    # batch waits; a batch rewrites a few hundred pages, so SQLite's 1,000 would checkpoint
    # every few batches, copying the same index pages again each time.
    conn.execute(f"PRAGMA wal_autocheckpoint = {int(defaults.SQLITE_WAL_CHECKPOINT_PAGES)}")
    return conn


def _open_read_only(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    # mode=ro: a read can never write, whatever the query; the file must already exist.
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


def _migrate(conn: sqlite3.Connection) -> list[int]:
    # IMMEDIATE takes the write lock before reading the versions, so two processes cannot both
    # decide to apply the same migration.
    with _immediate(conn):
        conn.execute(_CREATE_MIGRATIONS_TABLE)
        cursor = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")
        applied = {version for (version,) in cursor.fetchall()}
        done: list[int] = []
        for migration in pending_migrations("sqlite", applied):
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _to_text(datetime.now(UTC))),
            )
            done.append(migration.version)
    return done


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """Run a block in a transaction that takes the write lock first, and roll it back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk) make SQLite roll back by itself.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _write_batch(
    conn: sqlite3.Connection, groups: Sequence[tuple[str, list[dict[str, Any]]]]
) -> None:
    # The insert triggers skip the listed calls, whose summaries are refreshed once per batch
    # instead of once per row (migrations/sqlite/0003_session_summaries.sql).
    calls = sorted({row["session_id"] for _, rows in groups for row in rows})
    with _immediate(conn):
        conn.executemany(_DEFER_SUMMARY, [(call,) for call in calls])
        for statement, rows in groups:
            conn.executemany(statement, rows)
        conn.execute(_REFRESH_DEFERRED_SUMMARIES)
        conn.execute(_CLEAR_DEFERRED_SUMMARIES)


def _delete_session(conn: sqlite3.Connection, session: str) -> DeletedRows:
    # IMMEDIATE takes the write lock first, so both deletes see and remove the same session.
    conn.execute("BEGIN IMMEDIATE")
    try:
        segments = conn.execute(_DELETE_SEGMENTS, (session,)).rowcount
        transcripts = conn.execute(_DELETE_TRANSCRIPTS, (session,)).rowcount
        latencies = conn.execute(_DELETE_LATENCIES, (session,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return DeletedRows(segments=segments, transcripts=transcripts, latencies=latencies)


def _statements(script: str) -> list[str]:
    """Split a script into statements, for ``execute`` (``executescript`` would commit first).

    ``sqlite3.complete_statement`` decides where each ends, so semicolons inside strings,
    comments and trigger bodies do not split.
    """
    statements: list[str] = []
    start = 0
    for end, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : end + 1]):
            statements.append(script[start : end + 1])
            start = end + 1
    # What follows the last semicolon is usually a comment or nothing; SQLite runs either.
    if script[start:].strip():
        statements.append(script[start:])
    return statements


def _to_text(value: datetime) -> str:
    # isoformat pads the year to four digits, as TIMESTAMP_FORMAT promises (glibc's strftime
    # does not), and costs half as much; an aware UTC time ends in "+00:00".
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _decoded_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        column: _from_sqlite(column, value)
        for (column, *_), value in zip(cursor.description, row, strict=True)
    }


def _from_sqlite(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIMESTAMP_COLUMNS:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    if column in _BOOLEAN_COLUMNS:
        return bool(value)
    return value


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_transient_sqlite_error(exc: BaseException) -> bool:
    """Whether another attempt can cure an sqlite3 error: only a busy or locked database is."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)
