"""Property tests: hostile frame sequences never lose, leak, reorder or overlap audio.

Most tests drive an unlinked ``AudioCaptureProcessor`` directly (``process_frame`` per frame,
``push_frame`` captured) with a fake monotonic clock passed in (shared with its ``TurnIds``), so
the play-out clock is deterministic and thousands of sequences run in seconds. One test runs
generated sequences through a real Pipecat pipeline to confirm pass-through there.

``started_at`` is the processor's wall anchor plus the fake clock's advance, so segment times
can be compared to the microsecond once mapped back through the processor's ``wall_time``.
"""

import asyncio
import itertools
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    AudioRawFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StopFrame,
    SystemFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.utils.asyncio.task_manager import TaskManager

from pipecat_audio_capture import AudioCaptureProcessor, TurnIds
from pipecat_audio_capture.defaults import MAX_FORMAT_CHANGES_PER_TURN
from pipecat_audio_capture.records import PendingAudioSegment
from pipecat_audio_capture.testing import InMemoryAudioCollector

from support.frame_strategies import (
    DOWN,
    UP,
    Script,
    Step,
    input_audio,
    scripts,
    tts_audio,
)

TOLERANCE_S = 0.001
"""Float and microsecond rounding allowed when comparing segment times."""

CLOCK_START = 1000.0

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written into the repository; failures print the script instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TARGETED = settings(PROPERTY, max_examples=150)

SESSION_END = (EndFrame, StopFrame, CancelFrame)


# The harness.


class FakeClock:
    """A monotonic clock that moves only when the script says so."""

    def __init__(self) -> None:
        self.now = CLOCK_START

    def monotonic(self) -> float:
        return self.now


_epoch: list[datetime] = []
"""What the processor of the running script maps ``CLOCK_START`` to (one script runs at a time)."""


def mono(at: datetime) -> float:
    return CLOCK_START + (at - _epoch[-1]).total_seconds()


