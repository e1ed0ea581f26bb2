"""Frame scripts through real Pipecat pipelines: the flush table and odd input."""

import asyncio
from datetime import timedelta

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    DataFrame,
    EndFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    StopFrame,
    SystemFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_audio_capture import AudioCaptureProcessor, TurnIds
from pipecat_audio_capture.testing import InMemoryAudioCollector

from support.frames import (
    BOT_RATE,
    USER_RATE,
    PacedOutputTransport,
    mic_frames,
    tone,
    tts_frames,
)


def samples(segment) -> np.ndarray:
    return np.frombuffer(b"".join(segment.pcm), dtype="<i2")


def make(**kwargs) -> tuple[AudioCaptureProcessor, InMemoryAudioCollector, TurnIds]:
    collector = InMemoryAudioCollector()
    turn_ids = TurnIds()
    return AudioCaptureProcessor(collector, turn_ids, **kwargs), collector, turn_ids


async def test_user_segment_holds_preroll_then_the_turn_and_shares_the_turn_id():
    processor, collector, turn_ids = make(preroll_s=0.5)
    frames = [
        *mic_frames(2.0, value=1),
        *mic_frames(0.2, value=2),  # speech VAD had not confirmed yet
        UserStartedSpeakingFrame(),
        *mic_frames(1.0, value=3),
        UserStoppedSpeakingFrame(),
        *mic_frames(0.4, value=4),
    ]
    await run_test(processor, frames_to_send=frames)

    [segment] = collector.segments
    assert segment.speaker == "user" and not segment.interrupted
    assert segment.sample_rate == USER_RATE and segment.num_channels == 1
    assert segment.duration_ms == pytest.approx(1500.0)
    values = samples(segment)
    # 0.5 s of pre-roll: 0.3 s from before the onset and the 0.2 s onset itself.
    assert (values[: int(0.3 * USER_RATE)] == 1).all()
    assert (values[int(0.3 * USER_RATE) : int(0.5 * USER_RATE)] == 2).all()
    assert (values[int(0.5 * USER_RATE) :] == 3).all()
    assert segment.turn_id == turn_ids.user
    assert segment.session_id == collector.session_id


async def test_every_frame_is_passed_on_unchanged_and_in_order():
    processor, _, _ = make()
    frames = [
        *mic_frames(0.1),
        UserStartedSpeakingFrame(),
        *mic_frames(0.1),
        UserStoppedSpeakingFrame(),
        *tts_frames(0.2),
        SleepFrame(0.1),
        InterruptionFrame(),
    ]
    sent = [frame for frame in frames if not isinstance(frame, SleepFrame)]
    audio_before = [getattr(frame, "audio", None) for frame in sent]
    down, _ = await run_test(processor, frames_to_send=frames)
    # Pipecat lets system frames overtake queued data frames, so order is kept per kind.
    for kind in (SystemFrame, DataFrame):
        assert [f.id for f in down if isinstance(f, kind)] == [
            f.id for f in sent if isinstance(f, kind)
        ]
    assert sorted(f.id for f in down) == sorted(f.id for f in sent)
    by_id = {f.id: f for f in down}
    assert [getattr(by_id[f.id], "audio", None) for f in sent] == audio_before


async def test_bot_turn_flushes_whole_at_bot_stopped_speaking():
    processor, collector, turn_ids = make()
    output = PacedOutputTransport()
    frames = [TTSStartedFrame(), *tts_frames(1.0), TTSStoppedFrame(), SleepFrame(1.6)]
    _, up = await run_test(Pipeline([processor, output]), frames_to_send=frames)

    [segment] = collector.segments
    assert segment.speaker == "bot" and not segment.interrupted
    assert segment.sample_rate == BOT_RATE
    assert segment.duration_ms == pytest.approx(1000.0)
    assert segment.turn_id == turn_ids.bot
    # The output transport's upstream BotStoppedSpeakingFrame is what flushed it.
    assert any(isinstance(frame, BotStoppedSpeakingFrame) for frame in up)


