"""One index writer per backend, shared by every call: batched rows, outcomes per row.

Many calls run at once in one event loop against the real SQLite file and the real PostgreSQL
(behind ``PgFaultProxy`` for the outage), through ``SessionAudioCapture`` and the backends' own
``save_transcript``; every row must land exactly once and every call's counts stay exact.
"""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    replay_spool,
)
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.records import PendingAudioSegment, SegmentMetadata
from pipecat_audio_capture.storage.batching import write_rows_as
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.index import IndexBackend, make_segment, make_transcript, new_id
from support.pg_fault import PgFaultProxy

CALLS = 50
SEGMENTS_PER_CALL = 4
TRANSCRIPTS_PER_CALL = 4
FAST_RETRY = RetryPolicy(attempts=2, initial_backoff_s=0.05, max_backoff_s=0.1, deadline_s=0.3)
WRITE_TIMEOUT_S = 0.5


def pending(session_id: str, *, unplayed_ms: float | None = None) -> PendingAudioSegment:
    """A 50 ms mono segment of silence."""
    return PendingAudioSegment(
        segment_id=new_id(),
        session_id=session_id,
        turn_id=new_id(),
        speaker="bot",
        pcm=[bytes(1600)],
        sample_rate=16_000,
        num_channels=1,
        started_at=datetime.now(UTC),
        unplayed_ms=unplayed_ms,
    )


class Call:
    """One call: a capture over the shared index, and transcript rows saved beside it."""

    def __init__(self, storage: CompositeAudioStorage, spool_dir: Path | None = None) -> None:
        self.session_id = new_id()
        self.capture = SessionAudioCapture(
            self.session_id,
            storage,
            retry=FAST_RETRY,
            write_timeout_s=WRITE_TIMEOUT_S,
            spool_dir=spool_dir,
        )
        self.segment_ids: list[str] = []
        self.stored_ids: list[str] = []
        self.transcript_turns: list[str] = []

        @self.capture.event_handler("on_segment_stored")
        async def on_stored(_capture: SessionAudioCapture, meta: SegmentMetadata) -> None:
            self.stored_ids.append(meta.segment_id)

    def record(self, segment: PendingAudioSegment | None = None) -> None:
        segment = segment or pending(self.session_id)
        self.segment_ids.append(segment.segment_id)
        assert self.capture.record_segment(segment)

    async def say(self, store: PostgresAudioMetaStorage | SQLiteAudioMetaStorage) -> None:
        """Save transcript rows one after another, as a call's recorder does."""
        for n in range(TRANSCRIPTS_PER_CALL):
            turn_id = new_id()
            await store.save_transcript(
                make_transcript(self.session_id, turn_id, "user", f"turn {n}", at_ms=n * 1000)
            )
            self.transcript_turns.append(turn_id)


async def rows(backend: IndexBackend, query: str) -> list[str]:
    return [str(value) for (value,) in await backend.fetch(query)]


async def test_fifty_calls_at_once_store_every_row_exactly_once_in_shared_batches(
    index: IndexBackend, tmp_path: Path
) -> None:
    storage = CompositeAudioStorage(files=LocalAudioStorage(tmp_path), metadata=index.store)
    calls = [Call(storage) for _ in range(CALLS)]

    async def run(call: Call) -> None:
        for _ in range(SEGMENTS_PER_CALL):
            call.record()
        await call.say(index.store)
        await call.capture.close()

    await asyncio.gather(*(run(call) for call in calls))

    segments = await rows(index, "SELECT segment_id FROM session_audio_segments")
    turns = await rows(index, "SELECT turn_id FROM session_transcripts")
    assert sorted(segments) == sorted(s for call in calls for s in call.segment_ids)
    assert sorted(turns) == sorted(t for call in calls for t in call.transcript_turns)
    for call in calls:
        assert call.capture.stats.stored == SEGMENTS_PER_CALL
        assert call.capture.stats.lost_segment_ids == []
    batcher = index.store.batcher
    assert batcher.rows == CALLS * (SEGMENTS_PER_CALL + TRANSCRIPTS_PER_CALL)
    # Rows of different calls shared statements: far fewer batches than rows.
    assert batcher.batches * 5 <= batcher.rows, (batcher.batches, batcher.rows)