class RecordingProcessor(AudioCaptureProcessor):
    """The processor under test, unlinked: what it pushes is recorded instead of sent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pushed: list[tuple[Frame, FrameDirection]] = []

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        self.pushed.append((frame, direction))


@dataclass
class Flush:
    """A segment and the step whose frame produced it (None: the teardown ``cleanup()``)."""

    step: Step | None
    segment: PendingAudioSegment
    after_output: bool


@dataclass
class Run:
    script: Script
    processor: RecordingProcessor
    turn_ids: TurnIds
    flushes: list[Flush] = field(default_factory=list)
    user_turn_after: list[str | None] = field(default_factory=list)
    """``turn_ids.user`` after each step."""

    @property
    def segments(self) -> list[PendingAudioSegment]:
        return [flush.segment for flush in self.flushes]

    def by_speaker(self, speaker: str) -> list[PendingAudioSegment]:
        return [segment for segment in self.segments if segment.speaker == speaker]


async def run_script(
    script: Script,
    *,
    after_each: Callable[[RecordingProcessor, Script], None] | None = None,
) -> Run:
    """Feed the script to a fresh processor, then tear it down as a pipeline would."""
    clock = FakeClock()
    collector = InMemoryAudioCollector()
    turn_ids = TurnIds(clock=clock.monotonic)
    processor = RecordingProcessor(
        collector,
        turn_ids,
        preroll_s=script.preroll_s,
        max_segment_s=script.max_segment_s,
        clock=clock.monotonic,
    )
    _epoch[:] = [processor.wall_time(CLOCK_START)]
    # A task manager lets Pipecat's own InterruptionFrame/CancelFrame handling run as it
    # does in a pipeline (without one it pushes an ErrorFrame).
    await processor.setup(
        FrameProcessorSetup(
            clock=SystemClock(),
            task_manager=TaskManager(),
            pipeline_worker=None,  # type: ignore[arg-type]
        )
    )
    run = Run(script=script, processor=processor, turn_ids=turn_ids)

    def collect(step: Step | None) -> None:
        new = collector.segments[len(run.flushes) :]
        run.flushes += [Flush(step, s, processor.playback_confirmed) for s in new]

    for step in script.steps:
        clock.now += step.advance_s
        await processor.process_frame(step.frame, step.direction)
        collect(step)
        run.user_turn_after.append(turn_ids.user)
        if after_each is not None:
            after_each(processor, script)
    await processor.cleanup()
    collect(None)
    return run


def run_sync(script: Script, **kwargs: object) -> Run:
    """Run a script on a fresh event loop (hypothesis calls the test body once per example)."""
    return asyncio.run(run_script(script, **kwargs))  # type: ignore[arg-type]


# Helpers over segments and frames.


def frame_bytes(frame: AudioRawFrame) -> int:
    return 2 * frame.num_channels


def whole_samples(frame: AudioRawFrame) -> bytes:
    return frame.audio[: len(frame.audio) - len(frame.audio) % frame_bytes(frame)]


def cap_bytes(max_segment_s: float, sample_rate: int, num_channels: int) -> int:
    return int(max_segment_s * sample_rate) * 2 * num_channels


def interval(segment: PendingAudioSegment) -> tuple[float, float]:
    start = mono(segment.started_at)
    return start, start + segment.duration_ms / 1000.0


def is_bot_audio(step: Step) -> bool:
    return isinstance(step.frame, OutputAudioRawFrame) and step.direction == DOWN


def marker_of(chunk: bytes) -> int:
    return struct.unpack_from("<h", chunk)[0]


# Pass-through and robustness.


@PROPERTY
@given(script=scripts())
def test_every_frame_passes_through_once_in_order_in_its_direction_unchanged(
    script: Script,
) -> None:
    before = [
        (step.frame, step.direction, getattr(step.frame, "audio", None), vars(step.frame).copy())
        for step in script.steps
    ]
    run = run_sync(script)  # also proves no exception escapes, cleanup included

    assert len(run.processor.pushed) == len(before)
    for (frame, direction), (sent, sent_direction, audio, fields) in zip(
        run.processor.pushed, before, strict=True
    ):
        assert frame is sent
        assert direction == sent_direction
        assert getattr(frame, "audio", None) is audio
        assert vars(frame) == fields


# Timing.


def assert_no_overlap(segments: list[PendingAudioSegment]) -> None:
    for prev, nxt in itertools.pairwise(segments):
        prev_start, prev_end = interval(prev)
        next_start, _ = interval(nxt)
        assert next_start >= prev_start - TOLERANCE_S, (prev, nxt)
        assert next_start >= prev_end - TOLERANCE_S, (
            f"{nxt.speaker} segment starting at {next_start - CLOCK_START:.6f} overlaps the one "
            f"before it, [{prev_start - CLOCK_START:.6f}, {prev_end - CLOCK_START:.6f}]"
        )


# Continuous 20 ms microphone frames; the user's turn starts 10 ms into a frame's capture, as
# the aggregator pushes UserStartedSpeakingFrame between two frames.
@example(
    script=Script(
        steps=[
            Step(0.02, input_audio(0.02)),
            Step(0.01, UserStartedSpeakingFrame()),
            Step(0.01, input_audio(0.02)),
            Step(0.0, UserStoppedSpeakingFrame()),
            Step(0.02, input_audio(0.02)),
            Step(0.0, UserStartedSpeakingFrame()),
            Step(0.02, input_audio(0.02)),
            Step(0.0, UserStoppedSpeakingFrame()),
        ],
        preroll_s=0.25,
    )
)
@PROPERTY
@given(script=scripts())
def test_user_segments_never_overlap_in_time(script: Script) -> None:
    run = run_sync(script)
    assert_no_overlap(run.by_speaker("user"))


# The greeting's BotStoppedSpeakingFrame arrives while the play-out clock still has it playing;
# the barge-in then rewinds the clock, and the next answer is placed inside the greeting.
@example(
    script=Script(
        steps=[
            Step(0.0, tts_audio(1.0, context_id="greeting")),
            Step(0.0, tts_audio(1.0, context_id="answer")),
            Step(0.1, BotStoppedSpeakingFrame(), UP),
            Step(0.1, InterruptionFrame()),
            Step(0.1, tts_audio(0.5, context_id="next")),
        ],
    )
)
@PROPERTY
@given(script=scripts())
def test_bot_segments_never_overlap_in_time(script: Script) -> None:
    run = run_sync(script)
    assert_no_overlap(run.by_speaker("bot"))


# Flush rules.


@PROPERTY
@given(script=scripts())
def test_segments_carry_the_flags_of_the_frame_that_flushed_them(script: Script) -> None:
    run = run_sync(script)
    for flush in run.flushes:
        segment = flush.segment
        frame = flush.step.frame if flush.step is not None else None
        if frame is None or isinstance(frame, SESSION_END):
            assert segment.interrupted, "session end (or teardown) flushes as interrupted"
        elif isinstance(frame, UserStoppedSpeakingFrame):
            assert segment.speaker == "user" and not segment.interrupted
        elif isinstance(frame, BotStoppedSpeakingFrame):
            assert segment.speaker == "bot" and not segment.interrupted
        elif isinstance(frame, InterruptionFrame):
            assert segment.speaker == "bot" and segment.interrupted
        elif isinstance(frame, InputAudioRawFrame):
            # A format change or the cap split the turn: the part ends, the turn goes on.
            assert segment.speaker == "user" and not segment.interrupted
        elif isinstance(frame, OutputAudioRawFrame):
            assert flush.step is not None and flush.step.direction == DOWN
            assert segment.speaker == "bot" and not segment.interrupted
        else:
            pytest.fail(f"{type(frame).__name__} flushed a segment")
        if segment.speaker == "user":
            assert segment.unplayed_ms is None
        elif segment.unplayed_ms is not None:
            assert segment.unplayed_ms >= 0.0
            if not segment.interrupted:
                assert segment.unplayed_ms == 0.0


# A bot turn flushed whole by BotStoppedSpeakingFrame before the output transport: nothing was
# cut, and the processor knows it.
@example(
    script=Script(
        steps=[
            Step(0.0, tts_audio(0.2)),
            Step(0.2, BotStoppedSpeakingFrame(), UP),
        ]
    )
)
@PROPERTY
@given(script=scripts())
def test_bot_unplayed_ms_is_known_before_the_output_transport_and_none_after_it(
    script: Script,
) -> None:
    run = run_sync(script)
    for flush in run.flushes:
        if flush.segment.speaker == "bot":
            assert (flush.segment.unplayed_ms is None) == flush.after_output, flush


# After the output transport, greeting and answer play back to back; the answer reaches the cap
# and its first part is handed over while the greeting still waits for BotStoppedSpeakingFrame.
ANSWER_PART_BEFORE_GREETING = Script(
    steps=[
        Step(0.0, BotStartedSpeakingFrame(), DOWN),
        Step(0.1, tts_audio(0.1, context_id="greeting")),
        Step(0.5, tts_audio(0.5, context_id="answer")),
        Step(0.1, tts_audio(0.1, context_id="answer")),
        Step(0.0, BotStoppedSpeakingFrame(), DOWN),
    ],
)


@example(script=ANSWER_PART_BEFORE_GREETING)
@PROPERTY
@given(script=scripts())
def test_segments_hold_whole_samples_of_their_own_speaker_and_format_in_order(
    script: Script,
) -> None:
    """Nothing leaked: every recorded byte is audio of that speaker, format and order."""
    frames: dict[int, tuple[int, Step]] = {}
    for index, step in enumerate(script.steps):
        if isinstance(step.frame, AudioRawFrame) and whole_samples(step.frame):
            frames[marker_of(step.frame.audio)] = (index, step)
    run = run_sync(script)

    last_index = {"user": -1, "bot": -1}
    for segment in run.segments:
        assert segment.sample_rate > 0 and segment.num_channels in (1, 2)
        # The writer trusts the processor's count for the WAV header.
        assert segment.pcm_bytes == sum(len(chunk) for chunk in segment.pcm)
        assert segment.byte_length > 0 and segment.duration_ms > 0
        assert segment.byte_length % (2 * segment.num_channels) == 0
        for chunk in segment.pcm:
            assert len(chunk) % (2 * segment.num_channels) == 0
            if not chunk:
                continue
            index, step = frames[marker_of(chunk)]
            frame = step.frame
            assert isinstance(frame, AudioRawFrame)
            if segment.speaker == "user":
                assert isinstance(frame, InputAudioRawFrame)
            else:
                assert is_bot_audio(step)
            assert (frame.sample_rate, frame.num_channels) == (
                segment.sample_rate,
                segment.num_channels,
            )
            # A slice of that frame's whole samples (no stray byte, no other frame's audio).
            assert len(chunk) <= len(whole_samples(frame))
            assert chunk == step.frame.audio[: len(chunk)]
            # Each frame lands in at most one segment, in the order the frames came.
            assert index > last_index[segment.speaker]
            last_index[segment.speaker] = index


def expected_user_turns(run: Run) -> list[tuple[str, bytes]]:
    """Each user turn's audio by the documented rules: ``preroll_s`` of the input audio heard
    since the last turn (in the current format), then all input audio until the flush, up to
    the format change past ``MAX_FORMAT_CHANGES_PER_TURN``."""
    return user_model(run)[0]


def user_model(run: Run) -> tuple[list[tuple[str, bytes]], float]:
    """The user turns of :func:`expected_user_turns`, and the milliseconds of user audio the
    rules leave unrecorded because a turn changed format too often."""
    script = run.script
    churn_ms = 0.0
    turns: list[tuple[str, bytes]] = []
    turn_id: str | None = None  # of the open turn
    turn_audio = b""
    turn_format, changes = None, 0
    preroll, preroll_format = b"", None
    for index, step in enumerate(script.steps):
        frame = step.frame
        if isinstance(frame, InputAudioRawFrame):
            audio = whole_samples(frame)
            if not audio:
                continue
            if turn_id is not None:
                audio_format = (frame.sample_rate, frame.num_channels)
                if turn_audio and audio_format != turn_format:
                    changes += 1
                turn_format = audio_format
                if changes <= MAX_FORMAT_CHANGES_PER_TURN:
                    turn_audio += audio
                else:
                    churn_ms += len(audio) / frame_bytes(frame) / frame.sample_rate * 1000
                continue
            if preroll_format != (frame.sample_rate, frame.num_channels):
                preroll, preroll_format = b"", (frame.sample_rate, frame.num_channels)
            preroll += audio
        elif isinstance(frame, UserStartedSpeakingFrame) and turn_id is None:
            limit = cap_bytes(script.preroll_s, *preroll_format) if preroll_format else 0
            turn_id = run.user_turn_after[index]
            assert turn_id is not None, "a user turn started without an id"
            turn_audio = preroll[max(0, len(preroll) - limit) :] if limit else b""
            turn_format, changes = preroll_format, 0
            preroll = b""
        elif isinstance(frame, (UserStoppedSpeakingFrame, *SESSION_END)) and turn_id:
            turns.append((turn_id, turn_audio))
            turn_id = None
    if turn_id is not None:
        turns.append((turn_id, turn_audio))  # flushed by the teardown
    return [(turn_id, audio) for turn_id, audio in turns if audio], churn_ms


# A turn that changes format every frame: four parts, then the rest is not recorded.
@example(
    script=Script(
        steps=[
            Step(0.0, UserStartedSpeakingFrame()),
            *(Step(0.02, input_audio(0.02, rate=(16000, 24000)[i % 2])) for i in range(12)),
            Step(0.0, UserStoppedSpeakingFrame()),
        ],
    )
)
@PROPERTY
@given(script=scripts())
def test_user_turns_hold_their_preroll_and_every_input_byte_of_the_turn(script: Script) -> None:
    """Nothing lost on the user side: each turn's parts, joined, are exactly its audio."""
    run = run_sync(script)
    recorded: dict[str, bytes] = {}
    for segment in run.by_speaker("user"):
        recorded[segment.turn_id] = recorded.get(segment.turn_id, b"") + b"".join(segment.pcm)
    assert list(recorded.items()) == expected_user_turns(run)


