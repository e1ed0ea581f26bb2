"""Retries, the local spool, its replay, and the queue-full and close-timeout policies."""

import asyncio
import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipecat_audio_capture import (
    InvalidIdError,
    LocalAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    Spool,
    SpoolEntryError,
    SpoolFullError,
    SQLiteAudioMetaStorage,
    StorageConfigError,
    StorageError,
    TranscriptRecorder,
    TurnIds,
    UnsafePathError,
    WriteTimeoutError,
    replay_spool,
    spool_format,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import (
    PendingAudioSegment,
    SegmentMetadata,
    Speaker,
    TranscriptRecord,
)
from pipecat_audio_capture.retry import retrying
from pipecat_audio_capture.wav import encode_wav

from support.index import IndexBackend, SQLiteBackend, make_segment, make_transcript
from support.reliability import (
    T0,
    Conversation,
    Speech,
    events_of,
    pending_segment,
    spool_entry,
)

QUICK = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02, deadline_s=2.0)
ONCE = RetryPolicy(attempts=1)


class CountingStorage:
    """Local files plus a SQLite index, failing on a script and counting every call.

    ``fail_store`` and ``fail_metadata`` are how many of the next calls raise; ``land_first``
    makes a failing store write the file anyway, like an upload whose reply was lost.
    """

    def __init__(self, root: Path, *, fail_store: int = 0, fail_metadata: int = 0) -> None:
        self.files = LocalAudioStorage(root / "recordings")
        self.index = SQLiteAudioMetaStorage(root / "index.sqlite3")
        self.fail_store = fail_store
        self.fail_metadata = fail_metadata
        self.fail_transcripts = 0
        self.land_first = False
        self.calls: Counter[str] = Counter()

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        self.calls["store"] += 1
        if self.fail_store:
            self.fail_store -= 1
            if self.land_first:
                await self.files.store_segment(session_id, segment_id, speaker, data)
            raise StorageError("bucket unavailable")
        return await self.files.store_segment(
            session_id, segment_id, speaker, data, turn_id=turn_id
        )

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        self.calls["metadata"] += 1
        if self.fail_metadata:
            self.fail_metadata -= 1
            raise StorageError("index unavailable")
        await self.index.save_metadata(session_id, meta)

    async def save_transcript(self, record: TranscriptRecord) -> None:
        self.calls["transcript"] += 1
        if self.fail_transcripts:
            self.fail_transcripts -= 1
            raise StorageError("index unavailable")
        await self.index.save_transcript(record)

    async def rows(self, table: str) -> int:
        await self.index.run_migrations()  # the file is created on first use
        backend = SQLiteBackend(Path(self.index.path))
        return await backend.count(table)

    def wav_files(self) -> list[Path]:
        return sorted(self.files.root.rglob("*.wav"))


class SlowStorage(CountingStorage):
    def __init__(self, root: Path, delay_s: float) -> None:
        super().__init__(root)
        self.delay_s = delay_s

    async def store_segment(self, *args: Any, **kwargs: Any) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().store_segment(*args, **kwargs)


def spool_files(spool_dir: Path) -> list[Path]:
    return sorted(path for path in spool_dir.rglob("*") if path.is_file())


# --- the retry policy ----------------------------------------------------------------------------


def test_backoff_is_jittered_below_a_doubling_bound_capped_at_the_maximum() -> None:
    policy = RetryPolicy(initial_backoff_s=0.5, max_backoff_s=4.0)
    rng = random.Random(7)
    for retry, bound in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [policy.backoff_s(retry, rng) for _ in range(200)]
        assert all(0.0 <= wait <= bound for wait in waits)
        assert max(waits) > 0.8 * bound and min(waits) < 0.2 * bound
        assert len(set(waits)) == len(waits)


@pytest.mark.parametrize(
    "options", [{"attempts": 0}, {"initial_backoff_s": -1.0}, {"deadline_s": -0.1}]
)
def test_a_retry_policy_that_would_never_attempt_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


async def test_retrying_stops_after_the_attempt_count_and_raises_the_last_error() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise StorageError(f"failure {calls}")

    with pytest.raises(StorageError, match="failure 3") as raised:
        await retrying(failing, policy=QUICK, attempt_timeout_s=1.0, what="x")

    assert calls == 3
    assert raised.value.__notes__ == ["gave up writing x after 3 attempt(s)"]


