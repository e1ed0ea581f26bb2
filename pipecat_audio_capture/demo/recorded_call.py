"""The offline demo: a simulated call recorded end to end on the embedded default.

This is the wiring a bot author writes, top to bottom: one ``TurnIds`` shared by the audio, the
transcripts and the latency breakdowns, WAV files on local disk, the index in a SQLite file, the
processor between the TTS and the output transport, the transcript recorder on Pipecat's context
aggregators, and the latency recorder on Pipecat's ``UserBotLatencyObserver`` (with metrics on,
for the LLM and TTS parts).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)

from pipecat_audio_capture.capture import SessionAudioCapture
from pipecat_audio_capture.demo.call import run_simulated_call
from pipecat_audio_capture.latency import LatencyRecorder
from pipecat_audio_capture.processor import AudioCaptureProcessor
from pipecat_audio_capture.records import CaptureStats, SegmentMetadata, TranscriptRecord
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.index import CallLogEntry, ResponseGap, TurnLatency
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.transcripts import TranscriptRecorder
from pipecat_audio_capture.turn_ids import TurnIds

INDEX_FILE = "index.sqlite3"


@dataclass
class DemoResult:
    """What the demo recorded.

    Parameters:
        session_id: UUID of the recorded call.
        recordings: Folder holding ``{session_id}/*.wav`` and the index.
        index_path: The SQLite index.
        stats: The writer's counters.
        call_log: The call's turns from ``session_call_log``, in spoken order.
        gaps: The call's rows of ``session_response_gaps``.
        latency: The call's rows of ``session_turn_latency``: why each answer took its time.
    """

    session_id: str
    recordings: Path
    index_path: Path
    stats: CaptureStats
    call_log: list[CallLogEntry]
    gaps: list[ResponseGap]
    latency: list[TurnLatency]


async def record_demo_call(
    recordings: Path, *, speed: float = 1.0, say: Callable[[str], None] = print
) -> DemoResult:
    """Run the simulated call and record every turn under ``recordings``.

    Args:
        recordings: Where the WAV files and ``index.sqlite3`` go (created if missing).
        speed: How many times faster than real time the call runs. At other speeds than 1 the
            play-out clock (which assumes real-time playback) cuts barge-ins at the wrong place.
        say: Receives one line per stored turn as the call goes.
    """
    recordings.mkdir(parents=True, exist_ok=True)
    session_id = str(uuid.uuid4())
    index = SQLiteAudioMetaStorage(recordings / INDEX_FILE)
    try:
        turn_ids = TurnIds()
        storage = CompositeAudioStorage(files=LocalAudioStorage(recordings), metadata=index)
        capture = SessionAudioCapture(session_id, storage)
        processor = AudioCaptureProcessor(capture, turn_ids)
        transcripts = TranscriptRecorder(session_id, turn_ids, store=index)
        latency = LatencyRecorder(session_id, turn_ids, store=index)

        async def on_segment_stored(_: SessionAudioCapture, meta: SegmentMetadata) -> None:
            cut = " (interrupted)" if meta.interrupted else ""
            say(
                f"  {meta.speaker:<4} audio {meta.duration_ms / 1000:5.2f} s{cut}  {meta.audio_url}"
            )

        async def on_transcript_stored(_: TranscriptRecorder, record: TranscriptRecord) -> None:
            say(f"  {record.role:<9} said: {record.text}")

        # add_event_handler rather than Pipecat's unannotated @event_handler decorator, which
        # would leave the handlers untyped.
        capture.add_event_handler("on_segment_stored", on_segment_stored)
        transcripts.add_event_handler("on_transcript_stored", on_transcript_stored)

        def attach(user: LLMUserAggregator, assistant: LLMAssistantAggregator) -> None:
            transcripts.attach(user, assistant)

        say(f"recording session {session_id} into {recordings}/")
        await run_simulated_call(
            speed=speed,
            recorder_processors=[processor],
            after_output_processors=[processor.playback_tap()],
            on_aggregators=attach,
            observers=[latency.attach(UserBotLatencyObserver())],
            enable_metrics=True,
        )
        stats = await capture.close()
        await transcripts.close()
        await latency.close()
        return DemoResult(
            session_id=session_id,
            recordings=recordings,
            index_path=recordings / INDEX_FILE,
            stats=stats,
            call_log=await index.call_log(session_id),
            gaps=await index.response_gaps(session_id),
            latency=await index.turn_latency(session_id),
        )
    finally:
        await index.close()
