"""Hypothesis strategies for hostile frame scripts fed to ``AudioCaptureProcessor``.

A script is a list of steps; each step advances a fake monotonic clock, then delivers one real
Pipecat frame in one direction. Every audio frame carries a distinct 16-bit marker value as its
samples, so a test can tell which frame any recorded byte came from.
"""

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
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
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection

RATES = (8000, 16000, 24000, 48000)
CHANNELS = (1, 2)
CONTEXT_IDS = (None, "ctx-a", "ctx-b", "ctx-c")
DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM

_markers = itertools.count(1)


def next_marker() -> int:
    """A fresh non-zero 16-bit sample value (wraps after 32767 frames, far beyond one script)."""
    return next(_markers) % 32767 + 1


def pcm(samples: int, channels: int, marker: int, extra_bytes: int = 0) -> bytes:
    """``samples`` sample frames of the constant ``marker``, plus ``extra_bytes`` stray bytes."""
    return struct.pack("<h", marker) * (samples * channels) + b"\x7f" * extra_bytes


@dataclass
class Step:
    """Advance the clock by ``advance_s``, then deliver ``frame`` in ``direction``."""

    advance_s: float
    frame: Frame
    direction: FrameDirection = DOWN

    def __repr__(self) -> str:
        arrow = "v" if self.direction == DOWN else "^"
        return f"+{self.advance_s:.6g}s {arrow} {describe(self.frame)}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints falsifying examples with this


@dataclass
class Script:
    """A processor configuration and the frames to feed it."""

    steps: list[Step]
    preroll_s: float = 0.0
    max_segment_s: float = 0.5

    def __repr__(self) -> str:
        lines = [f"Script(preroll_s={self.preroll_s}, max_segment_s={self.max_segment_s})"]
        lines += [f"  {step!r}" for step in self.steps]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def describe(frame: Frame) -> str:
    """A one-line description of a frame, short enough for a falsifying example."""
    name = type(frame).__name__
    if isinstance(frame, AudioRawFrame):
        samples = len(frame.audio) // (2 * frame.num_channels) if frame.num_channels else 0
        duration_ms = samples / frame.sample_rate * 1000.0 if frame.sample_rate else 0.0
        context = (
            f", context_id={frame.context_id!r}" if isinstance(frame, TTSAudioRawFrame) else ""
        )
        return (
            f"{name}({frame.sample_rate} Hz, {frame.num_channels} ch, {len(frame.audio)} B"
            f" = {duration_ms:.6g} ms{context})"
        )
    sibling = " (sibling)" if frame.broadcast_sibling_id is not None else ""
    return f"{name}{sibling}"


def input_audio(
    seconds: float, *, rate: int = 16000, channels: int = 1, extra_bytes: int = 0
) -> InputAudioRawFrame:
    """A microphone frame of ``seconds`` (rounded down to whole samples)."""
    audio = pcm(int(seconds * rate), channels, next_marker(), extra_bytes)
    return InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)


def tts_audio(
    seconds: float,
    *,
    rate: int = 24000,
    channels: int = 1,
    context_id: str | None = "ctx-a",
    extra_bytes: int = 0,
) -> TTSAudioRawFrame:
    """A TTS frame of ``seconds`` (rounded down to whole samples)."""
    audio = pcm(int(seconds * rate), channels, next_marker(), extra_bytes)
    frame = TTSAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)
    frame.context_id = context_id
    return frame


def sibling_pair(
    frame_type: type[BotStartedSpeakingFrame] | type[BotStoppedSpeakingFrame],
) -> tuple[Frame, Frame]:
    """A downstream and an upstream copy, paired as ``broadcast_frame`` pairs them."""
    down, up = frame_type(), frame_type()
    down.broadcast_sibling_id, up.broadcast_sibling_id = up.id, down.id
    return down, up


# Building blocks.

advances = st.one_of(
    st.just(0.0),
    st.sampled_from([0.001, 0.005, 0.01, 0.02, 0.04, 0.1]),
    st.floats(min_value=0.0, max_value=0.1, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False),
)
"""Time between two frames: mostly none or a frame's worth, sometimes seconds."""


@st.composite
def sample_counts(draw: st.DrawFn, rate: int) -> int:
    """Sample frames in one audio frame: often none or a few ms, sometimes seconds."""
    size = draw(st.sampled_from(["empty", "tiny", "normal", "normal", "normal", "huge"]))
    if size == "empty":
        return 0
    if size == "tiny":
        return draw(st.integers(1, 8))
    if size == "normal":
        return draw(st.sampled_from([rate // 100, rate // 50, rate // 25]))
    return draw(st.integers(rate, 4 * rate))


@st.composite
def audio_bytes(draw: st.DrawFn, rate: int, channels: int) -> bytes:
    samples = draw(sample_counts(rate))
    # Mostly whole samples, sometimes stray bytes (odd length, half a stereo frame).
    extra = draw(st.sampled_from([0, 0, 0, 0, 1, 2 * channels - 1]))
    return pcm(samples, channels, next_marker(), extra)


audio_formats = st.tuples(st.sampled_from(RATES), st.sampled_from(CHANNELS))
Format = tuple[int, int]


@st.composite
def input_audio_frames(draw: st.DrawFn, formats: list[Format]) -> InputAudioRawFrame:
    rate, channels = draw(st.sampled_from(formats))
    audio = draw(audio_bytes(rate, channels))
    return InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)


@st.composite
def bot_audio_frames(draw: st.DrawFn, formats: list[Format]) -> OutputAudioRawFrame:
    rate, channels = draw(st.sampled_from(formats))
    audio = draw(audio_bytes(rate, channels))
    if draw(st.booleans()):
        frame = TTSAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)
        frame.context_id = draw(st.sampled_from(CONTEXT_IDS))
        return frame
    return OutputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)