@example(
    script=Script(
        steps=[Step(0.02, tts_audio(0.02, rate=(16000, 24000)[i % 2])) for i in range(12)],
    )
)
# A user turn past the format-change limit: its churn is the user's, not the bot's.
@example(
    script=Script(
        steps=[
            Step(0.0, UserStartedSpeakingFrame()),
            *(Step(0.02, input_audio(0.02, rate=8000, channels=1 + i % 2)) for i in range(6)),
        ],
    )
)
@PROPERTY
@given(script=scripts())
def test_bot_audio_is_recorded_or_counted_as_unplayed_or_ignored(script: Script) -> None:
    """Nothing lost on the bot side: received = recorded + cut (unplayed) + ignored + past the
    format-change limit (``format_churn_ms`` counts both speakers: the user's share is taken
    out by the model of user turns)."""
    run = run_sync(script)
    received_ms = sum(
        len(whole_samples(step.frame)) / frame_bytes(step.frame) / step.frame.sample_rate * 1000
        for step in script.steps
        if is_bot_audio(step) and isinstance(step.frame, AudioRawFrame)
    )
    recorded_ms = sum(segment.duration_ms for segment in run.by_speaker("bot"))
    stats = run.processor.stats
    bot_churn_ms = stats.format_churn_ms - user_model(run)[1]
    assert recorded_ms + stats.unplayed_ms + stats.ignored_bot_audio_ms + (
        bot_churn_ms
    ) == pytest.approx(received_ms, abs=1e-6)


