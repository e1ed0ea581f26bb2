"""LatencyRecorder: Pipecat's own UserBotLatencyObserver, fed real frames, paired with bot turns."""

import asyncio
import time
from pathlib import Path

import pytest
from pipecat.observers.user_bot_latency_observer import (
    LatencyBreakdown,
    LatencyContribution,
    LatencyOwnerKind,
    MeasuredFrom,
    UserBotLatencyObserver,
)

from pipecat_audio_capture import LatencyRecorder, RetryPolicy, TurnIds
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.records import TurnLatencyRecord
from pipecat_audio_capture.replay import replay_spool
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import TurnLatencyStore
from pipecat_audio_capture.storage.local import LocalAudioStorage

from support.index import IndexBackend, new_id
from support.latency import STOP_SECS, Pipeline
from support.reliability import events_of

NO_RETRY = RetryPolicy(attempts=1)


class FlakyLatencyStore:
    """The real index, refusing the first ``failures`` writes."""

    def __init__(self, store: TurnLatencyStore, failures: int) -> None:
        self.store = store
        self.failures = failures

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError("index down")
        await self.store.save_turn_latency(record)


SESSION_ID = new_id()


def _recorder(turn_ids: TurnIds, store: TurnLatencyStore, **kwargs: object) -> LatencyRecorder:
    return LatencyRecorder(SESSION_ID, turn_ids, store=store, retry=NO_RETRY, **kwargs)  # type: ignore[arg-type]


async def _responses(
    index: IndexBackend, recorder: LatencyRecorder
) -> list[tuple[str, float, float]]:
    # The observer runs its event handlers as tasks: let them note the last breakdown.
    await asyncio.sleep(0.05)
    await recorder.close(timeout_s=5.0)
    rows = await index.store.turn_latency(SESSION_ID)
    return [(row.turn_id, row.endpointing_wait_ms, row.total_ms) for row in rows]


async def test_a_breakdown_pairs_with_the_bot_turn_the_processor_opened(
    index: IndexBackend,
) -> None:
    turn_ids = TurnIds()
    recorder = _recorder(turn_ids, index.store)
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))
    earlier = turn_ids.start_turn("bot")
    turn_ids.end_turn(earlier)

    answer = await call.answer(turn_ids)

    [(turn_id, endpointing_ms, total_ms)] = await _responses(index, recorder)
    assert turn_id == answer
    assert endpointing_ms == pytest.approx(STOP_SECS * 1000)
    assert total_ms >= STOP_SECS * 1000 + 200
    assert (recorder.stored, recorder.unmatched, recorder.failed) == (1, 0, 0)


async def test_a_breakdown_that_arrives_before_its_bot_turn_opens_waits_for_it(
    index: IndexBackend,
) -> None:
    turn_ids = TurnIds()
    recorder = _recorder(turn_ids, index.store, claim_wait_s=2.0)
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))

    await call.user_speaks_and_falls_silent()
    await call.bot_prepares_an_answer()
    await call.bot_starts_speaking()
    # A processor after the output transport opens the turn when the played audio reaches it.
    await asyncio.sleep(0.15)
    answer = turn_ids.start_turn("bot")

    [(turn_id, _, _)] = await _responses(index, recorder)
    assert turn_id == answer


async def test_each_response_pairs_with_its_own_turn_and_leaves_it_to_the_transcript(
    index: IndexBackend,
) -> None:
    turn_ids = TurnIds()
    recorder = _recorder(turn_ids, index.store)
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))
    answers = []
    for _ in range(2):
        answer = await call.answer(turn_ids)
        assert answer is not None
        answers.append(answer)
        await asyncio.sleep(0.05)
        turn_ids.end_turn(answer)

    rows = await _responses(index, recorder)

    assert [turn_id for turn_id, _, _ in rows] == answers
    # The transcript recorder's claim is separate: the assistant transcript still gets the turn.
    spans = turn_ids.spans("bot")
    assert turn_ids.claim("bot", started_at=spans[0].started_at - 0.1) == answers[0]


