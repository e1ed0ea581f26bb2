"""The writer against hostile segments: one set of format limits, one outcome per segment.

A segment handed to ``SessionAudioCapture`` (public API) or a transcript row may be anything;
whatever one of them does, it gets its own counted outcome and the writer goes on.
"""

import asyncio
import math
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pipecat.processors.aggregators.llm_response_universal import UserTurnStoppedMessage

from pipecat_audio_capture import (
    AudioCaptureError,
    AudioFormatError,
    RetryPolicy,
    SessionAudioCapture,
    Spool,
    SpoolError,
    SQLiteAudioMetaStorage,
    StorageError,
    TranscriptRecorder,
    TurnIds,
    replay_spool,
)
from pipecat_audio_capture import spool as spool_module
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.limits import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from pipecat_audio_capture.records import PendingAudioSegment
from pipecat_audio_capture.wav import encode_wav, pcm_of_wav, wav_header

from support.index import IndexBackend, SQLiteBackend, make_segment
from support.reliability import T0, Conversation, FaultyStore, events_of, pending_segment

ONCE = RetryPolicy(attempts=1)

OUT_OF_LIMITS = [
    pytest.param(2**31, 1, id="2**31 Hz"),
    pytest.param(2**40, 1, id="2**40 Hz"),
    pytest.param(16000, 40_000, id="40000 channels"),
    pytest.param(16000, 3, id="3 channels"),
    pytest.param(MIN_SAMPLE_RATE - 1, 1, id="below the lowest rate"),
    pytest.param(MAX_SAMPLE_RATE + 1, 2, id="above the highest rate"),
    pytest.param(0, 1, id="0 Hz"),
    pytest.param(16000, 0, id="0 channels"),
    pytest.param(-16000, 1, id="negative rate"),
    pytest.param(True, 1, id="a bool rate"),
    pytest.param(16000.0, 1, id="a float rate"),
    pytest.param(10**5000, 1, id="an integer too long to print"),
]


async def row_count(store: FaultyStore) -> int:
    backend = SQLiteBackend(Path(store.index.path))
    await backend.migrate()
    return await backend.count("session_audio_segments")


def bad_format_segment(session_id: str, rate: Any, channels: Any) -> PendingAudioSegment:
    """A segment of an impossible format whose PCM is a whole number of its frames."""
    frame_bytes = 2 * channels if isinstance(channels, int) and 0 < channels < 100_000 else 2
    return replace(
        pending_segment(session_id),
        pcm=[b"\x01" * frame_bytes * 4],
        sample_rate=rate,
        num_channels=channels,
    )


def spool_files(spool_dir: Path) -> list[Path]:
    return sorted(path for path in spool_dir.rglob("*") if path.is_file())


# --- the WAV header and the index accept the limits, and the header refuses the rest ---------


@pytest.mark.parametrize(("rate", "channels"), OUT_OF_LIMITS)
def test_the_wav_header_refuses_a_format_outside_the_limits_with_a_package_error(
    rate: Any, channels: Any
) -> None:
    with pytest.raises(AudioFormatError) as raised:
        wav_header(0, rate, channels)
    assert isinstance(raised.value, AudioCaptureError)
    with pytest.raises(AudioFormatError):
        encode_wav([b"\x00" * 8], rate, channels)


@pytest.mark.parametrize(
    ("rate", "channels"), [(MIN_SAMPLE_RATE, 1), (MAX_SAMPLE_RATE, MAX_CHANNELS)]
)
def test_the_wav_header_accepts_the_formats_at_the_limits(rate: int, channels: int) -> None:
    samples = bytes(range(4 * channels))
    wav = encode_wav([samples], rate, channels)
    assert pcm_of_wav(wav).tobytes() == samples
    assert int.from_bytes(wav[24:28], "little") == rate


@pytest.mark.parametrize("size", [-2, 2**33, 2.0])
def test_the_wav_header_refuses_a_size_no_wav_file_has(size: Any) -> None:
    with pytest.raises(AudioFormatError):
        wav_header(size, 16000, 1)


