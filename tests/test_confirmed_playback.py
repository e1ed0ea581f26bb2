"""Confirmed playback: bot segments hold what the output transport wrote, with its times.

Real pipelines with three output transports (real time, 1/1.3 of real time, jittery bursts), the
processor in both placements: before ``transport.output()`` with its ``PlaybackTap`` after it,
and after ``transport.output()`` on its own. Each call: a long answer barged in on, then a short
answer played whole.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_audio_capture import AudioCaptureProcessor, PendingAudioSegment, TurnIds
from pipecat_audio_capture.testing import InMemoryAudioCollector

from support.output_transports import PACES, PacedOutput, Write, real_time, slow

RATE = 16000
CHUNK_S = 0.04
"""The output transport's write size (Pipecat's default, 4 x 10 ms)."""
TOLERANCE_S = 0.06
LONG_S, BARGE_IN_AFTER_S, SHORT_S = 2.0, 0.7, 0.8


def speech(seconds: float, sign: int) -> bytes:
    """A ramp, positive or negative: every chunk says which answer and where in it it is."""
    samples = int(seconds * RATE)
    return (sign * (np.arange(samples) + 1)).astype("<i2").tobytes()


def tts_turn(audio: bytes, context_id: str) -> list[Frame]:
    """A TTS service's output for one answer: all of it at once, in 100 ms frames."""
    step = int(0.1 * RATE) * 2
    frames: list[Frame] = [TTSStartedFrame(context_id=context_id)]
    for offset in range(0, len(audio), step):
        frame = TTSAudioRawFrame(
            audio=audio[offset : offset + step], sample_rate=RATE, num_channels=1
        )
        frame.context_id = context_id
        frames.append(frame)
    frames.append(TTSStoppedFrame(context_id=context_id))
    return frames


@dataclass
class Call:
    placement: str
    processor: AudioCaptureProcessor
    transport: PacedOutput
    segments: list[PendingAudioSegment]
    long_audio: bytes
    short_audio: bytes

    def wall(self, monotonic_s: float) -> datetime:
        return self.processor.wall_time(monotonic_s)

    def turns(self) -> list[list[PendingAudioSegment]]:
        by_turn: dict[str, list[PendingAudioSegment]] = {}
        for segment in self.segments:
            by_turn.setdefault(segment.turn_id, []).append(segment)
        return list(by_turn.values())

    def writes_of(self, audio: bytes) -> list[Write]:
        """The writes that hold this answer's audio, done before any interruption reached the
        transport (the chunk being written then completes after it, unrecorded)."""
        [interruption] = self.transport.log.interruptions
        log = self.transport.log.writes
        done = [w for w in log[: interruption.writes_done] if w.audio in audio]
        return done or [w for w in log if w.audio in audio]


