"""Section 2g: index rows from 1, 10 and 100 concurrent calls in one process, one by one
against the shared batching writer, on SQLite and PostgreSQL.

Each call has two writers, as a real one has its capture and its transcript recorder: one
task saves its segment rows one after another, another its transcript rows; all calls run at
once. "One by one" is the write path before batching, rebuilt here with the backend's own
statements: each row its own autocommit INSERT on a connection checked out of a pool of the
default size (PostgreSQL), or its own transaction in a worker thread on one connection behind a
lock (SQLite). "Batched" is the backend as shipped, with its default batch settings.

Run it alone with ``python -m benchmarks.index_batching``; ``make bench`` runs it as part of the
whole report.
"""

import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from benchmarks.backends import in_scratch_schema, segment_rows
from benchmarks.report import Section, skipped, table
from benchmarks.stats import Summary, interleaved, ratios
from pipecat_audio_capture import defaults
from pipecat_audio_capture.records import SegmentMetadata, TranscriptRecord
from pipecat_audio_capture.storage import sqlite as sqlite_backend
from pipecat_audio_capture.storage.index import checked_segment, checked_transcript

CALLS = (1, 10, 100)
ONE_BY_ONE = "one by one"
BATCHED = "batched"
REPS = 5
ROWS = 2000
"""Repetitions and rows per run when the module runs alone."""
TARGET_RATIO = 5.0
"""The goal at 100 calls: the batched writer at least five times the one-by-one rate."""


@dataclass(frozen=True)
class Run:
    """One timed run: how long its rows took, and in how many statements."""

    seconds: float
    statements: int


@dataclass(frozen=True)
class Writer:
    """One way of writing rows; ``statements`` counts what it sent so far."""

    segment: Callable[[SegmentMetadata], Awaitable[None]]
    transcript: Callable[[TranscriptRecord], Awaitable[None]]
    statements: Callable[[], int]


async def measure_sqlite(reps: int, rows: int) -> Section:
    """Rows per second into a SQLite file in a temporary folder."""
    title = "2g(i). Index rows from concurrent calls into SQLite"
    with tempfile.TemporaryDirectory(prefix="audio-capture-bench-") as folder:
        # A file each: one way's WAL is never checkpointed by the other's commits.
        store = sqlite_backend.SQLiteAudioMetaStorage(Path(folder) / "batched.sqlite3")
        await store.run_migrations()
        one_by_one_path = Path(folder) / "one-by-one.sqlite3"
        schema = sqlite_backend.SQLiteAudioMetaStorage(one_by_one_path)
        await schema.run_migrations()
        await schema.close()
        one_by_one = _SQLiteOneByOne(one_by_one_path)
        try:
            writers = {
                ONE_BY_ONE: one_by_one.writer(),
                BATCHED: _store_writer(store),
            }
            results = await _measure(writers, reps, rows)
        finally:
            one_by_one.close()
            await store.close()
    return _section(
        title,
        "SQLite",
        "`SQLiteAudioMetaStorage` on a file (WAL, the default `synchronous`); one by one "
        "writes to a file of its own with the same schema.",
        results,
        rows,
    )


async def measure_postgres(reps: int, rows: int) -> Section:
    """Rows per second into PostgreSQL, in a fresh schema dropped after."""
    title = "2g(ii). Index rows from concurrent calls into PostgreSQL"
    try:
        from psycopg_pool import AsyncConnectionPool

        from pipecat_audio_capture.storage import postgres as postgres_backend
    except ImportError as exc:
        return skipped(title, f"the postgres extra does not import ({exc})")

    async def measure(scoped: str) -> dict[int, dict[str, list[Run]]]:
        store = await postgres_backend.PostgresAudioMetaStorage.connect(scoped)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            scoped, min_size=defaults.POOL_MIN_SIZE, max_size=defaults.POOL_MAX_SIZE, open=False
        )
        await pool.open(wait=True)
        try:
            writers = {
                ONE_BY_ONE: _postgres_one_by_one(pool, postgres_backend),
                BATCHED: _store_writer(store),
            }
            return await _measure(writers, reps, rows)
        finally:
            await pool.close()
            await store.close()

    results = await in_scratch_schema(measure)
    if isinstance(results, str):
        return skipped(title, results)
    return _section(
        title,
        "PostgreSQL",
        "`PostgresAudioMetaStorage.connect()` (pools of the default size, "
        f"{defaults.POOL_MAX_SIZE} connections) on the local server over TCP loopback, in a "
        "fresh schema dropped afterwards.",
        results,
        rows,
    )


async def _measure(
    writers: dict[str, Writer], reps: int, rows: int
) -> dict[int, dict[str, list[Run]]]:
    """Every call count, each variant ``reps`` times, interleaved."""
    results: dict[int, dict[str, list[Run]]] = {}
    for calls in CALLS:

        async def run(name: str, calls: int = calls) -> Run:
            return await _run(writers[name], calls, rows)

        results[calls] = await interleaved(list(writers), reps, run)
    return results


async def _run(writer: Writer, calls: int, rows: int) -> Run:
    """``calls`` concurrent calls writing ``rows`` rows in all; time and statements used."""
    # Rows are built before the clock starts: only writing them is timed.
    scripts = [_call_rows(_per_call(calls, rows)) for _ in range(calls)]
    before = writer.statements()
    start = time.perf_counter()
    await asyncio.gather(*(_call(writer, script) for script in scripts))
    return Run(time.perf_counter() - start, writer.statements() - before)


