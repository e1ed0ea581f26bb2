"""Scripted stand-ins for a voice bot's microphone, STT, LLM, TTS and speaker.

Each is built on the Pipecat base class a real one would use, so the frames, their order and their
timing between them are Pipecat's own; only what is heard and said comes from the script.
Timestamps are seconds on the pipeline clock (``FrameProcessor.get_clock()``), the clock observers
and ``FramePushed.timestamp`` use.
"""

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.utils.time import time_now_iso8601

from pipecat_audio_capture.demo.script import BOT_SAMPLE_RATE, USER_SAMPLE_RATE, CallScript
from pipecat_audio_capture.errors import InvalidArgumentError

MIC_FRAME_S = 0.02
"""The microphone sends 20 ms frames, as WebRTC and telephony transports do."""

_SAMPLE_BYTES = 2


def _normalize(text: str) -> str:
    """Collapse whitespace, so a sentence matches however the text around it was spaced."""
    return " ".join(text.split())


def _clock_s(processor: FrameProcessor) -> float:
    """Return the pipeline clock of ``processor`` in seconds."""
    return processor.get_clock().get_time() / 1e9


class _Pacer:
    """Sleeps so that media goes out at ``speed`` times real time without drifting."""

    def __init__(self, speed: float, *, resync_after_gaps: bool):
        """Initialize the pacer.

        Args:
            speed: How many times faster than real time the media goes out.
            resync_after_gaps: Whether falling behind by more than the piece of media being sent
                restarts the schedule from now. A speaker needs this: between turns nothing is
                sent, and that pause must not be made up for by playing the next turn faster. A
                microphone never pauses, so it always catches up, as a capture device that
                delivers late frames in a burst does.
        """
        self._speed = speed
        self._resync_after_gaps = resync_after_gaps
        self._deadline: float | None = None

    async def wait(self, media_s: float) -> None:
        """Sleep until ``media_s`` seconds of media after the previous deadline have passed."""
        duration = media_s / self._speed
        now = time.monotonic()
        if self._deadline is None or (self._resync_after_gaps and now - self._deadline > duration):
            self._deadline = now
        self._deadline += duration
        await asyncio.sleep(self._deadline - now)


@dataclass
class SpokenUtterance:
    """One utterance as the simulated caller spoke it (the ground truth for the user's audio).

    Parameters:
        index: Position of the utterance in the script.
        text: What was said.
        started_at: When its first 20 ms frame was sent (seconds on the pipeline clock).
        ended_at: When its last frame had been sent, or None if the call ended first.
    """

    index: int
    text: str
    started_at: float
    ended_at: float | None = None


@dataclass
class PlayedChunk:
    """Bot audio the speaker played.

    Parameters:
        t: When playing it began (seconds on the pipeline clock).
        audio: 16-bit mono PCM at the speaker's sample rate.
    """

    t: float
    audio: bytes


