"""A big index for section 5: many short calls, written in bulk into SQLite or PostgreSQL.

Every call has the same shape (four turns with audio and a transcript, the last bot turn cut
short, plus a transcript-only user turn), one minute after the previous call, so the newest
calls and their summaries are known in advance. The rows go in through ``executemany`` (SQLite)
or ``COPY`` (PostgreSQL) in bulk transactions after the package's migrations made the schema,
so the index's triggers and indexes see them as the writers' own saves would be seen.
"""

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipecat_audio_capture.storage.sqlite import TIMESTAMP_FORMAT

FIRST_CALL = datetime(2026, 1, 1, tzinfo=UTC)
CALL_SPACING = timedelta(minutes=1)

SEGMENT_COLUMNS = (
    "segment_id",
    "session_id",
    "turn_id",
    "speaker",
    "audio_url",
    "format",
    "sample_rate",
    "num_channels",
    "duration_ms",
    "byte_size",
    "interrupted",
    "unplayed_ms",
    "started_at",
    "ended_at",
)
TRANSCRIPT_COLUMNS = ("session_id", "turn_id", "role", "text", "interrupted", "occurred_at")

# (speaker, start ms, duration ms, interrupted, unplayed ms); a transcript-only turn follows.
_TURNS = (
    ("user", 0, 2000, False, None),
    ("bot", 2500, 3000, False, None),
    ("user", 6000, 1500, False, None),
    ("bot", 8000, 4000, True, 1500.0),
)
_TRANSCRIPT_ONLY_MS = 13000


@dataclass(frozen=True)
class Rows:
    """One call's rows, as tuples in :data:`SEGMENT_COLUMNS` / :data:`TRANSCRIPT_COLUMNS` order."""

    segments: list[tuple[Any, ...]]
    transcripts: list[tuple[Any, ...]]


def session_id_of(number: int) -> str:
    """The id of call ``number`` (stable, so runs can be compared)."""
    return str(uuid.UUID(int=number + 1))


def call_rows(number: int, *, text_times: bool) -> Rows:
    """The rows of call ``number``; ``text_times`` writes SQLite's timestamp text."""
    session = session_id_of(number)
    start = FIRST_CALL + number * CALL_SPACING

    def when(ms: float) -> object:
        moment = start + timedelta(milliseconds=ms)
        return moment.strftime(TIMESTAMP_FORMAT) if text_times else moment

    segments, transcripts = [], []
    for speaker, at_ms, duration_ms, interrupted, unplayed_ms in _TURNS:
        turn = str(uuid.uuid4())
        segment = str(uuid.uuid4())
        segments.append(
            (
                segment,
                session,
                turn,
                speaker,
                f"file:///recordings/{session}/{segment}.wav",
                "wav",
                16000,
                1,
                float(duration_ms),
                44 + duration_ms * 32,
                int(interrupted) if text_times else interrupted,
                unplayed_ms,
                when(at_ms),
                when(at_ms + duration_ms),
            )
        )
        role = "assistant" if speaker == "bot" else "user"
        flag = int(interrupted) if text_times else interrupted
        transcripts.append((session, turn, role, f"{role} turn", flag, when(at_ms)))
    late = (session, str(uuid.uuid4()), "user", "bye", 0 if text_times else False)
    transcripts.append((*late, when(_TRANSCRIPT_ONLY_MS)))
    return Rows(segments, transcripts)


def batches(sessions: int, size: int, *, text_times: bool) -> Iterator[Rows]:
    """All calls' rows, ``size`` calls at a time."""
    for first in range(0, sessions, size):
        segments: list[tuple[Any, ...]] = []
        transcripts: list[tuple[Any, ...]] = []
        for number in range(first, min(first + size, sessions)):
            rows = call_rows(number, text_times=text_times)
            segments += rows.segments
            transcripts += rows.transcripts
        yield Rows(segments, transcripts)


def fill_sqlite(path: Path, sessions: int) -> None:
    """Insert ``sessions`` calls into a migrated SQLite index, in one transaction."""
    segment_sql = _insert("session_audio_segments", SEGMENT_COLUMNS, "?")
    transcript_sql = _insert("session_transcripts", TRANSCRIPT_COLUMNS, "?")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for rows in batches(sessions, 2000, text_times=True):
            conn.executemany(segment_sql, rows.segments)
            conn.executemany(transcript_sql, rows.transcripts)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def fill_postgres(dsn: str, sessions: int) -> None:
    """Copy ``sessions`` calls into a migrated PostgreSQL schema, a batch per transaction."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        # A transaction per batch: each call's summary trigger holds an advisory lock until
        # commit, and the server's lock table has room for a few thousand.
        for rows in batches(sessions, 250, text_times=False):
            async with conn.transaction():
                for table, columns, values in (
                    ("session_audio_segments", SEGMENT_COLUMNS, rows.segments),
                    ("session_transcripts", TRANSCRIPT_COLUMNS, rows.transcripts),
                ):
                    copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                    async with conn.cursor().copy(copy_sql) as copy:
                        for value in values:
                            await copy.write_row(value)
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE")


def _insert(table: str, columns: tuple[str, ...], placeholder: str) -> str:
    marks = ", ".join(placeholder for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