@st.composite
def bot_speaking_frames(
    draw: st.DrawFn,
    frame_type: type[BotStartedSpeakingFrame] | type[BotStoppedSpeakingFrame],
    directions: tuple[FrameDirection, ...],
) -> list[tuple[Frame, FrameDirection]]:
    """One copy in one direction, or both broadcast siblings in either order."""
    if len(directions) > 1 and draw(st.booleans()):
        down, up = sibling_pair(frame_type)
        pair = [(down, DOWN), (up, UP)]
        return pair if draw(st.booleans()) else pair[::-1]
    return [(frame_type(), draw(st.sampled_from(directions)))]


Kind = str
_KINDS: tuple[Kind, ...] = (
    *("input_audio", "bot_audio") * 5,
    *("input_run", "bot_run") * 2,
    *("user_started",) * 3,
    *("user_stopped", "interruption", "bot_started", "bot_stopped") * 2,
    "end",
    "stop",
    "cancel",
)
"""Event kinds, repeated by weight."""


@st.composite
def audio_run(
    draw: st.DrawFn, formats: list[Format], *, bot: bool
) -> list[tuple[float, Frame, FrameDirection]]:
    """Up to a second of 20 ms frames in one format, one every 20 ms (a continuous stream)."""
    rate, channels = draw(st.sampled_from(formats))
    context_id = draw(st.sampled_from(CONTEXT_IDS))
    run: list[tuple[float, Frame, FrameDirection]] = []
    for _ in range(draw(st.integers(2, 50))):
        audio = pcm(rate // 50, channels, next_marker())
        frame: AudioRawFrame
        if bot:
            frame = TTSAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)
            frame.context_id = context_id
        else:
            frame = InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels)
        run.append((0.02, frame, DOWN))
    return run


@st.composite
def frames_of_kind(
    draw: st.DrawFn,
    kind: Kind,
    directions: tuple[FrameDirection, ...],
    formats: tuple[list[Format], list[Format]],
) -> list[tuple[float, Frame, FrameDirection]]:
    """The frames of one event, each with the time since the event's previous frame."""
    simple: dict[Kind, Callable[[], Frame]] = {
        "user_started": UserStartedSpeakingFrame,
        "user_stopped": UserStoppedSpeakingFrame,
        "interruption": InterruptionFrame,
        "end": EndFrame,
        "stop": StopFrame,
        "cancel": CancelFrame,
    }
    if kind in simple:
        return [(0.0, simple[kind](), DOWN)]
    if kind == "input_audio":
        return [(0.0, draw(input_audio_frames(formats[0])), DOWN)]
    if kind == "bot_audio":
        # Bot audio travelling upstream (rare) must be passed on and ignored.
        direction = UP if len(directions) > 1 and draw(st.integers(0, 7)) == 7 else DOWN
        return [(0.0, draw(bot_audio_frames(formats[1])), direction)]
    if kind in ("input_run", "bot_run"):
        return draw(audio_run(formats[kind == "bot_run"], bot=kind == "bot_run"))
    frame_type = BotStartedSpeakingFrame if kind == "bot_started" else BotStoppedSpeakingFrame
    return [
        (0.0, frame, direction)
        for frame, direction in draw(bot_speaking_frames(frame_type, directions))
    ]


@st.composite
def step_groups(
    draw: st.DrawFn,
    kinds: tuple[Kind, ...],
    directions: tuple[FrameDirection, ...],
    formats: tuple[list[Format], list[Format]],
) -> list[Step]:
    """One event: a frame, a pair of broadcast siblings or an audio stream, after some time."""
    kind = draw(st.sampled_from(kinds))
    advance = draw(advances)
    frames = draw(frames_of_kind(kind, directions, formats))
    return [
        Step(advance if index == 0 else gap, frame, direction)
        for index, (gap, frame, direction) in enumerate(frames)
    ]


@st.composite
def scripts(
    draw: st.DrawFn,
    *,
    max_steps: int = 40,
    kinds: tuple[Kind, ...] = _KINDS,
    directions: tuple[FrameDirection, ...] = (DOWN, UP),
    preroll_choices: tuple[float, ...] = (0.0, 0.1, 0.25),
    max_segment_choices: tuple[float, ...] = (0.25, 0.5, 1.0),
) -> Script:
    """Random frame scripts: any frame kind, any order, any direction, any time between.

    ``preroll_s`` never exceeds ``max_segment_s`` here; scripts that break that rule have their
    own test.
    """
    max_segment_s = draw(st.sampled_from(max_segment_choices))
    preroll_s = draw(st.sampled_from([p for p in preroll_choices if p <= max_segment_s]))
    # A few formats per call and speaker, so that turns run long enough in one format to reach
    # the cap, and still change format now and then.
    palettes = st.lists(audio_formats, min_size=1, max_size=3, unique=True)
    formats = (draw(palettes), draw(palettes))
    groups = draw(st.lists(step_groups(kinds, directions, formats), min_size=3, max_size=max_steps))
    steps = [step for group in groups for step in group]
    return Script(steps=steps, preroll_s=preroll_s, max_segment_s=max_segment_s)