async def test_a_breakdown_with_no_bot_turn_is_kept_under_an_id_of_its_own(
    index: IndexBackend,
) -> None:
    turn_ids = TurnIds()
    recorder = _recorder(turn_ids, index.store, claim_wait_s=0.1)
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))

    await call.answer()

    [(turn_id, _, _)] = await _responses(index, recorder)
    assert turn_id not in {span.turn_id for span in turn_ids.spans("bot")}
    assert recorder.unmatched == 1


class ReplayedObserver(UserBotLatencyObserver):
    """Pipecat's observer, made to emit given breakdowns (for ones a pipeline cannot produce)."""

    async def emit(self, breakdown: LatencyBreakdown) -> None:
        await self._call_event_handler("on_latency_breakdown", breakdown)


async def test_an_empty_breakdown_is_skipped_and_an_impossible_one_is_reported_lost(
    index: IndexBackend,
) -> None:
    recorder = _recorder(TurnIds(), index.store)
    events = events_of(recorder, "on_latency_failed")
    observer = recorder.attach(ReplayedObserver())
    impossible = LatencyBreakdown(
        contributions=[
            LatencyContribution(
                key="llm_inference",
                label="LLM inference",
                owner="LLM#0",
                owner_kind=LatencyOwnerKind.SERVICE,
                start_time=time.time(),
                duration_secs=float("nan"),
            )
        ],
        measured_from=MeasuredFrom.USER_SILENCE,
        total_secs=float("nan"),
    )

    await observer.emit(LatencyBreakdown())
    await observer.emit(impossible)
    await asyncio.sleep(0.05)
    await recorder.close()

    assert (recorder.skipped, recorder.failed, recorder.stored) == (1, 1, 0)
    [(record, error)] = events["on_latency_failed"]
    assert record is None and "unreadable" in str(error)
    assert await index.count("session_turn_latencies") == 0


async def test_rows_the_index_refuses_are_spooled_and_replayed_once(
    sqlite_index: IndexBackend, tmp_path: Path
) -> None:
    turn_ids = TurnIds()
    store = FlakyLatencyStore(sqlite_index.store, failures=99)
    recorder = _recorder(turn_ids, store, spool_dir=tmp_path / "spool")
    events = events_of(recorder, "on_latency_spooled")
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))
    answer = await call.answer(turn_ids)
    await recorder.close(timeout_s=5.0)

    assert (recorder.spooled, recorder.stored) == (1, 0)
    [(record, reason)] = events["on_latency_spooled"]
    assert (record.turn_id, reason) == (answer, "write_failed")
    scan = await Spool(tmp_path / "spool").scan()
    assert [path.name for path in scan.latencies] == [f"{answer}.latency"]

    audio = LocalAudioStorage(tmp_path / "audio")
    # The index stores transcripts and latency rows, so it takes both without being told.
    first = await replay_spool(tmp_path / "spool", audio, transcript_store=sqlite_index.store)
    second = await replay_spool(tmp_path / "spool", audio, transcript_store=sqlite_index.store)

    assert (first.latencies_stored, first.complete) == (1, True)
    assert second.latencies_stored == 0
    [row] = await sqlite_index.store.turn_latency(record.session_id)
    assert (row.turn_id, row.stages) == (answer, record.stages)


async def test_latency_entries_stay_without_a_store_and_a_corrupt_one_is_left_alone(
    sqlite_index: IndexBackend, tmp_path: Path
) -> None:
    turn_ids = TurnIds()
    spool = tmp_path / "spool"
    recorder = _recorder(
        turn_ids, FlakyLatencyStore(sqlite_index.store, 99), spool_dir=spool, claim_wait_s=0.1
    )
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))
    await call.answer()
    await recorder.close(timeout_s=5.0)
    [entry] = (await Spool(spool).scan()).latencies
    corrupt = entry.with_name(f"{new_id()}.latency")
    corrupt.write_bytes(entry.read_bytes())  # its turn id no longer matches its name
    audio = LocalAudioStorage(tmp_path / "audio")

    kept = await replay_spool(spool, audio)
    stored = await replay_spool(spool, audio, latency_store=sqlite_index.store)

    assert (kept.latencies_kept, kept.complete) == (2, False)
    assert (stored.latencies_stored, stored.rejected) == (1, 1)
    assert corrupt.exists() and not entry.exists()