# Splits.


@example(script=ANSWER_PART_BEFORE_GREETING)
@PROPERTY
@given(script=scripts())
def test_parts_of_a_split_turn_share_its_id_follow_each_other_and_are_contiguous(
    script: Script,
) -> None:
    run = run_sync(script)
    for speaker in ("user", "bot"):
        segments = run.by_speaker(speaker)
        finished: set[str] = set()
        for prev, nxt in itertools.pairwise(segments):
            if prev.turn_id != nxt.turn_id:
                finished.add(prev.turn_id)
                assert nxt.turn_id not in finished, "a turn's parts are recorded one after another"
            elif speaker == "user":
                assert mono(nxt.started_at) == pytest.approx(mono(prev.ended_at), abs=TOLERANCE_S)
    speakers_by_turn: dict[str, set[str]] = {}
    for segment in run.segments:
        speakers_by_turn.setdefault(segment.turn_id, set()).add(segment.speaker)
    assert all(len(speakers) == 1 for speakers in speakers_by_turn.values())


# Memory.


def assert_buffers_within_caps(processor: RecordingProcessor, script: Script) -> None:
    # The buffers are private (the tracks' pre-roll and parts): no public view says how much
    # audio the processor holds, and that is what this test bounds.
    preroll = list(processor._user.preroll.frames)
    held_bytes = processor._user.preroll.held_bytes
    assert held_bytes == sum(len(frame.audio) + 64 for frame in preroll)
    # The pre-roll keeps raw input frames and is trimmed once it gathers more than twice what
    # a turn could take (or 8 KiB) past what a turn needs; a frame may stick out on both ends.
    limit = max(
        (
            cap_bytes(min(script.preroll_s, script.max_segment_s), frame.sample_rate, channels)
            for step in script.steps
            if isinstance(frame := step.frame, InputAudioRawFrame)
            and (channels := frame.num_channels) > 0
        ),
        default=0,
    )
    longest = max((len(frame.audio) for frame in preroll), default=0)
    assert held_bytes <= 3 * limit + 8192 + 2 * (longest + 64)
    user = processor._user.part
    parts = ([user] if user else []) + list(processor._bot.parts)
    for part in parts:
        assert part.nbytes == sum(len(chunk) for chunk in part.chunks)
        cap = cap_bytes(script.max_segment_s, part.sample_rate, part.num_channels)
        assert part.nbytes - last_frame_bytes(part.chunks) <= cap, "open part past the cap"


