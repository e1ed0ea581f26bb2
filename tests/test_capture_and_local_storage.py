"""The background writer, WAV encoding and local storage."""

import asyncio
import json
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest
from loguru import logger
from pipecat.frames.frames import CancelFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    InvalidIdError,
    LocalAudioStorage,
    PendingAudioSegment,
    SessionAudioCapture,
    StorageError,
    TurnIds,
)
from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.wav import encode_wav, pcm_of_wav, wav_header

from support.frames import mic_frames, tts_frames


def segment(seconds: float = 0.1, *, rate: int = 16000, channels: int = 1, session_id=None):
    from datetime import UTC, datetime

    pcm = (np.arange(int(seconds * rate) * channels) % 1000).astype("<i2").tobytes()
    return PendingAudioSegment(
        segment_id=new_id(),
        session_id=session_id or new_id(),
        turn_id=new_id(),
        speaker="user",
        pcm=[pcm],
        sample_rate=rate,
        num_channels=channels,
        started_at=datetime.now(UTC),
    )


class SlowStorage(LocalAudioStorage):
    def __init__(self, root, delay_s):
        super().__init__(root)
        self.delay_s = delay_s

    async def store_segment(self, *args, **kwargs):
        await asyncio.sleep(self.delay_s)
        return await super().store_segment(*args, **kwargs)


class FailingStorage(LocalAudioStorage):
    async def store_segment(self, *args, **kwargs):
        raise StorageError("disk on fire")


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_files_open_in_the_standard_reader_with_the_same_samples(tmp_path, channels):
    samples = (np.arange(8000 * channels) - 4000).astype("<i2")
    data = encode_wav([samples[:100].tobytes(), samples[100:].tobytes()], 8000, channels)
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    with wave.open(str(path)) as reader:
        assert reader.getnchannels() == channels
        assert reader.getframerate() == 8000
        assert reader.getsampwidth() == 2
        assert reader.getnframes() == 8000
        assert reader.readframes(8000) == samples.tobytes()
    assert (pcm_of_wav(data).ravel() == samples).all()
    assert len(data) == 44 + samples.nbytes


def test_wav_encoding_refuses_partial_sample_frames():
    with pytest.raises(ValueError, match="whole number"):
        encode_wav([b"\x00\x01\x02"], 16000, 1)


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (24000, 1), (48000, 2)])
def test_wav_header_from_the_cached_template_equals_the_numpy_built_one(rate, channels):
    pcm = [bytes(range(256)) * 3, b"\x01\x02\x03\x04" * 5]
    data_size = sum(map(len, pcm))
    expected = wav_header(data_size, rate, channels) + b"".join(pcm)
    assert encode_wav(pcm, rate, channels) == expected
    assert encode_wav(pcm, rate, channels, data_size=data_size) == expected
    assert encode_wav(iter(pcm), rate, channels) == expected


def test_wav_encoding_refuses_a_data_size_that_is_not_the_pcm_size():
    with pytest.raises(ValueError, match="data_size is 8 but the PCM holds 4"):
        encode_wav([b"\x00\x01\x02\x03"], 16000, 1, data_size=8)


async def test_local_storage_writes_under_session_folder_and_is_idempotent(tmp_path):
    storage = LocalAudioStorage(tmp_path / "rec")
    session_id, segment_id = new_id(), new_id()
    url = await storage.store_segment(session_id, segment_id, "user", b"RIFFdata")
    path = tmp_path / "rec" / session_id / f"{segment_id}.wav"
    assert url == path.as_uri() and path.read_bytes() == b"RIFFdata"
    assert await storage.store_segment(session_id, segment_id, "user", b"RIFFdata") == url
    with pytest.raises(StorageError, match="different audio"):
        await storage.store_segment(session_id, segment_id, "user", b"other")


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "",
        "not-a-uuid",
        "{" + str(uuid.uuid4()) + "}",
        "/abs",
        "urn:uuid:" + str(uuid.uuid4()),
        uuid.uuid4().hex,
        str(uuid.uuid4()) + "\n",
        str(uuid.uuid4()) + "/..",
    ],
)
async def test_local_storage_refuses_ids_that_are_not_uuids(tmp_path, bad):
    storage = LocalAudioStorage(tmp_path)
    with pytest.raises(InvalidIdError):
        await storage.store_segment(bad, new_id(), "user", b"x")
    with pytest.raises(InvalidIdError):
        await storage.store_segment(new_id(), bad, "user", b"x")
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    storage = LocalAudioStorage(tmp_path)
    session_id, segment_id = new_id(), new_id()

    def broken_replace(src, dst):
        raise OSError("device full")

    monkeypatch.setattr("pipecat_audio_capture.storage.local.os.replace", broken_replace)
    with pytest.raises(StorageError, match="device full"):
        await storage.store_segment(session_id, segment_id, "bot", b"abc")
    folder = tmp_path / session_id
    assert list(folder.iterdir()) == []


