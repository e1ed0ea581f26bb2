"""The metadata index contract, run against SQLite and PostgreSQL alike."""

import asyncio
import math
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import InvalidIdError, StorageError
from pipecat_audio_capture.migrations import load_migrations
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.storage.base import TranscriptStore
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.index import CallLogEntry, MetadataIndex
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.index import T0, Call, IndexBackend, at, make_segment, make_transcript, new_id


async def test_it_is_the_metadata_side_of_a_composite_storage(
    index: IndexBackend, tmp_path: Path
) -> None:
    assert isinstance(index.store, TranscriptStore)
    assert isinstance(index.store, MetadataIndex)
    assert not hasattr(index.store, "store_segment")
    storage = CompositeAudioStorage(files=LocalAudioStorage(tmp_path), metadata=index.store)
    session_id, meta = _segment_with_session()

    await storage.save_metadata(session_id, meta)
    await storage.save_transcript(make_transcript(session_id, meta.turn_id, "user", "hi", at_ms=0))

    [entry] = await index.store.call_log(session_id)
    assert (entry.segment_id, entry.text) == (meta.segment_id, "hi")


async def test_running_migrations_again_changes_nothing(index: IndexBackend) -> None:
    await index.store.save_metadata(*_segment_with_session())

    assert await index.migrate() == []
    await index.reopen()
    assert await index.migrate() == []

    assert await index.versions() == [m.version for m in load_migrations(index.name)]
    assert await index.count("session_audio_segments") == 1


async def test_segment_round_trips_exactly(index: IndexBackend) -> None:
    meta = make_segment(new_id(), speaker="bot", start_ms=12.345, duration_ms=250.5)
    meta = replace(meta, interrupted=True, unplayed_ms=120.25)

    await index.store.save_metadata(meta.session_id, meta)

    assert await index.store.segment(meta.segment_id) == meta
    assert await index.store.segment(new_id()) is None


async def test_playback_is_stored_per_bot_segment_and_a_turn_is_confirmed_only_when_whole(
    index: IndexBackend,
) -> None:
    session_id, whole, mixed = new_id(), new_id(), new_id()
    user = make_segment(session_id, start_ms=0)
    confirmed = [
        replace(make_segment(session_id, turn_id=whole, speaker="bot", start_ms=ms), playback=p)
        for ms, p in ((1000, "confirmed"), (2000, "confirmed"))
    ]
    parts = [
        replace(make_segment(session_id, turn_id=mixed, speaker="bot", start_ms=ms), playback=p)
        for ms, p in ((3000, "confirmed"), (4000, "estimated"))
    ]
    for meta in (user, *confirmed, *parts):
        await index.store.save_metadata(session_id, meta)

    assert await index.store.segment(parts[1].segment_id) == parts[1]
    log = await index.store.call_log(session_id)
    assert [(entry.role, entry.playback) for entry in log] == [
        ("user", None),
        ("assistant", "confirmed"),
        ("assistant", "estimated"),
    ]


@pytest.mark.parametrize("playback", ["heard", ""])
async def test_the_index_refuses_an_unknown_playback(index: IndexBackend, playback: str) -> None:
    meta = replace(make_segment(new_id(), speaker="bot"), playback=playback)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await index.store.save_metadata(meta.session_id, meta)


async def test_the_index_refuses_playback_on_a_user_segment(index: IndexBackend) -> None:
    meta = replace(make_segment(new_id(), speaker="user"), playback="confirmed")
    with pytest.raises(StorageError):
        await index.store.save_metadata(meta.session_id, meta)


async def test_timestamps_in_other_zones_come_back_as_utc(index: IndexBackend) -> None:
    paris = timezone(timedelta(hours=1))
    meta = make_segment(new_id())
    meta = replace(
        meta, started_at=meta.started_at.astimezone(paris), ended_at=meta.ended_at.astimezone(paris)
    )

    await index.store.save_metadata(meta.session_id, meta)

    stored = await index.store.segment(meta.segment_id)
    assert stored is not None
    assert stored.started_at == meta.started_at
    assert stored.started_at.utcoffset() == timedelta(0)
    assert stored.ended_at.utcoffset() == timedelta(0)


async def test_timestamps_before_the_year_1000_come_back_unchanged(index: IndexBackend) -> None:
    meta = make_segment(new_id())
    early = timedelta(days=365 * 1100)
    meta = replace(meta, started_at=meta.started_at - early, ended_at=meta.ended_at - early)
    assert meta.started_at.year < 1000

    await index.store.save_metadata(meta.session_id, meta)

    stored = await index.store.segment(meta.segment_id)
    assert stored is not None
    assert (stored.started_at, stored.ended_at) == (meta.started_at, meta.ended_at)


async def test_saving_a_segment_twice_keeps_the_first(index: IndexBackend) -> None:
    session_id, meta = _segment_with_session()

    await index.store.save_metadata(session_id, meta)
    await index.store.save_metadata(session_id, replace(meta, audio_url="gs://other/x.wav"))

    assert await index.count("session_audio_segments") == 1
    assert await index.store.segment(meta.segment_id) == meta


