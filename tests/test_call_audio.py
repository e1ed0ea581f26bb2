"""The whole call as one stereo WAV, built from the stored segments of a recorded call."""

import io
import os
import tracemalloc
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from pipecat_audio_capture import (
    CallAudioError,
    CompositeAudioStorage,
    LocalAudioStorage,
    PendingAudioSegment,
    SegmentMetadata,
    SessionAudioCapture,
    local_segment_opener,
    plan_call_audio,
    write_call_audio,
    write_session_call_audio,
)
from pipecat_audio_capture.records import Speaker
from pipecat_audio_capture.wav import (
    HEADER_BYTES,
    encode_wav,
    pcm_of_wav,
    read_wav_header,
    wav_header,
)

from support.index import T0, IndexBackend, make_segment, new_id

USER_RATE = 16_000
BOT_RATE = 24_000
TONE_LEVEL = 8_000
LOUD = 2_000
"""A sample louder than this is speech; a resampled tone's ringing stays far below it."""
ONSET_TOLERANCE_MS = 20.0


@dataclass(frozen=True)
class Turn:
    """One segment of the scripted call: a tone from its start, then silence to its end."""

    name: str
    speaker: Speaker
    start_ms: float
    duration_ms: float
    tone_ms: float
    freq_hz: float
    turn: str


# U1; B1 split in two parts (B1a ends in a pause, so B1b's onset shows); U2 barges in on B1b;
# B2 starts at an odd offset; U3 last.
SCRIPT = (
    Turn("U1", "user", 0.0, 1000.0, 1000.0, 440.0, "U1"),
    Turn("B1a", "bot", 1250.0, 1000.0, 900.0, 660.0, "B1"),
    Turn("B1b", "bot", 2250.0, 500.0, 500.0, 550.0, "B1"),
    Turn("U2", "user", 2400.0, 500.0, 500.0, 330.0, "U2"),
    Turn("B2", "bot", 3600.5, 700.0, 700.0, 770.0, "B2"),
    Turn("U3", "user", 5123.0, 400.0, 400.0, 500.0, "U3"),
)


def tone_pcm(turn: Turn, rate: int) -> bytes:
    frames = round(turn.duration_ms * rate / 1000)
    t = np.arange(frames) / rate
    samples = TONE_LEVEL * np.sin(2 * np.pi * turn.freq_hz * t)
    samples[t * 1000 >= turn.tone_ms] = 0
    return samples.astype("<i2").tobytes()


def pending(session_id: str, turn: Turn, turn_ids: dict[str, str]) -> PendingAudioSegment:
    rate = USER_RATE if turn.speaker == "user" else BOT_RATE
    return PendingAudioSegment(
        segment_id=new_id(),
        session_id=session_id,
        turn_id=turn_ids[turn.turn],
        speaker=turn.speaker,
        pcm=[tone_pcm(turn, rate)],
        sample_rate=rate,
        num_channels=1,
        started_at=T0 + timedelta(milliseconds=turn.start_ms),
    )


async def record_script(files: LocalAudioStorage, index: IndexBackend) -> str:
    """Store the scripted call through the capture's real write path; return its session id."""
    session_id = new_id()
    turn_ids = {turn.turn: new_id() for turn in SCRIPT}
    capture = SessionAudioCapture(
        session_id, CompositeAudioStorage(files=files, metadata=index.store)
    )
    # Saved out of order: the call is laid out by time, not by arrival.
    for turn in reversed(SCRIPT):
        assert capture.record_segment(pending(session_id, turn, turn_ids))
    assert (await capture.close()).stored == len(SCRIPT)
    return session_id


def onsets_ms(channel: np.ndarray, rate: int) -> list[float]:
    """Times of the loud samples that follow at least 20 ms without one."""
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > LOUD)
    quiet_before = np.diff(loud, prepend=-(10**9)) > 0.020 * rate
    return [float(i) / rate * 1000 for i in loud[quiet_before]]