async def run_call(pace_name: str, placement: str) -> Call:
    transport = PacedOutput(PACES[pace_name](), sample_rate=RATE)
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, TurnIds())
    if placement == "before":
        pipeline = Pipeline([processor, transport, processor.playback_tap()])
    else:
        pipeline = Pipeline([transport, processor])
    long_audio, short_audio = speech(LONG_S, 1), speech(SHORT_S, -1)
    frames = [
        *tts_turn(long_audio, "long"),
        SleepFrame(BARGE_IN_AFTER_S),
        InterruptionFrame(),
        SleepFrame(0.5),
        *tts_turn(short_audio, "short"),
        SleepFrame(SHORT_S * 1.3 * 2.4 + 0.5),
    ]
    await run_test(
        pipeline,
        frames_to_send=frames,
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    bot = collector.by_speaker("bot")
    return Call(placement, processor, transport, bot, long_audio, short_audio)


PLACEMENTS = ("before", "after")


@pytest.fixture(scope="module", params=[(p, q) for p in PACES for q in PLACEMENTS], ids=str)
def call(request: pytest.FixtureRequest) -> Call:
    pace_name, placement = request.param
    return asyncio.run(run_call(pace_name, placement))


def test_every_bot_segment_is_confirmed(call: Call) -> None:
    assert call.processor.playback_confirmed
    assert call.segments and all(s.playback == "confirmed" for s in call.segments)


def test_a_barged_in_segment_holds_what_the_transport_had_written_when_it_was_interrupted(
    call: Call,
) -> None:
    written_s = sum(len(w.audio) for w in call.writes_of(call.long_audio)) / (2 * RATE)
    barged, _ = call.turns()
    assert all(segment.interrupted for segment in barged)
    recorded = b"".join(chunk for segment in barged for chunk in segment.pcm)
    assert call.long_audio.startswith(recorded)
    assert len(recorded) / (2 * RATE) == pytest.approx(written_s, abs=TOLERANCE_S)
    assert 0.2 < written_s < LONG_S - 0.5, "the barge-in fell inside the answer"


def test_unplayed_ms_is_what_the_transport_dropped(call: Call) -> None:
    barged, _ = call.turns()
    recorded_ms = sum(segment.duration_ms for segment in barged)
    unplayed = barged[-1].unplayed_ms
    if call.placement == "after":  # generated audio is not seen there
        assert unplayed is None
    else:
        assert unplayed is not None
        assert recorded_ms + unplayed == pytest.approx(LONG_S * 1000, abs=TOLERANCE_S * 1000)


def test_a_whole_turn_holds_all_of_its_audio(call: Call) -> None:
    _, whole = call.turns()
    assert not any(segment.interrupted for segment in whole)
    assert b"".join(chunk for segment in whole for chunk in segment.pcm) == call.short_audio
    assert all(segment.unplayed_ms in (0.0, None) for segment in whole)


def test_bot_times_are_the_transports_first_and_last_write_of_the_turn(call: Call) -> None:
    tolerance = timedelta(seconds=TOLERANCE_S)
    for turn, audio in zip(call.turns(), (call.long_audio, call.short_audio), strict=True):
        writes = call.writes_of(audio)
        started, ended = turn[0].started_at, turn[-1].ended_at
        assert abs(started - call.wall(writes[0].began)) <= tolerance
        assert abs(ended - call.wall(writes[-1].ended)) <= tolerance


async def test_without_a_tap_a_slow_transport_is_estimated_and_records_what_it_had_not_written():
    """The fallback, and why the tap exists: the play-out clock assumes real time."""
    transport = PacedOutput(slow, sample_rate=RATE)
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, TurnIds())
    audio = speech(LONG_S, 1)
    await run_test(
        Pipeline([processor, transport]),
        frames_to_send=[*tts_turn(audio, "long"), SleepFrame(1.2), InterruptionFrame()],
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    [interruption] = transport.log.interruptions
    written_s = sum(len(w.audio) for w in transport.log.writes[: interruption.writes_done]) / (
        2 * RATE
    )
    [segment] = collector.by_speaker("bot")
    assert segment.playback == "estimated" and not processor.playback_confirmed
    assert segment.duration_ms / 1000 > written_s + 0.15


async def test_audio_the_transport_never_wrote_is_not_recorded_and_is_counted():
    transport = PacedOutput(real_time, sample_rate=RATE, takes_audio=False)
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, TurnIds())
    reasons: list[str] = []

    @processor.event_handler("on_audio_not_recorded")
    async def on_not_recorded(_: AudioCaptureProcessor, reason: str, __: str) -> None:
        reasons.append(reason)

    await run_test(
        Pipeline([processor, transport, processor.playback_tap()]),
        frames_to_send=[*tts_turn(speech(SHORT_S, 1), "lost"), SleepFrame(SHORT_S + 0.3)],
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    assert collector.by_speaker("bot") == []
    assert processor.stats.unplayed_ms == pytest.approx(SHORT_S * 1000)
    assert reasons == ["unwritten"]


class LateChunk(FrameProcessor):
    """Stands in for an output transport in Pipecat's race on a barge-in: the chunk it had
    taken from its queue is written after the interruption, after a new
    ``BotStartedSpeakingFrame``, and the bot then stays "speaking" into the next answer."""

    def __init__(self, late: Frame) -> None:
        super().__init__()
        self._late = late
        self._held: Frame | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if frame is self._late:
            self._held = frame
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame) and self._held is not None:
            held, self._held = self._held, None
            await self.push_frame(held, direction)


def chunks(value: int, count: int) -> list[TTSAudioRawFrame]:
    """``count`` 40 ms chunks as the transport re-chunks them (no context id)."""
    audio = np.full(int(CHUNK_S * RATE), value, dtype="<i2").tobytes()
    return [TTSAudioRawFrame(audio=audio, sample_rate=RATE, num_channels=1) for _ in range(count)]


GAP_S = 0.3
"""Between the late chunk and the next answer."""


@pytest.mark.parametrize("placement", PLACEMENTS)
async def test_the_chunk_written_after_a_barge_in_is_counted_not_glued_to_the_next_answer(
    placement: str,
):
    collector = InMemoryAudioCollector()
    processor = AudioCaptureProcessor(collector, TurnIds())
    [late] = chunks(7, 1)
    transport = LateChunk(late)
    if placement == "before":
        pipeline = Pipeline([processor, transport, processor.playback_tap()])
    else:
        pipeline = Pipeline([transport, processor])
    pause = SleepFrame(0.05)  # keeps system frames behind the data frames sent before them
    frames = [
        TTSStartedFrame(context_id="long"),
        BotStartedSpeakingFrame(),
        *chunks(1, 5),
        late,
        pause,
        InterruptionFrame(),
        BotStoppedSpeakingFrame(),
        BotStartedSpeakingFrame(),
        SleepFrame(GAP_S),
        TTSStartedFrame(context_id="short"),
        *chunks(2, 3),
        SleepFrame(0.05),
        BotStoppedSpeakingFrame(),
        SleepFrame(0.05),
    ]
    await run_test(pipeline, frames_to_send=frames)

    turns = {}
    for segment in collector.by_speaker("bot"):
        turns.setdefault(segment.turn_id, []).append(segment)
    barged, whole = turns.values()
    assert all(segment.interrupted for segment in barged)
    assert not any(segment.interrupted for segment in whole)
    chunk = int(CHUNK_S * RATE)
    assert list(samples_of(barged)) == [1] * 5 * chunk
    assert list(samples_of(whole)) == [2] * 3 * chunk
    assert processor.stats.ignored_bot_audio_ms == pytest.approx(CHUNK_S * 1000)
    # The next answer starts when its audio is written, not at the late chunk's start.
    assert whole[0].started_at - barged[-1].ended_at >= timedelta(seconds=GAP_S - TOLERANCE_S)


def samples_of(turn: list[PendingAudioSegment]) -> np.ndarray:
    return np.frombuffer(b"".join(chunk for segment in turn for chunk in segment.pcm), "<i2")
