"""The processor that tells the capture what the output transport actually wrote."""

from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    StopFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

_REPORTED = (
    OutputAudioRawFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    EndFrame,
    StopFrame,
    CancelFrame,
)


class PlaybackTap(FrameProcessor):
    """Sits right after ``transport.output()`` and reports what leaves it to the capture.

    Pipecat's output transport pushes each audio chunk downstream only once
    ``write_audio_frame`` returned True, so the chunks seen here are exactly what was written,
    when it was written. Get one from
    :meth:`~pipecat_audio_capture.AudioCaptureProcessor.playback_tap`. It runs in direct mode
    (in the transport's own task, no queue of its own): each report reaches the capture as the
    transport pushes the frame, and the frame is then passed on unchanged.
    """

    def __init__(
        self,
        started: Callable[[], None],
        played: Callable[[Frame], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        """Initialize the tap.

        Args:
            started: Called when the pipeline starts: from then on, playback is confirmed.
            played: Receives each downstream frame the capture cares about.
            **kwargs: Passed to ``FrameProcessor``.
        """
        kwargs.setdefault("enable_direct_mode", True)
        super().__init__(**kwargs)
        self._started = started
        self._played = played

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Report the frame if it tells what was played, then pass it on.

        Args:
            frame: The frame to process.
            direction: The direction of frame flow.
        """
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            if isinstance(frame, StartFrame):
                self._started()
            elif isinstance(frame, _REPORTED):
                await self._played(frame)
        await self.push_frame(frame, direction)