class ScriptedMicrophone(BaseInputTransport):
    """The caller's microphone: silence, with the script's utterances at their cues.

    Streams 20 ms ``InputAudioRawFrame``s at 16 kHz, paced at ``speed`` times real time. The cues
    follow the bot as the caller would: it counts the bot's turns from the upstream
    ``BotStartedSpeakingFrame`` / ``BotStoppedSpeakingFrame`` of the output transport (turn 0 is
    the greeting) and speaks utterance ``i`` once bot turn ``i`` has ended and the line's
    ``pause_s`` has passed, or, for a barge-in, ``barge_in_s`` after bot turn ``i`` started.
    Pauses are counted in audio frames, so they mean the same at any speed.

    When the script is done (see ``CallScript.hangup_after_s``), :attr:`finished` is set; the
    microphone keeps streaming silence until the pipeline ends, as a connected caller would.
    """

    def __init__(
        self,
        *,
        script: CallScript,
        audio: Sequence[bytes],
        speed: float = 1.0,
        params: TransportParams | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize the microphone.

        Args:
            script: The call; its user lines give the cues.
            audio: The recording of each user line, 16 kHz mono 16-bit PCM, in script order.
            speed: How many times faster than real time to stream.
            params: Transport parameters; by default 16 kHz mono audio input.
            **kwargs: Passed to ``BaseInputTransport``.
        """
        if len(audio) != len(script.user_lines):
            raise InvalidArgumentError(
                f"{len(script.user_lines)} user lines but {len(audio)} recordings"
            )
        super().__init__(
            params or TransportParams(audio_in_enabled=True, audio_in_sample_rate=USER_SAMPLE_RATE),
            **kwargs,
        )
        self._script = script
        self._audio = audio
        self._pacer = _Pacer(speed, resync_after_gaps=False)
        self._frame_bytes = int(USER_SAMPLE_RATE * MIC_FRAME_S) * _SAMPLE_BYTES
        self._frames_sent = 0
        # The frame count at which each bot turn started / stopped, in turn order.
        self._bot_started: list[int] = []
        self._bot_stopped: list[int] = []
        self._stream_task: asyncio.Task[None] | None = None
        self.utterances: list[SpokenUtterance] = []
        self.finished = asyncio.Event()

    async def start(self, frame: StartFrame) -> None:
        """Start streaming once the pipeline has started.

        Args:
            frame: The start frame.
        """
        await super().start(frame)
        await self.set_transport_ready(frame)
        if not self._stream_task:
            self._stream_task = self.create_task(self._stream())

    async def stop(self, frame: EndFrame) -> None:
        """Stop streaming at the end of the call.

        Args:
            frame: The end frame.
        """
        await self._stop_streaming()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        """Stop streaming at once.

        Args:
            frame: The cancel frame.
        """
        await self._stop_streaming()
        await super().cancel(frame)

    async def cleanup(self) -> None:
        """Stop streaming if the pipeline is torn down without ending."""
        await self._stop_streaming()
        # Pipecat leaves BaseInputTransport.cleanup() unannotated.
        await super().cleanup()  # type: ignore[no-untyped-call]

    async def _stop_streaming(self) -> None:
        if self._stream_task:
            await self.cancel_task(self._stream_task)
            self._stream_task = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Follow the bot's turns, which the output transport reports upstream.

        Args:
            frame: The frame to process.
            direction: The direction of frame flow in the pipeline.
        """
        await super().process_frame(frame, direction)
        if direction == FrameDirection.UPSTREAM:
            if isinstance(frame, BotStartedSpeakingFrame):
                self._bot_started.append(self._frames_sent)
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._bot_stopped.append(self._frames_sent)

    async def _stream(self) -> None:
        lines = self._script.user_lines
        for index, (line, pcm) in enumerate(zip(lines, self._audio, strict=True)):
            if line.barge_in_s is None:
                await self._silence_until(self._bot_stopped, index, line.pause_s)
            else:
                await self._silence_until(self._bot_started, index, line.barge_in_s)
            logger.debug(f"{self}: caller says [{line.text}]")
            utterance = SpokenUtterance(
                index, line.text, await self._send(pcm[: self._frame_bytes])
            )
            self.utterances.append(utterance)
            for offset in range(self._frame_bytes, len(pcm), self._frame_bytes):
                await self._send(pcm[offset : offset + self._frame_bytes])
            utterance.ended_at = _clock_s(self)
        if self._script.hangup_after_s is None:
            await self._silence_until(self._bot_stopped, len(lines), self._script.tail_s)
        else:
            await self._silence_until(self._bot_started, len(lines), self._script.hangup_after_s)
        logger.debug(f"{self}: script finished")
        self.finished.set()
        while True:
            await self._send(b"")

    async def _silence_until(self, bot_events: list[int], turn: int, delay_s: float) -> None:
        """Send silence until bot turn ``turn`` has had the event, then ``delay_s`` more."""
        while len(bot_events) <= turn:
            await self._send(b"")
        target = bot_events[turn] + round(delay_s / MIC_FRAME_S)
        while self._frames_sent < target:
            await self._send(b"")

    async def _send(self, audio: bytes) -> float:
        """Send one frame of audio, padded with silence to the full frame.

        Returns:
            When it was sent (seconds on the pipeline clock).
        """
        await self._pacer.wait(MIC_FRAME_S)
        sent_at = _clock_s(self)
        audio = audio.ljust(self._frame_bytes, b"\x00")
        await self.push_audio_frame(InputAudioRawFrame(audio, USER_SAMPLE_RATE, 1))
        self._frames_sent += 1
        return sent_at


class ScriptedSTTService(SegmentedSTTService):
    """Speech-to-text that "recognises" the script: the n-th speech segment is the n-th line.

    ``SegmentedSTTService`` cuts segments at the VAD's stop, so this relies on each user
    recording being one VAD segment (see ``UserLine.text``). Transcripts are final and instant.
    """

    def __init__(self, *, transcripts: Sequence[str], **kwargs: Any) -> None:
        """Initialize the service.

        Args:
            transcripts: What each speech segment says, in order.
            **kwargs: Passed to ``SegmentedSTTService``; ``ttfs_p99_latency`` defaults to 0
                because the transcript is ready as soon as the segment ends.
        """
        kwargs.setdefault("ttfs_p99_latency", 0.0)
        kwargs.setdefault("settings", STTSettings(model=None, language=None))
        super().__init__(**kwargs)
        self._transcripts = list(transcripts)
        self._segments = 0

    @property
    def wants_wav_segments(self) -> bool:
        """Take raw PCM: the audio is not decoded anyway."""
        return False

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Return the scripted text of the segment just heard.

        Args:
            audio: The segment's PCM (only its length is used, for the log).

        Yields:
            A final ``TranscriptionFrame``, or nothing for a segment beyond the script.
        """
        index = self._segments
        self._segments += 1
        seconds = len(audio) / (self.sample_rate * _SAMPLE_BYTES)
        if index >= len(self._transcripts):
            logger.warning(f"{self}: speech segment {index} ({seconds:.2f} s) is not in the script")
            return
        text = self._transcripts[index]
        logger.debug(f"{self}: segment {index} ({seconds:.2f} s) -> [{text}]")
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), finalized=True)


class ScriptedLLM(FrameProcessor):
    """An LLM that answers the n-th user message of the context with the n-th scripted answer.

    Answers an ``LLMContextFrame`` as Pipecat's LLM services do: ``LLMFullResponseStartFrame``,
    the answer as word-sized ``LLMTextFrame`` tokens, ``LLMFullResponseEndFrame``; with metrics
    enabled it reports its time to first token as a TTFB metric, as they do.
    """

    def __init__(
        self, *, answers: Sequence[str], first_token_delay_s: float = 0.0, **kwargs: Any
    ) -> None:
        """Initialize the LLM.

        Args:
            answers: The answer to the first, second, ... user message.
            first_token_delay_s: Time to first token, as a real LLM takes.
            **kwargs: Passed to ``FrameProcessor``.
        """
        super().__init__(**kwargs)
        self._answers = list(answers)
        self._first_token_delay_s = first_token_delay_s

    def can_generate_metrics(self) -> bool:
        """Report TTFB metrics (when the pipeline enables metrics).

        Returns:
            True.
        """
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Answer context frames; pass everything else on.

        Args:
            frame: The frame to process.
            direction: The direction of frame flow in the pipeline.
        """
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context)
        else:
            await self.push_frame(frame, direction)

    async def _answer(self, context: LLMContext) -> None:
        # Counting the user's messages, not the context frames, keeps the answer right when a
        # context frame is pushed for another reason (e.g. an empty user turn's recovery).
        user_messages = sum(
            1
            for message in context.get_messages()
            if isinstance(message, dict) and message.get("role") == "user"
        )
        if not 0 < user_messages <= len(self._answers):
            logger.warning(f"{self}: no scripted answer to user message {user_messages}")
            return
        answer = self._answers[user_messages - 1]
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        await asyncio.sleep(self._first_token_delay_s)
        await self.stop_ttfb_metrics()
        for token in re.findall(r"\s*\S+", answer):
            await self.push_frame(LLMTextFrame(token))
        await self.push_frame(LLMFullResponseEndFrame())


