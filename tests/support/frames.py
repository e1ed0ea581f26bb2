"""Frame-script helpers: synthetic audio and a real output transport that plays in real time."""

import asyncio

import numpy as np
from pipecat.frames.frames import (
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

USER_RATE = 16000
BOT_RATE = 24000
FRAME_S = 0.02


def tone(seconds: float, rate: int, *, value: int = 1000, channels: int = 1) -> bytes:
    """A constant (non-silent) 16-bit signal; ``value`` marks where it came from."""
    samples = np.full(round(seconds * rate) * channels, value, dtype="<i2")
    return samples.tobytes()


def mic_frames(
    seconds: float, *, value: int = 1000, rate: int = USER_RATE
) -> list[InputAudioRawFrame]:
    """``seconds`` of microphone audio in 20 ms frames."""
    count = round(seconds / FRAME_S)
    return [
        InputAudioRawFrame(audio=tone(FRAME_S, rate, value=value), sample_rate=rate, num_channels=1)
        for _ in range(count)
    ]


def tts_frames(
    seconds: float, *, value: int = 2000, rate: int = BOT_RATE, context_id: str | None = "ctx-1"
) -> list[TTSAudioRawFrame]:
    """``seconds`` of TTS audio in 40 ms frames, as a TTS service yields it."""
    count = round(seconds / 0.04)
    frames = []
    for _ in range(count):
        frame = TTSAudioRawFrame(
            audio=tone(0.04, rate, value=value), sample_rate=rate, num_channels=1
        )
        frame.context_id = context_id
        frames.append(frame)
    return frames


class PacedOutputTransport(BaseOutputTransport):
    """A real ``BaseOutputTransport`` whose device plays each chunk in real time.

    ``played`` keeps the bytes written, so a test can compare a recording with what was heard.
    """

    def __init__(self, *, sample_rate: int = BOT_RATE, **kwargs) -> None:
        super().__init__(
            TransportParams(
                audio_out_enabled=True,
                audio_out_sample_rate=sample_rate,
                audio_out_end_silence_secs=0,
            ),
            **kwargs,
        )
        self.played = bytearray()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        await asyncio.sleep(len(frame.audio) / (frame.sample_rate * 2 * frame.num_channels))
        self.played.extend(frame.audio)
        return True
