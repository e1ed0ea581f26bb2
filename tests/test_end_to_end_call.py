"""A whole offline call through a real Pipecat pipeline, recorded end to end.

One real-time call (Silero VAD, Pipecat's user and assistant aggregators, scripted STT/LLM/TTS,
an output transport that plays in real time) with a greeting, ordinary exchanges, a barge-in and
the session end, recorded three times at once: one processor between the TTS and the output
transport (indexed in PostgreSQL), one after the output transport (indexed in SQLite), and one
between TTS and output whose transcript recorder gets every user transcript only after the
caller has started the next turn (indexed in SQLite). The call runs once per module; each test
checks one promise against it.
"""

import asyncio
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    CaptureStats,
    CompositeAudioStorage,
    LocalAudioStorage,
    SessionAudioCapture,
    SQLiteAudioMetaStorage,
    TranscriptRecorder,
    TurnIds,
)
from pipecat_audio_capture.demo.call import CallResult, run_simulated_call
from pipecat_audio_capture.demo.script import DEFAULT_SCRIPT, load_bot_audio, load_user_audio
from pipecat_audio_capture.storage.index import CallLogEntry
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage, migrate_postgres

from support.index import fresh_pg_schema

pytestmark = pytest.mark.asyncio(loop_scope="module")

MIC_FRAME_BYTES = 640  # 20 ms at 16 kHz mono
BOT_RATE = 24000


@dataclass
class Recording:
    """What one placement of the processor recorded."""

    placement: str
    session_id: str
    root: Path
    stats: CaptureStats
    log: list[CallLogEntry]
    processor: AudioCaptureProcessor


@dataclass
class Call:
    result: CallResult
    before: Recording
    after: Recording
    late: Recording
    late_user_transcripts: int


class LateUserTranscripts:
    """Hands an aggregator's events on, but ``on_user_turn_stopped`` only ``delay_s`` later.

    A transcript that becomes final late (a slow STT) reaches the transcript writer after the
    caller has started the next turn; this makes that happen on every user turn.
    """

    def __init__(self, aggregator: Any, delay_s: float, user_starts: list[float]) -> None:
        self._aggregator = aggregator
        self._delay_s = delay_s
        self._user_starts = user_starts
        self.tasks: set[asyncio.Task[None]] = set()
        self.overtaken = 0

    def add_event_handler(self, name: str, handler: Any) -> None:
        if name != "on_user_turn_stopped":
            self._aggregator.add_event_handler(name, handler)
            return

        async def late(*args: Any) -> None:
            starts_before = len(self._user_starts)
            await asyncio.sleep(self._delay_s)
            if len(self._user_starts) > starts_before:
                self.overtaken += 1
            await handler(*args)

        async def schedule(*args: Any) -> None:
            task = asyncio.create_task(late(*args))
            self.tasks.add(task)

        self._aggregator.add_event_handler(name, schedule)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def call(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Call]:
    tmp = tmp_path_factory.mktemp("call")
    async with fresh_pg_schema() as schema:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(schema.dsn, open=False)
        async with pool:
            await migrate_postgres(pool)
            pg = PostgresAudioMetaStorage(pool)
            sqlite = SQLiteAudioMetaStorage(tmp / "index.sqlite3")
            chains = {
                "before": _chain(tmp / "before", pg),
                "after": _chain(tmp / "after", sqlite),
                "late": _chain(tmp / "late", sqlite),
            }
            user_starts: list[float] = []
            late_events: list[LateUserTranscripts] = []

            def attach(user_aggregator, assistant_aggregator) -> None:
                @user_aggregator.event_handler("on_user_turn_started")
                async def count_start(*_: Any) -> None:
                    user_starts.append(asyncio.get_running_loop().time())

                chains["before"].transcripts.attach(user_aggregator, assistant_aggregator)
                chains["after"].transcripts.attach(user_aggregator, assistant_aggregator)
                late_user = LateUserTranscripts(user_aggregator, 6.0, user_starts)
                late_events.append(late_user)
                chains["late"].transcripts.attach(late_user, assistant_aggregator)

            result = await run_simulated_call(
                speed=1.0,
                recorder_processors=[chains["before"].processor, chains["late"].processor],
                after_output_processors=[chains["after"].processor],
                on_aggregators=attach,
            )
            await asyncio.gather(*late_events[0].tasks)
            recordings = {}
            for placement, chain in chains.items():
                stats = await chain.capture.close(timeout_s=10.0)
                await chain.transcripts.close(timeout_s=10.0)
                recordings[placement] = Recording(
                    placement=placement,
                    session_id=chain.capture.session_id,
                    root=chain.root,
                    stats=stats,
                    log=await chain.index.call_log(chain.capture.session_id),
                    processor=chain.processor,
                )
            await sqlite.close()
            yield Call(
                result,
                recordings["before"],
                recordings["after"],
                recordings["late"],
                late_events[0].overtaken,
            )


@dataclass
class _Chain:
    root: Path
    index: Any
    capture: SessionAudioCapture
    processor: AudioCaptureProcessor
    transcripts: TranscriptRecorder


