"""The call review under hostile load: absurd index rows, slow reads, idle sockets, log floods."""

import asyncio
import logging
import resource
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from loguru import logger

from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.web import ServeOptions, create_app
from pipecat_audio_capture.web.connections import connection_cap
from pipecat_audio_capture.web.log_limit import MAX_KINDS, LogThrottle, ThrottleFilter
from pipecat_audio_capture.web.server import Listener, listening
from pipecat_audio_capture.web.timeline import MAX_TICKS, WIDTH, timeline

from support.index import T0, IndexBackend, at, make_segment, new_id
from support.web import SCRIPT, Review, call_log_entry, parse, record_call

TOKEN = "a-token-for-the-serve-limit-tests"


class Lines:
    """Collects what loguru writes at WARNING and above while it is open."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._sink = logger.add(self.lines.append, level="WARNING", format="{message}")

    def close(self) -> None:
        logger.remove(self._sink)


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    lines = Lines()
    yield lines
    lines.close()


# --- drawing is bounded whatever the index holds ----------------------------------------------


async def test_an_absurd_unplayed_ms_keeps_the_call_page_small(
    index: IndexBackend, tmp_path: Path
) -> None:
    session = new_id()
    user = make_segment(session, duration_ms=1000)
    bot = make_segment(
        session, speaker="bot", start_ms=1500, duration_ms=1000, interrupted=True, unplayed_ms=1e12
    )
    for meta in (user, bot):
        await index.store.save_metadata(session, meta)
    app = create_app(index.store, recordings=tmp_path)

    async with _client(app) as client:
        response = await client.get(f"/sessions/{session}")
        page = await response.text()

    found = parse(page)
    ticks = [attrs for tag, attrs in found.elements if attrs.get("class") == "tick"]
    (unplayed,) = [attrs for tag, attrs in found.elements if attrs.get("class") == "unplayed"]
    assert response.status == 200
    assert len(page) < 20_000
    assert len(found.elements) < 100
    assert len(ticks) <= MAX_TICKS + 1
    # Drawn as long as the call at most (2.5 s), so it ends inside the picture.
    assert float(unplayed["x"] or 0) + float(unplayed["width"] or 0) <= WIDTH
    assert "turn 2: 1000000000.00 s generated but never played" in found.texts["title"]


def test_turns_thousands_of_years_apart_get_a_handful_of_ticks() -> None:
    first = call_log_entry("user", 0, 1000)
    later = T0 + timedelta(days=365 * 7000)
    last = replace(
        call_log_entry("assistant", 0, 1000), occurred_at=later, started_at=later, ended_at=later
    )

    found = parse(timeline([first, last]))

    ticks = [attrs for tag, attrs in found.elements if attrs.get("class") == "tick"]
    assert 2 <= len(ticks) <= MAX_TICKS + 1
    assert all(0 <= float(tick["x1"] or 0) <= WIDTH for tick in ticks)


def test_a_turn_that_starts_before_the_first_is_drawn_from_zero() -> None:
    early = at(-5000)
    entries = [
        call_log_entry("user", 0, 1000),
        replace(call_log_entry("assistant", 0, 1000), started_at=early),
    ]

    found = parse(timeline(entries))

    turns = [attrs for tag, attrs in found.elements if "data-turn" in attrs]
    assert all(float(turn["x"] or 0) >= 56 for turn in turns)


@pytest.mark.parametrize("index", ["sqlite"], indirect=True)
async def test_a_call_with_more_turns_than_a_page_shows_is_cut_with_a_note(
    index: IndexBackend, tmp_path: Path
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    call = await record_call(index.store, files)
    app = create_app(index.store, recordings=tmp_path / "recordings", max_turns=2)

    async with _client(app) as client:
        page = await (await client.get(f"/sessions/{call.session_id}")).text()

    found = parse(page)
    rows = [attrs for tag, attrs in found.elements if tag == "tr" and "id" in attrs]
    assert [row["id"] for row in rows] == ["turn-1", "turn-2"]
    assert found.texts["p.more-turns"]
    assert found.texts["p.facts"][0].startswith("the first 2 turns")
    assert SCRIPT in found.texts["span.said"]


# --- reads run side by side -------------------------------------------------------------------


async def test_pages_answer_while_a_write_waits_for_another_process_lock(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    store = SQLiteAudioMetaStorage(path, busy_timeout_s=60)
    files = LocalAudioStorage(tmp_path / "recordings")
    call = await record_call(store, files)
    app = create_app(store, recordings=tmp_path / "recordings")
    # Another process (a bot writing) holds the write lock: the next save waits for it, on
    # the storage's one writing connection.
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        late = make_segment(call.session_id, start_ms=9000)
        waiting_save = asyncio.create_task(store.save_metadata(call.session_id, late))
        await asyncio.sleep(0.2)
        try:
            async with _client(app) as client, asyncio.timeout(20):
                pages = [
                    await client.get("/"),
                    await client.get(f"/sessions/{call.session_id}"),
                    await client.get(f"/audio/{call.segments[0].segment_id}"),
                ]
                statuses = [page.status for page in pages]
            write_still_waiting = not waiting_save.done()
        finally:
            other.execute("ROLLBACK")
        await waiting_save
    await store.close()

    assert statuses == [200, 200, 200]
    assert write_still_waiting


async def test_reads_of_a_closed_sqlite_index_say_it_is_closed(tmp_path: Path) -> None:
    store = SQLiteAudioMetaStorage(tmp_path / "index.sqlite3")
    await store.run_migrations()
    assert await store.list_sessions() == []
    await store.close()

    with pytest.raises(Exception, match="is closed"):
        await store.list_sessions()


# --- connections ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def guarded(review: Review) -> AsyncIterator[Listener]:
    """The review app behind a token, served with a cap of 16 connections."""
    app = create_app(review.store, recordings=review.files.root, token=TOKEN)
    options = ServeOptions(max_connections=16, header_timeout_s=60.0)
    async with listening(app, "127.0.0.1", 0, options) as listener:
        yield listener


@pytest.mark.parametrize("index", ["sqlite"], indirect=True)
async def test_half_open_sockets_above_the_cap_do_not_lock_out_a_token_holder(
    guarded: Listener,
) -> None:
    sockets = []
    for number in range(64):
        reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
        if number % 2:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a head that never ends
        sockets.append((reader, writer))
    await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as session, asyncio.timeout(20):
        url = f"http://127.0.0.1:{guarded.port}/"
        response = await session.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        status = response.status
        response.release()
    closed = [await asyncio.wait_for(reader.read(), 10) for reader, _ in sockets[:40]]
    for _, writer in sockets:
        writer.close()

    assert status == 200
    assert guarded.guard.open_connections <= 16
    assert guarded.guard.counts.evicted >= 64 - 16
    assert closed == [b""] * 40, "the oldest half-open sockets were closed, unanswered"


@pytest.mark.parametrize("index", ["sqlite"], indirect=True)
async def test_a_connection_that_never_finishes_its_head_is_closed_at_the_deadline(
    review: Review,
) -> None:
    app = create_app(review.store, recordings=review.files.root)
    options = ServeOptions(header_timeout_s=0.3)
    async with listening(app, "127.0.0.1", 0, options) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{listener.port}/")
            status = response.status
            response.release()

    assert answer == b""
    assert listener.guard.counts.timed_out == 1
    assert status == 200


@pytest.mark.parametrize("index", ["sqlite"], indirect=True)
async def test_a_refused_client_does_not_keep_its_connection(guarded: Listener) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()

    # The read ends because the server closed: its idle timeout (15 s) is beyond the wait.
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"\r\nConnection: close\r\n" in answer


def test_the_connection_cap_leaves_half_the_open_file_limit_free() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert connection_cap(10**9) == soft // 2
    assert connection_cap(16) == 16


# --- the log cannot be flooded ----------------------------------------------------------------


def test_ten_thousand_identical_errors_write_five_lines_and_a_count(log_lines: Lines) -> None:
    now = [0.0]
    throttle = LogThrottle(burst=5, window_s=60.0, clock=lambda: now[0])

    for _ in range(10_000):
        throttle.error("index closed", "GET / failed: the audio index is closed")
    now[0] = 61.0
    throttle.error("index closed", "GET / failed: the audio index is closed")

    assert len(log_lines.lines) == 6
    assert log_lines.lines[-1].rstrip().endswith("(9995 more like this were not logged)")


def test_ten_thousand_different_errors_write_a_bounded_number_of_lines(log_lines: Lines) -> None:
    throttle = LogThrottle(burst=5, window_s=60.0)

    for number in range(10_000):
        throttle.error(f"kind {number % 1000}", f"error {number}")
    throttle.flush()

    assert len(log_lines.lines) <= (MAX_KINDS + 1) * 5 + MAX_KINDS + 1
    assert throttle.suppressed_total >= 10_000 - (MAX_KINDS + 1) * 5


def test_kinds_quiet_for_a_window_make_room_for_new_ones(log_lines: Lines) -> None:
    now = [0.0]
    throttle = LogThrottle(burst=1, window_s=60.0, clock=lambda: now[0])
    for number in range(MAX_KINDS):
        throttle.error(f"kind {number}", f"error {number}")
    now[0] = 61.0

    for number in range(MAX_KINDS, MAX_KINDS + 10):
        throttle.error(f"kind {number}", f"error {number}")

    assert len(log_lines.lines) == MAX_KINDS + 10, "each new kind got its own line"


def test_ten_thousand_accept_errors_from_asyncio_write_five_records() -> None:
    handler = _Records()
    records = handler.records
    asyncio_log = logging.getLogger("asyncio")
    log_filter = ThrottleFilter(LogThrottle(burst=5, window_s=60.0))
    asyncio_log.addHandler(handler)
    asyncio_log.addFilter(log_filter)
    try:
        error = OSError(24, "Too many open files")
        for _ in range(10_000):
            asyncio_log.error("socket.accept() out of system resource", exc_info=error)
    finally:
        asyncio_log.removeFilter(log_filter)
        asyncio_log.removeHandler(handler)

    assert len(records) == 5


@pytest.mark.parametrize("index", ["sqlite"], indirect=True)
async def test_a_failing_index_hit_three_hundred_times_logs_five_errors(
    review: Review, log_lines: Lines
) -> None:
    app = create_app(review.store, recordings=review.files.root)
    await review.store.close()

    async with _client(app) as client:
        statuses = {(await client.get(f"/sessions/{new_id()}")).status for _ in range(300)}

    assert statuses == {503}
    assert len([line for line in log_lines.lines if "is closed" in line]) == 5


# --- helpers ----------------------------------------------------------------------------------


class _Records(logging.Handler):
    """A standard-library handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@asynccontextmanager
async def _client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A started test client of ``app``."""
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
