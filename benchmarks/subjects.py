"""The processors compared, and how to drive one without a pipeline.

(a) a pass-through ``FrameProcessor``, the floor of any processor; (b) ``AudioCaptureProcessor``
with an in-memory collector (in its default direct mode; (b') the same in Pipecat's queued mode);
(e) a pass-through in direct mode, the floor of any processor added in direct mode;
(c) Pipecat's ``AudioBufferProcessor(enable_turn_audio=True)``, recording from the start, its
turn audio kept in a list; (d) the floor of any per-turn recorder: a pass-through that copies
each audio frame's bytes once into a buffer, and lets the buffer go at each turn end.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    AudioRawFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    StartFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.turn_tracking_observer import TurnTrackingObserver
from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor, TurnAudioData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from pipecat_audio_capture import AudioCaptureProcessor, TurnIds
from pipecat_audio_capture.testing import InMemoryAudioCollector

PASS_THROUGH = "a pass-through"
CAPTURE = "b AudioCaptureProcessor"
AUDIO_BUFFER = "c AudioBufferProcessor"
COPY_FLOOR = "d pass-through + one copy, per turn"
CAPTURE_QUEUED = "b' AudioCaptureProcessor, queued mode"
PASS_THROUGH_DIRECT = "e pass-through, direct mode"
VARIANTS = (PASS_THROUGH, CAPTURE, AUDIO_BUFFER, COPY_FLOOR)
PIPELINE_VARIANTS = (*VARIANTS, CAPTURE_QUEUED, PASS_THROUGH_DIRECT)

_TURN_ENDS = (UserStoppedSpeakingFrame, BotStoppedSpeakingFrame, InterruptionFrame)


class PassThrough(FrameProcessor):
    """Passes every frame on: the cost of being a processor at all."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass the frame on unchanged."""
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class CopyFloor(FrameProcessor):
    """A pass-through that copies the audio of every frame once and lets it go at each turn
    end: the least a per-turn recorder does."""

    def __init__(self) -> None:
        """Start with an empty buffer."""
        super().__init__()
        self.buffer = bytearray()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Copy the frame's audio into the buffer, and pass the frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, AudioRawFrame):
            self.buffer += frame.audio
        elif isinstance(frame, _TURN_ENDS):
            self.buffer = bytearray()
        await self.push_frame(frame, direction)


@dataclass
class Subject:
    """A processor under test and a count of the recordings it handed out.

    Parameters:
        processor: The processor.
        produced: Returns how many segments (b) or turn recordings (c) it produced so far.
    """

    processor: FrameProcessor
    produced: Callable[[], int]


def build(variant: str, *, turn_clock: Callable[[], float] = time.monotonic) -> Subject:
    """A fresh processor of ``variant``; ``turn_clock`` is the capture's ``TurnIds`` clock."""
    if variant in (PASS_THROUGH, PASS_THROUGH_DIRECT):
        return Subject(PassThrough(enable_direct_mode=variant == PASS_THROUGH_DIRECT), lambda: 0)
    if variant in (CAPTURE, CAPTURE_QUEUED):
        collector = InMemoryAudioCollector()
        processor = AudioCaptureProcessor(
            collector, TurnIds(clock=turn_clock), enable_direct_mode=variant == CAPTURE
        )
        return Subject(processor, lambda: len(collector.segments))
    if variant == AUDIO_BUFFER:
        turns: list[TurnAudioData] = []
        return Subject(audio_buffer_processor(turns), lambda: len(turns))
    if variant == COPY_FLOOR:
        return Subject(CopyFloor(), lambda: 0)
    raise ValueError(f"unknown variant {variant!r}")


def audio_buffer_processor(turns: list[TurnAudioData]) -> AudioBufferProcessor:
    """An ``AudioBufferProcessor`` recording from the start that keeps each turn's audio."""
    processor = AudioBufferProcessor(enable_turn_audio=True, auto_start_recording=True)

    async def keep(_: AudioBufferProcessor, turn: TurnAudioData) -> None:
        turns.append(turn)

    processor.add_event_handler("on_user_turn_audio", keep)
    processor.add_event_handler("on_bot_turn_audio", keep)
    return processor


async def start_unlinked(processor: FrameProcessor, tracker: TurnTrackingObserver) -> None:
    """Set a processor up outside any pipeline and send it the ``StartFrame``.

    ``push_frame`` is replaced by a no-op coroutine (an unlinked processor has nowhere to push),
    so calling ``process_frame`` in a loop measures the processor alone. The stub worker
    carries a real turn tracker, which ``AudioBufferProcessor`` needs for its turn audio; the
    caller feeds the tracker the turn frames, as a pipeline's observers would.
    """
    worker = SimpleNamespace(turn_tracking_observer=tracker)
    setup = FrameProcessorSetup(
        clock=SystemClock(),
        task_manager=TaskManager(),
        pipeline_worker=worker,  # type: ignore[arg-type]
    )
    await processor.setup(setup)
    processor.push_frame = _discard  # type: ignore[method-assign]
    await processor.process_frame(StartFrame(), FrameDirection.DOWNSTREAM)


async def _discard(frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
    """Stands in for ``push_frame`` of an unlinked processor."""
