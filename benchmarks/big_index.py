"""Section 5: the call review and ``sessions`` on an index of 100,000 calls.

For each backend (SQLite in a temporary folder, PostgreSQL in a fresh schema dropped after):

1. an index of the release before migration 0003 (migrations 0001-0002) is filled in bulk with
   the calls of :mod:`benchmarks.big_index_data`;
2. its reads are timed once as they were: the newest 50 calls and one call's log and gaps;
3. the index is upgraded (migration 0003's backfill of the call summaries, timed);
4. ``pipecat-audio-capture sessions --limit 50`` runs in this process (the command's whole work
   but the interpreter's start: parsing, opening the index, the read, the table), and ``/`` and
   a call's page are fetched over HTTP from the call review server (:func:`listening`, the
   limits ``serve`` uses, reading through ``open_index`` as ``serve`` does), each repeated;
5. a call's page is fetched while four ``/`` requests run at the same time.

The summaries cost the writer: each write recomputes its call's summary, so a write's cost
grows with the call's length. The section measures ``save_metadata`` in one call of growing
length, with and without migration 0003, side by side.

Target: each answers in under 200 ms. ``python -m benchmarks.big_index [--sessions N]`` runs
this section alone and prints it.
"""

import argparse
import asyncio
import contextlib
import functools
import io
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp

from benchmarks.big_index_data import FIRST_CALL, fill_postgres, fill_sqlite, session_id_of
from benchmarks.report import Section, table
from benchmarks.stats import Summary
from pipecat_audio_capture import migrations
from pipecat_audio_capture.cli import main as cli_main
from pipecat_audio_capture.index_access import IndexTarget, PostgresTarget, SQLiteTarget, open_index
from pipecat_audio_capture.migrations import load_migrations
from pipecat_audio_capture.web import ServeOptions, create_app
from pipecat_audio_capture.web.server import listening

TARGET_MS = 200.0
OLD_VERSION = 2
"""The last migration of the release before the summaries."""
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@dataclass(frozen=True)
class Timings:
    """One backend's figures, in milliseconds.

    Parameters:
        backend: ``SQLite`` or ``PostgreSQL``.
        fill_s: Seconds to write the calls in bulk.
        upgrade_s: Seconds migration 0003 took on them.
        after: Repeated runs of each command and page after it.
    """

    backend: str
    fill_s: float
    upgrade_s: float
    after: dict[str, Summary]


async def measure(sessions: int, reps: int) -> Section:
    """Both backends (PostgreSQL only if reachable), as a results section."""
    section = Section(f"7. A big index: {sessions:,} calls")
    section.add(
        f"Each call has four turns with audio and a transcript (the last bot turn cut short) and "
        f"a transcript-only turn: {sessions * 4:,} segment rows and {sessions * 5:,} transcript "
        "rows. Filled in bulk into an index of the release before migration 0003 (0001-0002), "
        "upgraded (0003-0005), then read; the pages over HTTP from the call "
        f"review server on loopback, repeated {reps} times (median, min-max). "
        f"Target: under {TARGET_MS:g} ms each."
    )
    results = [await _sqlite(sessions, reps)]
    postgres = await _postgres(sessions, reps)
    if isinstance(postgres, str):
        section.add(f"PostgreSQL: skipped ({postgres})")
    else:
        results.append(postgres)
    section.add(_after_table(results))
    section.add(
        table(
            ["backend", "bulk fill", "upgrade (0003 backfill)"],
            [(t.backend, f"{t.fill_s:.1f} s", f"{t.upgrade_s:.1f} s") for t in results],
        )
    )
    section.add(
        "What the summaries cost the writer: ms per `save_metadata` (a new turn, audio and "
        "transcript saved for each turn before it) when the call already has N turns, mean of "
        f"{WRITE_SAMPLES} saves (before 0003 a save took 1-5 ms whatever N: the figures of "
        "0.1.0 are in this file's history, since this release cannot read an older schema)."
    )
    section.add(await _write_costs())
    for timings in results:
        for name, summary in timings.after.items():
            met = "met" if summary.median < TARGET_MS else "not met"
            section.headlines.append(
                f"{timings.backend}, {sessions:,} calls, {name}: {summary.text(1, ' ms')} "
                f"— target < {TARGET_MS:g} ms: {met}"
            )
    return section