async def test_metadata_is_logged_as_json_at_info(tmp_path):
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message), level="INFO", format="{message}")
    try:
        capture = SessionAudioCapture(new_id(), LocalAudioStorage(tmp_path))
        seg = segment(session_id=capture.session_id)
        capture.record_segment(seg)
        await capture.close()
    finally:
        logger.remove(sink)
    [line] = [line for line in lines if line.startswith("audio segment stored: ")]
    meta = json.loads(line.removeprefix("audio segment stored: "))
    assert meta["segment_id"] == seg.segment_id and meta["turn_id"] == seg.turn_id
    assert meta["duration_ms"] == pytest.approx(100.0) and meta["format"] == "wav"
    assert meta["byte_size"] == 44 + 3200


async def test_every_recorded_segment_is_on_disk_after_cancel_and_close(tmp_path):
    session_id = new_id()
    capture = SessionAudioCapture(session_id, LocalAudioStorage(tmp_path), capacity=8)
    stored: list[SegmentMetadata] = []

    @capture.event_handler("on_segment_stored")
    async def on_stored(_, meta):
        stored.append(meta)

    processor = AudioCaptureProcessor(capture, TurnIds(), preroll_s=0.0)
    frames = [
        UserStartedSpeakingFrame(),
        *mic_frames(0.4),
        UserStoppedSpeakingFrame(),
        *tts_frames(0.4),
        UserStartedSpeakingFrame(),
        *mic_frames(0.2),
        SleepFrame(0.1),
        CancelFrame(),
    ]
    await run_test(processor, frames_to_send=frames, send_end_frame=False)
    stats = await capture.close(timeout_s=5.0)

    assert stats.recorded == 3 and stats.stored == 3 and stats.pending == 0
    files = sorted((tmp_path / session_id).glob("*.wav"))
    assert len(files) == 3
    assert {m.segment_id for m in stored} == {f.stem for f in files}
    for meta in stored:
        path = Path(meta.audio_url.removeprefix("file://"))
        with wave.open(str(path)) as reader:
            assert reader.getnframes() / reader.getframerate() * 1000 == pytest.approx(
                meta.duration_ms, abs=1.0
            )
        assert meta.byte_size == path.stat().st_size
        assert meta.ended_at > meta.started_at


async def test_a_full_queue_refuses_new_segments_and_reports_each_one(tmp_path):
    capture = SessionAudioCapture(new_id(), SlowStorage(tmp_path, 0.2), capacity=2)
    dropped: list[tuple[str, str]] = []

    @capture.event_handler("on_segment_dropped")
    async def on_dropped(_, seg, reason):
        dropped.append((seg.segment_id, reason))

    segments = [segment(session_id=capture.session_id) for _ in range(6)]
    # record_segment is synchronous: the writer has not taken any segment off the queue yet.
    accepted = [capture.record_segment(s) for s in segments]
    stats = await capture.close(timeout_s=5.0)

    assert accepted == [True, True, False, False, False, False]
    assert stats.stored == 2 and stats.dropped == 4 and stats.recorded == 6
    assert sorted(dropped) == sorted(
        (s.segment_id, "queue_full") for s, ok in zip(segments, accepted, strict=True) if not ok
    )
    assert set(stats.lost_segment_ids) == {d[0] for d in dropped}


async def test_a_failed_write_is_counted_logged_and_reported(tmp_path):
    capture = SessionAudioCapture(new_id(), FailingStorage(tmp_path))
    failures = []

    @capture.event_handler("on_segment_failed")
    async def on_failed(_, seg, error):
        failures.append((seg.segment_id, str(error)))

    seg = segment(session_id=capture.session_id)
    capture.record_segment(seg)
    stats = await capture.close()
    assert stats.failed == 1 and stats.stored == 0
    assert failures == [(seg.segment_id, "disk on fire")]


async def test_a_write_that_hangs_fails_after_its_timeout(tmp_path):
    capture = SessionAudioCapture(new_id(), SlowStorage(tmp_path, 30.0), write_timeout_s=0.2)
    capture.record_segment(segment(session_id=capture.session_id))
    stats = await capture.close(timeout_s=5.0)
    assert stats.failed == 1 and stats.pending == 0


async def test_close_times_out_and_reports_what_was_never_written(tmp_path):
    capture = SessionAudioCapture(new_id(), SlowStorage(tmp_path, 5.0), capacity=4)
    reasons = []

    @capture.event_handler("on_segment_dropped")
    async def on_dropped(_, seg, reason):
        reasons.append(reason)

    for _ in range(3):
        capture.record_segment(segment(session_id=capture.session_id))
    stats = await capture.close(timeout_s=0.2)
    assert stats.dropped == 3 and stats.stored == 0 and stats.pending == 0
    assert reasons == ["close_timeout"] * 3
    assert not capture.record_segment(segment(session_id=capture.session_id))
    assert capture.stats.dropped == 4


def test_capture_refuses_a_session_id_that_is_not_a_uuid(tmp_path):
    with pytest.raises(InvalidIdError):
        SessionAudioCapture("../etc", LocalAudioStorage(tmp_path))


def test_an_upper_case_uuid_is_written_in_its_canonical_lower_case_form():
    value = uuid.uuid4()
    assert require_uuid(str(value).upper()) == require_uuid(str(value)) == str(value)