@pytest.mark.parametrize("after_output", [False, True], ids=["before-output", "after-output"])
async def test_barge_in_keeps_only_the_audio_that_was_played(after_output):
    processor, collector, _ = make()
    output = PacedOutputTransport()
    # Before the output, the documented placement: the tap confirms what was written.
    stages = [output, processor] if after_output else [processor, output, processor.playback_tap()]
    frames = [
        TTSStartedFrame(),
        *tts_frames(5.0),
        TTSStoppedFrame(),
        SleepFrame(1.5),
        UserStartedSpeakingFrame(),
        InterruptionFrame(),
        SleepFrame(0.3),
    ]
    await run_test(Pipeline(stages), frames_to_send=frames)

    [segment] = collector.segments
    played_ms = len(output.played) / (BOT_RATE * 2) * 1000.0
    assert segment.interrupted
    # Under load the transport writes less than 1.5 s in 1.5 s; what matters is the cut.
    assert 500.0 < played_ms < 1800.0
    assert segment.duration_ms == pytest.approx(played_ms, abs=100.0)
    if after_output:
        assert segment.unplayed_ms is None
    else:
        assert segment.unplayed_ms == pytest.approx(5000.0 - segment.duration_ms, abs=1.0)


@pytest.mark.parametrize("after_output", [False, True], ids=["before-output", "after-output"])
async def test_back_to_back_tts_contexts_become_separate_bot_turns(after_output):
    processor, collector, turn_ids = make()
    output = PacedOutputTransport()
    stages = [output, processor] if after_output else [processor, output]
    frames = [
        TTSStartedFrame(),
        *tts_frames(0.6, value=7, context_id="greeting"),
        TTSStoppedFrame(),
        TTSStartedFrame(),
        *tts_frames(0.8, value=9, context_id="answer"),
        TTSStoppedFrame(),
        SleepFrame(2.5),
    ]
    await run_test(Pipeline(stages), frames_to_send=frames)

    first, second = collector.segments
    assert (samples(first) == 7).all() and first.duration_ms == pytest.approx(600.0, abs=40.0)
    assert (samples(second) == 9).all() and second.duration_ms == pytest.approx(800.0, abs=40.0)
    assert not first.interrupted and not second.interrupted
    assert first.turn_id != second.turn_id
    assert [span.turn_id for span in turn_ids.spans("bot")] == [first.turn_id, second.turn_id]


async def test_interruption_cuts_queued_bot_audio_at_the_play_clock_and_counts_the_rest():
    processor, collector, _ = make()
    frames = [*tts_frames(0.48), SleepFrame(0.05), InterruptionFrame()]
    # No output transport: the audio is queued to play, and the barge-in arrives 50 ms later.
    await run_test(processor, frames_to_send=frames)
    [segment] = collector.segments
    assert segment.interrupted
    assert 20.0 < segment.duration_ms < 150.0
    assert segment.unplayed_ms == pytest.approx(480.0 - segment.duration_ms)
    assert processor.stats.unplayed_ms == segment.unplayed_ms


async def test_interruption_with_no_bot_audio_and_stop_without_start_do_nothing():
    processor, collector, _ = make()
    frames = [UserStoppedSpeakingFrame(), InterruptionFrame(), *mic_frames(0.2)]
    down, _ = await run_test(processor, frames_to_send=frames)
    assert collector.segments == []
    assert processor.stats.stops_without_start == 1
    assert len(down) == len(frames)


async def test_empty_user_turn_writes_no_segment():
    processor, collector, _ = make(preroll_s=0.0)
    await run_test(
        processor, frames_to_send=[UserStartedSpeakingFrame(), UserStoppedSpeakingFrame()]
    )
    assert collector.segments == []


async def test_odd_length_audio_is_trimmed_to_whole_samples():
    processor, collector, _ = make(preroll_s=0.0)
    odd = InputAudioRawFrame(
        audio=tone(0.02, USER_RATE) + b"\x01", sample_rate=USER_RATE, num_channels=1
    )
    await run_test(
        processor,
        frames_to_send=[UserStartedSpeakingFrame(), odd, UserStoppedSpeakingFrame()],
    )
    [segment] = collector.segments
    assert segment.duration_ms == pytest.approx(20.0)
    assert processor.stats.trimmed_bytes == 1


