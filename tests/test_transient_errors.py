"""Retries on an allowlist: backends mark what another attempt can cure; the rest fails once."""

import dataclasses
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from google.cloud import storage
from psycopg import errors as pg_errors

from pipecat_audio_capture import (
    InvalidIdError,
    LocalAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    SQLiteAudioMetaStorage,
    StorageConfigError,
    StorageError,
    WriteTimeoutError,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.retry import is_transient, retrying
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.postgres import is_transient_postgres_error
from pipecat_audio_capture.storage.s3 import S3AudioStorage
from pipecat_audio_capture.storage.sqlite import is_transient_sqlite_error
from pipecat_audio_capture.wav import encode_wav

from support.bucket import SEGMENT, SESSION, TURN
from support.gcs import FakeGCS, Fault, FaultProxy
from support.index import DEFAULT_DSN, DSN_ENV, make_segment
from support.reliability import events_of, pending_segment
from support.s3 import MotoS3

ProxyFactory = Callable[..., FaultProxy]

QUICK = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02, deadline_s=2.0)
WAV = encode_wav([b"\x01\x00" * 800], 16000, 1)


async def attempts_of(error: Exception) -> int:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise error

    # A TimeoutError the attempt raises reads as the attempt timing out.
    with pytest.raises((type(error), WriteTimeoutError)):
        await retrying(failing, policy=QUICK, attempt_timeout_s=1.0, what="x")
    return calls


@pytest.mark.parametrize(
    "error",
    [
        InvalidIdError("bad id"),
        StorageConfigError("no bucket"),
        StorageError("refused row", transient=False),
        RuntimeError("a bug"),
        KeyError("a bug"),
    ],
)
async def test_an_error_off_the_allowlist_is_attempted_exactly_once(error: Exception) -> None:
    assert await attempts_of(error) == 1
    assert error.__notes__ == ["not retried: writing x cannot succeed on another attempt"]


@pytest.mark.parametrize(
    "error",
    [StorageError("outage"), ConnectionResetError("reset"), TimeoutError("slow")],
)
async def test_timeouts_lost_connections_and_outages_are_retried(error: Exception) -> None:
    assert is_transient(error)
    assert await attempts_of(error) == QUICK.attempts


class CountingFiles(LocalAudioStorage):
    """Local files that count every store call."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.stores = 0

    async def store_segment(self, *args: object, **kwargs: object) -> str:
        self.stores += 1
        return await super().store_segment(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_local_file_holding_different_audio_is_attempted_once_and_spooled(
    tmp_path: Path,
) -> None:
    files = CountingFiles(tmp_path / "recordings")
    capture = SessionAudioCapture(new_id(), files, retry=QUICK, spool_dir=tmp_path / "spool")
    events = events_of(capture, "on_segment_spooled")
    segment = pending_segment(capture.session_id)
    await files.store_segment(
        capture.session_id, segment.segment_id, "user", WAV, turn_id=segment.turn_id
    )

    capture.record_segment(segment)
    stats = await capture.close(timeout_s=5)

    assert files.stores == 2  # the one above, then a single attempt by the capture
    assert (stats.stored, stats.spooled, stats.failed) == (0, 1, 0)
    assert events["on_segment_spooled"] == [(segment, "write_failed")]


def test_sqlite_marks_only_a_busy_or_locked_database_transient(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0.0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as no_table:
        holder.execute("INSERT INTO missing VALUES (1)")
    holder.execute("ROLLBACK")
    holder.close()
    other.close()

    assert is_transient_sqlite_error(locked.value)
    assert not is_transient_sqlite_error(no_table.value)
    assert not is_transient_sqlite_error(sqlite3.IntegrityError("CHECK constraint failed"))


async def test_a_row_refused_by_the_sqlite_index_is_attempted_once(tmp_path: Path) -> None:
    index = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3")
    naive = dataclasses.replace(make_segment(new_id()), started_at=datetime(2025, 3, 1, 12))
    calls = 0

    async def save_refused() -> None:
        nonlocal calls
        calls += 1
        await index.save_metadata(naive.session_id, naive)

    with pytest.raises(StorageError, match="timezone-aware") as refused:
        await retrying(save_refused, policy=QUICK, attempt_timeout_s=5.0, what="x")
    await index.close()

    assert calls == 1 and not refused.value.transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (pg_errors.SerializationFailure("could not serialize access"), True),
        (pg_errors.DeadlockDetected("deadlock detected"), True),
        (pg_errors.AdminShutdown("terminating connection"), True),
        (pg_errors.TooManyConnections("too many clients"), True),
        (pg_errors.UndefinedTable("relation does not exist"), False),
        (pg_errors.CheckViolation("violates check constraint"), False),
        (pg_errors.InvalidTextRepresentation("invalid input syntax"), False),
    ],
)
def test_postgres_marks_connection_and_serialization_classes_transient(
    error: psycopg.Error, transient: bool
) -> None:
    assert is_transient_postgres_error(error) is transient


async def test_a_real_postgres_error_off_the_allowlist_is_not_transient() -> None:
    dsn = os.environ.get(DSN_ENV, DEFAULT_DSN)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as undefined:
            await conn.execute("SELECT * FROM no_such_table_15a")
    with pytest.raises(psycopg.OperationalError) as refused:
        await psycopg.AsyncConnection.connect(
            "postgresql://postgres@127.0.0.1:1/test", connect_timeout=2
        )

    assert not is_transient_postgres_error(undefined.value)
    assert is_transient_postgres_error(refused.value)


@pytest.mark.parametrize(
    ("fault", "transient"),
    [(Fault.UNAVAILABLE, True), (Fault.TOO_MANY_REQUESTS, True), (Fault.FORBIDDEN, False)],
)
async def test_gcs_marks_429_and_5xx_transient_and_403_not(
    fault: Fault,
    transient: bool,
    fault_proxy: ProxyFactory,
    fake_gcs: FakeGCS,
    bucket_name: str,
    gcs_client: storage.Client,
) -> None:
    proxy = fault_proxy(then=fault)
    files = GCSAudioStorage(
        bucket=bucket_name, client=fake_gcs.client(proxy.url), timeout_s=1.0, retry_deadline_s=0.3
    )

    with pytest.raises(StorageError) as failed:
        await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert failed.value.transient is transient


@pytest.mark.parametrize(
    ("fault", "transient"),
    [(Fault.UNAVAILABLE, True), (Fault.DROP, True), (Fault.FORBIDDEN, False)],
)
async def test_s3_marks_5xx_and_lost_connections_transient_and_403_not(
    fault: Fault,
    transient: bool,
    s3_fault_proxy: ProxyFactory,
    moto_s3: MotoS3,
    s3_bucket: str,
) -> None:
    proxy = s3_fault_proxy(then=fault)
    files = S3AudioStorage(
        bucket=s3_bucket, client=moto_s3.client(proxy.url, timeout_s=1.0), retry_deadline_s=0.3
    )

    with pytest.raises(StorageError) as failed:
        await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert failed.value.transient is transient