_LIST = "`sessions --limit 50` (in process)"
_HOME = "GET / (50 newest calls)"
_CALL = "GET /sessions/ID (one call)"
_CALL_BUSY = "GET /sessions/ID while 4 GET / run"


def _after_table(results: list[Timings]) -> str:
    rows = [
        (timings.backend, name, summary.text(1, " ms"))
        for timings in results
        for name, summary in timings.after.items()
    ]
    return table(["backend", "request", "after the upgrade"], rows)


async def _sqlite(sessions: int, reps: int) -> Timings:
    with tempfile.TemporaryDirectory(prefix="audio-capture-big-") as folder:
        path = Path(folder) / "index.sqlite3"
        from pipecat_audio_capture.storage import sqlite as sqlite_module

        with _old_release(sqlite_module):
            async with sqlite_module.SQLiteAudioMetaStorage(path) as store:
                await store.run_migrations()
        start = time.perf_counter()
        fill_sqlite(path, sessions)
        fill_s = time.perf_counter() - start
        async with sqlite_module.SQLiteAudioMetaStorage(path) as store:
            start = time.perf_counter()
            await store.run_migrations()
            upgrade_s = time.perf_counter() - start
        after = await _after(SQLiteTarget(path), ["--db", str(path)], sessions, reps)
    return Timings("SQLite", fill_s, upgrade_s, after)


async def _postgres(sessions: int, reps: int) -> Timings | str:
    try:
        from pipecat_audio_capture.storage import postgres as postgres_module
    except ImportError as exc:
        return f"the postgres extra is not installed: {exc}"
    Store = postgres_module.PostgresAudioMetaStorage
    async with _scratch_schema() as scoped:
        if scoped is None:
            return "PostgreSQL is not reachable"
        with _old_release(postgres_module):
            await (await Store.connect(scoped)).close()
        start = time.perf_counter()
        await fill_postgres(scoped, sessions)
        fill_s = time.perf_counter() - start
        start = time.perf_counter()
        await (await Store.connect(scoped)).close()
        upgrade_s = time.perf_counter() - start
        after = await _after(PostgresTarget(scoped), ["--dsn", scoped], sessions, reps)
    return Timings("PostgreSQL", fill_s, upgrade_s, after)


WRITE_SIZES = (10, 100, 1000)
WRITE_SAMPLES = 20


async def _write_costs() -> str:
    rows = []
    from pipecat_audio_capture.storage import sqlite as sqlite_module

    with tempfile.TemporaryDirectory(prefix="audio-capture-big-") as folder:
        async with sqlite_module.SQLiteAudioMetaStorage(Path(folder) / "index.sqlite3") as store:
            costs = await _growing_call(store)
    rows.append(("SQLite", *(f"{cost:.2f}" for cost in costs)))
    try:
        from pipecat_audio_capture.storage import postgres as postgres_module
    except ImportError:
        return table(["backend", *(f"N={n}" for n in WRITE_SIZES)], rows)
    async with _scratch_schema() as scoped:
        if scoped is not None:
            pg_store = await postgres_module.PostgresAudioMetaStorage.connect(scoped)
            try:
                costs = await _growing_call(pg_store)
            finally:
                await pg_store.close()
            rows.append(("PostgreSQL", *(f"{cost:.2f}" for cost in costs)))
    return table(["backend", *(f"N={n}" for n in WRITE_SIZES)], rows)