async def test_a_poison_row_fails_alone_and_the_rest_of_its_batch_is_stored(
    index: IndexBackend,
) -> None:
    session_id = new_id()
    good = [make_segment(session_id) for _ in range(30)]
    poison = replace(make_segment(session_id), byte_size=-1)  # breaks a CHECK constraint
    transcript = make_transcript(session_id, new_id(), "user", "hi", at_ms=0)
    saves = [index.store.save_metadata(session_id, meta) for meta in good[:15]]
    saves += [
        index.store.save_metadata(session_id, poison),
        index.store.save_transcript(transcript),
    ]
    saves += [index.store.save_metadata(session_id, meta) for meta in good[15:]]

    outcomes = await asyncio.gather(*saves, return_exceptions=True)

    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) == 1 and outcomes[15] is failures[0]
    assert isinstance(failures[0], StorageError)
    assert f"segment {poison.segment_id}" in str(failures[0])
    assert failures[0].__cause__ is not None
    stored = await rows(index, "SELECT segment_id FROM session_audio_segments")
    assert sorted(stored) == sorted(meta.segment_id for meta in good)
    assert await index.count("session_transcripts") == 1
    # All 32 saves went as one batch, which was split once to find the poison row.
    assert index.store.batcher.splits == 1


async def test_each_call_accounts_exactly_for_a_poison_segment_among_many_calls(
    index: IndexBackend, tmp_path: Path
) -> None:
    storage = CompositeAudioStorage(files=LocalAudioStorage(tmp_path), metadata=index.store)
    calls = [Call(storage, tmp_path / "spool") for _ in range(20)]
    poisoned = calls[7]

    poison = pending(poisoned.session_id, unplayed_ms=-0.5)  # breaks a CHECK constraint
    for call in calls:
        call.record()
        # Written beside the other calls' rows, the poison row shares a batch with them.
        call.record(poison if call is poisoned else None)
        call.record()
    await asyncio.gather(*(call.capture.close() for call in calls))

    for call in calls:
        stats = call.capture.stats
        # The spool refuses a row its replay could never store, so the poison row fails.
        expected_lost = [poison.segment_id] if call is poisoned else []
        assert stats.lost_segment_ids == expected_lost and stats.failed == len(expected_lost)
        assert stats.stored == len(call.segment_ids) - len(expected_lost)
        assert stats.spooled == 0 and stats.pending == 0
    stored = await rows(index, "SELECT segment_id FROM session_audio_segments")
    assert sorted(stored) == sorted(s for call in calls for s in call.stored_ids)
    assert poison.segment_id not in stored


async def test_a_call_closes_once_its_own_rows_are_stored_while_others_keep_writing(
    index: IndexBackend, tmp_path: Path
) -> None:
    storage = CompositeAudioStorage(files=LocalAudioStorage(tmp_path), metadata=index.store)
    quiet, busy = Call(storage), Call(storage)
    stop = asyncio.Event()
    busy_rows = 0

    async def keep_writing() -> None:
        nonlocal busy_rows
        while not stop.is_set():
            await index.store.save_metadata(busy.session_id, make_segment(busy.session_id))
            busy_rows += 1

    writer = asyncio.create_task(keep_writing())
    for _ in range(3):
        quiet.record()
    # A close that waited for the shared writer to drain would never return here.
    async with asyncio.timeout(30):
        await quiet.capture.close()
    busy_was_writing = busy_rows > 0 and not writer.done()
    in_index = await rows(
        index,
        f"SELECT segment_id FROM session_audio_segments WHERE session_id = '{quiet.session_id}'",
    )
    stop.set()
    await writer

    assert sorted(in_index) == sorted(quiet.segment_ids) and quiet.capture.stats.stored == 3
    assert busy_was_writing


async def test_a_lone_writer_never_waits_for_a_batch_to_fill(tmp_path: Path) -> None:
    store = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3", batch_max_delay_s=3600.0)
    session_id = new_id()
    try:
        # Each save would wait an hour if the batcher lingered for rows no one else sends.
        async with asyncio.timeout(30):
            for _ in range(5):
                await store.save_metadata(session_id, make_segment(session_id))
        assert store.batcher.batches == 5
    finally:
        await store.close()


