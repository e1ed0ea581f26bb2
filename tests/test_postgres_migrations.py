"""PostgreSQL only: migrations under concurrency and in their own schema, and startup failures."""

import asyncio
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import migrations
from pipecat_audio_capture.errors import MigrationError, StorageConfigError
from pipecat_audio_capture.migrations import Migration, load_migrations
from pipecat_audio_capture.storage.postgres import (
    MIGRATION_LOCK_ID,
    PostgresAudioMetaStorage,
    migrate_postgres,
)

from support.index import PgSchema, make_segment, make_transcript, new_id, pg_dsn

TABLES = {
    "audio_capture_migrations",
    "session_audio_segments",
    "session_transcripts",
    "session_turn_latencies",
    "session_summaries",
    "session_summary_dirty",
}
VIEWS = {"session_call_log", "session_summary", "session_response_gaps", "session_turn_latency"}
ALL_VERSIONS = [migration.version for migration in load_migrations("postgres")]


async def _objects(pool: AsyncConnectionPool[Any], schema: str) -> dict[str, str]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        )
        return dict(await cursor.fetchall())


async def _recorded_versions(pool: AsyncConnectionPool[Any]) -> list[int]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT version FROM audio_capture_migrations ORDER BY 1")
        return [version for (version,) in await cursor.fetchall()]


async def test_migrations_create_everything_in_the_search_path_schema(
    pg_pool: AsyncConnectionPool[Any], pg_schema: PgSchema
) -> None:
    assert await migrate_postgres(pg_pool) == ALL_VERSIONS
    assert await migrate_postgres(pg_pool) == []

    objects = await _objects(pg_pool, pg_schema.name)
    assert {name for name, kind in objects.items() if kind == "BASE TABLE"} == TABLES
    assert {name for name, kind in objects.items() if kind == "VIEW"} == VIEWS
    assert await _recorded_versions(pg_pool) == ALL_VERSIONS


async def test_eight_workers_migrating_at_once_apply_each_version_once(
    pg_pool: AsyncConnectionPool[Any], pg_schema: PgSchema
) -> None:
    connections = [await psycopg.AsyncConnection.connect(pg_schema.dsn) for _ in range(8)]
    try:
        results = await asyncio.gather(*(migrate_postgres(conn) for conn in connections))
    finally:
        for conn in connections:
            await conn.close()

    assert sorted(results) == [[]] * 7 + [ALL_VERSIONS]
    assert await _recorded_versions(pg_pool) == ALL_VERSIONS
    assert len(await _objects(pg_pool, pg_schema.name)) == len(TABLES) + len(VIEWS)


async def test_a_failing_migration_keeps_nothing(
    pg_pool: AsyncConnectionPool[Any], pg_schema: PgSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*load_migrations("postgres"), Migration(99, "broken", "CREATE TABLE broken (;"))
    monkeypatch.setattr(migrations, "load_migrations", lambda dialect: broken)

    with pytest.raises(MigrationError) as raised:
        await migrate_postgres(pg_pool)

    assert isinstance(raised.value.__cause__, psycopg.errors.SyntaxError)
    assert await _objects(pg_pool, pg_schema.name) == {}


async def test_migrations_give_up_waiting_for_a_stuck_worker(
    pg_pool: AsyncConnectionPool[Any], pg_schema: PgSchema
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as stuck:
        await stuck.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        started = time.monotonic()

        with pytest.raises(MigrationError, match="lock timeout"):
            await migrate_postgres(pg_pool, lock_timeout_s=0.2)

        assert time.monotonic() - started < 2


async def test_migrations_refuse_a_connection_inside_a_transaction(pg_schema: PgSchema) -> None:
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as conn:
        await conn.execute("SELECT 1")

        with pytest.raises(MigrationError, match="outside any transaction"):
            await migrate_postgres(conn)


async def test_versions_from_a_newer_release_are_left_alone(
    pg_pool: AsyncConnectionPool[Any],
) -> None:
    await migrate_postgres(pg_pool)
    async with pg_pool.connection() as conn:
        await conn.execute("INSERT INTO audio_capture_migrations (version, name) VALUES (99, 'x')")

    assert await migrate_postgres(pg_pool) == []
    assert await _recorded_versions(pg_pool) == [*ALL_VERSIONS, 99]


async def test_connect_migrates_and_owns_its_pool(pg_schema: PgSchema) -> None:
    meta = make_segment(new_id())

    async with await PostgresAudioMetaStorage.connect(pg_schema.dsn) as storage:
        await storage.save_metadata(meta.session_id, meta)
        await storage.save_transcript(
            make_transcript(meta.session_id, meta.turn_id, "user", "hi", at_ms=0)
        )
        [entry] = await storage.call_log(meta.session_id)
        pool = storage._pool

    assert (entry.segment_id, entry.text) == (meta.segment_id, "hi")
    assert pool.closed


async def test_a_shared_pool_stays_open(pg_pool: AsyncConnectionPool[Any]) -> None:
    async with PostgresAudioMetaStorage(pg_pool):
        pass

    assert not pg_pool.closed


async def test_server_down_at_startup_fails_fast() -> None:
    started = time.monotonic()

    with pytest.raises(StorageConfigError, match="cannot connect") as raised:
        await PostgresAudioMetaStorage.connect(
            "postgresql://postgres:secret@127.0.0.1:1/test", connect_timeout_s=2
        )

    assert time.monotonic() - started < 3
    assert "secret" not in str(raised.value)


async def test_unanswering_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_answers(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", never_answers)
    started = time.monotonic()

    with pytest.raises(StorageConfigError, match="did not answer"):
        await PostgresAudioMetaStorage.connect(pg_dsn(), connect_timeout_s=0.3)

    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "dsn",
    [
        "not a dsn",
        "postgresql://[::1",
        "host=127.0.0.1 sslmode=sometimes",
        "postgresql://postgres@127.0.0.1:notaport/test",
    ],
)
async def test_malformed_dsn_is_a_config_error(dsn: str) -> None:
    with pytest.raises(StorageConfigError):
        await PostgresAudioMetaStorage.connect(dsn, connect_timeout_s=2)
