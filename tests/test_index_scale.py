"""Big indexes: the maintained session summaries stay exact, and reads reach the indexes.

How fast the reads are with 100,000 calls is measured in ``benchmarks/big_index.py``; these tests
check what makes them fast (the query plans) and that the faster path gives the same answers.
"""

import asyncio
from dataclasses import replace
from typing import Any
from unittest import mock

from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import migrations
from pipecat_audio_capture.migrations import load_migrations
from pipecat_audio_capture.storage.index import CallLogEntry, SessionSummary, view_queries

from support.index import (
    Call,
    IndexBackend,
    PostgresBackend,
    at,
    make_segment,
    make_transcript,
    new_id,
)


def summary_of(entries: list[CallLogEntry]) -> SessionSummary:
    """The summary of one call, computed here from its call log, as the 0002 view did."""
    return SessionSummary(
        session_id=entries[0].session_id,
        started_at=min(entry.occurred_at for entry in entries),
        ended_at=max(entry.ended_at or entry.occurred_at for entry in entries),
        turns=len(entries),
        segments=sum(entry.segment_count for entry in entries),
        user_talk_ms=sum(entry.duration_ms or 0.0 for entry in entries if entry.role == "user"),
        bot_talk_ms=sum(entry.duration_ms or 0.0 for entry in entries if entry.role == "assistant"),
        interruptions=sum(
            1 for entry in entries if entry.audio_interrupted or entry.transcript_interrupted
        ),
        bytes=sum(entry.byte_size or 0 for entry in entries),
    )


async def expected_summaries(index: IndexBackend, sessions: list[str]) -> list[SessionSummary]:
    summaries = []
    for session_id in sessions:
        entries = await index.store.call_log(session_id)
        if entries:
            summaries.append(summary_of(entries))
    return sorted(summaries, key=lambda s: (-s.started_at.timestamp(), s.session_id))


async def test_the_summaries_follow_every_kind_of_write(index: IndexBackend) -> None:
    calls = [Call(), Call()]
    for call in calls:
        await call.save(index)
    sessions = [call.session_id for call in calls]
    first = calls[0]
    steps = []

    async def check(step: str) -> None:
        listed = await index.store.list_sessions()
        steps.append((step, listed == await expected_summaries(index, sessions)))

    await check("saved")
    # A re-sent transcript-only turn that moves before the first audio starts the call earlier.
    moved = make_transcript(first.session_id, first.turns["B2"], "assistant", "Go on.", at_ms=-500)
    await index.store.save_transcript(moved)
    await check("transcript moved earlier")
    # Its audio arriving late makes it an audio turn: the transcript's time no longer counts.
    late_audio = make_segment(
        first.session_id, turn_id=first.turns["B2"], speaker="bot", start_ms=6400
    )
    await index.store.save_metadata(first.session_id, late_audio)
    await check("audio for a transcript-only turn")
    await index.store.delete_session(calls[1].session_id)
    await check("second call deleted")

    assert steps == [(step, True) for step, _ in steps]
    [summary] = await index.store.list_sessions()
    assert summary.started_at == at(0)
    assert await index.count("session_summaries") == 1


async def test_a_call_whose_rows_are_all_deleted_leaves_no_summary(index: IndexBackend) -> None:
    session = new_id()
    await index.store.save_transcript(make_transcript(session, new_id(), "user", "hi", at_ms=0))

    await index.store.delete_session(session)

    assert await index.store.list_sessions() == []
    assert await index.count("session_summaries") == 0


async def test_concurrent_writes_to_one_call_all_count_in_its_summary(index: IndexBackend) -> None:
    session = new_id()
    segments = [make_segment(session, start_ms=i * 1000) for i in range(30)]
    transcripts = [
        make_transcript(session, meta.turn_id or new_id(), "user", f"turn {i}", at_ms=i * 1000)
        for i, meta in enumerate(segments)
    ]

    await asyncio.gather(
        *(index.store.save_metadata(session, meta) for meta in segments),
        *(index.store.save_transcript(record) for record in transcripts),
    )

    [summary] = await index.store.list_sessions()
    assert summary == (await expected_summaries(index, [session]))[0]
    assert (summary.turns, summary.segments) == (30, 30)


async def test_a_page_of_the_list_holds_the_same_calls_as_before(index: IndexBackend) -> None:
    sessions = [new_id() for _ in range(7)]
    for hour, session_id in enumerate(sessions):
        meta = make_segment(session_id, start_ms=(hour % 3) * 3_600_000)
        await index.store.save_metadata(session_id, replace(meta))
    expected = await expected_summaries(index, sessions)

    pages = [await index.store.list_sessions(limit=3, offset=offset) for offset in (0, 3, 6)]

    assert [summary for page in pages for summary in page] == expected


async def test_one_call_and_the_newest_calls_are_read_through_indexes_in_sqlite(
    sqlite_index: IndexBackend,
) -> None:
    await Call().save(sqlite_index)
    queries = view_queries("?")
    session = new_id()
    plans = {
        "sessions": await sqlite_index.fetch(
            f"EXPLAIN QUERY PLAN {queries.sessions.replace('?', '50', 1).replace('?', '0')}"
        ),
        "call log": await _sqlite_plan(sqlite_index, queries.call_log, session),
        "gaps": await _sqlite_plan(sqlite_index, queries.gaps, session),
    }

    details = {name: [row[-1] for row in plan] for name, plan in plans.items()}
    assert details["sessions"] == [
        "SCAN session_summaries USING INDEX session_summaries_newest_idx"
    ]
    for name in ("call log", "gaps"):
        # Every read of a base table is a search by the call's id, never a scan of all calls
        # (through an index or not).
        scans = [d for d in details[name] if d.split()[:2] in [["SCAN", t] for t in BASE_TABLES]]
        assert scans == [], name
        assert any("(session_id=?)" in d for d in details[name]), name


