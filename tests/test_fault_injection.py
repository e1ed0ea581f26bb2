"""Storage faults mid-call, with the real services: nothing is lost, nothing stored twice.

PostgreSQL sits behind ``PgFaultProxy`` (stopped, frozen or cut mid-session) and the bucket behind
``FaultProxy`` (503s, dropped connections, requests hanging past the timeout). Each call records
segments at a speaking pace and transcript rows while an event-loop probe measures how late the
loop wakes a task; after the backend recovers and the spool is replayed, every segment and
transcript row must be stored exactly once, byte for byte, and the spool must be empty.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage
from loguru import logger
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    TranscriptRecorder,
    TurnIds,
    replay_spool,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.storage.base import SegmentStorage
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
from pipecat_audio_capture.wav import encode_wav

from support.gcs import FakeGCS, Fault, FaultProxy
from support.pg_fault import PgFaultProxy
from support.reliability import T0, Conversation, LoopLagProbe, Speech, digest

MAX_LOOP_LAG_S = 0.05
"""The audio path's bound: the loop never stalls longer than this (a 20 ms frame is 0.02 s)."""

MAX_RECORD_CALL_S = 0.01
"""``record_segment`` only queues; a call taking longer would mean I/O on the audio path."""

FAST_RETRY = RetryPolicy(attempts=2, initial_backoff_s=0.05, max_backoff_s=0.1, deadline_s=0.3)
WRITE_TIMEOUT_S = 0.3
SEGMENTS_PER_PHASE = 8
TRANSCRIPTS_PER_PHASE = 2

OUTAGE_S = 1.5
"""How long a fault lasts: longer than a write's whole retry budget, so writes give up and spool."""


@dataclass
class Outcome:
    """What one faulty call left, and what it measured."""

    max_lag_s: float
    max_record_call_s: float
    stored: int
    spooled: int
    lost: int
    transcripts_stored: int
    transcripts_spooled: int
    transcripts_failed: int
    replayed_segments: int
    replayed_transcripts: int


async def faulty_call(
    tmp_path: Path,
    *,
    storage: SegmentStorage,
    index: PostgresAudioMetaStorage,
    fault: Callable[[], Awaitable[None] | None],
    recover: Callable[[], Awaitable[None] | None],
    replay_storage: SegmentStorage,
    replay_index: PostgresAudioMetaStorage,
) -> tuple[Outcome, Speech, list[tuple[str, str]]]:
    """Record a call in three phases (healthy, faulty, recovered), close, then replay the spool."""
    session_id = new_id()
    spool_dir = tmp_path / "spool"
    capture = SessionAudioCapture(
        session_id,
        storage,
        retry=FAST_RETRY,
        write_timeout_s=WRITE_TIMEOUT_S,
        spool_dir=spool_dir,
    )
    recorder = TranscriptRecorder(
        session_id,
        TurnIds(),
        store=index,
        claim_wait_s=0.0,
        retry=FAST_RETRY,
        write_timeout_s=WRITE_TIMEOUT_S,
        spool_dir=spool_dir,
    )
    conversation = Conversation(recorder)
    speech = Speech(capture)
    said: list[tuple[str, str]] = []

    async def phase(name: str) -> None:
        await speech.speak(SEGMENTS_PER_PHASE)
        for turn in range(TRANSCRIPTS_PER_PHASE):
            text = f"{name} {turn}"
            said.append(("user", text))
            await conversation.user_says(text, at=T0)

    async with LoopLagProbe() as probe:
        await phase("healthy")
        await _maybe_await(fault())
        await phase("faulty")
        await asyncio.sleep(OUTAGE_S)
        await _maybe_await(recover())
        await phase("recovered")
        stats = await capture.close(timeout_s=10)
        await recorder.close(timeout_s=10)
        report = await replay_spool(spool_dir, replay_storage, replay_index)
    assert report.complete, report.errors
    outcome = Outcome(
        max_lag_s=probe.max_lag_s,
        max_record_call_s=max(speech.call_s),
        stored=stats.stored,
        spooled=stats.spooled,
        lost=len(stats.lost_segment_ids),
        transcripts_stored=recorder.stored,
        transcripts_spooled=recorder.spooled,
        transcripts_failed=recorder.failed,
        replayed_segments=report.segments_stored,
        replayed_transcripts=report.transcripts_stored,
    )
    logger.info(f"faulty call outcome: {outcome}")
    return outcome, speech, said


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result


