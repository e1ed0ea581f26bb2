"""Record builders and backends for the metadata index tests (their fixtures are in conftest.py).

PostgreSQL tests run against a real server: ``AUDIO_CAPTURE_TEST_DSN``, or a local server with
trust auth by default. Each test gets a fresh schema (:func:`fresh_pg_schema`), selected through
the connections' ``search_path`` and dropped afterwards. An unreachable server fails the tests:
they never skip, so a green run always means PostgreSQL was tested.
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


class Call:
    """A hand-built call whose every number is known (times in ms after T0).

    ======  =========  ====================================  ==============================
    turn    speaker    audio                                 transcript
    ======  =========  ====================================  ==============================
    U1      user       0 - 1500.125                          "hello", at 2500 (late STT)
    B1      bot        2250.5 - 4250.5, 4250.5 - 5250.5 (2   "Sure, let me", interrupted,
                       segments; interrupted, 800 unplayed)  at 2200
    U2      user       5000 - 5600 (barge-in)                none
    B2      bot        none                                  "Go on.", at 6500
    U3      user       none                                  "wait", at 8000
    U4      user       9000 - 9500                           "ok", at 9000
    B3      bot        9400 - 10400, interrupted             none
    ======  =========  ====================================  ==============================
    """

    def __init__(self) -> None:
        self.session_id = new_id()
        self.turns = {name: new_id() for name in ("U1", "B1", "U2", "B2", "U3", "U4", "B3")}
        turn, session = self.turns, self.session_id
        self.segments = {
            "U1": make_segment(session, turn_id=turn["U1"], duration_ms=1500.125),
            "B1a": make_segment(
                session, turn_id=turn["B1"], speaker="bot", start_ms=2250.5, duration_ms=2000
            ),
            "B1b": make_segment(
                session,
                turn_id=turn["B1"],
                speaker="bot",
                start_ms=4250.5,
                duration_ms=1000,
                interrupted=True,
                unplayed_ms=800.0,
            ),
            "U2": make_segment(session, turn_id=turn["U2"], start_ms=5000, duration_ms=600),
            "U4": make_segment(session, turn_id=turn["U4"], start_ms=9000, duration_ms=500),
            "B3": make_segment(
                session,
                turn_id=turn["B3"],
                speaker="bot",
                start_ms=9400,
                duration_ms=1000,
                interrupted=True,
            ),
        }
        self.transcripts = [
            make_transcript(session, turn["U1"], "user", "hello", at_ms=2500),
            make_transcript(
                session, turn["B1"], "assistant", "Sure, let me", at_ms=2200, interrupted=True
            ),
            make_transcript(session, turn["B2"], "assistant", "Go on.", at_ms=6500),
            make_transcript(session, turn["U3"], "user", "wait", at_ms=8000),
            make_transcript(session, turn["U4"], "user", "ok", at_ms=9000),
        ]

    async def save(self, index: IndexBackend) -> None:
        # The second part of B1 is saved first: "first segment" must mean first in time.
        for key in ("B1b", "U1", "B1a", "U2", "U4", "B3"):
            await index.store.save_metadata(self.session_id, self.segments[key])
        for record in self.transcripts:
            await index.store.save_transcript(record)