@pytest.mark.parametrize(
    ("rate", "channels"), [(MIN_SAMPLE_RATE, 1), (MAX_SAMPLE_RATE, MAX_CHANNELS)]
)
async def test_the_index_stores_the_formats_at_the_limits(
    index: IndexBackend, rate: int, channels: int
) -> None:
    meta = replace(make_segment(new_id()), sample_rate=rate, num_channels=channels)

    await index.store.save_metadata(meta.session_id, meta)

    stored = await index.store.segment(meta.segment_id)
    assert stored is not None
    assert (stored.sample_rate, stored.num_channels) == (rate, channels)


# --- the capture -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels"),
    [
        pytest.param(2**31, 1, id="2**31 Hz"),
        pytest.param(16000, 40_000, id="40000 channels"),
        pytest.param(16000, 3, id="3 channels"),
    ],
)
async def test_one_bad_format_segment_fails_alone_and_the_turns_after_it_are_stored(
    tmp_path: Path, rate: int, channels: int
) -> None:
    store = FaultyStore(tmp_path)
    capture = SessionAudioCapture(new_id(), store, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_failed", "on_segment_dropped", "on_segment_spooled")
    bad = bad_format_segment(capture.session_id, rate, channels)
    good = [pending_segment(capture.session_id, index=i) for i in range(1, 4)]

    accepted = [capture.record_segment(segment) for segment in [bad, *good]]
    # The attack made this take twice its timeout; the bound is generous.
    stats = await asyncio.wait_for(capture.close(timeout_s=3), timeout=5.5)

    assert accepted == [False, True, True, True]
    assert (stats.recorded, stats.stored, stats.failed, stats.spooled, stats.dropped) == (
        4,
        3,
        1,
        0,
        0,
    )
    assert stats.lost_segment_ids == [bad.segment_id]
    [(segment, error)] = events["on_segment_failed"]
    assert segment is bad and isinstance(error, AudioFormatError)
    assert not events["on_segment_dropped"] and not events["on_segment_spooled"]
    assert store.stored_ids() == sorted(segment.segment_id for segment in good)
    assert await row_count(store) == 3
    assert spool_files(tmp_path / "spool") == []


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param({"pcm": [b"\x00\x00", 7]}, id="a chunk that is not bytes"),
        pytest.param({"pcm_bytes": 10**6}, id="a byte count that lies"),
        pytest.param({"pcm": [b"\x00" * 3]}, id="half a sample"),
    ],
)
async def test_a_segment_whose_encoding_raises_fails_alone_and_the_writer_goes_on(
    tmp_path: Path, breakage: dict[str, Any]
) -> None:
    store = FaultyStore(tmp_path)
    capture = SessionAudioCapture(new_id(), store, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_failed")
    broken = replace(pending_segment(capture.session_id), **breakage)
    good = [pending_segment(capture.session_id, index=i) for i in range(1, 4)]

    for segment in [broken, *good]:
        capture.record_segment(segment)
    stats = await asyncio.wait_for(capture.close(timeout_s=3), timeout=10)

    assert (stats.stored, stats.failed, stats.spooled, stats.pending) == (3, 1, 0, 0)
    assert [segment for segment, _ in events["on_segment_failed"]] == [broken]
    assert store.stored_ids() == sorted(segment.segment_id for segment in good)
    assert spool_files(tmp_path / "spool") == []


@pytest.mark.parametrize(
    "error",
    [OverflowError("2**40"), RecursionError("deep"), KeyError("x"), StorageError("down")],
    ids=lambda error: type(error).__name__,
)
async def test_anything_a_store_raises_spools_that_segment_and_the_rest_are_stored(
    tmp_path: Path, error: Exception
) -> None:
    store = FaultyStore(tmp_path)
    capture = SessionAudioCapture(new_id(), store, retry=ONCE, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_spooled")
    segments = [pending_segment(capture.session_id, index=i) for i in range(4)]
    store.errors[segments[1].segment_id] = error

    for segment in segments:
        capture.record_segment(segment)
    stats = await asyncio.wait_for(capture.close(timeout_s=3), timeout=10)

    assert (stats.stored, stats.spooled, stats.failed, stats.dropped) == (3, 1, 0, 0)
    assert events["on_segment_spooled"] == [(segments[1], "write_failed")]
    store.errors.clear()
    report = await replay_spool(tmp_path / "spool", store, retry=ONCE)
    assert (report.segments_stored, report.complete) == (1, True)
    assert store.stored_ids() == sorted(segment.segment_id for segment in segments)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param({"unplayed_ms": math.nan}, id="unplayed_ms NaN"),
        pytest.param({"unplayed_ms": -5.0}, id="negative unplayed_ms"),
        pytest.param({"started_at": datetime(2025, 3, 1, 12)}, id="a naive start"),
        pytest.param({"speaker": "robot"}, id="an unknown speaker"),
    ],
)
async def test_a_segment_the_spool_reader_would_refuse_is_a_failure_not_kept(
    tmp_path: Path, breakage: dict[str, Any]
) -> None:
    store = FaultyStore(tmp_path)
    capture = SessionAudioCapture(new_id(), store, retry=ONCE, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_failed")
    segments = [pending_segment(capture.session_id, index=i) for i in range(3)]
    segments[0] = replace(segments[0], **breakage)
    store.errors[segments[0].segment_id] = StorageError("bucket unavailable")

    for segment in segments:
        capture.record_segment(segment)
    stats = await asyncio.wait_for(capture.close(timeout_s=3), timeout=10)

    assert (stats.stored, stats.failed, stats.spooled) == (2, 1, 0)
    assert stats.lost_segment_ids == [segments[0].segment_id]
    [(segment, error)] = events["on_segment_failed"]
    assert segment is segments[0] and isinstance(error, SpoolError)
    assert spool_files(tmp_path / "spool") == []


async def test_the_spool_writes_no_entry_its_reader_would_refuse(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    session = new_id()
    refused = [
        bad_format_segment(session, 16000, 3),
        bad_format_segment(session, 2**40, 1),
        replace(pending_segment(session), unplayed_ms=math.inf),
        replace(pending_segment(session), started_at=datetime(2025, 3, 1)),
    ]

    for segment in refused:
        with pytest.raises(SpoolError):
            await spool.put_segment(segment, reason="queue_full")

    assert spool_files(tmp_path / "spool") == []
    edge = [
        pending_segment(session, rate=MIN_SAMPLE_RATE),
        replace(bad_format_segment(session, MAX_SAMPLE_RATE, MAX_CHANNELS), started_at=T0),
    ]
    for segment in edge:
        path = await spool.put_segment(segment, reason="queue_full")
        assert (await spool.read_segment(path)).segment.num_channels == segment.num_channels


# --- close honours its timeout ---------------------------------------------------------------


@pytest.fixture
def hung_spool_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Spool writes that hang until the test ends (a disk that stopped answering)."""
    release = threading.Event()
    write = spool_module.write_atomically

    def hanging(path: Path, data: bytes) -> None:
        release.wait(30)
        write(path, data)

    monkeypatch.setattr(spool_module, "write_atomically", hanging)
    yield
    release.set()


async def test_close_returns_within_its_timeout_when_storage_spool_and_handlers_all_hang(
    tmp_path: Path, hung_spool_writes: None
) -> None:
    class HangingStore(FaultyStore):
        async def store_segment(self, *args: Any, **kwargs: Any) -> str:
            await asyncio.sleep(60)
            return ""

    capture = SessionAudioCapture(
        new_id(), HangingStore(tmp_path), capacity=2, spool_dir=tmp_path / "spool"
    )

    @capture.event_handler("on_segment_dropped")
    async def hang(_capture: SessionAudioCapture, *_args: object) -> None:
        await asyncio.sleep(60)

    for i in range(5):  # two queued, three waiting for the spool's writer
        capture.record_segment(pending_segment(capture.session_id, index=i))
    loop = asyncio.get_running_loop()
    started = loop.time()
    stats = await asyncio.wait_for(capture.close(timeout_s=2.0), timeout=30)
    took_s = loop.time() - started

    # Before, storage and then the spool each got the whole timeout: 4 s and more.
    assert took_s < 3.5
    assert (stats.dropped, stats.stored, stats.spooled, stats.pending) == (5, 0, 0, 0)


async def test_transcript_close_returns_within_its_timeout_when_store_and_spool_hang(
    tmp_path: Path, hung_spool_writes: None
) -> None:
    class HangingStore:
        async def save_transcript(self, record: object) -> None:
            await asyncio.sleep(60)

    recorder = TranscriptRecorder(
        new_id(), TurnIds(), store=HangingStore(), claim_wait_s=0.0, spool_dir=tmp_path / "s"
    )
    conversation = Conversation(recorder)
    for text in ("one", "two", "three"):
        await conversation.user_says(text, at=T0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(recorder.close(timeout_s=2.0), timeout=30)
    took_s = loop.time() - started

    assert took_s < 3.5
    assert (recorder.stored, recorder.spooled, recorder.failed) == (0, 0, 3)


# --- transcripts -----------------------------------------------------------------------------


async def test_a_transcript_row_that_raises_fails_alone_and_the_recorder_goes_on(
    tmp_path: Path,
) -> None:
    class ClaimOnceBroken(TurnIds):
        broken = True

        def claim(self, *args: Any, **kwargs: Any) -> str | None:
            if self.broken:
                self.broken = False
                raise RecursionError("a turn history gone wrong")
            return super().claim(*args, **kwargs)

    index = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3")
    recorder = TranscriptRecorder(
        new_id(),
        ClaimOnceBroken(),
        store=index,
        claim_wait_s=0.0,
        retry=ONCE,
        spool_dir=tmp_path / "spool",
    )
    events = events_of(recorder, "on_transcript_failed")
    conversation = Conversation(recorder)

    for text in ("one", "two", "three"):
        await conversation.user_says(text, at=T0)
    # Multimodal content: a list where text belongs. The index refuses it and so would the
    # spool's reader, so it is a failure, not a spool entry.
    await conversation.user_says([{"type": "text", "text": "four"}], at=T0)  # type: ignore[arg-type]
    await conversation.user_says("five", at=T0)
    await asyncio.wait_for(recorder.close(timeout_s=3), timeout=10)

    assert (recorder.stored, recorder.spooled, recorder.failed) == (3, 0, 2)
    assert [record.text for record, _ in events["on_transcript_failed"]] == [
        "one",
        [{"type": "text", "text": "four"}],
    ]
    texts = await SQLiteBackend(tmp_path / "index.sqlite3").fetch(
        "SELECT text FROM session_transcripts ORDER BY text"
    )
    assert texts == [("five",), ("three",), ("two",)]
    assert spool_files(tmp_path / "spool") == []


async def test_a_turn_whose_timestamp_is_not_text_is_stored_at_the_time_it_ended(
    tmp_path: Path,
) -> None:
    index = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3")
    recorder = TranscriptRecorder(new_id(), TurnIds(), store=index, claim_wait_s=0.0)
    conversation = Conversation(recorder)

    await conversation.user.fire("on_user_turn_started", None)
    message = UserTurnStoppedMessage(content="hello", timestamp=12345)  # type: ignore[arg-type]
    before = datetime.now(UTC)
    await conversation.user.fire("on_user_turn_stopped", None, message)
    await asyncio.wait_for(recorder.close(timeout_s=3), timeout=10)

    assert (recorder.stored, recorder.failed) == (1, 0)
    [(occurred_at,)] = await SQLiteBackend(tmp_path / "index.sqlite3").fetch(
        "SELECT occurred_at FROM session_transcripts"
    )
    assert datetime.fromisoformat(occurred_at) >= before