def window(channel: np.ndarray, rate: int, start_ms: float, end_ms: float) -> np.ndarray:
    return channel[round(start_ms * rate / 1000) : round(end_ms * rate / 1000)]


@pytest.fixture
async def stereo_call(tmp_path: Path, sqlite_index: IndexBackend) -> tuple[np.ndarray, int]:
    """The scripted call recorded, then built as one stereo WAV file."""
    recordings = tmp_path / "recordings"
    session_id = await record_script(LocalAudioStorage(recordings), sqlite_index)
    out = tmp_path / "call.wav"

    report = await write_session_call_audio(
        sqlite_index.store, session_id, out, recordings=recordings
    )

    assert report.complete, report.issues
    with out.open("rb") as file:
        wav = read_wav_header(file)
    assert (wav.sample_rate, wav.num_channels) == (BOT_RATE, 2)
    assert out.stat().st_size == report.plan.wav_bytes
    return pcm_of_wav(out.read_bytes()), wav.sample_rate


def test_each_turn_starts_at_its_offset_within_20_ms(stereo_call: tuple[np.ndarray, int]) -> None:
    stereo, rate = stereo_call

    for channel, speaker in ((0, "user"), (1, "bot")):
        expected = [turn.start_ms for turn in SCRIPT if turn.speaker == speaker]
        found = onsets_ms(stereo[:, channel], rate)
        assert len(found) == len(expected), (speaker, found)
        errors = [abs(a - b) for a, b in zip(found, expected, strict=True)]
        assert max(errors) <= ONSET_TOLERANCE_MS, (speaker, found)


def test_the_call_lasts_until_its_last_segment_ends(stereo_call: tuple[np.ndarray, int]) -> None:
    stereo, rate = stereo_call

    last_end_ms = max(turn.start_ms + turn.duration_ms for turn in SCRIPT)
    assert len(stereo) == round(last_end_ms * rate / 1000)


def test_the_call_is_silent_where_nobody_spoke(stereo_call: tuple[np.ndarray, int]) -> None:
    stereo, rate = stereo_call

    assert not window(stereo, rate, 1000, 1250).any()
    assert not window(stereo, rate, 2900, 3600).any()
    assert not window(stereo[:, 1], rate, 4300.5, 5523).any()
    assert not window(stereo[:, 0], rate, 1000, 2400).any()


def test_a_barge_in_keeps_both_channels(stereo_call: tuple[np.ndarray, int]) -> None:
    stereo, rate = stereo_call

    overlap = window(stereo, rate, 2420, 2730)
    assert np.abs(overlap.astype(np.int32)).max(axis=0).min() > TONE_LEVEL * 0.9


def test_every_part_of_a_split_turn_plays_at_its_level(
    stereo_call: tuple[np.ndarray, int],
) -> None:
    stereo, rate = stereo_call

    for start_ms, end_ms in ((1300, 2100), (2300, 2700)):
        part = window(stereo[:, 1], rate, start_ms, end_ms).astype(np.float64)
        rms = np.sqrt(np.mean(part**2))
        assert rms == pytest.approx(TONE_LEVEL / np.sqrt(2), rel=0.03)


async def test_session_segments_lists_every_part_in_time_order(index: IndexBackend) -> None:
    session_id, other_session = new_id(), new_id()
    turn = new_id()
    rows = [
        make_segment(session_id, turn_id=turn, speaker="bot", start_ms=2000),
        make_segment(session_id, speaker="user", start_ms=2000, duration_ms=10),
        make_segment(session_id, turn_id=turn, speaker="bot", start_ms=1000),
        make_segment(session_id, speaker="user", start_ms=0),
        make_segment(other_session, start_ms=500),
    ]
    for row in rows:
        await index.store.save_metadata(row.session_id, row)

    listed = await index.store.session_segments(session_id)

    assert listed == [rows[3], rows[2], rows[1], rows[0]]
    assert await index.store.session_segments(new_id()) == []