async def test_retrying_starts_no_attempt_after_the_deadline() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("down")

    policy = RetryPolicy(
        attempts=10_000, initial_backoff_s=0.02, max_backoff_s=0.02, deadline_s=0.2
    )
    started = time.monotonic()
    with pytest.raises(StorageError):
        await retrying(failing, policy=policy, attempt_timeout_s=1.0, what="x")

    assert 2 <= calls < 100
    assert time.monotonic() - started < 1.0  # no hang: bounded by the deadline


async def test_an_attempt_that_hangs_times_out_and_the_next_one_succeeds() -> None:
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return "stored"

    assert await retrying(hangs_once, policy=QUICK, attempt_timeout_s=0.05, what="x") == "stored"
    assert calls == 2

    async def always_hangs() -> None:
        await asyncio.sleep(30)

    with pytest.raises(WriteTimeoutError, match=r"longer than 0\.05 s"):
        await retrying(always_hangs, policy=QUICK, attempt_timeout_s=0.05, what="x")


@pytest.mark.parametrize("error", [InvalidIdError("bad id"), StorageConfigError("no bucket")])
async def test_errors_that_repeat_identically_are_not_retried(error: Exception) -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retrying(failing, policy=QUICK, attempt_timeout_s=1.0, what="x")
    assert calls == 1


# --- retries in the capture ----------------------------------------------------------------------


async def test_a_flaky_write_is_retried_and_stored_exactly_once(tmp_path: Path) -> None:
    # The first upload lands but reports failure, the second fails outright, the third
    # succeeds; then the index refuses once. One file, one row.
    storage = CountingStorage(tmp_path, fail_store=2, fail_metadata=1)
    storage.land_first = True
    capture = SessionAudioCapture(new_id(), storage, retry=QUICK, spool_dir=tmp_path / "spool")
    segment = pending_segment(capture.session_id)

    capture.record_segment(segment)
    stats = await capture.close(timeout_s=5)

    assert (stats.stored, stats.spooled, stats.failed, stats.pending) == (1, 0, 0, 0)
    assert storage.calls == Counter(store=3, metadata=2)
    assert [path.stem for path in storage.wav_files()] == [segment.segment_id]
    assert await storage.rows("session_audio_segments") == 1
    assert spool_files(tmp_path / "spool") == []


async def test_without_a_spool_a_write_failing_past_its_retries_is_reported_lost(
    tmp_path: Path,
) -> None:
    storage = CountingStorage(tmp_path, fail_store=99)
    capture = SessionAudioCapture(new_id(), storage, retry=QUICK)
    events = events_of(capture, "on_segment_failed", "on_segment_spooled")
    segment = pending_segment(capture.session_id)

    capture.record_segment(segment)
    stats = await capture.close(timeout_s=5)

    assert (stats.failed, stats.spooled, stats.lost_segment_ids) == (1, 0, [segment.segment_id])
    assert storage.calls["store"] == QUICK.attempts
    [(failed, error)] = events["on_segment_failed"]
    assert failed is segment and str(error) == "bucket unavailable"
    assert events["on_segment_spooled"] == []


# --- the spool and its replay --------------------------------------------------------------------