async def test_preroll_skips_frames_of_impossible_format_and_trims_odd_ones():
    processor, collector, _ = make(preroll_s=0.1)
    frames = [
        *mic_frames(0.06, value=1),
        InputAudioRawFrame(audio=b"\x07" * 640, sample_rate=0, num_channels=1),
        InputAudioRawFrame(audio=b"\x07" * 640, sample_rate=USER_RATE, num_channels=-1),
        InputAudioRawFrame(
            audio=tone(0.02, USER_RATE) + b"\x01", sample_rate=USER_RATE, num_channels=1
        ),
        *mic_frames(0.02, value=2),
        UserStartedSpeakingFrame(),
        UserStoppedSpeakingFrame(),
    ]
    await run_test(processor, frames_to_send=frames)
    [segment] = collector.segments
    assert segment.duration_ms == pytest.approx(100.0)
    assert b"\x07" not in b"".join(segment.pcm)
    values = samples(segment)
    assert (values[-int(0.02 * USER_RATE) :] == 2).all()
    assert (values[: int(0.06 * USER_RATE)] == 1).all()
    # The odd byte is trimmed; both frames of impossible format are refused at the door.
    assert processor.stats.trimmed_bytes == 1
    assert processor.stats.unsupported_format_frames == 2


async def test_a_stream_of_empty_input_frames_is_not_held_in_the_preroll():
    processor, collector, _ = make(preroll_s=1.0)
    empty = [InputAudioRawFrame(audio=b"", sample_rate=USER_RATE, num_channels=1)] * 5000
    await run_test(processor, frames_to_send=[*mic_frames(0.1, value=5), *empty])
    # The pre-roll is private; what it holds is what this test bounds. The 0.1 s of audio is
    # kept for a turn; the empty frames go at the next trim.
    assert len(processor._user.preroll.frames) < 200
    await run_test(
        processor, frames_to_send=[UserStartedSpeakingFrame(), UserStoppedSpeakingFrame()]
    )
    [segment] = collector.segments
    assert segment.duration_ms == pytest.approx(100.0)


async def test_sample_rate_or_channel_change_splits_the_turn_under_one_turn_id():
    processor, collector, _ = make(preroll_s=0.0)
    stereo = InputAudioRawFrame(audio=tone(0.1, 8000, channels=2), sample_rate=8000, num_channels=2)
    frames = [
        UserStartedSpeakingFrame(),
        *mic_frames(0.2),
        *mic_frames(0.1, rate=8000),
        stereo,
        UserStoppedSpeakingFrame(),
    ]
    await run_test(processor, frames_to_send=frames)
    parts = collector.segments
    assert [(s.sample_rate, s.num_channels) for s in parts] == [(16000, 1), (8000, 1), (8000, 2)]
    assert [round(s.duration_ms) for s in parts] == [200, 100, 100]
    assert len({s.turn_id for s in parts}) == 1
    assert parts[1].started_at == parts[0].ended_at


async def test_a_turn_longer_than_the_cap_is_split_and_memory_stays_bounded():
    processor, collector, _ = make(preroll_s=0.0, max_segment_s=0.5)
    frames = [UserStartedSpeakingFrame(), *mic_frames(1.3), UserStoppedSpeakingFrame()]
    await run_test(processor, frames_to_send=frames)
    parts = collector.segments
    assert [round(s.duration_ms) for s in parts] == [500, 500, 300]
    assert len({s.turn_id for s in parts}) == 1
    assert max(s.byte_length for s in parts) <= 0.5 * USER_RATE * 2


@pytest.mark.parametrize("closing", [EndFrame, StopFrame, CancelFrame])
async def test_session_end_flushes_open_turns_as_interrupted(closing):
    processor, collector, _ = make(preroll_s=0.0)
    frames = [
        *tts_frames(0.2),
        UserStartedSpeakingFrame(),
        *mic_frames(0.3),
        SleepFrame(0.1),
        closing(),
    ]
    await run_test(processor, frames_to_send=frames, send_end_frame=closing is not EndFrame)
    speakers = {s.speaker: s for s in collector.segments}
    assert set(speakers) == {"user", "bot"}
    assert all(s.interrupted for s in collector.segments)
    assert speakers["user"].duration_ms == pytest.approx(300.0)