async def test_a_resent_transcript_replaces_the_first(index: IndexBackend) -> None:
    session_id, turn_id = new_id(), new_id()
    first = make_transcript(session_id, turn_id, "assistant", "Sure, let me tell", at_ms=0)
    final = replace(first, text="Sure, let", interrupted=True)

    await index.store.save_transcript(first)
    await index.store.save_transcript(first)
    await index.store.save_transcript(final)

    assert await index.count("session_transcripts") == 1
    [entry] = await index.store.call_log(session_id)
    assert (entry.text, entry.transcript_interrupted) == ("Sure, let", True)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"duration_ms": -1.0}, id="negative-duration"),
        pytest.param({"duration_ms": math.nan}, id="nan-duration"),
        pytest.param({"duration_ms": math.inf}, id="infinite-duration"),
        pytest.param({"ended_at": T0 - timedelta(microseconds=1)}, id="ends-before-start"),
        pytest.param({"speaker": "robot"}, id="unknown-speaker"),
        pytest.param({"byte_size": -1}, id="negative-size"),
        pytest.param({"unplayed_ms": -0.5}, id="negative-unplayed"),
        pytest.param({"sample_rate": 0}, id="no-sample-rate"),
        pytest.param({"num_channels": 3}, id="three-channels"),
        pytest.param({"audio_url": ""}, id="no-url"),
    ],
)
async def test_impossible_segments_are_refused(
    index: IndexBackend, change: dict[str, object]
) -> None:
    session_id, meta = _segment_with_session()

    with pytest.raises(StorageError) as raised:
        await index.store.save_metadata(session_id, replace(meta, **change))  # type: ignore[arg-type]

    assert raised.value.__cause__ is not None
    assert await index.count("session_audio_segments") == 0


async def test_unknown_transcript_role_is_refused(index: IndexBackend) -> None:
    record = make_transcript(new_id(), new_id(), "user", "hi", at_ms=0)

    with pytest.raises(StorageError):
        await index.store.save_transcript(replace(record, role="system"))  # type: ignore[arg-type]


async def test_ids_and_timestamps_are_checked_before_the_database(index: IndexBackend) -> None:
    session_id, meta = _segment_with_session()

    with pytest.raises(InvalidIdError):
        await index.store.save_metadata(session_id, replace(meta, segment_id="../../etc/passwd"))
    with pytest.raises(InvalidIdError):
        await index.store.call_log("not-a-uuid")
    with pytest.raises(StorageError, match="belongs to session"):
        await index.store.save_metadata(new_id(), meta)
    with pytest.raises(StorageError, match="timezone-aware"):
        naive = replace(meta, started_at=datetime(2025, 1, 1), ended_at=datetime(2025, 1, 2))
        await index.store.save_metadata(session_id, naive)
    with pytest.raises(ValueError):
        await index.store.list_sessions(limit=-1)


async def test_call_log_pairs_audio_and_transcripts_in_spoken_order(index: IndexBackend) -> None:
    call = Call()
    await call.save(index)
    await Call().save(index)  # another call, which must not leak in

    log = await index.store.call_log(call.session_id)

    turn, seg = call.turns, call.segments
    assert [(entry.turn_id, entry.role, entry.text) for entry in log] == [
        (turn["U1"], "user", "hello"),
        (turn["B1"], "assistant", "Sure, let me"),
        (turn["U2"], "user", None),
        (turn["B2"], "assistant", "Go on."),
        (turn["U3"], "user", "wait"),
        (turn["U4"], "user", "ok"),
        (turn["B3"], "assistant", None),
    ]
    u1, b1, u2, b2, u3, _, b3 = log
    assert u1 == CallLogEntry(
        session_id=call.session_id,
        turn_id=turn["U1"],
        role="user",
        text="hello",
        audio_url=seg["U1"].audio_url,
        segment_id=seg["U1"].segment_id,
        segment_count=1,
        duration_ms=1500.125,
        byte_size=seg["U1"].byte_size,
        unplayed_ms=None,
        audio_interrupted=False,
        transcript_interrupted=False,
        occurred_at=T0,  # the audio start, not the late transcript's time
        started_at=T0,
        ended_at=at(1500.125),
    )
    # A turn split into two segments is one row: the first part's file, the parts summed.
    assert (b1.segment_id, b1.audio_url, b1.segment_count) == (
        seg["B1a"].segment_id,
        seg["B1a"].audio_url,
        2,
    )
    assert (b1.duration_ms, b1.byte_size) == (3000.0, seg["B1a"].byte_size + seg["B1b"].byte_size)
    assert (b1.started_at, b1.ended_at, b1.unplayed_ms) == (at(2250.5), at(5250.5), 800.0)
    assert (b1.audio_interrupted, b1.transcript_interrupted) == (True, True)
    # Audio only, and transcripts only.
    assert (u2.transcript_interrupted, u2.duration_ms) == (None, 600.0)
    assert (b3.text, b3.audio_interrupted) == (None, True)
    for transcript_only, at_ms in ((b2, 6500), (u3, 8000)):
        assert transcript_only.audio_url is None
        assert transcript_only.segment_id is None
        assert transcript_only.segment_count == 0
        assert transcript_only.duration_ms is None
        assert transcript_only.audio_interrupted is None
        assert transcript_only.started_at is None
        assert transcript_only.occurred_at == at(at_ms)
    assert all(entry.occurred_at.utcoffset() == timedelta(0) for entry in log)