class ScriptedTTSService(TTSService):
    """Text-to-speech that plays back the recording of each sentence it is asked to say.

    Like an HTTP TTS service, it yields the whole sentence's audio at once (in ``chunk_ms``
    chunks, as fast as it is consumed) and leaves the pacing to the output transport. With
    Pipecat's default ``push_text_frames``, the ``TTSTextFrame`` of a sentence follows its audio to
    the output transport, so the assistant transcript holds only sentences that finished playing.
    """

    def __init__(
        self, *, recordings: Mapping[str, bytes], chunk_ms: int = 40, **kwargs: Any
    ) -> None:
        """Initialize the service.

        Args:
            recordings: The 24 kHz mono 16-bit PCM of each sentence, by sentence.
            chunk_ms: Size of the audio frames yielded.
            **kwargs: Passed to ``TTSService``.
        """
        kwargs.setdefault("settings", TTSSettings(model=None, voice=None, language=None))
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=BOT_SAMPLE_RATE,
            **kwargs,
        )
        self._recordings = {_normalize(text): pcm for text, pcm in recordings.items()}
        self._chunk_bytes = BOT_SAMPLE_RATE * chunk_ms // 1000 * _SAMPLE_BYTES

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Yield the recording of ``text``.

        Args:
            text: What to say: one sentence, or several (a ``TTSSpeakFrame`` is not split).
            context_id: The audio context the frames belong to.

        Yields:
            ``TTSAudioRawFrame`` chunks, or an ``ErrorFrame`` if some of the text has no recording.
        """
        pcm = self._recording_of(_normalize(text))
        if pcm is None:
            yield ErrorFrame(error=f"{self}: no recording of [{text}]")
            return
        for offset in range(0, len(pcm), self._chunk_bytes):
            chunk = pcm[offset : offset + self._chunk_bytes]
            yield TTSAudioRawFrame(chunk, BOT_SAMPLE_RATE, 1, context_id=context_id)

    def _recording_of(self, text: str) -> bytes | None:
        """Return the recordings of the sentences ``text`` is made of, joined, or None."""
        if not text:
            return b""
        for sentence, pcm in self._recordings.items():
            if text == sentence or text.startswith(sentence + " "):
                rest = self._recording_of(text[len(sentence) :].lstrip())
                if rest is not None:
                    return pcm + rest
        return None


class SimulatedSpeaker(BaseOutputTransport):
    """The caller's loudspeaker: takes each audio chunk as long as it takes to play.

    ``write_audio_frame`` returns once the chunk has "played" (its duration divided by
    ``speed``), as a transport writing to a sound card or a paced network stream does, and keeps
    the bot audio it played in :attr:`played`.
    """

    def __init__(
        self, *, speed: float = 1.0, params: TransportParams | None = None, **kwargs: Any
    ) -> None:
        """Initialize the speaker.

        Args:
            speed: How many times faster than real time to play.
            params: Transport parameters; by default 24 kHz mono audio output.
            **kwargs: Passed to ``BaseOutputTransport``.
        """
        super().__init__(
            params
            or TransportParams(audio_out_enabled=True, audio_out_sample_rate=BOT_SAMPLE_RATE),
            **kwargs,
        )
        self._pacer = _Pacer(speed, resync_after_gaps=True)
        self.played: list[PlayedChunk] = []

    async def start(self, frame: StartFrame) -> None:
        """Start the media senders.

        Args:
            frame: The start frame.
        """
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        """Play one chunk.

        Args:
            frame: The audio to play; only TTS audio is kept (not the end-of-call silence).

        Returns:
            True: the chunk was played.
        """
        if isinstance(frame, TTSAudioRawFrame):
            self.played.append(PlayedChunk(_clock_s(self), frame.audio))
        await self._pacer.wait(len(frame.audio) / (frame.sample_rate * frame.num_channels * 2))
        return True
