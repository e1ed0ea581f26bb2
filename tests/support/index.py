"""Fixtures and record builders for the metadata index tests.

Test modules load it with ``pytest_plugins = ["index_support"]`` and import the builders.

PostgreSQL tests run against a real server: ``AUDIO_CAPTURE_TEST_DSN``, or a local server with
trust auth by default. Each test gets a fresh schema, selected through the connections'
``search_path`` and dropped afterwards. An unreachable server fails the tests: they never skip,
so a green run always means PostgreSQL was tested.
"""

import os
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture.records import Role, SegmentMetadata, Speaker, TranscriptRecord
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

DSN_ENV = "AUDIO_CAPTURE_TEST_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
"""Start of the hand-built calls; builders take times as milliseconds after it."""

SAMPLE_RATE = 16_000


def at(ms: float) -> datetime:
    """Return the instant ``ms`` milliseconds after :data:`T0`."""
    return T0 + timedelta(milliseconds=ms)


def new_id() -> str:
    """Return a random UUID string."""
    return str(uuid.uuid4())


def make_segment(
    session_id: str,
    *,
    turn_id: str | None = None,
    speaker: Speaker = "user",
    start_ms: float = 0.0,
    duration_ms: float = 1000.0,
    interrupted: bool = False,
    unplayed_ms: float | None = None,
    segment_id: str | None = None,
) -> SegmentMetadata:
    """Build the metadata of a 16 kHz mono segment; its size follows from its duration."""
    segment_id = segment_id or new_id()
    return SegmentMetadata(
        segment_id=segment_id,
        session_id=session_id,
        turn_id=turn_id or new_id(),
        speaker=speaker,
        audio_url=f"file:///recordings/{session_id}/{segment_id}.wav",
        sample_rate=SAMPLE_RATE,
        num_channels=1,
        duration_ms=duration_ms,
        byte_size=44 + round(duration_ms * SAMPLE_RATE / 1000) * 2,
        interrupted=interrupted,
        unplayed_ms=unplayed_ms,
        started_at=at(start_ms),
        ended_at=at(start_ms + duration_ms),
    )


def make_transcript(
    session_id: str,
    turn_id: str,
    role: Role,
    text: str,
    *,
    at_ms: float,
    interrupted: bool = False,
) -> TranscriptRecord:
    """Build a transcript row that occurred ``at_ms`` after :data:`T0`."""
    return TranscriptRecord(
        session_id=session_id,
        turn_id=turn_id,
        role=role,
        text=text,
        interrupted=interrupted,
        occurred_at=at(at_ms),
    )


@dataclass(frozen=True)
class PgSchema:
    """A throwaway schema and a DSN whose connections create and find everything in it."""

    name: str
    dsn: str


def pg_dsn() -> str:
    """Return the test server's DSN."""
    return os.environ.get(DSN_ENV, DEFAULT_DSN)


@asynccontextmanager
async def fresh_pg_schema() -> AsyncIterator[PgSchema]:
    """Create a fresh schema on the test server, and drop it with everything in it on exit."""
    dsn = pg_dsn()
    admin = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=2)
    name = f"audio_test_{uuid.uuid4().hex[:12]}"
    async with admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield PgSchema(name=name, dsn=make_conninfo(dsn, options=f"-c search_path={name}"))
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest_asyncio.fixture
async def pg_schema() -> AsyncIterator[PgSchema]:
    """A fresh schema for one test."""
    async with fresh_pg_schema() as schema:
        yield schema


@pytest_asyncio.fixture
async def pg_pool(pg_schema: PgSchema) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """An open pool on the test schema, not yet migrated."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_schema.dsn, min_size=1, max_size=4, open=False
    )
    async with pool:
        yield pool


class IndexBackend(ABC):
    """One backend under the contract suite: its store plus the test's back door into it."""

    name: str
    store: PostgresAudioMetaStorage | SQLiteAudioMetaStorage

    @abstractmethod
    async def migrate(self) -> list[int]:
        """Run the store's migrations and return the versions applied."""

    @abstractmethod
    async def reopen(self) -> None:
        """Close ``store`` and replace it with a new store on the same database."""

    @abstractmethod
    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        """Run a query with no parameters directly on the database and return its rows."""

    @abstractmethod
    async def execute(self, statement: str) -> None:
        """Run and commit a statement with no parameters directly on the database."""

    async def count(self, table: str) -> int:
        """Return the rows of a table or view."""
        ((rows,),) = await self.fetch(f"SELECT count(*) FROM {table}")
        return int(rows)

    async def versions(self) -> list[int]:
        """Return the migration versions recorded in the database."""
        rows = await self.fetch("SELECT version FROM audio_capture_migrations ORDER BY version")
        return [version for (version,) in rows]


class SQLiteBackend(IndexBackend):
    """A SQLite file in the test's temporary folder."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sqlite_store = SQLiteAudioMetaStorage(path)
        self.store = self.sqlite_store

    async def migrate(self) -> list[int]:
        return await self.sqlite_store.run_migrations()

    async def reopen(self) -> None:
        await self.store.close()
        self.sqlite_store = SQLiteAudioMetaStorage(self.path)
        self.store = self.sqlite_store

    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(query).fetchall()

    async def execute(self, statement: str) -> None:
        with closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute(statement)


class PostgresBackend(IndexBackend):
    """A PostgreSQL schema of its own, reached through a pool."""

    name = "postgres"

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.store = PostgresAudioMetaStorage(pool)

    async def migrate(self) -> list[int]:
        return await self.store.run_migrations()

    async def reopen(self) -> None:
        await self.store.close()
        self.store = PostgresAudioMetaStorage(self.pool)

    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query)
            return await cursor.fetchall()

    async def execute(self, statement: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(statement)


@pytest_asyncio.fixture
async def sqlite_index(tmp_path: Path) -> AsyncIterator[IndexBackend]:
    """A migrated, empty SQLite index in a folder that does not exist yet."""
    backend = SQLiteBackend(tmp_path / "index" / "audio.sqlite3")
    await backend.migrate()
    yield backend
    await backend.store.close()


@pytest_asyncio.fixture
async def postgres_index(pg_pool: AsyncConnectionPool[Any]) -> AsyncIterator[IndexBackend]:
    """A migrated, empty PostgreSQL index in a schema of its own."""
    backend = PostgresBackend(pg_pool)
    await backend.migrate()
    yield backend
    await backend.store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def index(request: pytest.FixtureRequest) -> IndexBackend:
    """Each backend in turn, migrated and empty."""
    backend: IndexBackend = request.getfixturevalue(f"{request.param}_index")
    return backend