async def test_a_segment_failing_past_its_retries_is_spooled_whole_and_reported(
    tmp_path: Path,
) -> None:
    storage = CountingStorage(tmp_path, fail_store=99)
    capture = SessionAudioCapture(new_id(), storage, retry=QUICK, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_spooled", "on_segment_failed", "on_segment_dropped")
    segment = pending_segment(capture.session_id, speaker="bot")
    segment.interrupted, segment.unplayed_ms = True, 250.0

    capture.record_segment(segment)
    stats = await capture.close(timeout_s=5)

    assert (stats.spooled, stats.failed, stats.dropped, stats.pending) == (1, 0, 0, 0)
    assert stats.spooled_segment_ids == [segment.segment_id] and stats.lost_segment_ids == []
    assert events["on_segment_spooled"] == [(segment, "write_failed")]
    assert events["on_segment_failed"] == events["on_segment_dropped"] == []
    spool = Spool(tmp_path / "spool")
    scan = await spool.scan()
    assert scan.segments == [
        tmp_path / "spool" / segment.session_id / f"{segment.segment_id}.segment"
    ]
    entry = await spool.read_segment(scan.segments[0])
    assert entry.wav == encode_wav(segment.pcm, segment.sample_rate, segment.num_channels)
    assert entry.reason == "write_failed"
    restored = entry.segment
    assert (restored.turn_id, restored.speaker, restored.started_at) == (
        segment.turn_id,
        "bot",
        segment.started_at,
    )
    assert (restored.interrupted, restored.unplayed_ms) == (True, 250.0)
    assert restored.duration_ms == pytest.approx(segment.duration_ms)


async def test_replay_stores_every_spooled_segment_once_and_a_second_run_stores_nothing(
    tmp_path: Path,
) -> None:
    broken = CountingStorage(tmp_path / "down", fail_store=99)
    capture = SessionAudioCapture(new_id(), broken, retry=ONCE, spool_dir=tmp_path / "spool")
    segments = [pending_segment(capture.session_id, index=i) for i in range(4)]
    for segment in segments:
        capture.record_segment(segment)
    assert (await capture.close(timeout_s=5)).spooled == 4
    healthy = CountingStorage(tmp_path / "up")

    first = await replay_spool(tmp_path / "spool", healthy, retry=ONCE)
    second = await replay_spool(tmp_path / "spool", healthy, retry=ONCE)

    assert (first.segments_stored, first.complete) == (4, True)
    assert (second.segments_stored, second.complete) == (0, True)
    assert healthy.calls == Counter(store=4, metadata=4)
    assert sorted(path.stem for path in healthy.wav_files()) == sorted(
        segment.segment_id for segment in segments
    )
    for segment in segments:
        stored = await healthy.index.segment(segment.segment_id)
        assert stored is not None
        path = healthy.files.path_for(segment.session_id, segment.segment_id)
        assert stored.audio_url == path.as_uri() and stored.byte_size == path.stat().st_size
        assert stored.duration_ms == pytest.approx(segment.duration_ms)
        assert path.read_bytes() == encode_wav(segment.pcm, 16000, 1)
    assert spool_files(tmp_path / "spool") == []
    assert list((tmp_path / "spool").iterdir()) == []


async def test_a_replay_cut_between_audio_and_metadata_completes_on_the_next_run(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    segment = pending_segment(new_id())
    await spool.put_segment(segment, reason="write_failed")
    storage = CountingStorage(tmp_path, fail_metadata=1)

    interrupted = await replay_spool(tmp_path / "spool", storage, retry=ONCE)
    assert (interrupted.segments_failed, interrupted.segments_stored) == (1, 0)
    assert len(storage.wav_files()) == 1 and await storage.rows("session_audio_segments") == 0
    assert len(spool_files(tmp_path / "spool")) == 1

    finished = await replay_spool(tmp_path / "spool", storage, retry=ONCE)

    assert (finished.segments_stored, finished.complete) == (1, True)
    assert len(storage.wav_files()) == 1 and await storage.rows("session_audio_segments") == 1
    assert spool_files(tmp_path / "spool") == []


async def test_a_full_spool_refuses_the_entry_and_the_segment_counts_as_failed(
    tmp_path: Path,
) -> None:
    first, second = pending_segment(new_id(), index=0), pending_segment(new_id(), index=1)
    one_entry = len(encode_wav(first.pcm, 16000, 1)) + 1024
    storage = CountingStorage(tmp_path, fail_store=99)
    capture = SessionAudioCapture(
        first.session_id,
        storage,
        retry=ONCE,
        spool_dir=tmp_path / "spool",
        spool_max_bytes=one_entry,
    )
    second.session_id = first.session_id
    events = events_of(capture, "on_segment_spooled", "on_segment_failed")

    capture.record_segment(first)
    capture.record_segment(second)
    stats = await capture.close(timeout_s=5)

    assert (stats.spooled, stats.failed) == (1, 1)
    assert stats.lost_segment_ids == [second.segment_id]
    assert events["on_segment_spooled"] == [(first, "write_failed")]
    [(failed, error)] = events["on_segment_failed"]
    assert failed is second and isinstance(error, SpoolFullError)
    assert [path.stem for path in spool_files(tmp_path / "spool")] == [first.segment_id]
    assert await Spool(tmp_path / "spool").size_bytes() <= one_entry


async def test_a_full_queue_spills_to_the_spool_so_nothing_is_dropped(tmp_path: Path) -> None:
    storage = SlowStorage(tmp_path, delay_s=0.2)
    capture = SessionAudioCapture(
        new_id(), storage, capacity=2, retry=ONCE, spool_dir=tmp_path / "spool"
    )
    events = events_of(capture, "on_segment_spooled", "on_segment_dropped")
    segments = [pending_segment(capture.session_id, index=i) for i in range(6)]

    # record_segment is synchronous: the writer has not taken any segment off the queue yet.
    accepted = [capture.record_segment(segment) for segment in segments]
    stats = await capture.close(timeout_s=5)

    assert accepted == [True] * 6
    assert (stats.stored, stats.spooled, stats.dropped, stats.pending) == (2, 4, 0, 0)
    assert events["on_segment_spooled"] == [(segment, "queue_full") for segment in segments[2:]]
    assert events["on_segment_dropped"] == []
    report = await replay_spool(tmp_path / "spool", CountingStorage(tmp_path / "later"))
    assert report.segments_stored == 4 and report.complete


async def test_when_the_spill_queue_is_full_too_segments_are_dropped_and_reported(
    tmp_path: Path,
) -> None:
    # Memory is bounded by capacity + spill_capacity segments waiting for a writer.
    capture = SessionAudioCapture(
        new_id(),
        SlowStorage(tmp_path, delay_s=0.1),
        capacity=1,
        spill_capacity=1,
        spool_dir=tmp_path / "spool",
    )
    events = events_of(capture, "on_segment_dropped")
    segments = [pending_segment(capture.session_id, index=i) for i in range(5)]

    accepted = [capture.record_segment(segment) for segment in segments]
    stats = await capture.close(timeout_s=5)

    assert accepted == [True, True, False, False, False]
    assert (stats.stored, stats.spooled, stats.dropped) == (1, 1, 3)
    assert events["on_segment_dropped"] == [(segment, "queue_full") for segment in segments[2:]]
    assert stats.lost_segment_ids == [segment.segment_id for segment in segments[2:]]


async def test_close_timeout_hands_unwritten_segments_to_the_spool(tmp_path: Path) -> None:
    storage = SlowStorage(tmp_path, delay_s=30.0)
    capture = SessionAudioCapture(new_id(), storage, capacity=4, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_spooled")
    segments = [pending_segment(capture.session_id, index=i) for i in range(3)]
    for segment in segments:
        capture.record_segment(segment)

    stats = await asyncio.wait_for(capture.close(timeout_s=1.0), timeout=10)

    assert (stats.spooled, stats.dropped, stats.stored, stats.pending) == (3, 0, 0, 0)
    assert events["on_segment_spooled"] == [(segment, "close_timeout") for segment in segments]
    late = pending_segment(capture.session_id)
    assert not capture.record_segment(late)
    assert (capture.stats.dropped, capture.stats.lost_segment_ids) == (1, [late.segment_id])
    report = await replay_spool(tmp_path / "spool", CountingStorage(tmp_path / "later"))
    assert report.segments_stored == 3


# --- transcripts ---------------------------------------------------------------------------------


async def test_transcript_rows_failing_past_retries_are_spooled_and_replayed_once(
    tmp_path: Path,
) -> None:
    storage = CountingStorage(tmp_path)
    storage.fail_transcripts = 99
    session_id = new_id()
    recorder = TranscriptRecorder(
        session_id,
        TurnIds(),
        store=storage,
        claim_wait_s=0.0,
        retry=QUICK,
        spool_dir=tmp_path / "spool",
    )
    events = events_of(recorder, "on_transcript_spooled", "on_transcript_failed")
    conversation = Conversation(recorder)
    await conversation.user_says("where is my order?", at=T0)
    await conversation.bot_says("it shipped", at=T0, interrupted=True)
    await recorder.close(timeout_s=5)

    assert (recorder.spooled, recorder.failed, recorder.stored) == (2, 0, 0)
    assert [(record.role, reason) for record, reason in events["on_transcript_spooled"]] == [
        ("user", "write_failed"),
        ("assistant", "write_failed"),
    ]
    kept = await replay_spool(tmp_path / "spool", storage)
    assert (kept.transcripts_kept, kept.complete) == (2, False)

    storage.fail_transcripts = 0
    first = await replay_spool(tmp_path / "spool", storage, storage)
    second = await replay_spool(tmp_path / "spool", storage, storage)

    assert (first.transcripts_stored, second.transcripts_stored) == (2, 0)
    log = await storage.index.call_log(session_id)
    assert sorted((entry.role, entry.text, entry.transcript_interrupted) for entry in log) == [
        ("assistant", "it shipped", True),
        ("user", "where is my order?", False),
    ]
    assert await storage.rows("session_transcripts") == 2
    assert spool_files(tmp_path / "spool") == []


async def test_transcripts_unwritten_at_close_timeout_are_spooled(tmp_path: Path) -> None:
    class HangingStore:
        async def save_transcript(self, record: TranscriptRecord) -> None:
            await asyncio.sleep(30)

    recorder = TranscriptRecorder(
        new_id(),
        TurnIds(),
        store=HangingStore(),
        claim_wait_s=0.0,
        spool_dir=tmp_path / "spool",
    )
    conversation = Conversation(recorder)
    await conversation.user_says("one", at=T0)
    await conversation.user_says("two", at=T0)

    await asyncio.wait_for(recorder.close(timeout_s=1.0), timeout=10)

    assert (recorder.spooled, recorder.failed) == (2, 0)
    scan = await Spool(tmp_path / "spool").scan()
    texts = [
        (await Spool(tmp_path / "spool").read_transcript(p)).record.text for p in scan.transcripts
    ]
    assert sorted(texts) == ["one", "two"]


# --- idempotent backends -------------------------------------------------------------------------


async def test_every_index_write_is_idempotent_so_a_retry_adds_no_row(index: IndexBackend) -> None:
    session_id = new_id()
    meta = make_segment(session_id)
    transcript = make_transcript(session_id, meta.turn_id, "user", "hello", at_ms=0)

    for _ in range(3):
        await index.store.save_metadata(session_id, meta)
        await index.store.save_transcript(transcript)

    assert await index.count("session_audio_segments") == 1
    assert await index.count("session_transcripts") == 1


async def test_local_storage_stores_a_retried_segment_once(tmp_path: Path) -> None:
    files = LocalAudioStorage(tmp_path)
    session_id, segment_id = new_id(), new_id()
    data = encode_wav([b"\x01\x00" * 800], 16000, 1)

    urls = {await files.store_segment(session_id, segment_id, "user", data) for _ in range(3)}

    assert len(urls) == 1
    assert [path.name for path in (tmp_path / session_id).iterdir()] == [f"{segment_id}.wav"]


# --- hostile spool content -----------------------------------------------------------------------


def tampered(data: bytes, **changes: Any) -> bytes:
    head, _, wav = data.partition(b"\n")
    header = json.loads(head)
    header.update(changes)
    return json.dumps(header).encode() + b"\n" + wav


async def test_replay_leaves_entries_it_cannot_trust_untouched_and_reads_nothing_outside(
    tmp_path: Path,
) -> None:
    spool_dir, outside = tmp_path / "spool", tmp_path / "outside"
    session, other_session = new_id(), new_id()
    files: dict[Path, bytes] = {}

    def plant(relative: str, data: bytes) -> Path:
        path = spool_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[path] = data
        return path

    good_id, good = spool_entry(session)
    plant(f"{session}/{good_id}.segment", good)
    hostile = [
        plant(f"not-a-uuid/{good_id}.segment", good).parent,
        plant(f"{session}/{new_id().upper()}.segment", good),
        plant(f"{session}/{new_id()}.segment", good),  # names another segment inside
        plant(f"{other_session}/{good_id}.segment", good),  # names another session inside
        plant(f"{session}/{new_id()}.wav", good),
    ]
    cut_id, cut = spool_entry(session)
    hostile.append(plant(f"{session}/{cut_id}.segment", cut[:-10]))
    bad_sum_id, bad_sum = spool_entry(session)
    hostile.append(plant(f"{session}/{bad_sum_id}.segment", tampered(bad_sum, wav_sha256="0" * 64)))
    extra_id, extra = spool_entry(session)
    hostile.append(plant(f"{session}/{extra_id}.segment", tampered(extra, command="rm -rf /")))
    # Symlinks out of the spool: a session folder, and an entry, each pointing at valid data.
    linked_id, linked = spool_entry(session)
    (outside / session).mkdir(parents=True)
    target = outside / session / f"{linked_id}.segment"
    target.write_bytes(linked)
    linked_folder = spool_dir / new_id()
    linked_folder.symlink_to(outside / session, target_is_directory=True)
    linked_entry = spool_dir / session / f"{linked_id}.segment"
    linked_entry.symlink_to(target)
    hostile += [linked_folder, linked_entry]
    storage = CountingStorage(tmp_path / "store")

    report = await replay_spool(spool_dir, storage, retry=ONCE)

    assert (report.segments_stored, report.rejected) == (1, len(hostile))
    assert sorted(report.errors) == sorted(
        error for error in report.errors if any(str(path) in error for path in hostile)
    )
    assert [path.stem for path in storage.wav_files()] == [good_id]
    assert storage.calls == Counter(store=1, metadata=1)
    del files[spool_dir / session / f"{good_id}.segment"]
    for path, data in files.items():
        assert path.read_bytes() == data
    assert linked_entry.is_symlink() and linked_folder.is_symlink()
    assert target.read_bytes() == linked


async def test_spooling_into_a_symlinked_session_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    capture = SessionAudioCapture(
        new_id(), CountingStorage(tmp_path, fail_store=99), retry=ONCE, spool_dir=tmp_path / "spool"
    )
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / capture.session_id).symlink_to(outside, target_is_directory=True)
    events = events_of(capture, "on_segment_failed")

    capture.record_segment(pending_segment(capture.session_id))
    stats = await capture.close(timeout_s=5)

    assert (stats.failed, stats.spooled) == (1, 0)
    [(_, error)] = events["on_segment_failed"]
    assert str(error) == "bucket unavailable"
    assert list(outside.iterdir()) == []


async def test_local_storage_refuses_a_symlinked_session_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    files = LocalAudioStorage(tmp_path / "recordings")
    session_id = new_id()
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / session_id).symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePathError):
        await files.store_segment(session_id, new_id(), "user", b"RIFF")

    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("bad", ["../escape", "", "{" + new_id() + "}"])
