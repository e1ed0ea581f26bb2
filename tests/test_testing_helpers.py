"""``pipecat_audio_capture.testing``: what a user's own test records with Pipecat's run_test."""

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_audio_capture import AudioCaptureProcessor, PendingAudioSegment, TurnIds
from pipecat_audio_capture.testing import (
    BOT_TONE_HZ,
    USER_TONE_HZ,
    InMemoryAudioCollector,
    exchange_frames,
    tone,
)


def short_exchange(**sample_rates: int) -> list[Frame]:
    """0.2 s of lead-in, 0.4 s of the caller, 0.1 s of gap, 0.6 s of the bot."""
    return exchange_frames(
        user_speech_s=0.4, bot_speech_s=0.6, lead_silence_s=0.2, response_gap_s=0.1, **sample_rates
    )


def pcm(segment: PendingAudioSegment) -> bytes:
    return b"".join(segment.pcm)


async def test_exchange_frames_record_one_user_and_one_bot_segment_with_run_test() -> None:
    collector = InMemoryAudioCollector()
    turn_ids = TurnIds()
    processor = AudioCaptureProcessor(collector, turn_ids)
    await run_test(processor, frames_to_send=short_exchange())

    user, bot = collector.segments
    assert (user.speaker, bot.speaker) == ("user", "bot")
    # The pre-roll holds the quiet lead-in, then the caller's tone follows.
    assert user.duration_ms == pytest.approx(600.0)
    assert user.sample_rate == 16000
    assert pcm(user) == tone(0.2, 16000, 0.0) + tone(0.4, 16000, USER_TONE_HZ)
    assert bot.duration_ms == pytest.approx(600.0)
    assert bot.sample_rate == 24000
    assert pcm(bot) == tone(0.6, 24000, BOT_TONE_HZ)
    assert not user.interrupted and not bot.interrupted
    assert user.turn_id != bot.turn_id
    assert (user.turn_id, bot.turn_id) == (turn_ids.user, turn_ids.bot)
    assert processor.stats.ignored_bot_audio_ms == 0.0
    assert processor.stats.segments == 2


async def test_the_unpaced_frame_list_records_both_speakers_in_direct_mode_only() -> None:
    # Sent at once, the speaking frames (system frames) overtake the TTS audio in a queued
    # processor, so the bot's turn is over before its audio arrives; direct mode (the default)
    # takes the frames in the order they came.
    unpaced = [frame for frame in short_exchange() if not isinstance(frame, SleepFrame)]
    direct = InMemoryAudioCollector()
    await run_test(AudioCaptureProcessor(direct), frames_to_send=unpaced)
    collector = InMemoryAudioCollector()
    queued = AudioCaptureProcessor(collector, enable_direct_mode=False)
    await run_test(queued, frames_to_send=unpaced)

    assert [segment.speaker for segment in direct.segments] == ["user", "bot"]
    assert [segment.speaker for segment in collector.segments] == ["user"]
    assert queued.stats.ignored_bot_audio_ms == pytest.approx(600.0)


def test_exchange_frames_come_in_the_order_a_pipeline_produces_them() -> None:
    kinds = [
        type(frame)
        for frame in short_exchange()
        if not isinstance(frame, SleepFrame | InputAudioRawFrame)
    ]
    assert kinds == [
        UserStartedSpeakingFrame,
        InterruptionFrame,
        UserStoppedSpeakingFrame,
        BotStartedSpeakingFrame,
        *[TTSAudioRawFrame] * 15,
        BotStoppedSpeakingFrame,
    ]


async def test_exchange_frames_honour_other_sample_rates() -> None:
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, preroll_s=0.1)
    frames = short_exchange(user_sample_rate=8000, bot_sample_rate=16000)
    await run_test(processor, frames_to_send=frames)

    user, bot = collector.segments
    assert (user.sample_rate, bot.sample_rate) == (8000, 16000)
    assert user.duration_ms == pytest.approx(500.0)
    assert bot.duration_ms == pytest.approx(600.0)


async def test_lengths_that_are_not_whole_frames_are_kept_exactly() -> None:
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector)
    frames = exchange_frames(
        user_speech_s=0.35, bot_speech_s=0.5, lead_silence_s=0.01, response_gap_s=0.0
    )
    await run_test(processor, frames_to_send=frames)

    user, bot = collector.segments
    assert user.duration_ms == pytest.approx(360.0)
    assert bot.duration_ms == pytest.approx(500.0)


def test_tone_is_a_sine_and_zero_hertz_is_silence() -> None:
    samples = np.frombuffer(tone(0.01, 16000, 1000.0), dtype="<i2")
    assert len(samples) == 160
    assert samples.max() > 7000 and samples.min() < -7000
    assert tone(0.01, 16000, 0.0) == bytes(320)