def assert_nothing_lost_nothing_doubled(outcome: Outcome, speech: Speech) -> None:
    recorded = len(speech.segments)
    assert outcome.lost == 0
    assert outcome.stored + outcome.spooled == recorded
    assert outcome.replayed_segments == outcome.spooled
    assert outcome.transcripts_failed == 0
    assert outcome.replayed_transcripts == outcome.transcripts_spooled
    assert outcome.max_lag_s < MAX_LOOP_LAG_S
    assert outcome.max_record_call_s < MAX_RECORD_CALL_S


async def assert_index_holds_each_once(
    index: PostgresAudioMetaStorage, speech: Speech, said: list[tuple[str, str]], pool: Any
) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT segment_id::text, byte_size FROM session_audio_segments"
        )
        rows = await cursor.fetchall()
        cursor = await conn.execute("SELECT role, text FROM session_transcripts")
        transcripts = await cursor.fetchall()
    assert sorted(segment_id for segment_id, _ in rows) == sorted(
        segment.segment_id for segment in speech.segments
    )
    assert sorted(transcripts) == sorted(said)


def assert_spool_empty(tmp_path: Path) -> None:
    assert [path for path in (tmp_path / "spool").rglob("*")] == []


def expected_wavs(speech: Speech) -> dict[str, str]:
    return {
        segment.segment_id: digest(
            encode_wav(segment.pcm, segment.sample_rate, segment.num_channels)
        )
        for segment in speech.segments
    }


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stopped", "frozen", "cut"])
async def test_postgres_fault_mid_call_loses_nothing_and_stores_each_row_once(
    tmp_path: Path,
    fault: str,
    pg_fault_proxy: PgFaultProxy,
    proxied_pool: AsyncConnectionPool[Any],
    direct_pool: AsyncConnectionPool[Any],
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    index = PostgresAudioMetaStorage(proxied_pool)
    direct_index = PostgresAudioMetaStorage(direct_pool)
    connections_before = pg_fault_proxy.connections

    async def break_link() -> None:
        if fault == "stopped":
            pg_fault_proxy.stop()
        elif fault == "frozen":
            pg_fault_proxy.hang()
        else:
            pg_fault_proxy.cut()

    outcome, speech, said = await faulty_call(
        tmp_path,
        storage=CompositeAudioStorage(files=files, metadata=index),
        index=index,
        fault=break_link,
        recover=pg_fault_proxy.resume,
        replay_storage=CompositeAudioStorage(files=files, metadata=direct_index),
        replay_index=direct_index,
    )

    assert_nothing_lost_nothing_doubled(outcome, speech)
    if fault == "cut":
        # Reset connections are replaced on checkout and the write retried: nothing spools.
        assert outcome.spooled == 0 and outcome.transcripts_spooled == 0
        assert pg_fault_proxy.connections > connections_before
    else:
        # Writes in flight during the outage gave up and went through the spool; how many
        # depends on how fast the failure shows (refused at once, or frozen until the timeout).
        assert outcome.spooled >= 1 and outcome.transcripts_spooled >= 1
    await assert_index_holds_each_once(direct_index, speech, said, direct_pool)
    on_disk = {
        path.stem: digest(path.read_bytes())
        for path in (tmp_path / "recordings").rglob("*")
        if path.is_file()
    }
    assert on_disk == expected_wavs(speech)
    assert_spool_empty(tmp_path)


# --- Google Cloud Storage ------------------------------------------------------------------------


def bucket_objects(client: storage.Client, bucket: str) -> dict[str, str]:
    """Every generation in the bucket, by segment id; a second write would add a generation."""
    blobs = list(client.list_blobs(bucket, versions=True))
    names = [blob.name for blob in blobs]
    assert len(names) == len(set(names)), f"an object was written twice: {names}"
    return {
        Path(blob.name).stem: digest(
            client.bucket(bucket).blob(blob.name, generation=blob.generation).download_as_bytes()
        )
        for blob in blobs
    }


@pytest.mark.parametrize(
    "fault",
    [Fault.UNAVAILABLE, Fault.DROP, Fault.HANG],
    ids=["503", "dropped-connections", "hanging"],
)
async def test_bucket_fault_mid_call_loses_nothing_and_stores_each_object_once(
    tmp_path: Path,
    fault: Fault,
    fault_proxy: Callable[..., FaultProxy],
    fake_gcs: FakeGCS,
    gcs_client: storage.Client,
    bucket_name: str,
    direct_pool: AsyncConnectionPool[Any],
) -> None:
    proxy = fault_proxy()
    # Short client timeouts so a hanging request fails within one attempt of the capture.
    files = GCSAudioStorage(
        bucket=bucket_name,
        client=fake_gcs.client(proxy.url),
        timeout_s=0.2,
        retry_deadline_s=0.2,
    )
    index = PostgresAudioMetaStorage(direct_pool)

    outcome, speech, said = await faulty_call(
        tmp_path,
        storage=CompositeAudioStorage(files=files, metadata=index),
        index=index,
        fault=lambda: proxy.set_fault(fault),
        recover=lambda: proxy.set_fault(Fault.FORWARD),
        replay_storage=CompositeAudioStorage(
            files=GCSAudioStorage(bucket=bucket_name, client=gcs_client), metadata=index
        ),
        replay_index=index,
    )

    assert_nothing_lost_nothing_doubled(outcome, speech)
    assert outcome.spooled >= 1
    assert {seen.fault for seen in proxy.seen} >= {fault, Fault.FORWARD}
    assert bucket_objects(gcs_client, bucket_name) == expected_wavs(speech)
    await assert_index_holds_each_once(index, speech, said, direct_pool)
    assert_spool_empty(tmp_path)


async def test_a_lost_upload_reply_is_confirmed_not_uploaded_twice(
    tmp_path: Path,
    fault_proxy: Callable[..., FaultProxy],
    fake_gcs: FakeGCS,
    gcs_client: storage.Client,
    bucket_name: str,
    direct_pool: AsyncConnectionPool[Any],
) -> None:
    # Every upload lands but its reply is lost: the capture's retry meets the existing object,
    # confirms its checksum and indexes it once.
    proxy = fault_proxy(then=Fault.LOSE_RESPONSE)
    files = GCSAudioStorage(
        bucket=bucket_name, client=fake_gcs.client(proxy.url), timeout_s=0.5, retry_deadline_s=0.1
    )
    capture = SessionAudioCapture(
        new_id(),
        CompositeAudioStorage(files=files, metadata=PostgresAudioMetaStorage(direct_pool)),
        retry=FAST_RETRY,
        write_timeout_s=WRITE_TIMEOUT_S,
        spool_dir=tmp_path / "spool",
    )
    speech = Speech(capture)
    await speech.speak(3)
    proxy.set_fault(Fault.FORWARD)  # so that confirming reads get through

    stats = await capture.close(timeout_s=10)

    assert stats.stored + stats.spooled == 3 and not stats.lost_segment_ids
    await replay_spool(tmp_path / "spool", capture.storage)
    assert bucket_objects(gcs_client, bucket_name) == expected_wavs(speech)
    async with direct_pool.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM session_audio_segments")
        assert await cursor.fetchone() == (3,)


async def test_the_lag_probe_sees_a_blocked_loop() -> None:
    # The bound above means something only if the probe notices a stall.
    async with LoopLagProbe() as probe:
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # a blocking call on the loop, what the capture must never do
        await asyncio.sleep(0.02)
    assert probe.max_lag_s >= 0.09
