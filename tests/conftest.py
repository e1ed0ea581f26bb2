"""Fixtures shared by more than one test module; the helpers they build on are in ``support``.

- Index: ``pg_schema``, ``pg_pool``, ``sqlite_index``, ``postgres_index`` and ``index`` (each
  backend in turn), on a real PostgreSQL (:mod:`support.index`).
- PostgreSQL faults: ``pg_fault_proxy``, ``direct_pool``, ``proxied_pool``
  (:mod:`support.pg_fault`).
- GCS: ``fake_gcs`` (session), ``gcs_client``, ``bucket_name``, ``emulator_env``, ``fault_proxy``,
  ``no_background_requests`` (:mod:`support.gcs`).
- S3: ``moto_s3`` (session), ``s3_client``, ``s3_bucket``, ``s3_env``, ``s3_fault_proxy``
  (:mod:`support.s3`).
- Command line: ``no_index_in_environment``, ``recorded`` (:mod:`support.cli`).
- Call review: ``make_client``, ``review`` (:mod:`support.web`).

Fixtures used by one module are defined in that module.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.cloud import storage
from moto.server import ThreadedMotoServer
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import LocalAudioStorage
from pipecat_audio_capture.index_access import DB_ENV, DSN_ENV
from pipecat_audio_capture.storage.postgres import migrate_postgres
from pipecat_audio_capture.web import create_app

from support.cli import Recorded, RecordedCall, index_args_of
from support.gcs import LOOPBACK, FakeGCS, Fault, FaultProxy, run_fake_gcs
from support.index import (
    T0,
    IndexBackend,
    PgSchema,
    PostgresBackend,
    SQLiteBackend,
    fresh_pg_schema,
)
from support.pg_fault import POOL_TIMEOUT_S, PgFaultProxy, pg_upstream
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3, new_bucket
from support.web import MakeClient, Review, record_call

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# --- index --------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def pg_schema() -> AsyncIterator[PgSchema]:
    """A fresh schema for one test."""
    async with fresh_pg_schema() as schema:
        yield schema


@pytest_asyncio.fixture
async def pg_pool(pg_schema: PgSchema) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """An open pool on the test schema, not yet migrated."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_schema.dsn, min_size=1, max_size=4, open=False
    )
    async with pool:
        yield pool


@pytest_asyncio.fixture
async def sqlite_index(tmp_path: Path) -> AsyncIterator[IndexBackend]:
    """A migrated, empty SQLite index in a folder that does not exist yet."""
    backend = SQLiteBackend(tmp_path / "index" / "audio.sqlite3")
    await backend.migrate()
    yield backend
    await backend.store.close()


@pytest_asyncio.fixture
async def postgres_index(pg_pool: AsyncConnectionPool[Any]) -> AsyncIterator[IndexBackend]:
    """A migrated, empty PostgreSQL index in a schema of its own."""
    backend = PostgresBackend(pg_pool)
    await backend.migrate()
    yield backend
    await backend.store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def index(request: pytest.FixtureRequest) -> IndexBackend:
    """Each backend in turn, migrated and empty."""
    backend: IndexBackend = request.getfixturevalue(f"{request.param}_index")
    return backend


# --- PostgreSQL faults -------------------------------------------------------------------------


@pytest.fixture
def pg_fault_proxy() -> Iterator[PgFaultProxy]:
    """A forwarding proxy in front of the test server, closed after the test."""
    proxy = PgFaultProxy(pg_upstream()).start()
    yield proxy
    proxy.close()


@pytest_asyncio.fixture
async def direct_pool(pg_schema: PgSchema) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A pool straight to the test schema, migrated; the replay and the checks use it."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_schema.dsn, min_size=1, max_size=2, open=False
    )
    async with pool:
        await migrate_postgres(pool)
        yield pool


@pytest_asyncio.fixture
async def proxied_pool(
    pg_schema: PgSchema, pg_fault_proxy: PgFaultProxy, direct_pool: AsyncConnectionPool[Any]
) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """The bot's pool, through the fault proxy, as configured in production (checked on use)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_fault_proxy.dsn(pg_schema.dsn),
        min_size=1,
        max_size=2,
        timeout=POOL_TIMEOUT_S,
        kwargs={"connect_timeout": 2},
        check=AsyncConnectionPool.check_connection,
        open=False,
    )
    await pool.open(wait=True, timeout=5)
    yield pool
    await pool.close(timeout=1)


# --- GCS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGCS]:
    """A fake-gcs-server shared by the test session."""
    with run_fake_gcs() as server:
        yield server


@pytest.fixture
def no_background_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop google-cloud-storage (3.17+) from fetching bucket metadata in a background thread.

    On a client's first call for a bucket the library starts a ``GET bucket`` for its tracing
    attributes. In these tests that request would take scripted faults meant for the upload.
    """
    monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")