BASE_TABLES = ("session_audio_segments", "session_transcripts", "s", "t", "f")
"""The base tables, and the aliases the SQLite views give them."""


async def _sqlite_plan(backend: IndexBackend, query: str, session: str) -> list[tuple[Any, ...]]:
    literal = query.replace("?", f"'{session}'", 1).replace("?", "1000")
    return await backend.fetch(f"EXPLAIN QUERY PLAN {literal}")


async def test_one_call_and_the_newest_calls_are_read_through_indexes_in_postgres(
    postgres_index: IndexBackend, pg_pool: AsyncConnectionPool[Any]
) -> None:
    await Call().save(postgres_index)
    queries = view_queries("%s")
    session = new_id()
    plans = {}
    async with pg_pool.connection() as conn:
        # On a table this small a sequential scan is cheapest; forbidding it shows whether an
        # index path exists at all.
        await conn.execute("SET enable_seqscan = off")
        for name, query, params in (
            ("sessions", queries.sessions, (50, 0)),
            ("call log", queries.call_log, (session, 1000)),
            ("gaps", queries.gaps, (session, 1000)),
        ):
            cursor = await conn.execute(f"EXPLAIN {query}", params)
            plans[name] = "\n".join(row[0] for row in await cursor.fetchall())
        await conn.execute("RESET enable_seqscan")

    assert "Index Scan using session_summaries_newest_idx" in plans["sessions"]
    for name in ("call log", "gaps"):
        assert "Seq Scan" not in plans[name], plans[name]


PENDING_CALLS = {"sqlite": "session_summary_deferred", "postgres": "session_summary_dirty"}
"""Each dialect's list of calls whose summary the current transaction refreshes at its end."""


async def test_batches_of_many_calls_leave_every_summary_exact_and_no_call_pending(
    index: IndexBackend,
) -> None:
    sessions = [new_id() for _ in range(12)]
    saves = []
    for session in sessions:
        for i in range(6):
            meta = make_segment(session, start_ms=i * 1000, speaker="bot" if i % 2 else "user")
            role = "assistant" if i % 2 else "user"
            text = make_transcript(session, meta.turn_id or new_id(), role, f"t{i}", at_ms=i * 1000)
            saves += [index.store.save_metadata(session, meta), index.store.save_transcript(text)]

    await asyncio.gather(*saves)

    assert await index.store.list_sessions() == await expected_summaries(index, sessions)
    assert await index.count(PENDING_CALLS[index.name]) == 0


async def test_rows_deleted_by_raw_sql_outside_the_package_update_the_summary(
    index: IndexBackend,
) -> None:
    call = Call()
    await call.save(index)
    [before] = await index.store.list_sessions()

    await index.execute("DELETE FROM session_audio_segments WHERE speaker = 'user'")

    [after] = await index.store.list_sessions()
    assert [after] == await expected_summaries(index, [call.session_id])
    assert after.user_talk_ms < before.user_talk_ms
    assert await index.count(PENDING_CALLS[index.name]) == 0


async def test_upgrading_a_postgres_index_from_before_0003_summarizes_the_calls_it_holds(
    pg_pool: AsyncConnectionPool[Any],
) -> None:
    old = PostgresBackend(pg_pool)
    earlier = tuple(m for m in load_migrations("postgres") if m.version <= 2)
    # The migration runner looks the list up where it is defined.
    with mock.patch.object(migrations, "load_migrations", lambda dialect: earlier):
        await old.migrate()
    await old.store.close()
    sessions = [new_id() for _ in range(3)]
    for number, session in enumerate(sessions):
        # Written as the release before 0003 wrote them: a turn split in two segments, an
        # interrupted bot turn, a transcript-only turn and a segment without a turn.
        split, bot, spoken = new_id(), new_id(), new_id()
        start = f"TIMESTAMPTZ '2026-01-0{number + 1} 10:00:00+00'"
        segments = [
            (split, "user", 0, 900, False),
            (split, "user", 900, 1500, False),
            (bot, "bot", 2000, 3100, True),
            (None, "user", 4000, 4400, False),
        ]
        await old.execute(
            "INSERT INTO session_audio_segments (segment_id, session_id, turn_id, speaker, "
            "audio_url, sample_rate, num_channels, duration_ms, byte_size, interrupted, "
            "started_at, ended_at) VALUES "
            + ", ".join(
                f"('{new_id()}', '{session}', {_sql_text(turn)}, '{speaker}', "
                f"'file:///{new_id()}.wav', 16000, 1, {end - begin}, {(end - begin) * 32}, "
                f"{interrupted}, {start} + {begin} * INTERVAL '1 ms', "
                f"{start} + {end} * INTERVAL '1 ms')"
                for turn, speaker, begin, end, interrupted in segments
            )
        )
        await old.execute(
            "INSERT INTO session_transcripts (session_id, turn_id, role, text, interrupted, "
            "occurred_at) VALUES "
            + ", ".join(
                f"('{session}', '{turn}', '{role}', 'words', {interrupted}, "
                f"{start} + {at_ms} * INTERVAL '1 ms')"
                for turn, role, at_ms, interrupted in (
                    (split, "user", 1500, False),
                    (bot, "assistant", 3100, True),
                    (spoken, "assistant", -300, False),
                )
            )
        )
    upgraded = PostgresBackend(pg_pool)

    await upgraded.migrate()

    summaries = await upgraded.store.list_sessions()
    assert summaries == await expected_summaries(upgraded, sessions)
    assert [(s.turns, s.segments, s.interruptions) for s in summaries] == [(4, 4, 1)] * 3
    await upgraded.store.close()


def _sql_text(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"