async def test_the_spool_refuses_ids_that_are_not_uuids_before_any_path(
    tmp_path: Path, bad: str
) -> None:
    spool = Spool(tmp_path / "spool")
    segment = pending_segment(new_id())
    segment.session_id = bad

    with pytest.raises(InvalidIdError):
        await spool.put_segment(segment, reason="write_failed")
    with pytest.raises(InvalidIdError):
        await spool.delete_session(bad)
    assert not (tmp_path / "spool").exists()


async def test_the_audio_path_takes_segments_without_waiting_while_storage_hangs(
    tmp_path: Path,
) -> None:
    capture = SessionAudioCapture(
        new_id(), SlowStorage(tmp_path, delay_s=30.0), capacity=2, spool_dir=tmp_path / "spool"
    )
    speech = Speech(capture, pace_s=0.005)

    await speech.speak(20)
    stats = await asyncio.wait_for(capture.close(timeout_s=1.0), timeout=10)

    assert max(speech.call_s) < 0.01
    assert stats.spooled == 20 and not stats.lost_segment_ids


def test_a_spooled_segment_keeps_its_playback_and_when_it_was_last_written() -> None:
    segment = dataclasses.replace(
        pending_segment(new_id(), speaker="bot"),
        playback="confirmed",
        played_until=T0 + timedelta(seconds=0.4),
    )
    wav = encode_wav(segment.pcm, segment.sample_rate, segment.num_channels)
    data = spool_format.encode_segment(segment, wav, reason="backend_down", spooled_at=T0)

    spooled = spool_format.decode_segment(
        data, session_id=segment.session_id, segment_id=segment.segment_id
    ).segment

    assert (spooled.playback, spooled.played_until) == ("confirmed", segment.played_until)
    assert spooled.ended_at == segment.ended_at == T0 + timedelta(seconds=0.4)