async def test_summary_numbers_are_exact(index: IndexBackend) -> None:
    call = Call()
    await call.save(index)

    [summary] = await index.store.list_sessions()

    assert summary.session_id == call.session_id
    assert (summary.started_at, summary.ended_at) == (T0, at(10400))
    assert summary.started_at.tzinfo is not None
    assert (summary.turns, summary.segments, summary.interruptions) == (7, 6, 2)
    assert summary.user_talk_ms == 1500.125 + 600 + 500
    assert summary.bot_talk_ms == 2000 + 1000 + 1000
    assert summary.bytes == sum(meta.byte_size for meta in call.segments.values())


async def test_sessions_are_listed_newest_first(index: IndexBackend) -> None:
    sessions = [new_id() for _ in range(3)]
    for hour, session_id in enumerate(sessions):
        meta = make_segment(session_id, start_ms=hour * 3_600_000)
        await index.store.save_metadata(session_id, meta)
    await index.store.save_transcript(make_transcript(new_id(), new_id(), "user", "x", at_ms=-1))

    listed = await index.store.list_sessions()
    page = await index.store.list_sessions(limit=1, offset=1)

    assert [summary.session_id for summary in listed[:3]] == sessions[::-1]
    assert len(listed) == 4
    assert [summary.session_id for summary in page] == [sessions[1]]
    assert await index.store.list_sessions(limit=0) == []


async def test_response_gaps_are_exact(index: IndexBackend) -> None:
    call = Call()
    await call.save(index)

    gaps = await index.store.response_gaps(call.session_id)

    turn = call.turns
    assert [
        (gap.user_turn_id, gap.user_ended_at, gap.bot_turn_id, gap.bot_started_at, gap.gap_ms)
        for gap in gaps
    ] == [
        (turn["U1"], at(1500.125), turn["B1"], at(2250.5), 750.375),
        (turn["U2"], at(5600), turn["B2"], at(6500), 900.0),
        # No audio, so no end; and the user spoke again before the bot did.
        (turn["U3"], None, None, None, None),
        # The bot started 100 ms before the user had finished.
        (turn["U4"], at(9500), turn["B3"], at(9400), -100.0),
    ]
    assert [gap.user_started_at for gap in gaps] == [T0, at(5000), at(8000), at(9000)]
    assert all(gap.session_id == call.session_id for gap in gaps)


async def test_segments_without_a_turn_are_turns_of_their_own(index: IndexBackend) -> None:
    # Only written by hand or by other tools (save_metadata requires a turn_id), but the views
    # must still not merge such segments into one turn.
    session_id = new_id()
    first, second = make_segment(session_id), make_segment(session_id, start_ms=2000)
    await index.store.save_metadata(session_id, first)
    await index.store.save_metadata(session_id, second)
    await index.execute("UPDATE session_audio_segments SET turn_id = NULL")

    log = await index.store.call_log(session_id)

    assert [(entry.turn_id, entry.segment_id) for entry in log] == [
        (None, first.segment_id),
        (None, second.segment_id),
    ]


def _segment_with_session() -> tuple[str, SegmentMetadata]:
    meta = make_segment(new_id(), start_ms=0)
    return meta.session_id, meta


async def test_concurrent_saves_are_all_kept(index: IndexBackend) -> None:
    session_id = new_id()
    metas = [make_segment(session_id, start_ms=i * 1000) for i in range(40)]

    await asyncio.gather(*(index.store.save_metadata(session_id, meta) for meta in metas))

    [summary] = await index.store.list_sessions()
    assert (summary.segments, summary.turns) == (40, 40)


async def test_sqlite_index_is_in_wal_mode(sqlite_index: IndexBackend) -> None:
    assert await sqlite_index.fetch("PRAGMA journal_mode") == [("wal",)]


async def test_sqlite_writer_checkpoints_its_wal_at_the_default_page_count(
    sqlite_index: IndexBackend,
) -> None:
    store = sqlite_index.store
    assert isinstance(store, SQLiteAudioMetaStorage)

    (pages,) = await asyncio.to_thread(
        store._locked, lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    )

    assert pages == defaults.SQLITE_WAL_CHECKPOINT_PAGES != 1000


def test_the_index_types_and_sqlite_backend_need_no_psycopg() -> None:
    code = (
        "import sys, pipecat_audio_capture.storage.sqlite, pipecat_audio_capture.storage.index;"
        "sys.exit('psycopg' in sys.modules)"
    )

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