# --- PostgreSQL outage -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
async def test_an_outage_under_fifty_calls_is_resolved_per_row_with_exact_counts(
    tmp_path: Path,
    fault: str,
    pg_fault_proxy: PgFaultProxy,
    proxied_pool: AsyncConnectionPool[Any],
    direct_pool: AsyncConnectionPool[Any],
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    index = PostgresAudioMetaStorage(proxied_pool)
    direct_index = PostgresAudioMetaStorage(direct_pool)
    spool_dir = tmp_path / "spool"
    calls = [Call(CompositeAudioStorage(files=files, metadata=index), spool_dir) for _ in range(50)]

    async def settled() -> None:
        async with asyncio.timeout(30):
            while any(call.capture.stats.pending for call in calls):
                await asyncio.sleep(0.05)

    for call in calls:
        call.record()
    await settled()
    pg_fault_proxy.stop() if fault == "stopped" else pg_fault_proxy.hang()
    for call in calls:
        call.record()
        call.record()
    await settled()
    stored_before_recovery = {s for call in calls for s in call.stored_ids}
    pg_fault_proxy.resume()
    for call in calls:
        call.record()
    for call in calls:
        await call.capture.close(timeout_s=10)

    # What a call reported stored is in the index before any replay: nothing half-reported.
    in_index = set(await _segment_ids(direct_pool))
    assert {s for call in calls for s in call.stored_ids} <= in_index
    spooled = 0
    for call in calls:
        stats = call.capture.stats
        assert stats.lost_segment_ids == [] and stats.pending == 0
        assert sorted(call.stored_ids + stats.spooled_segment_ids) == sorted(call.segment_ids)
        spooled += stats.spooled
    assert spooled >= CALLS  # the outage's writes gave up and went to the spool
    assert len(stored_before_recovery) >= CALLS  # the first phase was stored before it

    report = await replay_spool(
        spool_dir, CompositeAudioStorage(files=files, metadata=direct_index)
    )

    assert report.segments_stored == spooled and report.segments_failed == 0
    ids = await _segment_ids(direct_pool)
    assert sorted(ids) == sorted(s for call in calls for s in call.segment_ids)


async def _segment_ids(pool: AsyncConnectionPool[Any]) -> list[str]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT segment_id FROM session_audio_segments")
        return [str(value) for (value,) in await cursor.fetchall()]


async def test_a_batch_waits_for_a_writer_whose_rows_come_from_tasks_it_starts(
    tmp_path: Path,
) -> None:
    # As a capture does: its writer task marks itself, then saves each row from a new task.
    store = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3", batch_max_delay_s=3600.0)
    session_id = new_id()

    async def writer(name: str, pause_s: float) -> None:
        write_rows_as(name)
        for round_ in range(2):
            if round_:
                await asyncio.sleep(pause_s)
            meta = make_segment(session_id)
            await asyncio.create_task(store.save_metadata(session_id, meta))

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(writer("quick", 0.0), writer("slow", 0.2))
        # The quick writer's second row waited for the slow writer's instead of going alone.
        assert (store.batcher.batches, store.batcher.rows) == (2, 4)
    finally:
        await store.close()


async def test_a_row_whose_caller_gave_up_before_its_batch_started_is_not_written(
    tmp_path: Path,
) -> None:
    store = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3", batch_max_delay_s=0.5)
    session_id = new_id()
    kept, abandoned = make_segment(session_id), make_segment(session_id)

    async def other_call() -> None:
        # Writes once, then stays silent: the next batch waits for it until its delay is up.
        write_rows_as("other call")
        await store.save_metadata(session_id, kept)

    try:
        await asyncio.create_task(other_call())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await store.save_metadata(session_id, abandoned)
        await asyncio.sleep(0.6)  # the waiting batch's delay runs out
        await store.save_metadata(session_id, make_segment(session_id))

        assert await store.segment(abandoned.segment_id) is None
        assert await store.segment(kept.segment_id) is not None
        assert store.batcher.rows == 2
    finally:
        await store.close()
