"""Latency rows in the spool: what the reader refuses, and what close() does with a hung index."""

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver

from pipecat_audio_capture import LatencyRecorder, RetryPolicy, TurnIds, migrations
from pipecat_audio_capture.errors import MigrationError, SpoolEntryError, SpoolError
from pipecat_audio_capture.migrations import load_migrations
from pipecat_audio_capture.records import TurnLatencyRecord
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.spool_format import decode_latency, encode_latency

from support.index import new_id
from support.latency import Pipeline, make_latency

SPOOLED_AT = datetime(2025, 3, 1, tzinfo=UTC)


def _body(record: TurnLatencyRecord) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        encode_latency(record, reason="write_failed", spooled_at=SPOOLED_AT)
    )
    return body


def test_a_latency_entry_reads_back_as_it_was_written() -> None:
    record = make_latency(new_id(), new_id())

    entry = decode_latency(
        encode_latency(record, reason="write_failed", spooled_at=SPOOLED_AT),
        session_id=record.session_id,
        turn_id=record.turn_id,
    )

    assert (entry.record, entry.reason, entry.spooled_at) == (record, "write_failed", SPOOLED_AT)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"turn_id": "c3d0a5ae-0000-4000-8000-000000000000"}, id="other-turn"),
        pytest.param({"measured_from": "vad"}, id="unknown-anchor"),
        pytest.param({"total_ms": -1}, id="negative-total"),
        pytest.param({"total_ms": None}, id="no-total"),
        pytest.param({"user_turn_ms": "500"}, id="text-for-a-number"),
        pytest.param({"stages": []}, id="no-stages"),
        pytest.param({"stages": "llm"}, id="stages-not-a-list"),
        pytest.param({"stages": [{"stage": "llm"}]}, id="stage-missing-fields"),
        pytest.param({"started_at": "2025-03-01T12:00:00"}, id="naive-time"),
        pytest.param({"extra": 1}, id="unknown-field"),
        pytest.param({"version": 2}, id="other-version"),
    ],
)
def test_a_latency_entry_that_is_not_what_the_package_writes_is_refused(
    change: dict[str, Any],
) -> None:
    record = make_latency(new_id(), new_id())
    body = _body(record) | change

    with pytest.raises(SpoolEntryError):
        decode_latency(
            json.dumps(body).encode(), session_id=record.session_id, turn_id=record.turn_id
        )


@pytest.mark.parametrize(
    "stage_change",
    [
        pytest.param({"duration_ms": -1.0}, id="negative-duration"),
        pytest.param({"offset_ms": True}, id="boolean-offset"),
        pytest.param({"owner": 7}, id="number-for-owner"),
    ],
)
def test_a_latency_entry_with_an_impossible_stage_is_refused(stage_change: dict[str, Any]) -> None:
    record = make_latency(new_id(), new_id())
    body = _body(record)
    body["stages"][0] |= stage_change

    with pytest.raises(SpoolEntryError):
        decode_latency(
            json.dumps(body).encode(), session_id=record.session_id, turn_id=record.turn_id
        )


async def test_a_latency_row_json_cannot_hold_is_refused_by_the_spool(tmp_path: Path) -> None:
    record = replace(make_latency(new_id(), new_id()), total_ms=float("nan"))

    with pytest.raises(SpoolError):
        await Spool(tmp_path).put_latency(record, reason="write_failed")

    assert (await Spool(tmp_path).scan()).latencies == []


def test_migration_versions_may_skip_numbers_but_not_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sqlite"
    folder.mkdir()
    monkeypatch.setattr(migrations, "files", lambda _package: tmp_path)
    load = load_migrations.__wrapped__
    (folder / "0001_first.sql").write_text("SELECT 1;")
    (folder / "0006_later.sql").write_text("SELECT 6;")

    assert [migration.version for migration in load("sqlite")] == [1, 6]

    (folder / "0006_again.sql").write_text("SELECT 6;")
    with pytest.raises(MigrationError, match="unique"):
        load("sqlite")
    (folder / "0006_again.sql").unlink()
    (folder / "0000_zero.sql").write_text("SELECT 0;")
    with pytest.raises(MigrationError):
        load("sqlite")


class HangingStore:
    """An index that never answers."""

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        await asyncio.Event().wait()


async def test_rows_unwritten_when_close_times_out_go_to_the_spool(tmp_path: Path) -> None:
    turn_ids = TurnIds()
    recorder = LatencyRecorder(
        new_id(),
        turn_ids,
        store=HangingStore(),
        retry=RetryPolicy(attempts=1),
        spool_dir=tmp_path,
    )
    call = Pipeline(recorder.attach(UserBotLatencyObserver()))
    answer = await call.answer(turn_ids)

    await recorder.close(timeout_s=0.3)

    assert (recorder.spooled, recorder.failed, recorder.stored) == (1, 0, 0)
    [path] = (await Spool(tmp_path).scan()).latencies
    entry = await Spool(tmp_path).read_latency(path)
    assert (entry.record.turn_id, entry.reason) == (answer, "close_timeout")
