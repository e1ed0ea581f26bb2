"""Why each response was slow, recorded from a real call with Pipecat's latency observer attached.

One simulated call (Silero VAD, Pipecat's aggregators and turn strategies, scripted STT/LLM/TTS on
Pipecat's base classes, a real-time output transport) with a greeting, three answers and a
barge-in, recorded by the processor, the transcript recorder and the latency recorder into one
SQLite index. The call runs once per module; each test checks one promise against it.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from pipecat_audio_capture import LatencyRecorder, SQLiteAudioMetaStorage
from pipecat_audio_capture.demo import CallResult, EventKind
from pipecat_audio_capture.demo.call import LLM_FIRST_TOKEN_S, USER_SPEECH_TIMEOUT_S
from pipecat_audio_capture.demo.script import DEFAULT_SCRIPT
from pipecat_audio_capture.storage.index import LATENCY_STAGES, CallLogEntry, TurnLatency

from support.latency import record_call_with_latency

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPEED = 2.0
"""As in test_simulated_call: fast enough, and the timings hold with the CPUs busy."""

VAD_STOP_S = 0.2
"""Pipecat's default ``VADParams.stop_secs``, which the simulated call keeps."""


@dataclass
class Recorded:
    result: CallResult
    log: list[CallLogEntry]
    latency: list[TurnLatency]
    recorder: LatencyRecorder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Recorded]:
    root: Path = tmp_path_factory.mktemp("latency-call")
    index = SQLiteAudioMetaStorage(root / "index.sqlite3")
    call = await record_call_with_latency(index, root, speed=SPEED)
    yield Recorded(
        result=call.result,
        log=await index.call_log(call.session_id),
        latency=await index.turn_latency(call.session_id),
        recorder=call.recorder,
    )
    await index.close()


async def test_every_answer_has_one_latency_row_on_the_bot_turn_it_produced(
    recorded: Recorded,
) -> None:
    answers = [entry for entry in recorded.log if entry.role == "assistant"][1:]
    assert len(answers) == len(DEFAULT_SCRIPT.exchanges)
    # The greeting is not measured: the simulated call has no client connecting.
    assert [row.turn_id for row in recorded.latency] == [entry.turn_id for entry in answers]
    assert (recorded.recorder.stored, recorded.recorder.unmatched) == (len(answers), 0)
    assert {row.measured_from for row in recorded.latency} == {"user_silence"}
    # The interrupted answer got its row too: the breakdown is taken when the bot starts.
    assert any(entry.audio_interrupted for entry in answers)


async def test_each_row_is_placed_where_the_user_fell_silent_and_the_bot_started(
    recorded: Recorded,
) -> None:
    # At 2x the audio's own timestamps run at the audio's pace, not the call's, so the rows are
    # checked against the frames' push times (pipeline clock, wall seconds) relative to the first.
    bot_starts = [event.t for event in recorded.result.of(EventKind.BOT_STARTED_SPEAKING)][1:]
    user_stops = [event.t for event in recorded.result.of(EventKind.USER_STOPPED_SPEAKING)]
    first = recorded.latency[0].bot_started_at
    for row, bot_t, user_t in zip(recorded.latency, bot_starts, user_stops, strict=True):
        assert row.user_turn_ms is not None
        released = row.started_at + timedelta(milliseconds=row.user_turn_ms)
        assert _s(row.bot_started_at - first) == pytest.approx(bot_t - bot_starts[0], abs=0.05)
        assert _s(released - first) == pytest.approx(user_t - bot_starts[0], abs=0.05)
        assert row.bot_started_at - row.started_at == pytest.approx(
            timedelta(milliseconds=row.total_ms), abs=timedelta(milliseconds=1)
        )


def _s(delta: timedelta) -> float:
    return delta.total_seconds()


async def test_the_stages_are_the_pipelines_own_and_add_up_to_the_total(
    recorded: Recorded,
) -> None:
    for row in recorded.latency:
        columns = [f"{key}_ms" for key in LATENCY_STAGES] + ["other_ms"]
        assert sum(getattr(row, column) for column in columns) == pytest.approx(row.total_ms)
        assert row.endpointing_wait_ms == pytest.approx(VAD_STOP_S * 1000, abs=1.0)
        # The scripted LLM's time to first token, reported as its TTFB.
        assert row.llm_inference_ms == pytest.approx(LLM_FIRST_TOKEN_S / SPEED * 1000, abs=60.0)
        # The speech timeout runs from the VAD stop; transcription is inside it.
        detection_ms = row.transcription_ms + row.turn_detection_ms
        assert detection_ms == pytest.approx(USER_SPEECH_TIMEOUT_S / SPEED * 1000, abs=120.0)
        assert row.speech_synthesis_ms < 100.0
        assert 500.0 < row.total_ms < 1200.0
        owners = {stage.stage: stage.owner for stage in row.stages}
        assert owners["llm_inference"].startswith("ScriptedLLM")
        assert owners["endpointing_wait"] == "config: VAD stop_secs"
        slowest = max(row.stages, key=lambda stage: stage.duration_ms)
        assert (row.slowest_stage, row.slowest_owner) == (slowest.stage, slowest.owner)
