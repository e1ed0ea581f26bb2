"""One background writer: segments, transcripts and latency rows end with the same counters."""

from pathlib import Path

from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver

from pipecat_audio_capture import (
    LatencyRecorder,
    RetryPolicy,
    SessionAudioCapture,
    StorageError,
    TranscriptRecorder,
    TurnIds,
    WriteStats,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import TranscriptRecord, TurnLatencyRecord

from support.latency import Pipeline
from support.reliability import T0, Conversation, pending_segment

QUICK = RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02, deadline_s=2.0)


class DownStore:
    """Files that refuse every write, and an index that refuses every row."""

    def __init__(self) -> None:
        self.calls = 0

    async def store_segment(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        raise StorageError("storage is down")

    async def save_metadata(self, *args: object) -> None:
        raise AssertionError("no metadata without audio")

    async def save_transcript(self, record: TranscriptRecord) -> None:
        self.calls += 1
        raise StorageError("index is down")

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        self.calls += 1
        raise StorageError("index is down")


async def test_every_writer_closes_with_the_same_counters_for_the_same_outcomes(
    tmp_path: Path,
) -> None:
    session_id = new_id()
    down = DownStore()
    turn_ids = TurnIds()
    capture = SessionAudioCapture(session_id, down, retry=QUICK, spool_dir=tmp_path / "spool")
    transcripts = TranscriptRecorder(
        session_id, turn_ids, store=down, claim_wait_s=0.0, retry=QUICK
    )
    latencies = LatencyRecorder(
        session_id, turn_ids, store=down, retry=QUICK, spool_dir=tmp_path / "spool"
    )
    capture.record_segment(pending_segment(session_id))
    await Conversation(transcripts).user_says("hello", at=T0)
    await Pipeline(latencies.attach(UserBotLatencyObserver())).answer(turn_ids)

    closed = [
        await capture.close(timeout_s=5),
        await transcripts.close(timeout_s=5),
        await latencies.close(timeout_s=5),
    ]

    assert all(isinstance(stats, WriteStats) for stats in closed)
    assert [(stats.stored, stats.spooled, stats.failed) for stats in closed] == [
        (0, 1, 0),  # spooled: the capture has a spool
        (0, 0, 1),  # lost: the transcript recorder has none
        (0, 1, 0),
    ]
    assert (transcripts.stored, transcripts.spooled, transcripts.failed) == (0, 0, 1)
    assert transcripts.stats is closed[1]
    assert down.calls == 3 * QUICK.attempts


async def test_a_writer_given_nothing_closes_with_zero_counters() -> None:
    recorder = TranscriptRecorder(new_id(), TurnIds(), store=DownStore())

    assert await recorder.close() == WriteStats()
