"""Issue 17's format attacks, through real pipelines: one set of format limits, at the processor.

Audio frames whose format is outside :mod:`pipecat_audio_capture.limits` (a sample rate of 2**31,
40,000 channels, 3 channels) are passed on untouched, counted and not recorded, and a call's
well-formed turns around them are all stored. A turn that keeps changing format stops splitting
after ``MAX_FORMAT_CHANGES_PER_TURN`` changes.
"""

from pathlib import Path

import pytest
from pipecat.frames.frames import (
    AudioRawFrame,
    Frame,
    InputAudioRawFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.tests.utils import run_test

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    LocalAudioStorage,
    SessionAudioCapture,
    Spool,
    TurnIds,
)
from pipecat_audio_capture.defaults import MAX_FORMAT_CHANGES_PER_TURN
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.testing import InMemoryAudioCollector

from support.frames import mic_frames, tone

ATTACKS = {
    "sample rate 2**31": (2**31, 1),
    "40,000 channels": (16000, 40_000),
    "3 channels": (16000, 3),
}


def hostile(frame_type: type[AudioRawFrame], sample_rate: int, num_channels: int) -> AudioRawFrame:
    """20 ms of audio (by its own claimed format, capped at 64 KiB) in an impossible format."""
    size = min(2 * num_channels * (sample_rate // 50), 1 << 16)
    audio = b"\x01\x02" * (size // 2)
    return frame_type(audio=audio, sample_rate=sample_rate, num_channels=num_channels)


def reported(processor: AudioCaptureProcessor) -> list[tuple[str, str]]:
    """What the processor reports through ``on_audio_not_recorded``, as it reports it."""
    reports: list[tuple[str, str]] = []

    @processor.event_handler("on_audio_not_recorded")
    async def on_not_recorded(_: AudioCaptureProcessor, reason: str, description: str) -> None:
        reports.append((reason, description))

    return reports


def turn(value: int) -> list[Frame]:
    return [UserStartedSpeakingFrame(), *mic_frames(0.2, value=value), UserStoppedSpeakingFrame()]


@pytest.mark.parametrize("attack", ATTACKS, ids=str)
async def test_audio_in_an_unsupported_format_is_passed_on_counted_and_not_recorded(
    attack: str, tmp_path: Path
) -> None:
    sample_rate, num_channels = ATTACKS[attack]
    capture = SessionAudioCapture(
        new_id(), LocalAudioStorage(tmp_path / "audio"), spool=Spool(tmp_path / "spool")
    )
    processor = AudioCaptureProcessor(capture, TurnIds(), preroll_s=0.1)
    reports = reported(processor)
    bad_input = [hostile(InputAudioRawFrame, sample_rate, num_channels) for _ in range(3)]
    bad_bot = hostile(TTSAudioRawFrame, sample_rate, num_channels)
    frames = [
        bad_input[0],  # in the pre-roll
        UserStartedSpeakingFrame(),
        *mic_frames(0.1, value=7),
        bad_input[1],  # inside a turn
        *mic_frames(0.1, value=7),
        UserStoppedSpeakingFrame(),
        bad_bot,
        bad_input[2],
        *turn(1),
        *turn(2),
        *turn(3),
    ]

    down, _ = await run_test(processor, frames_to_send=frames)
    await capture.close(timeout_s=3)

    in_order = (bad_input[0], bad_input[1], bad_bot, bad_input[2])
    sent = {frame.id: frame.audio for frame in in_order}
    passed = [frame for frame in down if frame.id in sent]
    # Input audio is a system frame and may overtake the (data) bot frame: compare as a set.
    assert sorted(frame.id for frame in passed) == sorted(sent)
    assert all(frame.audio is sent[frame.id] for frame in passed)
    stats = processor.stats
    assert stats.unsupported_format_frames == 4
    claimed_s = sum(len(f.audio) / (2 * f.num_channels * f.sample_rate) for f in in_order)
    assert stats.unsupported_format_ms == pytest.approx(claimed_s * 1000.0)
    assert stats.segments == 4 and stats.trimmed_bytes == 0
    assert [reason for reason, _ in reports] == ["unsupported_format"]  # the 1st; then the 10th
    assert (capture.stats.stored, capture.stats.failed, capture.stats.dropped) == (4, 0, 0)
    assert not list((tmp_path / "spool").rglob("*.segment"))
    wavs = sorted((tmp_path / "audio").rglob("*.wav"))
    assert len(wavs) == 4
    assert all(wav.read_bytes()[22:28] == b"\x01\x00\x80\x3e\x00\x00" for wav in wavs)


async def test_a_turn_alternating_sample_rates_every_frame_for_40_s_stops_splitting() -> None:
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, TurnIds(), preroll_s=0.0)
    reports = reported(processor)
    rates = (16000, 24000) * 1000  # 2,000 frames of 20 ms: 40 s
    mic = [InputAudioRawFrame(audio=tone(0.02, r), sample_rate=r, num_channels=1) for r in rates]
    tts = [TTSAudioRawFrame(audio=tone(0.02, r), sample_rate=r, num_channels=1) for r in rates]
    frames: list[Frame] = [UserStartedSpeakingFrame(), *mic, UserStoppedSpeakingFrame(), *tts]

    await run_test(processor, frames_to_send=frames)

    parts = MAX_FORMAT_CHANGES_PER_TURN + 1
    for speaker in ("user", "bot"):
        segments = collector.by_speaker(speaker)
        assert len(segments) == parts, speaker
        assert len({segment.turn_id for segment in segments}) == 1
        assert [segment.sample_rate for segment in segments] == list(rates[:parts])
        assert sum(segment.duration_ms for segment in segments) == pytest.approx(parts * 20.0)
    # Of each speaker's 40 s, four 20 ms frames were recorded; the rest is counted.
    assert processor.stats.format_churn_ms == pytest.approx(2 * (40_000 - parts * 20.0))
    # Said once per turn, not once per frame.
    assert [reason for reason, _ in reports] == ["format_churn", "format_churn"]