async def test_a_call_without_audio_is_refused(sqlite_index: IndexBackend, tmp_path: Path) -> None:
    with pytest.raises(CallAudioError, match="no stored audio"):
        await write_session_call_audio(
            sqlite_index.store, new_id(), tmp_path / "call.wav", recordings=tmp_path
        )
    assert not (tmp_path / "call.wav").exists()


# --- Odd and hostile rows, built in memory: each row's file holds one constant level. ---


class Files:
    """Segments whose audio lives in memory, opened through the builder's opener hook."""

    def __init__(self) -> None:
        self.session_id = new_id()
        self.data: dict[str, bytes] = {}
        self.opened: list[str] = []

    def add(
        self,
        speaker: Speaker,
        start_ms: float,
        duration_ms: float,
        level: int,
        *,
        rate: int = USER_RATE,
        channels: int = 1,
        file_ms: float | None = None,
    ) -> SegmentMetadata:
        segment_id = new_id()
        frames = round((duration_ms if file_ms is None else file_ms) * rate / 1000)
        samples = np.full(frames * channels, level, dtype="<i2")
        self.data[segment_id] = encode_wav([samples.tobytes()], rate, channels)
        started = T0 + timedelta(milliseconds=start_ms)
        return SegmentMetadata(
            segment_id=segment_id,
            session_id=self.session_id,
            turn_id=new_id(),
            speaker=speaker,
            audio_url=f"file:///nowhere/{self.session_id}/{segment_id}.wav",
            sample_rate=rate,
            num_channels=channels,
            duration_ms=duration_ms,
            byte_size=len(self.data[segment_id]),
            interrupted=False,
            unplayed_ms=None,
            started_at=started,
            ended_at=started + timedelta(milliseconds=duration_ms),
        )

    def open(self, segment: SegmentMetadata) -> io.BytesIO:
        self.opened.append(segment.segment_id)
        return io.BytesIO(self.data[segment.segment_id])


