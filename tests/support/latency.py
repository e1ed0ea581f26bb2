"""Builders for the latency tests: breakdown records, the frames of one response, and a whole
simulated call recorded with Pipecat's latency observer attached."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    CompositeAudioStorage,
    LatencyRecorder,
    LocalAudioStorage,
    SessionAudioCapture,
    SQLiteAudioMetaStorage,
    TranscriptRecorder,
)
from pipecat_audio_capture.demo import CallResult, run_simulated_call
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import LatencyStage, TurnLatencyRecord
from pipecat_audio_capture.turn_ids import TurnIds

from support.index import at

CLOSE_TIMEOUT_S = 10.0


@dataclass
class LatencyCall:
    """A simulated call recorded with its latency: its id, what happened, and the recorder."""

    session_id: str
    result: CallResult
    recorder: LatencyRecorder


async def record_call_with_latency(
    index: SQLiteAudioMetaStorage, recordings: Path, *, speed: float, timeout_s: float = 60.0
) -> LatencyCall:
    """Run the demo's simulated call with the audio processor, the transcript recorder and a
    latency recorder on ``UserBotLatencyObserver`` (metrics on), all writing to ``index``."""
    session_id = new_id()
    turn_ids = TurnIds()
    capture = SessionAudioCapture(
        session_id, CompositeAudioStorage(files=LocalAudioStorage(recordings), metadata=index)
    )
    transcripts = TranscriptRecorder(session_id, turn_ids, store=index)
    latency = LatencyRecorder(session_id, turn_ids, store=index)

    def attach(user: LLMUserAggregator, assistant: LLMAssistantAggregator) -> None:
        transcripts.attach(user, assistant)

    result = await run_simulated_call(
        speed=speed,
        recorder_processors=[AudioCaptureProcessor(capture, turn_ids)],
        on_aggregators=attach,
        observers=[latency.attach(UserBotLatencyObserver())],
        enable_metrics=True,
        timeout_s=timeout_s,
    )
    await capture.close(timeout_s=CLOSE_TIMEOUT_S)
    await transcripts.close(timeout_s=CLOSE_TIMEOUT_S)
    await latency.close(timeout_s=CLOSE_TIMEOUT_S)
    return LatencyCall(session_id, result, latency)


def stage(stage: str, owner: str, offset_ms: float, duration_ms: float) -> LatencyStage:
    return LatencyStage(
        stage=stage,
        label=stage.replace("_", " "),
        owner=owner,
        owner_kind="service",
        offset_ms=offset_ms,
        duration_ms=duration_ms,
    )


STAGES = (
    stage("endpointing_wait", "config: VAD stop_secs", 0.0, 200.0),
    stage("transcription", "DeepgramSTTService#0", 200.0, 125.5),
    stage("turn_detection", "config: user turn strategies", 325.5, 300.0),
    stage("llm_inference", "OpenAILLMService#0", 625.5, 812.25),
    # A key this version has no column for: it goes to other_ms.
    stage("quantum_wait", "FutureService#0", 1437.75, 40.0),
    stage("speech_synthesis", "CartesiaTTSService#0", 1477.75, 359.0),
    stage("pipeline", "pipecat", 0.0, 12.0),
)
TOTAL_MS = sum(stage.duration_ms for stage in STAGES)


def make_latency(
    session_id: str,
    turn_id: str,
    *,
    bot_ms: float = 5000.0,
    stages: tuple[LatencyStage, ...] = STAGES,
) -> TurnLatencyRecord:
    total_ms = sum(stage.duration_ms for stage in stages)
    return TurnLatencyRecord(
        session_id=session_id,
        turn_id=turn_id,
        measured_from="user_silence",
        started_at=at(bot_ms - total_ms),
        bot_started_at=at(bot_ms),
        total_ms=total_ms,
        user_turn_ms=625.5,
        stages=stages,
    )


STOP_SECS = 0.2


class Pipeline:
    """The frames a cascaded bot pushes in one response, as Pipecat's observer sees them."""

    def __init__(self, observer: UserBotLatencyObserver) -> None:
        self.observer = observer
        self.stt = FrameProcessor(name="STT#0")
        self.llm = FrameProcessor(name="LLM#0")
        self.tts = FrameProcessor(name="TTS#0")
        self.transport = FrameProcessor(name="Transport#0")

    async def push(self, frame: Frame, source: FrameProcessor) -> None:
        await self.observer.on_push_frame(
            FramePushed(
                source=source,
                destination=source,
                frame=frame,
                direction=FrameDirection.DOWNSTREAM,
                timestamp=0,
            )
        )

    async def user_speaks_and_falls_silent(self) -> None:
        await self.push(VADUserStartedSpeakingFrame(), self.transport)
        # 0.3 s of speech, then the VAD says the user stopped STOP_SECS after the last word.
        await asyncio.sleep(0.3 + STOP_SECS)
        await self.push(VADUserStoppedSpeakingFrame(stop_secs=STOP_SECS), self.transport)

    async def bot_prepares_an_answer(self) -> None:
        await asyncio.sleep(0.05)
        await self.push(TranscriptionFrame("hi", "user", "2025-01-01T00:00:00"), self.stt)
        await asyncio.sleep(0.05)
        await self.push(LLMFullResponseStartFrame(), self.llm)
        await asyncio.sleep(0.1)
        await self.push(LLMTextFrame("Hello."), self.llm)
        await self.push(TTSAudioRawFrame(b"\0\0" * 160, 16000, 1), self.tts)

    async def bot_starts_speaking(self) -> None:
        await self.push(BotStartedSpeakingFrame(), self.transport)

    async def answer(self, turn_ids: TurnIds | None = None) -> str | None:
        """One whole response; with ``turn_ids``, its bot turn opens before the bot speaks.

        Returns:
            The bot turn's id, or None without ``turn_ids``.
        """
        await self.user_speaks_and_falls_silent()
        await self.bot_prepares_an_answer()
        # As the processor does when the first TTS audio reaches it.
        turn_id = turn_ids.start_turn("bot") if turn_ids is not None else None
        await self.bot_starts_speaking()
        # The observer runs its event handlers as tasks: let them note the breakdown.
        await asyncio.sleep(0.05)
        return turn_id