def _entry_with_header(
    segment: PendingAudioSegment, edit: Callable[[dict[str, Any]], object]
) -> bytes:
    """The spool entry of ``segment`` with its header edited by ``edit``."""
    wav = encode_wav(segment.pcm, segment.sample_rate, segment.num_channels)
    data = spool_format.encode_segment(segment, wav, reason="backend_down", spooled_at=T0)
    header, _, rest = data.partition(b"\n")
    fields = json.loads(header)
    edit(fields)
    return json.dumps(fields).encode() + b"\n" + rest


def test_a_segment_spooled_before_playback_existed_still_replays() -> None:
    segment = pending_segment(new_id(), speaker="bot")

    def drop_playback(fields: dict[str, Any]) -> None:
        del fields["playback"], fields["played_until"]

    old = _entry_with_header(segment, drop_playback)
    spooled = spool_format.decode_segment(
        old, session_id=segment.session_id, segment_id=segment.segment_id
    ).segment

    assert (spooled.playback, spooled.played_until) == (None, None)


def test_a_spool_entry_with_an_unknown_playback_is_refused() -> None:
    segment = pending_segment(new_id(), speaker="bot")
    hostile = _entry_with_header(segment, lambda fields: fields.update(playback="heard"))

    with pytest.raises(SpoolEntryError):
        spool_format.decode_segment(
            hostile, session_id=segment.session_id, segment_id=segment.segment_id
        )