async def _growing_call(store: Any) -> list[float]:
    """Mean ms per save_metadata when the call has each of :data:`WRITE_SIZES` turns."""
    from datetime import timedelta

    from pipecat_audio_capture.records import Role, SegmentMetadata, TranscriptRecord

    session = str(uuid.uuid4())
    turns = 0

    async def save_turn() -> float:
        nonlocal turns
        start = FIRST_CALL + timedelta(seconds=turns * 4)
        turn, segment = str(uuid.uuid4()), str(uuid.uuid4())
        meta = SegmentMetadata(
            segment_id=segment,
            session_id=session,
            turn_id=turn,
            speaker="user" if turns % 2 else "bot",
            audio_url=f"file:///recordings/{session}/{segment}.wav",
            sample_rate=16000,
            num_channels=1,
            duration_ms=3000.0,
            byte_size=96_044,
            interrupted=False,
            unplayed_ms=None,
            started_at=start,
            ended_at=start + timedelta(seconds=3),
        )
        began = time.perf_counter()
        await store.save_metadata(session, meta)
        took = (time.perf_counter() - began) * 1000
        role: Role = "user" if turns % 2 else "assistant"
        await store.save_transcript(TranscriptRecord(session, turn, role, "text", False, start))
        turns += 1
        return took

    costs = []
    for size in WRITE_SIZES:
        while turns < size:
            await save_turn()
        costs.append(sum([await save_turn() for _ in range(WRITE_SAMPLES)]) / WRITE_SAMPLES)
    return costs


@contextlib.asynccontextmanager
async def _scratch_schema() -> AsyncIterator[str | None]:
    """A fresh PostgreSQL schema's DSN, dropped on exit; None if the server is unreachable."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    dsn = os.environ.get("AUDIO_CAPTURE_TEST_DSN", DEFAULT_DSN)
    schema = f"audio_capture_big_{uuid.uuid4().hex[:12]}"
    try:
        admin = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    async with admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield make_conninfo(dsn, options=f"-c search_path={schema}")
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def _old_release(module: Any) -> Iterator[None]:
    """Make ``module`` migrate only as far as the release before 0003 did."""
    old = tuple(m for m in load_migrations(module.__name__.rsplit(".", 1)[1]) if m.version <= 2)
    # The migration runner looks the list up where it is defined.
    with mock.patch.object(migrations, "load_migrations", lambda dialect: old):
        yield


async def _after(
    target: IndexTarget, where: list[str], sessions: int, reps: int
) -> dict[str, Summary]:
    argv = ["sessions", "--limit", "50", *where]
    times: dict[str, list[float]] = {_LIST: [], _HOME: [], _CALL: [], _CALL_BUSY: []}
    for _ in range(reps):
        times[_LIST].append(await _ms(lambda: asyncio.to_thread(_quiet_cli, argv)))
    options = ServeOptions()
    async with (
        open_index(target, connections=options.read_connections) as index,
        _served(index, options) as base,
        aiohttp.ClientSession() as client,
    ):
        for rep in range(reps):
            call = f"{base}/sessions/{session_id_of((rep * 7919) % sessions)}"
            times[_HOME].append(await _ms(lambda: _get(client, f"{base}/")))
            times[_CALL].append(await _ms(functools.partial(_get, client, call)))
            busy = [asyncio.create_task(_get(client, f"{base}/")) for _ in range(4)]
            await asyncio.sleep(0)
            times[_CALL_BUSY].append(await _ms(functools.partial(_get, client, call)))
            await asyncio.gather(*busy)
    return {name: Summary.of(values) for name, values in times.items()}


@contextlib.asynccontextmanager
async def _served(index: Any, options: ServeOptions) -> AsyncIterator[str]:
    app = create_app(index, recordings=None)
    async with listening(app, "127.0.0.1", 0, options) as listener:
        yield f"http://127.0.0.1:{listener.port}"


async def _get(client: aiohttp.ClientSession, url: str) -> None:
    async with client.get(url) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def _quiet_cli(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(argv)
    if code != 0:
        raise RuntimeError(f"sessions exited {code}")


async def _ms(work: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await work()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Run this section alone and print it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000, help="calls in the index")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each request")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    section = asyncio.run(measure(args.sessions, args.reps))
    print("\n".join(f"- {line}" for line in section.headlines))
    print()
    print(section.markdown())


if __name__ == "__main__":
    main()