def last_frame_bytes(chunks: list[bytes]) -> int:
    """Bytes of the last frame added: what may stick out past the cap."""
    return next((len(chunk) for chunk in reversed(chunks) if chunk), 0)


@PROPERTY
@given(script=scripts())
def test_no_segment_or_open_buffer_exceeds_the_cap_by_more_than_one_frame(script: Script) -> None:
    run = run_sync(script, after_each=assert_buffers_within_caps)
    for segment in run.segments:
        cap = cap_bytes(script.max_segment_s, segment.sample_rate, segment.num_channels)
        assert segment.byte_length - last_frame_bytes(segment.pcm) <= cap


@st.composite
def long_preroll_scripts(draw: st.DrawFn) -> Script:
    """A pre-roll longer than ``max_segment_s``, filled, then a short turn."""
    rate = draw(st.sampled_from([8000, 16000]))
    frame_s = draw(st.sampled_from([0.01, 0.02]))
    before = draw(st.integers(0, 120))
    during = draw(st.integers(0, 10))
    steps = [Step(frame_s, input_audio(frame_s, rate=rate)) for _ in range(before)]
    steps.append(Step(0.0, UserStartedSpeakingFrame()))
    steps += [Step(frame_s, input_audio(frame_s, rate=rate)) for _ in range(during)]
    steps.append(Step(0.0, UserStoppedSpeakingFrame()))
    return Script(
        steps=steps,
        preroll_s=draw(st.sampled_from([0.75, 1.0])),
        max_segment_s=draw(st.sampled_from([0.25, 0.5])),
    )