@pytest.fixture
def gcs_client(fake_gcs: FakeGCS, no_background_requests: None) -> storage.Client:
    """An anonymous client talking straight to the fake server."""
    return fake_gcs.client()


@pytest.fixture
def bucket_name(gcs_client: storage.Client) -> str:
    """A new empty bucket with versioning on; every write leaves a generation to count."""
    bucket = gcs_client.bucket(f"test-{uuid.uuid4().hex[:16]}")
    bucket.versioning_enabled = True
    gcs_client.create_bucket(bucket)
    return str(bucket.name)


@pytest.fixture
def emulator_env(
    fake_gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch, no_background_requests: None
) -> str:
    """Set ``STORAGE_EMULATOR_HOST`` to the fake server for one test; return its URL."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    return fake_gcs.url


@pytest.fixture
def fault_proxy(
    fake_gcs: FakeGCS, no_background_requests: None
) -> Iterator[Callable[..., FaultProxy]]:
    """Return ``start(*faults, then=Fault.FORWARD)``, which runs a proxy in front of the server."""
    yield from _fault_proxies(fake_gcs.port)


def _fault_proxies(port: int) -> Iterator[Callable[..., FaultProxy]]:
    """Yield a starter of fault proxies in front of ``port``; close them all afterwards."""
    proxies: list[FaultProxy] = []

    def start(*faults: Fault, then: Fault = Fault.FORWARD) -> FaultProxy:
        proxy = FaultProxy((LOOPBACK, port), faults, then=then)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.close()


# --- S3 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server shared by the test session."""
    # The server logs every request at INFO; a test's output keeps only its warnings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(url=f"http://{host}:{port}", port=port)
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_s3: MotoS3) -> S3Client:
    """A client talking straight to the moto server."""
    return moto_s3.client()


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> str:
    """A new empty bucket with versioning on; every write leaves a version to count."""
    return new_bucket(s3_client)


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """Set test credentials and region for one test; return the server's URL.

    The instance metadata service is switched off so a missing credential fails at once.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_s3.url


@pytest.fixture
def s3_fault_proxy(moto_s3: MotoS3) -> Iterator[Callable[..., FaultProxy]]:
    """Return ``start(*faults, then=Fault.FORWARD)``, which runs a proxy in front of the server."""
    yield from _fault_proxies(moto_s3.port)


# --- command line ------------------------------------------------------------------------------


@pytest.fixture
def no_index_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No index named by the environment, so a command uses only the index its arguments name."""
    monkeypatch.delenv(DB_ENV, raising=False)
    monkeypatch.delenv(DSN_ENV, raising=False)
    # Tables are fitted to $COLUMNS when it is set; these tests read them at full width.
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest_asyncio.fixture
async def recorded(index: IndexBackend, request: pytest.FixtureRequest, tmp_path: Path) -> Recorded:
    """Each backend in turn, holding a call and an older one."""
    files = LocalAudioStorage(tmp_path / "recordings")
    call, older = RecordedCall(), RecordedCall(T0 - timedelta(hours=1))
    for recorded_call in (older, call):
        await recorded_call.record(files, index.store)
    return Recorded(index_args_of(index, request), files, call, older)


# --- call review -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def make_client(index: IndexBackend, tmp_path: Path) -> AsyncIterator[MakeClient]:
    """Return ``make(**create_app_options)``: a started client of an app on ``index``."""
    clients = []

    async def make(**options: object) -> TestClient[web.Request, web.Application]:
        options.setdefault("recordings", tmp_path / "recordings")
        client = TestClient(TestServer(create_app(index.store, **options)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest_asyncio.fixture
async def review(index: IndexBackend, tmp_path: Path, make_client: MakeClient) -> Review:
    """Each backend in turn, holding one call recorded under ``tmp_path/recordings``."""
    files = LocalAudioStorage(tmp_path / "recordings")
    call = await record_call(index.store, files)
    return Review(index, files, call, await make_client(), make_client)