def _chain(root: Path, index: Any) -> _Chain:
    session_id = str(uuid.uuid4())
    turn_ids = TurnIds()
    storage = CompositeAudioStorage(files=LocalAudioStorage(root), metadata=index)
    capture = SessionAudioCapture(session_id, storage)
    return _Chain(
        root=root,
        index=index,
        capture=capture,
        processor=AudioCaptureProcessor(capture, turn_ids),
        transcripts=TranscriptRecorder(session_id, turn_ids, store=index),
    )


def _pcm(entry: CallLogEntry) -> tuple[bytes, int]:
    assert entry.audio_url is not None
    with wave.open(urlparse(entry.audio_url).path) as reader:
        assert reader.getsampwidth() == 2 and reader.getnchannels() == 1
        return reader.readframes(reader.getnframes()), reader.getframerate()


def _turns(recording: Recording, role: str) -> list[CallLogEntry]:
    return [entry for entry in recording.log if entry.role == role]


@pytest.fixture(params=["before", "after", "late"])
def recording(request: pytest.FixtureRequest, call: Call) -> Recording:
    recording: Recording = getattr(call, request.param)
    return recording


async def test_late_user_transcripts_arrive_after_the_next_turn_started(call: Call) -> None:
    # Every user turn but the last is followed by another within the 6 s delay.
    assert call.late_user_transcripts >= len(DEFAULT_SCRIPT.user_lines) - 1


async def test_every_turn_is_recorded_and_stored(call: Call, recording: Recording) -> None:
    script_user_lines = [line.text for line in DEFAULT_SCRIPT.user_lines]
    assert recording.stats.recorded == recording.stats.stored == len(recording.log)
    assert recording.stats.dropped == recording.stats.failed == 0
    assert [e.text for e in _turns(recording, "user")] == script_user_lines
    assert len(_turns(recording, "assistant")) == len(call.result.bot_turns)
    files = sorted(recording.root.glob(f"{recording.session_id}/*.wav"))
    assert {f.stem for f in files} == {e.segment_id for e in recording.log}


async def test_audio_and_transcripts_pair_by_turn_id_and_none_cross(recording: Recording) -> None:
    # The call log is a full outer join: a turn with only audio or only a transcript would
    # show up with a missing side.
    for entry in recording.log:
        assert entry.audio_url is not None, f"transcript without audio: {entry}"
        assert entry.text, f"audio without transcript: {entry}"
        assert entry.segment_count == 1
    assert len({e.turn_id for e in recording.log}) == len(recording.log)

    expected_bot = [" ".join(line.sentences) for line in DEFAULT_SCRIPT.bot_lines]
    for entry, full_text in zip(_turns(recording, "assistant"), expected_bot, strict=True):
        # An interrupted answer's transcript holds what was spoken: a prefix of the answer.
        assert full_text.startswith(entry.text.rstrip("."))
        assert entry.audio_interrupted == entry.transcript_interrupted


async def test_user_segments_hold_the_whole_utterance_and_its_preroll(
    call: Call, recording: Recording
) -> None:
    utterances = load_user_audio(DEFAULT_SCRIPT)
    for entry, spoken in zip(_turns(recording, "user"), utterances, strict=True):
        pcm, rate = _pcm(entry)
        assert rate == 16000
        assert not entry.audio_interrupted
        # The microphone sends the recording unchanged (its last frame padded with silence).
        whole_frames = spoken[: len(spoken) // MIC_FRAME_BYTES * MIC_FRAME_BYTES]
        offset = pcm.find(whole_frames)
        assert offset >= 0, "the utterance is not inside its segment"
        # VAD confirms speech ~0.2 s after it began; the 1 s pre-roll must reach back past it.
        assert offset / (2 * rate) >= 0.5
        assert not np.frombuffer(pcm[:offset], dtype="<i2").any(), "pre-roll is the silence before"


async def test_bot_segments_match_what_the_caller_heard(call: Call, recording: Recording) -> None:
    played_turns = call.result.bot_turns
    generated = load_bot_audio(DEFAULT_SCRIPT)
    interrupted = []
    for entry, played, line in zip(
        _turns(recording, "assistant"), played_turns, DEFAULT_SCRIPT.bot_lines, strict=True
    ):
        pcm, rate = _pcm(entry)
        assert rate == BOT_RATE
        assert entry.duration_ms == pytest.approx(played.duration_s * 1000, abs=100.0)
        full = b"".join(generated[sentence] for sentence in line.sentences)
        if entry.audio_interrupted:
            interrupted.append(entry)
            assert full.startswith(pcm), "an interrupted segment is the start of the answer"
            if recording.placement != "after":
                unplayed = (len(full) - len(pcm)) / (2 * rate) * 1000
                assert entry.unplayed_ms == pytest.approx(unplayed, abs=50.0)
                assert entry.unplayed_ms > 5000
            else:
                assert entry.unplayed_ms is None
        else:
            assert played.audio.startswith(pcm)
    assert len(interrupted) == 1
    # The barge-in comes ~1.5 s into the long answer (VAD needs ~0.2 s more).
    assert 1300 < interrupted[0].duration_ms < 2300


async def test_the_processor_notices_its_placement(call: Call) -> None:
    assert not call.before.processor.playback_confirmed
    assert call.after.processor.playback_confirmed
    assert call.before.processor.stats.unplayed_ms > 5000
