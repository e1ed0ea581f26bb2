"""Output transports for tests: real time, slower than real time, and jittery bursts.

Each is a Pipecat ``BaseOutputTransport`` whose ``write_audio_frame`` takes as long as its pacing
says and logs every write (when it began, when it returned, what it wrote), and notes what it had
written when an ``InterruptionFrame`` reached it.
"""

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

Pace = Callable[[float], float]
"""How long writing a chunk of the given duration takes, in seconds."""


def real_time(seconds: float) -> float:
    return seconds


def slow(seconds: float) -> float:
    """1/1.3 of real time: a starved CPU or a slow network sink."""
    return seconds * 1.3


def jittery(seed: int = 7) -> Pace:
    """Irregular bursts that keep real time on average: most chunks go at once, some wait."""
    draw = random.Random(seed)
    return lambda seconds: seconds * draw.choice((0.1, 0.1, 0.4, 2.4))


PACES: dict[str, Callable[[], Pace]] = {
    "real_time": lambda: real_time,
    "slow_1.3x": lambda: slow,
    "jittery": jittery,
}


@dataclass
class Write:
    """One call of ``write_audio_frame``: monotonic start and end, and the audio."""

    began: float
    ended: float
    audio: bytes


@dataclass
class Interruption:
    """What the transport had finished writing when an ``InterruptionFrame`` reached it."""

    at: float
    writes_done: int


@dataclass
class WriteLog:
    writes: list[Write] = field(default_factory=list)
    interruptions: list[Interruption] = field(default_factory=list)


class PacedOutput(BaseOutputTransport):
    """An output transport whose writes take as long as ``pace`` says."""

    def __init__(self, pace: Pace, *, sample_rate: int, takes_audio: bool = True, **kwargs) -> None:
        super().__init__(
            TransportParams(audio_out_enabled=True, audio_out_sample_rate=sample_rate), **kwargs
        )
        self._pace = pace
        self._takes_audio = takes_audio
        self.log = WriteLog()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            self.log.interruptions.append(Interruption(time.monotonic(), len(self.log.writes)))
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if not isinstance(frame, TTSAudioRawFrame):
            return True  # the end-of-call silence
        began = time.monotonic()
        seconds = len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
        await asyncio.sleep(self._pace(seconds))
        if not self._takes_audio:
            return False  # a peer that stopped reading: nothing was written
        self.log.writes.append(Write(began, time.monotonic(), frame.audio))
        return True