async def test_each_bot_speaking_event_counts_once_when_both_copies_arrive():
    processor, collector, _ = make()
    downstream, upstream = BotStoppedSpeakingFrame(), BotStoppedSpeakingFrame()
    downstream.broadcast_sibling_id, upstream.broadcast_sibling_id = upstream.id, downstream.id
    started = BotStartedSpeakingFrame()
    frames = [
        started,
        *tts_frames(0.2, context_id="a"),
        SleepFrame(0.05),
        downstream,
        BotStartedSpeakingFrame(),
        *tts_frames(0.2, context_id="a"),
        SleepFrame(0.05),
    ]
    await run_test(processor, frames_to_send=frames)
    # The upstream copy, had it been counted, would have closed the second run of audio early.
    await processor.process_frame(upstream, FrameDirection.UPSTREAM)
    assert [round(s.duration_ms) for s in collector.segments] == [200, 200]


async def test_frames_before_start_frame_are_handled_without_error():
    processor, collector, _ = make(preroll_s=0.0)
    for frame in [UserStartedSpeakingFrame(), *mic_frames(0.1), UserStoppedSpeakingFrame()]:
        await processor.process_frame(frame, FrameDirection.DOWNSTREAM)
    [segment] = collector.segments
    assert segment.duration_ms == pytest.approx(100.0)


async def test_collector_refusal_is_counted_not_raised():
    class Refusing(InMemoryAudioCollector):
        def record_segment(self, segment):
            return False

    collector = Refusing()
    processor = AudioCaptureProcessor(collector, TurnIds(), preroll_s=0.0)
    seen = []

    @processor.event_handler("on_segment_captured")
    async def on_captured(_, segment):
        seen.append(segment)

    frames = [UserStartedSpeakingFrame(), *mic_frames(0.1), UserStoppedSpeakingFrame()]
    down, _ = await run_test(processor, frames_to_send=frames)
    await asyncio.sleep(0)
    assert processor.stats.refused == 1 and processor.stats.segments == 0
    assert len(down) == len(frames) and len(seen) == 1


class _Seen(FrameProcessor):
    """Notes every frame passing, in direct mode so it adds no reordering of its own."""

    def __init__(self) -> None:
        super().__init__(enable_direct_mode=True)
        self.seen: list[tuple[int, FrameDirection]] = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        self.seen.append((frame.id, direction))
        await self.push_frame(frame, direction)


async def test_in_direct_mode_every_frame_leaves_in_the_order_it_came_and_barge_ins_still_cut():
    processor, collector, _ = make(preroll_s=0.0)
    before, after = _Seen(), _Seen()
    frames = [
        *tts_frames(1.0),
        SleepFrame(0.1),
        UserStartedSpeakingFrame(),
        InterruptionFrame(),
        *mic_frames(0.2),
        *tts_frames(0.2),
        UserStoppedSpeakingFrame(),
    ]
    await run_test(Pipeline([before, processor, after]), frames_to_send=frames)

    # System frames (speaking, interruption, input audio) do not overtake data frames (TTS).
    downstream = [seen for seen in before.seen if seen[1] == FrameDirection.DOWNSTREAM]
    assert [seen for seen in after.seen if seen[1] == FrameDirection.DOWNSTREAM] == downstream
    assert len(downstream) >= len(frames) - 1
    [bot, *_] = collector.by_speaker("bot")
    assert bot.interrupted and bot.duration_ms < 500


def test_one_call_has_one_clock_shared_by_the_processor_and_its_turn_ids():
    now = [500.0]

    def clock() -> float:
        return now[0]

    processor = AudioCaptureProcessor(InMemoryAudioCollector(), clock=clock)
    assert processor.turn_ids.clock is clock
    assert processor.turn_ids.now() == 500.0
    start = processor.wall_time(500.0)
    assert processor.wall_time(501.5) - start == timedelta(seconds=1.5)

    shared = TurnIds(clock=clock)
    assert AudioCaptureProcessor(InMemoryAudioCollector(), shared, clock=clock).turn_ids is shared
    with pytest.raises(ValueError, match="one clock"):
        AudioCaptureProcessor(InMemoryAudioCollector(), shared, clock=lambda: 0.0)