@example(
    script=Script(
        steps=[
            *(Step(0.02, input_audio(0.02)) for _ in range(50)),
            Step(0.0, UserStartedSpeakingFrame()),
            Step(0.0, UserStoppedSpeakingFrame()),
        ],
        preroll_s=1.0,
        max_segment_s=0.5,
    )
)
@TARGETED
@given(script=long_preroll_scripts())
def test_a_preroll_longer_than_max_segment_still_yields_segments_within_the_cap(
    script: Script,
) -> None:
    run = run_sync(script)
    for segment in run.segments:
        cap = cap_bytes(script.max_segment_s, segment.sample_rate, segment.num_channels)
        assert segment.byte_length - last_frame_bytes(segment.pcm) <= cap, (
            f"{segment.duration_ms:.0f} ms segment with max_segment_s={script.max_segment_s}"
        )


@st.composite
def realtime_bot_turns(draw: st.DrawFn) -> Script:
    """One long bot turn (one TTS context, the rate may change) whose audio arrives as fast as
    it plays, before or after the output transport."""
    after_output = draw(st.booleans())
    rates = draw(st.lists(st.sampled_from([16000, 24000]), min_size=1, max_size=2, unique=True))
    sizes = draw(st.lists(st.sampled_from([0.02, 0.04, 0.1]), min_size=1, max_size=80))
    steps = [Step(0.0, BotStartedSpeakingFrame(), DOWN)] if after_output else []
    previous = 0.0
    for seconds in sizes:
        frame = tts_audio(seconds, rate=draw(st.sampled_from(rates)))
        # Before the output transport a frame arrives as the previous one finishes playing;
        # after it, a frame arrives once it has itself been played.
        steps.append(Step(seconds if after_output else previous, frame))
        previous = seconds
    return Script(steps=steps, max_segment_s=0.5)


@example(script=Script(steps=[Step(0.04 if i else 0.0, tts_audio(0.04)) for i in range(30)]))
@TARGETED
@given(script=realtime_bot_turns())
def test_a_long_bot_turn_holds_at_most_one_cap_of_played_audio_under_one_turn_id(
    script: Script,
) -> None:
    # After every frame, the bot audio held (private _bot, see assert_buffers_within_caps) is at
    # most one cap plus two frames (one playing, one queued).
    longest_s = max(
        len(step.frame.audio) / (2 * step.frame.sample_rate)
        for step in script.steps
        if isinstance(step.frame, AudioRawFrame)
    )

    def check(processor: RecordingProcessor, _: Script) -> None:
        held_s = sum(part.duration_s for part in processor._bot.parts)
        assert held_s <= script.max_segment_s + 2 * longest_s + 1e-9, (
            f"{held_s:.2f} s of bot audio held in memory (max_segment_s={script.max_segment_s})"
        )

    run = run_sync(script, after_each=check)
    assert len({segment.turn_id for segment in run.segments}) == 1


# The play-out clock.


@st.composite
def bot_turns_then_barge_in(draw: st.DrawFn) -> Script:
    """TTS audio of one turn arriving with any timing (bursts and gaps), then a barge-in."""
    rate = draw(st.sampled_from([16000, 24000]))
    steps = [
        Step(draw(st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0])), tts_audio(seconds, rate=rate))
        for seconds in draw(
            st.lists(st.sampled_from([0.02, 0.04, 0.1, 0.5]), min_size=1, max_size=30)
        )
    ]
    steps.append(Step(draw(st.floats(0.0, 2.0)), InterruptionFrame()))
    return Script(steps=steps, max_segment_s=300.0)