def build(files: Files, rows: list[SegmentMetadata]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    out = io.BytesIO()
    report = write_call_audio(rows, out, open_segment=files.open)
    assert len(out.getvalue()) == report.plan.wav_bytes
    issues = [(issue.segment_id, issue.kind) for issue in report.issues]
    return pcm_of_wav(out.getvalue()), issues


def levels(channel: np.ndarray, rate: int, *spans: tuple[float, float]) -> list[set[int]]:
    return [set(window(channel, rate, a, b).tolist()) for a, b in spans]


def test_a_later_segment_of_the_same_speaker_cuts_the_earlier_one() -> None:
    files = Files()
    first = files.add("user", 0, 1000, 1000)
    later = files.add("user", 600, 1000, 3000)

    stereo, issues = build(files, [later, first])

    assert issues == [(first.segment_id, "cut")]
    assert levels(stereo[:, 0], USER_RATE, (0, 600), (600, 1600)) == [{1000}, {3000}]
    assert len(stereo) == round(1.6 * USER_RATE)


def test_an_unreadable_segment_is_silent_and_the_rest_is_built() -> None:
    files = Files()
    missing = files.add("user", 0, 500, 1000)
    garbage = files.add("bot", 0, 500, 2000)
    files.data[garbage.segment_id] = b"not a wav file at all, not even close to one"
    good = files.add("user", 1000, 500, 3000)
    del files.data[missing.segment_id]

    def open_or_fail(segment: SegmentMetadata) -> io.BytesIO:
        if segment.segment_id not in files.data:
            raise FileNotFoundError(segment.segment_id)
        return files.open(segment)

    out = io.BytesIO()
    report = write_call_audio([missing, garbage, good], out, open_segment=open_or_fail)
    stereo = pcm_of_wav(out.getvalue())

    kinds = {(issue.segment_id, issue.kind) for issue in report.issues}
    assert kinds == {(missing.segment_id, "unreadable"), (garbage.segment_id, "unreadable")}
    assert not window(stereo, USER_RATE, 0, 1000).any()
    assert levels(stereo[:, 0], USER_RATE, (1000, 1500)) == [{3000}]


def test_a_file_that_disagrees_with_its_row_is_silent() -> None:
    files = Files()
    row = files.add("bot", 0, 500, 2000, rate=USER_RATE)
    lying = replace(row, sample_rate=BOT_RATE)

    stereo, issues = build(files, [lying])

    assert issues == [(row.segment_id, "unreadable")]
    assert not stereo.any()


def test_a_segment_lasts_what_its_row_says_whatever_its_file_holds() -> None:
    files = Files()
    short = files.add("user", 0, 1000, 1000, file_ms=400)
    long = files.add("bot", 0, 1000, 2000, file_ms=1500)

    stereo, issues = build(files, [short, long])

    assert sorted(issues) == sorted([(short.segment_id, "short"), (long.segment_id, "long")])
    assert len(stereo) == USER_RATE
    assert levels(stereo[:, 0], USER_RATE, (0, 400), (400, 1000)) == [{1000}, {0}]
    assert levels(stereo[:, 1], USER_RATE, (0, 1000)) == [{2000}]


def test_rows_that_cannot_be_placed_are_refused_and_the_rest_is_built() -> None:
    files = Files()
    robot = replace(files.add("user", 0, 500, 1000), speaker="robot")  # type: ignore[arg-type]
    odd_rate = replace(files.add("user", 0, 500, 1000), sample_rate=1_000_000)
    endless = replace(files.add("bot", 0, 500, 1000), duration_ms=float("inf"))
    good = files.add("bot", 200, 500, 2000)

    stereo, issues = build(files, [robot, odd_rate, endless, good])

    assert [kind for _, kind in issues] == ["refused"] * 3
    assert files.opened == [good.segment_id]
    assert levels(stereo[:, 1], USER_RATE, (0, 500)) == [{2000}]


def test_a_stereo_segment_is_mixed_down_to_its_speaker_channel() -> None:
    files = Files()
    row = files.add("user", 0, 500, 1200, channels=2)

    stereo, issues = build(files, [row])

    assert issues == []
    assert levels(stereo[:, 0], USER_RATE, (0, 500)) == [{1200}]
    assert not stereo[:, 1].any()


def test_rows_of_several_calls_or_none_are_refused() -> None:
    files, other = Files(), Files()
    rows = [files.add("user", 0, 500, 1000), other.add("bot", 0, 500, 1000)]

    with pytest.raises(CallAudioError, match="2 calls"):
        plan_call_audio(rows)
    with pytest.raises(CallAudioError, match="no placeable"):
        plan_call_audio([])


def test_a_call_too_long_for_a_wav_file_is_refused_before_writing() -> None:
    files = Files()
    first = files.add("user", 0, 500, 1000)
    far = replace(files.add("bot", 0, 500, 1000), started_at=T0 + timedelta(days=365))
    out = io.BytesIO()

    with pytest.raises(CallAudioError, match="4 GiB"):
        write_call_audio([first, far], out, open_segment=files.open)
    assert out.getvalue() == b""


class Pipe(io.RawIOBase):
    """A write-only stream that cannot seek, like a socket: it only counts and keeps the head."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(self.head) < HEADER_BYTES:
            self.head += bytes(data[: HEADER_BYTES - len(self.head)])
        self.size += len(data)
        return len(data)


class ToneSource(io.RawIOBase):
    """A long segment's WAV generated as it is read, so the test holds none of it."""

    def __init__(self, frames: int, rate: int, level: int) -> None:
        self.wav = wav_header(frames * 2, rate, 1)
        self.left = frames * 2
        self.level = level

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.wav:
            size = min(len(buffer), len(self.wav))
            buffer[:size] = self.wav[:size]
            self.wav = self.wav[size:]
            return size
        size = min(len(buffer), self.left) // 2 * 2
        buffer[:size] = np.full(size // 2, self.level, dtype="<i2").tobytes()
        self.left -= size
        return size


def test_building_a_long_call_holds_a_bounded_amount_of_memory() -> None:
    """Twenty minutes of alternating 30 s turns (16 kHz user, 24 kHz bot): 110 MiB of WAV."""
    session_id = new_id()
    rows = []
    for index_ in range(40):
        speaker: Speaker = "user" if index_ % 2 == 0 else "bot"
        rate = USER_RATE if speaker == "user" else BOT_RATE
        started = T0 + timedelta(seconds=30 * index_)
        rows.append(
            SegmentMetadata(
                segment_id=new_id(),
                session_id=session_id,
                turn_id=new_id(),
                speaker=speaker,
                audio_url=f"file:///r/{session_id}/{index_}.wav",
                sample_rate=rate,
                num_channels=1,
                duration_ms=30_000.0,
                byte_size=HEADER_BYTES + 30 * rate * 2,
                interrupted=False,
                unplayed_ms=None,
                started_at=started,
                ended_at=started + timedelta(seconds=30),
            )
        )
    levels_ = {row.segment_id: 1000 + i for i, row in enumerate(rows)}
    pipe = Pipe()

    tracemalloc.start()
    try:
        report = write_call_audio(
            rows,
            pipe,  # type: ignore[arg-type]
            open_segment=lambda row: io.BufferedReader(  # type: ignore[arg-type, return-value]
                ToneSource(30 * row.sample_rate, row.sample_rate, levels_[row.segment_id])
            ),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.complete, report.issues
    assert pipe.size == report.plan.wav_bytes > 100 * 2**20
    assert read_wav_header(io.BytesIO(pipe.head)).data_size == pipe.size - HEADER_BYTES
    assert peak < 8 * 2**20


def test_local_opener_refuses_a_symlinked_recording(tmp_path: Path) -> None:
    files = Files()
    row = files.add("user", 0, 500, 1000)
    recordings = tmp_path / "recordings"
    (recordings / row.session_id).mkdir(parents=True)
    outside = tmp_path / "outside.wav"
    outside.write_bytes(files.data[row.segment_id])
    os.symlink(outside, recordings / row.session_id / f"{row.segment_id}.wav")
    out = tmp_path / "call.wav"

    report = write_call_audio([row], out, open_segment=local_segment_opener(recordings))

    assert [(issue.kind, "symlink" in issue.detail) for issue in report.issues] == [
        ("unreadable", True)
    ]
    assert not pcm_of_wav(out.read_bytes()).any()


def test_a_requested_sample_rate_resamples_every_segment_to_it() -> None:
    files = Files()
    user = files.add("user", 0, 500, 1000, rate=USER_RATE)
    bot = files.add("bot", 250, 500, 2000, rate=BOT_RATE)
    out = io.BytesIO()

    report = write_call_audio([user, bot], out, open_segment=files.open, sample_rate=8_000)

    assert report.complete
    assert read_wav_header(io.BytesIO(out.getvalue())).sample_rate == 8_000
    stereo = pcm_of_wav(out.getvalue())
    assert len(stereo) == 6_000
    assert onsets_ms(stereo[:, 1], 8_000) == [pytest.approx(250.0, abs=1.0)]
    with pytest.raises(CallAudioError, match="unsupported sample rate"):
        plan_call_audio([user], sample_rate=1_000)


def test_a_build_stopped_by_an_opener_bug_leaves_no_file(tmp_path: Path) -> None:
    files = Files()
    rows = [files.add("user", 0, 500, 1000), files.add("bot", 3000, 500, 1000)]

    def broken(segment: SegmentMetadata) -> io.BytesIO:
        if segment.speaker == "bot":
            raise RuntimeError("opener bug")
        return files.open(segment)

    with pytest.raises(RuntimeError, match="opener bug"):
        write_call_audio(rows, tmp_path / "call.wav", open_segment=broken, block_s=0.1)

    assert list(tmp_path.iterdir()) == []