async def _call(
    writer: Writer, script: tuple[list[SegmentMetadata], list[TranscriptRecord]]
) -> None:
    """A call's two writers at once, each saving its rows one after another."""
    segments, transcripts = script

    async def capture() -> None:
        for meta in segments:
            await writer.segment(meta)

    async def recorder() -> None:
        for record in transcripts:
            await writer.transcript(record)

    await asyncio.gather(capture(), recorder())


def _call_rows(rows: int) -> tuple[list[SegmentMetadata], list[TranscriptRecord]]:
    """A call's segment rows and the transcript rows of the same turns, ``rows`` in all."""
    session_id = str(uuid.uuid4())
    segments = segment_rows(session_id, rows // 2)
    transcripts = [
        TranscriptRecord(
            session_id=session_id,
            turn_id=meta.turn_id,
            role="user",
            text="a transcript of the turn",
            interrupted=False,
            occurred_at=meta.ended_at,
        )
        for meta in segments
    ]
    return segments, transcripts


def _store_writer(store: Any) -> Writer:
    return Writer(
        segment=lambda meta: store.save_metadata(meta.session_id, meta),
        transcript=store.save_transcript,
        statements=lambda: store.batcher.batches,
    )


def _postgres_one_by_one(pool: Any, module: Any) -> Writer:
    """The write path before batching: a pooled connection and one INSERT per row."""
    count = [0]

    async def execute(statement: str, params: dict[str, Any]) -> None:
        async with pool.connection() as conn:
            await conn.execute(statement, params)
        count[0] += 1

    return Writer(
        segment=lambda meta: execute(
            module._INSERT_SEGMENT, asdict(checked_segment(meta.session_id, meta))
        ),
        transcript=lambda record: execute(
            module._UPSERT_TRANSCRIPT, asdict(checked_transcript(record))
        ),
        statements=lambda: count[0],
    )


class _SQLiteOneByOne:
    """The write path before batching: each row its own transaction, in a worker thread."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        self._count = 0

    def writer(self) -> Writer:
        def segment_row(meta: SegmentMetadata) -> dict[str, Any]:
            row = asdict(checked_segment(meta.session_id, meta))
            return {
                **row,
                "started_at": sqlite_backend._to_text(row["started_at"]),
                "ended_at": sqlite_backend._to_text(row["ended_at"]),
            }

        def transcript_row(record: TranscriptRecord) -> dict[str, Any]:
            row = asdict(checked_transcript(record))
            return {**row, "occurred_at": sqlite_backend._to_text(row["occurred_at"])}

        return Writer(
            segment=lambda meta: self._execute(sqlite_backend._INSERT_SEGMENT, segment_row(meta)),
            transcript=lambda record: self._execute(
                sqlite_backend._UPSERT_TRANSCRIPT, transcript_row(record)
            ),
            statements=lambda: self._count,
        )

    async def _execute(self, statement: str, params: dict[str, Any]) -> None:
        await asyncio.to_thread(self._locked, statement, params)
        self._count += 1

    def _locked(self, statement: str, params: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(statement, params)

    def close(self) -> None:
        self._conn.close()


def _section(
    title: str, backend: str, what: str, results: dict[int, dict[str, list[Run]]], rows: int
) -> Section:
    section = Section(title)
    section.add(
        f"About {rows} rows per run, half segment rows and half transcript rows, into {what} "
        "Each call has two writers (segment rows, transcript rows), each saving its rows one "
        "after another; the calls run at once in one event loop. "
        f"Batched uses the defaults: at most {defaults.INDEX_BATCH_MAX_ROWS} rows and "
        f"{defaults.INDEX_BATCH_MAX_DELAY_S * 1000:.0f} ms of waiting per batch."
    )
    table_rows: list[Sequence[object]] = []
    for calls, runs in results.items():
        one = [_rate(run, calls, rows) for run in runs[ONE_BY_ONE]]
        batched = [_rate(run, calls, rows) for run in runs[BATCHED]]
        per_statement = [_rows(calls, rows) / max(run.statements, 1) for run in runs[BATCHED]]
        table_rows.append(
            (
                calls,
                Summary.of(one).text(0),
                Summary.of(batched).text(0),
                ratios(batched, one).text(1, "x"),
                Summary.of(per_statement).text(1),
            )
        )
    section.add(
        table(
            [
                "calls",
                "one by one, rows/s",
                "batched, rows/s",
                "batched / one by one",
                "rows per batch",
            ],
            table_rows,
        )
    )
    top = max(results)
    speedup = ratios(
        [_rate(run, top, rows) for run in results[top][BATCHED]],
        [_rate(run, top, rows) for run in results[top][ONE_BY_ONE]],
    )
    met = "met" if speedup.median >= TARGET_RATIO else "not met"
    section.headlines.append(
        f"Index rows from {top} concurrent calls into {backend}: batched "
        f"{speedup.text(1, 'x')} the one-by-one rate (target ≥ {TARGET_RATIO:g}x: {met})"
    )
    return section


def _per_call(calls: int, rows: int) -> int:
    """Rows of each call: as many segment rows as transcript rows, at least one of each."""
    return max(rows // calls // 2, 1) * 2


def _rows(calls: int, rows: int) -> int:
    return _per_call(calls, rows) * calls


def _rate(run: Run, calls: int, rows: int) -> float:
    return _rows(calls, rows) / run.seconds


async def _main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    for section in (await measure_sqlite(REPS, ROWS), await measure_postgres(REPS, ROWS)):
        print(section.markdown(), end="\n\n")
        print("\n".join(f"- {line}" for line in section.headlines), end="\n\n")


if __name__ == "__main__":
    asyncio.run(_main())
