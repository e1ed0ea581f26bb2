"""The latency breakdowns in the index (session_turn_latency), on SQLite and PostgreSQL alike."""

import math
from dataclasses import fields, replace
from datetime import datetime, timedelta

import pytest

from pipecat_audio_capture.errors import InvalidIdError, StorageError
from pipecat_audio_capture.retention import delete_session
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.index import LATENCY_STAGES, TurnLatency
from pipecat_audio_capture.storage.local import LocalAudioStorage

from support.index import T0, IndexBackend, at, make_segment, make_transcript, new_id
from support.latency import STAGES, TOTAL_MS, make_latency, stage


async def test_a_breakdown_reads_back_as_one_row_with_each_stage_in_ms(
    index: IndexBackend,
) -> None:
    record = make_latency(new_id(), new_id())
    await index.store.save_turn_latency(record)
    await index.store.save_turn_latency(make_latency(new_id(), new_id()))  # another call

    [row] = await index.store.turn_latency(record.session_id)

    assert (row.session_id, row.turn_id, row.measured_from) == (
        record.session_id,
        record.turn_id,
        "user_silence",
    )
    assert (row.started_at, row.bot_started_at) == (record.started_at, record.bot_started_at)
    assert row.bot_started_at.utcoffset() == timedelta(0)
    assert (row.total_ms, row.user_turn_ms) == (TOTAL_MS, 625.5)
    assert (row.endpointing_wait_ms, row.transcription_ms, row.turn_detection_ms) == (
        200.0,
        125.5,
        300.0,
    )
    assert (row.llm_inference_ms, row.speech_synthesis_ms, row.pipeline_ms) == (812.25, 359.0, 12.0)
    assert row.other_ms == 40.0
    assert row.function_handler_ms == row.first_request_ms == 0.0
    stage_columns = [f"{key}_ms" for key in LATENCY_STAGES] + ["other_ms"]
    assert math.isclose(sum(getattr(row, column) for column in stage_columns), row.total_ms)
    assert (row.slowest_stage, row.slowest_owner) == ("llm_inference", "OpenAILLMService#0")
    assert row.stages == STAGES


async def test_the_view_has_a_column_per_field_and_stage_on_both_dialects(
    index: IndexBackend,
) -> None:
    await index.store.save_turn_latency(make_latency(new_id(), new_id()))

    # A column the dataclass does not know would make turn_latency() fail on construction.
    [row] = await index.fetch(
        f"SELECT {', '.join(field.name for field in fields(TurnLatency))} FROM session_turn_latency"
    )

    assert len(row) == len(fields(TurnLatency))
    assert {f"{key}_ms" for key in LATENCY_STAGES} <= {field.name for field in fields(TurnLatency)}


async def test_one_row_per_bot_turn_and_a_second_save_is_ignored(index: IndexBackend) -> None:
    record = make_latency(new_id(), new_id())

    await index.store.save_turn_latency(record)
    await index.store.save_turn_latency(replace(record, total_ms=1.0, stages=STAGES[:1]))

    assert await index.count("session_turn_latencies") == 1
    [row] = await index.store.turn_latency(record.session_id)
    assert (row.total_ms, row.stages) == (TOTAL_MS, STAGES)


async def test_rows_come_in_the_order_the_bot_spoke(index: IndexBackend) -> None:
    session_id = new_id()
    turns = [new_id() for _ in range(3)]
    for turn_id, bot_ms in zip(turns, (9000.0, 3000.0, 6000.0), strict=True):
        await index.store.save_turn_latency(make_latency(session_id, turn_id, bot_ms=bot_ms))

    rows = await index.store.turn_latency(session_id)

    assert [row.turn_id for row in rows] == [turns[1], turns[2], turns[0]]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"total_ms": -1.0}, id="negative-total"),
        pytest.param({"total_ms": math.inf}, id="infinite-total"),
        pytest.param({"user_turn_ms": -0.5}, id="negative-user-turn"),
        pytest.param({"measured_from": "vad"}, id="unknown-anchor"),
        pytest.param({"started_at": at(6000)}, id="bot-before-the-wait-began"),
        pytest.param({"stages": ()}, id="no-stages"),
        pytest.param({"stages": (stage("llm_inference", "x", 0.0, math.nan),)}, id="nan-stage"),
        pytest.param({"stages": (stage("llm_inference", "x", 0.0, -5.0),)}, id="negative-stage"),
        pytest.param({"started_at": datetime(2025, 1, 1)}, id="naive-time"),
    ],
)
async def test_impossible_breakdowns_are_refused(
    index: IndexBackend, change: dict[str, object]
) -> None:
    record = make_latency(new_id(), new_id())

    with pytest.raises(StorageError):
        await index.store.save_turn_latency(replace(record, **change))  # type: ignore[arg-type]

    assert await index.count("session_turn_latencies") == 0


async def test_ids_are_checked_before_the_database(index: IndexBackend) -> None:
    with pytest.raises(InvalidIdError):
        await index.store.save_turn_latency(make_latency(new_id(), "../../etc/passwd"))
    with pytest.raises(InvalidIdError):
        await index.store.turn_latency("not-a-uuid")


async def test_stages_edited_into_something_else_read_as_none(index: IndexBackend) -> None:
    record = make_latency(new_id(), new_id())
    await index.store.save_turn_latency(record)
    await index.execute('UPDATE session_turn_latencies SET stages = \'{"not": "a list"}\'')

    [row] = await index.store.turn_latency(record.session_id)

    assert row.stages == ()
    assert row.llm_inference_ms == 812.25


async def test_deleting_a_session_removes_its_latency_rows(
    index: IndexBackend, tmp_path: object
) -> None:
    session_id, other = new_id(), new_id()
    turn_id = new_id()
    await index.store.save_metadata(
        session_id, make_segment(session_id, turn_id=turn_id, speaker="bot")
    )
    await index.store.save_turn_latency(make_latency(session_id, turn_id))
    await index.store.save_turn_latency(make_latency(other, new_id()))

    report = await delete_session(
        session_id, audio=LocalAudioStorage(str(tmp_path)), index=index.store
    )

    assert (report.segment_rows, report.latency_rows) == (1, 1)
    assert await index.store.turn_latency(session_id) == []
    assert len(await index.store.turn_latency(other)) == 1


async def test_a_session_known_only_by_its_latency_rows_still_ages_out(
    index: IndexBackend,
) -> None:
    session_id = new_id()
    await index.store.save_turn_latency(make_latency(session_id, new_id(), bot_ms=0.0))
    await index.store.save_transcript(make_transcript(new_id(), new_id(), "user", "x", at_ms=0))

    old = await index.store.sessions_older_than(T0 + timedelta(seconds=1))

    assert session_id in old and len(old) == 2


async def test_a_composite_storage_hands_breakdowns_to_its_index(
    index: IndexBackend, tmp_path: object
) -> None:
    storage = CompositeAudioStorage(files=LocalAudioStorage(str(tmp_path)), metadata=index.store)
    record = make_latency(new_id(), new_id())

    await storage.save_turn_latency(record)

    assert [row.turn_id for row in await index.store.turn_latency(record.session_id)] == [
        record.turn_id
    ]
