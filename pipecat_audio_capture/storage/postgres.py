"""The metadata index on PostgreSQL, through psycopg 3 and an async connection pool.

Needs the ``postgres`` extra; without it, importing this module raises
:class:`~pipecat_audio_capture.errors.MissingExtraError`. This is the only module of the package
that imports psycopg.
"""

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import (
    MigrationError,
    MissingExtraError,
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

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.pq import TransactionStatus
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:
    raise MissingExtraError("postgres") from exc

_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
"""SQLSTATE classes another attempt can cure: connection exception, transaction rollback
(serialization failure, deadlock), insufficient resources, operator intervention (shutdown,
cancelled statement)."""

MIGRATION_LOCK_ID = int.from_bytes(b"audiocap", "big")
"""Key of the advisory lock that serializes migration runs across the whole database."""

_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def _param(column: str) -> str:
    return f"%({column})s"


_INSERT_SEGMENT = segment_insert(_param)

# The WHERE skips a rewrite, and its dead row, when a retry sends the same transcript again.
_UPSERT_TRANSCRIPT = insert_sql(
    "session_transcripts AS t",
    TranscriptRecord,
    _param,
    """ON CONFLICT (session_id, turn_id, role) DO UPDATE
SET text = EXCLUDED.text, interrupted = EXCLUDED.interrupted, occurred_at = EXCLUDED.occurred_at
WHERE (t.text, t.interrupted, t.occurred_at)
    IS DISTINCT FROM (EXCLUDED.text, EXCLUDED.interrupted, EXCLUDED.occurred_at)""",
)

_INSERT_LATENCY = latency_insert(_param)

_DELETE_SEGMENTS = "DELETE FROM session_audio_segments WHERE session_id = %s"
_DELETE_TRANSCRIPTS = "DELETE FROM session_transcripts WHERE session_id = %s"
_DELETE_LATENCIES = "DELETE FROM session_turn_latencies WHERE session_id = %s"


class PostgresAudioMetaStorage(BatchedWrites, IndexReader):
    """Indexes segments and transcripts in PostgreSQL and reads the call views back.

    It is the metadata side of a
    :class:`~pipecat_audio_capture.CompositeAudioStorage`: it stores no audio, so it has no
    ``store_segment``. Tables and views live in the first schema of the connections'
    ``search_path``; create them with :meth:`run_migrations` at startup.

    Writes are idempotent. A segment is immutable once indexed: saving the same ``segment_id``
    again is ignored. A transcript is replaced by a later save for the same session, turn and
    role: the writer may learn the final text after a first save (an interrupted reply cut to
    what was actually spoken), and the latest save is its best knowledge.

    Rows are written by one :class:`~pipecat_audio_capture.storage.batching.IndexBatcher` per
    storage object, so every call of a worker that shares this object shares its batches: one
    transaction and one pipelined ``executemany`` per batch, on one pooled connection. Each save
    still returns only once its own row is committed, and fails alone if its row does.

    Every failure is raised as :class:`~pipecat_audio_capture.errors.StorageError` (a CHECK
    constraint refusing an impossible row included), chained to the psycopg error.
    """

    _queries = view_queries("%s")

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        owns_pool: bool = False,
        batch_max_rows: int = defaults.INDEX_BATCH_MAX_ROWS,
        batch_max_delay_s: float = defaults.INDEX_BATCH_MAX_DELAY_S,
    ) -> None:
        """Initialize the storage on an open pool.

        Args:
            pool: The pool to take connections from, opened by the caller.
            owns_pool: Whether :meth:`close` closes the pool; leave False for a pool the
                application shares.
            batch_max_rows: Most rows written by one statement.
            batch_max_delay_s: Longest a row waits for rows of other calls to join its batch.
        """
        self._pool = pool
        self._owns_pool = owns_pool
        self._rows = IndexBatcher(
            self._write_batch,
            row_errors=(psycopg.IntegrityError, psycopg.DataError),
            transient=is_transient_postgres_error,
            max_rows=batch_max_rows,
            max_delay_s=batch_max_delay_s,
            name="postgres index",
        )

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = defaults.POOL_MIN_SIZE,
        max_size: int = defaults.POOL_MAX_SIZE,
        connect_timeout_s: float = defaults.PG_CONNECT_TIMEOUT_S,
        migrate: bool = True,
        batch_max_rows: int = defaults.INDEX_BATCH_MAX_ROWS,
        batch_max_delay_s: float = defaults.INDEX_BATCH_MAX_DELAY_S,
    ) -> Self:
        """Open a pool of its own on ``dsn`` and return a storage that closes it on :meth:`close`.

        The server is contacted once before the pool opens, so a wrong address fails here,
        with the server's reason, instead of on the first write.

        Args:
            dsn: A libpq connection string or ``postgresql://`` URI; pass
                ``options=-c search_path=...`` in it to use another schema.
            min_size: Connections the pool keeps open.
            max_size: Connections the pool may open.
            connect_timeout_s: Longest wait for the server, for the first connection and for
                the pool to fill.
            migrate: Whether to run :meth:`run_migrations` before the pool opens.
            batch_max_rows: Most rows written by one statement.
            batch_max_delay_s: Longest a row waits for rows of other calls to join its batch.

        Raises:
            StorageConfigError: If the DSN is malformed or the server cannot be reached in time.
            MigrationError: If ``migrate`` and the migrations fail.
        """
        where = _describe(dsn)
        # libpq's own timeout counts whole seconds and at least 2; the outer one is the bound.
        libpq_timeout = max(2, math.ceil(connect_timeout_s))
        try:
            async with asyncio.timeout(connect_timeout_s):
                probe = await AsyncConnection.connect(dsn, connect_timeout=libpq_timeout)
        except TimeoutError as exc:
            raise StorageConfigError(
                f"PostgreSQL at {where} did not answer within {connect_timeout_s} s"
            ) from exc
        except psycopg.Error as exc:
            raise StorageConfigError(
                f"cannot connect to PostgreSQL at {where}: {str(exc).strip()}"
            ) from exc
        async with probe:
            if migrate:
                await migrate_postgres(probe)

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"connect_timeout": libpq_timeout},
            # A server restart leaves dead connections in the pool; checking on checkout
            # replaces them instead of failing a write.
            check=AsyncConnectionPool.check_connection,
            name="pipecat-audio-capture",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg.Error as exc:
            await pool.close()
            raise StorageConfigError(
                f"cannot open a pool to PostgreSQL at {where}: {str(exc).strip()}"
            ) from exc
        logger.info(f"audio index connected to PostgreSQL at {where}")
        return cls(
            pool,
            owns_pool=True,
            batch_max_rows=batch_max_rows,
            batch_max_delay_s=batch_max_delay_s,
        )

    async def run_migrations(
        self, *, lock_timeout_s: float = defaults.MIGRATION_LOCK_TIMEOUT_S
    ) -> list[int]:
        """Create or upgrade the tables and views through this storage's pool.

        As :func:`migrate_postgres` on the pool: safe to call from every worker at startup.

        Args:
            lock_timeout_s: Longest wait for another caller's run to finish.

        Returns:
            The versions this call applied, oldest first.

        Raises:
            MigrationError: If a migration fails (nothing of the run is kept) or the lock wait
                times out.
        """
        return await migrate_postgres(self._pool, lock_timeout_s=lock_timeout_s)

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Index a stored segment; a second save of the same ``segment_id`` is ignored.

        Returns once the batch holding the row is committed.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused (impossible values, naive timestamps) or the
                database fails.
        """
        row = checked_segment(session_id, meta)
        await self._rows.write(_INSERT_SEGMENT, row_params(row), f"segment {row.segment_id}")

    async def save_transcript(self, record: TranscriptRecord) -> None:
        """Index a turn's transcript, replacing an earlier one for the same session, turn and role.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused or the database fails.
        """
        row = checked_transcript(record)
        await self._rows.write(
            _UPSERT_TRANSCRIPT, row_params(row), f"{row.role} transcript of turn {row.turn_id}"
        )

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        """Index a bot turn's latency breakdown; a second save for the same turn is ignored.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageError: If the row is refused (impossible values, naive timestamps, no stages)
                or the database fails.
        """
        row = latency_row(checked_latency(record))
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
        try:
            async with self._pool.connection() as conn, conn.transaction():
                segments = await conn.execute(_DELETE_SEGMENTS, (session,))
                transcripts = await conn.execute(_DELETE_TRANSCRIPTS, (session,))
                latencies = await conn.execute(_DELETE_LATENCIES, (session,))
        except psycopg.Error as exc:
            raise StorageError(
                f"could not delete the rows of session {session}: {exc}",
                transient=is_transient_postgres_error(exc),
            ) from exc
        return DeletedRows(
            segments=segments.rowcount,
            transcripts=transcripts.rowcount,
            latencies=latencies.rowcount,
        )

    async def close(self) -> None:
        """Write the rows still queued, then close the pool if this storage owns it."""
        await self._rows.close()
        if self._owns_pool:
            await self._pool.close()

    async def _write_batch(self, groups: Sequence[tuple[str, list[dict[str, Any]]]]) -> None:
        # executemany pipelines its rows: one round trip for the batch, in one transaction.
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cursor,
        ):
            for statement, rows in groups:
                await cursor.executemany(statement, rows)

    async def _read(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(query, params)
                rows = await cursor.fetchall()
        except psycopg.Error as exc:
            raise StorageError(
                f"could not read the audio index: {exc}", transient=is_transient_postgres_error(exc)
            ) from exc
        return [{name: _from_postgres(value) for name, value in row.items()} for row in rows]


async def migrate_postgres(
    target: AsyncConnection[Any] | AsyncConnectionPool[Any],
    *,
    lock_timeout_s: float = defaults.MIGRATION_LOCK_TIMEOUT_S,
) -> list[int]:
    """Create or upgrade the tables and views; safe to call from every worker at startup.

    Pending migrations run in one transaction that holds an advisory lock, so concurrent
    callers take turns and all but the first find nothing to do. A migration only adds or
    replaces tables, indexes and views: no data is dropped. Versions the database has but
    this package does not know (a newer release migrated it) are logged and left alone.

    Args:
        target: A pool, or a connection that is not inside a transaction.
        lock_timeout_s: Longest wait for another caller's run to finish.

    Returns:
        The versions this call applied, oldest first.

    Raises:
        MigrationError: If a migration fails (nothing of the run is kept), the lock wait times
            out, or the connection is inside a transaction.
    """
    try:
        if isinstance(target, AsyncConnectionPool):
            async with target.connection() as conn:
                return await _migrate(conn, lock_timeout_s)
        return await _migrate(target, lock_timeout_s)
    except psycopg.Error as exc:
        raise MigrationError(
            f"PostgreSQL migrations failed: {exc}", transient=is_transient_postgres_error(exc)
        ) from exc


async def _migrate(conn: AsyncConnection[Any], lock_timeout_s: float) -> list[int]:
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise MigrationError(
            "run_migrations needs a connection outside any transaction: commit or roll back first"
        )
    async with conn.transaction():
        # Under REPEATABLE READ the snapshot would predate the lock wait, hiding the versions a
        # worker that held the lock just committed; READ COMMITTED sees them.
        await conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, true)", (f"{round(lock_timeout_s * 1000)}ms",)
        )
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        await conn.execute(_CREATE_MIGRATIONS_TABLE)
        cursor = await conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")
        applied = {version for (version,) in await cursor.fetchall()}
        done: list[int] = []
        for migration in pending_migrations("postgres", applied):
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration.version)
    return done


def _describe(dsn: str) -> str:
    """Return ``host:port/dbname`` of a DSN, for messages that must not show its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StorageConfigError(f"malformed PostgreSQL DSN: {str(exc).strip()}") from exc
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '(default database)'}"


def _from_postgres(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def is_transient_postgres_error(exc: BaseException) -> bool:
    """Whether another attempt can cure a psycopg error.

    A lost or refused connection (no SQLSTATE), a pool that had no connection in time, and the
    SQLSTATE classes of :data:`_TRANSIENT_SQLSTATE_CLASSES` are; a refused row, a missing table
    or a syntax error is not.
    """
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return isinstance(exc, psycopg.OperationalError)
    return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
