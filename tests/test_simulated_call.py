"""The simulated call: a real Pipecat pipeline that greets, answers, and is barged in on.

Everything is asserted from Pipecat's own aggregator events and frames, plus what a processor
placed where the recorder goes (between the TTS and ``transport.output()``) saw.
"""

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    UserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecat_audio_capture.demo import DEFAULT_SCRIPT, CallResult, EventKind, run_simulated_call
from pipecat_audio_capture.demo.script import CallScript, load_bot_audio

SPEED = 2.0
"""The call takes ~15 s. Every timing below also held at 4x to 16x on an idle machine, but with
the CPUs busy (other test suites running) the VAD's and the speaker's few-millisecond deadlines
slip by up to ~150 ms; at 2x that stays inside the tolerances below."""

BARGE_IN_TOLERANCE_S = 0.5

_LOGGED = (
    UserStartedSpeakingFrame,
    InterruptionFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    CancelFrame,
)


class FrameLog(FrameProcessor):
    """Passes every frame on, noting the turn and lifecycle frames it sees."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[tuple[float, Frame, FrameDirection]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, _LOGGED):
            self.seen.append((self.get_clock().get_time() / 1e9, frame, direction))
        await self.push_frame(frame, direction)

    def times(self, frame_type: type[Frame], direction: FrameDirection) -> list[float]:
        return [t for t, frame, d in self.seen if isinstance(frame, frame_type) and d == direction]


@dataclasses.dataclass
class Run:
    result: CallResult
    before_output: FrameLog
    after_output: FrameLog


def _run(script: CallScript) -> Run:
    before_output, after_output = FrameLog(), FrameLog()
    result = asyncio.run(
        run_simulated_call(
            script=script,
            speed=SPEED,
            recorder_processors=[before_output],
            after_output_processors=[after_output],
            timeout_s=60,
        )
    )
    return Run(result, before_output, after_output)


@pytest.fixture(scope="module")
def call() -> Iterator[Run]:
    yield _run(DEFAULT_SCRIPT)


def _recording(line_index: int) -> bytes:
    recordings = load_bot_audio(DEFAULT_SCRIPT)
    return b"".join(recordings[s] for s in DEFAULT_SCRIPT.bot_lines[line_index].sentences)


def _barge_in_turn() -> int:
    """Index of the bot line the caller interrupts (bot turn 0 is the greeting)."""
    lines = DEFAULT_SCRIPT.user_lines
    return next(i for i, line in enumerate(lines) if line.barge_in_s is not None)


def test_greeting_is_the_first_assistant_turn(call: Run) -> None:
    stopped = call.result.of(EventKind.ASSISTANT_TURN_STOPPED)
    first_user_turn = call.result.of(EventKind.USER_TURN_STARTED)[0]
    assert stopped[0].text == DEFAULT_SCRIPT.greeting.text
    assert stopped[0].interrupted is False
    assert stopped[0].t < first_user_turn.t


def test_user_turns_carry_the_scripted_text(call: Run) -> None:
    started = call.result.of(EventKind.USER_TURN_STARTED)
    stopped = call.result.of(EventKind.USER_TURN_STOPPED)
    expected = [line.text for line in DEFAULT_SCRIPT.user_lines]
    assert len(expected) >= 3
    assert [event.text for event in stopped] == expected
    assert len(started) == len(expected)
    assert all(start.t < stop.t for start, stop in zip(started, stopped, strict=True))


def test_assistant_turns_hold_what_was_spoken(call: Run) -> None:
    stopped = call.result.of(EventKind.ASSISTANT_TURN_STOPPED)
    barged = _barge_in_turn()
    full = [line.text for line in DEFAULT_SCRIPT.bot_lines]
    assert len(call.result.of(EventKind.ASSISTANT_TURN_STARTED)) == len(full)
    assert [event.interrupted for event in stopped] == [i == barged for i in range(len(full))]
    for index, event in enumerate(stopped):
        if index != barged:
            assert event.text == full[index]
    cut = stopped[barged].text
    assert cut, "the first sentence was played before the barge-in"
    assert len(cut) < len(full[barged])
    assert full[barged].startswith(cut)


def test_barge_in_cuts_the_long_answer_about_1_5_s_into_playback(call: Run) -> None:
    result = call.result
    barged = _barge_in_turn()
    turn = result.bot_turns[barged]
    assert turn.stopped_at is not None
    onset = result.utterances[barged].started_at
    speech_in = result.call_time(onset - turn.started_at)
    cut_in = result.call_time(turn.stopped_at - turn.started_at)
    assert speech_in == pytest.approx(1.5, abs=BARGE_IN_TOLERANCE_S)
    assert cut_in == pytest.approx(1.5, abs=BARGE_IN_TOLERANCE_S)
    # The VAD needs some speech before it confirms it; the cut follows the onset by that much.
    assert 0 < cut_in - speech_in < BARGE_IN_TOLERANCE_S
    full = _recording(barged)
    assert len(full) / 48000 >= 5.0
    assert full.startswith(turn.audio)
    # Played audio matches the time the bot spoke, give or take the speaker's lateness under load.
    assert turn.duration_s == pytest.approx(cut_in, abs=0.25)


def test_barge_in_order_between_tts_and_output(call: Run) -> None:
    barge_in = call.result.of(EventKind.INTERRUPTION)[_barge_in_turn()]
    near = [
        (type(frame), direction)
        for t, frame, direction in call.before_output.seen
        if abs(t - barge_in.t) < 0.1 and not isinstance(frame, BotStartedSpeakingFrame)
    ]
    assert near == [
        (UserStartedSpeakingFrame, FrameDirection.DOWNSTREAM),
        (InterruptionFrame, FrameDirection.DOWNSTREAM),
        (BotStoppedSpeakingFrame, FrameDirection.UPSTREAM),
    ]


def test_speaker_played_every_uninterrupted_line_in_full(call: Run) -> None:
    turns = call.result.bot_turns
    assert len(turns) == len(DEFAULT_SCRIPT.bot_lines)
    for index, turn in enumerate(turns):
        if index != _barge_in_turn():
            recording = _recording(index)
            # The last chunk is padded with silence to the transport's 40 ms chunk.
            assert turn.audio[: len(recording)] == recording
            assert not any(turn.audio[len(recording) :])


def test_call_ends_cleanly(call: Run) -> None:
    result = call.result
    assert result.of(EventKind.END_QUEUED)
    assert all(turn.stopped_at is not None for turn in result.bot_turns)
    for log in (call.before_output, call.after_output):
        assert log.times(EndFrame, FrameDirection.DOWNSTREAM)
        assert not log.times(CancelFrame, FrameDirection.DOWNSTREAM)


def test_hang_up_while_the_last_line_plays() -> None:
    script = dataclasses.replace(
        DEFAULT_SCRIPT, exchanges=DEFAULT_SCRIPT.exchanges[:1], hangup_after_s=0.5
    )
    run = _run(script)
    last = run.result.bot_turns[-1]
    end_passed = run.before_output.times(EndFrame, FrameDirection.DOWNSTREAM)[0]
    bot_stopped = run.before_output.times(BotStoppedSpeakingFrame, FrameDirection.UPSTREAM)[-1]
    # The output transport plays out queued audio before passing the EndFrame on, and its
    # BotStoppedSpeakingFrame still travels upstream past the processor the EndFrame has passed.
    assert last.stopped_at is not None and last.stopped_at > end_passed
    assert bot_stopped > end_passed
    assert run.result.of(EventKind.ASSISTANT_TURN_STOPPED)[-1].text == script.bot_lines[-1].text
    assert run.result.of(EventKind.ASSISTANT_TURN_STOPPED)[-1].interrupted is False
    recording = b"".join(load_bot_audio(script)[s] for s in script.bot_lines[-1].sentences)
    assert last.audio[: len(recording)] == recording
