"""A scripted call: the frames the capture processor sees between TTS and the output transport.

The microphone is always on (an ``InputAudioRawFrame`` at 16 kHz every 20 ms). User turns are
``UserStartedSpeakingFrame`` + ``InterruptionFrame`` (Pipecat broadcasts one at every user turn
start) ... ``UserStoppedSpeakingFrame``. Each bot reply arrives as a TTS burst (a whole reply of
20 ms ``TTSAudioRawFrame``s at 24 kHz within one step, as TTS outruns playback), the output
transport's upstream ``BotStartedSpeakingFrame`` one step later and its
``BotStoppedSpeakingFrame`` when the reply has played. Every third reply is cut by a barge-in:
``UserStartedSpeakingFrame``, ``InterruptionFrame`` and the upstream ``BotStoppedSpeakingFrame``
in the same step.
"""

import enum
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
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
from pipecat.processors.frame_processor import FrameDirection

FRAME_S = 0.02
USER_RATE = 16000
BOT_RATE = 24000
USER_FRAME_BYTES = round(USER_RATE * FRAME_S) * 2
BOT_FRAME_BYTES = round(BOT_RATE * FRAME_S) * 2

SCRIPT_FRAME_TYPES = (
    InputAudioRawFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    InterruptionFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
)
"""Every frame type a script contains, so a harness can count them where they leave a pipeline."""

_DOWN = FrameDirection.DOWNSTREAM
_UP = FrameDirection.UPSTREAM
_BARGE_IN_EVERY = 3
_TONE = (np.sin(np.arange(4096) * 0.05) * 8000).astype("<i2").tobytes()

Routed = tuple[Frame, FrameDirection]


class Cue(enum.Enum):
    """What happens in the call at one step."""

    USER_STARTED = "user started"
    BARGE_IN = "user started while the bot spoke"
    USER_STOPPED = "user stopped"
    BOT_REPLY = "TTS burst of a reply"
    BOT_STARTED = "bot started playing"
    BOT_STOPPED = "bot finished playing"


@dataclass(frozen=True)
class Tick:
    """The frames that reach the processor during one 20 ms step of the call.

    Parameters:
        at: Seconds since the call started.
        frames: The frames, each with the direction it travels.
    """

    at: float
    frames: list[Routed]


def call_ticks(seconds: float, seed: int) -> Iterator[Tick]:
    """Yield the steps of a call lasting ``seconds``, built lazily; the same seed, the same call.

    Every frame carries its own audio buffer, as frames from a transport or a TTS service do.
    """
    rng = random.Random(seed)
    total = round(seconds / FRAME_S)
    cues = plan_call(total, rng)
    for index in range(total):
        yield Tick(at=index * FRAME_S, frames=_frames_for(index, cues.get(index, [])))


def plan_call(total: int, rng: random.Random) -> dict[int, list[tuple[Cue, int]]]:
    """Place the call's turns on its steps.

    User turns last 1.5-5 s, the bot answers 0.4-1 s later with a 2-8 s reply, and the user
    speaks again 0.5-1.5 s after it ends, or barges in 30-70 % into every third reply.

    Returns:
        The cues of each step that has any, each with its reply length in steps (or 0).
    """
    cues: dict[int, list[tuple[Cue, int]]] = defaultdict(list)
    step = _steps(rng, 0.5, 6.0)
    barge_in = False
    exchange = 0
    while step < total:
        cues[step].append((Cue.BARGE_IN if barge_in else Cue.USER_STARTED, 0))
        step += _steps(rng, 1.5, 5.0)
        cues[step].append((Cue.USER_STOPPED, 0))
        step += _steps(rng, 0.4, 1.0)
        reply = _steps(rng, 2.0, 8.0)
        cues[step].append((Cue.BOT_REPLY, reply))
        cues[step + 1].append((Cue.BOT_STARTED, 0))
        exchange += 1
        barge_in = exchange % _BARGE_IN_EVERY == 0
        if barge_in:
            step += 1 + round(reply * rng.uniform(0.3, 0.7))
        else:
            step += 1 + reply
            cues[step].append((Cue.BOT_STOPPED, 0))
            step += _steps(rng, 0.5, 1.5)
    return cues


def pcm(nbytes: int) -> bytes:
    """A fresh buffer of ``nbytes`` of a non-silent 16-bit tone (at most 8 KiB)."""
    return _TONE[:nbytes]


def mic_frame() -> InputAudioRawFrame:
    """20 ms of microphone audio at 16 kHz."""
    return InputAudioRawFrame(audio=pcm(USER_FRAME_BYTES), sample_rate=USER_RATE, num_channels=1)


def _steps(rng: random.Random, low_s: float, high_s: float) -> int:
    """A random duration between the bounds, in 20 ms steps (at least one)."""
    return max(1, round(rng.uniform(low_s, high_s) / FRAME_S))


def _frames_for(index: int, cues: list[tuple[Cue, int]]) -> list[Routed]:
    """The frames of step ``index``: control frames, the mic frame, a TTS burst."""
    frames: list[Routed] = []
    burst: list[Routed] = []
    for cue, reply in cues:
        if cue is Cue.BOT_REPLY:
            burst = _tts_burst(reply, f"reply-{index}")
        else:
            frames += _control_frames(cue)
    frames.append((mic_frame(), _DOWN))
    return frames + burst


def _control_frames(cue: Cue) -> list[Routed]:
    """The frames a non-audio cue sends."""
    if cue is Cue.USER_STARTED:
        return [(UserStartedSpeakingFrame(), _DOWN), (InterruptionFrame(), _DOWN)]
    if cue is Cue.BARGE_IN:
        return [
            (UserStartedSpeakingFrame(), _DOWN),
            (InterruptionFrame(), _DOWN),
            (BotStoppedSpeakingFrame(), _UP),
        ]
    if cue is Cue.USER_STOPPED:
        return [(UserStoppedSpeakingFrame(), _DOWN)]
    if cue is Cue.BOT_STARTED:
        return [(BotStartedSpeakingFrame(), _UP)]
    return [(BotStoppedSpeakingFrame(), _UP)]


def _tts_burst(steps: int, context_id: str) -> list[Routed]:
    """A whole reply of TTS audio, in 20 ms frames of one context."""
    return [
        (
            TTSAudioRawFrame(
                audio=pcm(BOT_FRAME_BYTES),
                sample_rate=BOT_RATE,
                num_channels=1,
                context_id=context_id,
            ),
            _DOWN,
        )
        for _ in range(steps)
    ]