# A 100 ms sentence plays at once; the next one arrives after a 900 ms pause and plays from
# then on. The barge-in 50 ms later has heard 150 ms, not the 200 ms the segment keeps.
@example(
    script=Script(
        steps=[
            Step(0.0, tts_audio(0.1)),
            Step(1.0, tts_audio(0.1)),
            Step(0.05, InterruptionFrame()),
        ],
        max_segment_s=300.0,
    )
)
@TARGETED
@given(script=bot_turns_then_barge_in())
def test_a_barge_in_keeps_exactly_what_the_play_out_clock_had_played(script: Script) -> None:
    # README: "audio plays back to back from when it arrives" and the cut keeps "what had been
    # played when the interruption arrived".
    now = cursor = CLOCK_START
    schedule: list[tuple[float, float]] = []
    sample_s = 0.0
    for step in script.steps:
        now += step.advance_s
        if isinstance(step.frame, AudioRawFrame):
            duration = len(step.frame.audio) / (2 * step.frame.sample_rate)
            start = max(cursor, now)
            schedule.append((start, duration))
            cursor = start + duration
            sample_s = 1.0 / step.frame.sample_rate
    total_s = sum(duration for _, duration in schedule)
    played_s = sum(min(duration, max(0.0, now - start)) for start, duration in schedule)

    run = run_sync(script)
    recorded_s = sum(segment.duration_ms for segment in run.segments) / 1000.0
    assert recorded_s == pytest.approx(played_s, abs=sample_s + 1e-9)
    expected_unplayed_ms = (total_s - recorded_s) * 1000.0
    assert run.processor.stats.unplayed_ms == pytest.approx(expected_unplayed_ms, abs=1e-6)


# Turn ids.


@PROPERTY
@given(script=scripts())
def test_turn_ids_are_uuids_and_every_recorded_turn_is_in_the_timeline(script: Script) -> None:
    run = run_sync(script)
    for speaker in ("user", "bot"):
        known = {span.turn_id for span in run.turn_ids.spans(speaker)}  # type: ignore[arg-type]
        for segment in run.by_speaker(speaker):
            assert str(uuid.UUID(segment.turn_id)) == segment.turn_id
            assert segment.turn_id in known


# A real pipeline.


def pipeline_frames(script: Script) -> list[Frame]:
    """The script's frames; a short sleep before each interruption lets queued data frames
    through first (Pipecat drops interruptible frames still queued at an interruption)."""
    frames: list[Frame] = []
    for step in script.steps:
        if isinstance(step.frame, InterruptionFrame):
            frames.append(SleepFrame(0.05))
        frames.append(step.frame)
    return frames


pipeline_scripts = scripts(
    max_steps=25,
    # run_test sends every frame downstream, and ends the pipeline itself.
    kinds=(
        *("input_audio", "bot_audio") * 3,
        "input_run",
        "bot_run",
        "user_started",
        "user_stopped",
        "interruption",
        "bot_started",
        "bot_stopped",
    ),
    directions=(DOWN,),
)


@settings(PROPERTY, max_examples=10)
@given(script=pipeline_scripts)
async def test_a_real_pipeline_passes_every_generated_frame_on_unchanged(script: Script) -> None:
    processor = AudioCaptureProcessor(
        InMemoryAudioCollector(),
        TurnIds(),
        preroll_s=script.preroll_s,
        max_segment_s=script.max_segment_s,
    )
    frames = pipeline_frames(script)
    sent = [frame for frame in frames if not isinstance(frame, SleepFrame)]
    audio_before = {frame.id: getattr(frame, "audio", None) for frame in sent}

    down, up = await run_test(processor, frames_to_send=frames)

    # System frames may overtake queued data frames, so order holds within each kind.
    for is_system in (True, False):
        assert [f.id for f in down if isinstance(f, SystemFrame) == is_system] == [
            f.id for f in sent if isinstance(f, SystemFrame) == is_system
        ]
    assert all(getattr(f, "audio", None) is audio_before[f.id] for f in down)
    assert up == []
