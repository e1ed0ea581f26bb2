"""The call review over HTTP: pages, audio, ranges, access control, headers and escaping."""

import asyncio
import gzip
import os
import re
import secrets
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import storage
from google.oauth2 import service_account
from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.cli import main
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.web import security
from pipecat_audio_capture.web.markup import element
from pipecat_audio_capture.web.render import session_page
from pipecat_audio_capture.web.security import (
    CONTENT_SECURITY_POLICY,
    COOKIE,
    TOKEN_ENV,
    estimated_bits,
    token_problem,
)
from pipecat_audio_capture.web.timeline import timeline

from support.browser import running_review
from support.index import make_segment, new_id
from support.web import (
    SCRIPT,
    TOKEN,
    MakeClient,
    Review,
    call_log_entry,
    parse,
    record_call,
    sqlite_only,
)

SECRET = b"TOP SECRET: not a recording"
SWAP_RACE_ROUNDS = 60
SWAP_RACE_BATCH = 8


async def raw_get(
    client: TestClient[web.Request, web.Application], target: str
) -> tuple[int, bytes]:
    """Send a request line exactly as given (no client-side normalisation of ``..``)."""
    return await raw_request(client, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())


async def raw_request(
    client: TestClient[web.Request, web.Application], head: bytes
) -> tuple[int, bytes]:
    """Send a request head exactly as given (it ends with its last header line)."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(head + b"Connection: close\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --- the list of calls ------------------------------------------------------------------------


async def test_sessions_page_lists_each_call_with_its_summary(review: Review) -> None:
    response = await review.client.get("/")
    page = await response.text()

    assert response.status == 200
    assert response.content_type == "text/html"
    assert f'href="/sessions/{review.call.session_id}"' in page
    cells = parse(page).texts["td"]
    # length 0:03.50, 4 turns, user 1.60 s, bot 1.00 s, 1 interrupted
    assert cells[:5] == ["0:03.50", "4", "1.60 s", "1.00 s", "1"]
    assert "older calls" not in page
    assert "newer calls" not in page


@sqlite_only
async def test_sessions_are_paged_newest_first_with_links_both_ways(review: Review) -> None:
    calls = [review.call]
    for hours in (1, 2):
        calls.append(await record_call(review.store, review.files, start_ms=-hours * 3_600_000))
    client = await review.make_client(page_size=2)

    pages = [await (await client.get(url)).text() for url in ("/", "/?page=2")]
    beyond = await client.get("/?page=3")

    listed = [re.findall(r'href="/sessions/([0-9a-f-]{36})"><code>', page) for page in pages]
    assert listed == [[calls[0].session_id, calls[1].session_id], [calls[2].session_id]]
    assert 'href="/?page=2" rel="next"' in pages[0]
    assert 'rel="prev"' not in pages[0]
    assert 'href="/" rel="prev"' in pages[1]
    assert 'rel="next"' not in pages[1]
    assert beyond.status == 404


@sqlite_only
async def test_an_empty_index_says_so(make_client: MakeClient) -> None:
    response = await (await make_client()).get("/")

    assert response.status == 200
    assert "No calls are recorded in this index yet." in await response.text()


@sqlite_only
@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "²", "1234567890", ""])
async def test_a_malformed_page_number_is_a_bad_request(review: Review, page: str) -> None:
    response = await review.client.get("/", params={"page": page})

    assert response.status == 400


# --- one call ---------------------------------------------------------------------------------


async def test_session_page_lists_every_turn_in_spoken_order_with_a_player(
    review: Review,
) -> None:
    response = await review.client.get(f"/sessions/{review.call.session_id}")
    page = await response.text()
    found = parse(page)

    assert response.status == 200
    assert found.texts["span.said"] == [text for text in review.call.texts if text is not None], (
        "transcripts, in spoken order, unescaped once parsed"
    )
    audios = [attrs for tag, attrs in found.elements if tag == "audio"]
    assert [(a["id"], a["src"], a["preload"]) for a in audios] == [
        ("call-audio", f"/sessions/{review.call.session_id}/call.wav", "metadata"),
        *(
            (f"audio-{number}", f"/audio/{segment.segment_id}", "metadata")
            for number, segment in enumerate(review.call.segments, start=1)
        ),
    ]
    assert all("controls" in audio for audio in audios)
    assert found.texts["em"] == ["(no transcript)"]
    assert found.texts["span.no-audio"] == ["no audio"]
    assert found.texts["span.interrupted"] == ["interrupted"]
    assert found.texts["span.unplayed-note"] == ["0.60 s never played"]


async def test_picture_draws_each_turn_with_audio_in_its_lane_and_marks_the_cut(
    review: Review,
) -> None:
    page = await (await review.client.get(f"/sessions/{review.call.session_id}")).text()
    found = parse(page)

    rects = [attrs for tag, attrs in found.elements if tag == "rect"]
    turns = [r for r in rects if "data-turn" in r]
    assert [(r["data-turn"], r["class"]) for r in turns] == [
        ("audio-1", "turn user"),
        ("audio-2", "turn bot interrupted"),
        ("audio-3", "turn user"),
    ]
    # The axis spans 0 .. 3.1 s (the cut turn's 2.5 s end plus 0.6 s unplayed) over 928 units.
    unit = 928 / 3.1
    assert float(turns[0]["x"] or 0) == pytest.approx(56)
    assert float(turns[0]["width"] or 0) == pytest.approx(1.0 * unit, abs=0.01)
    assert float(turns[1]["x"] or 0) == pytest.approx(56 + 1.5 * unit, abs=0.01)
    (unplayed,) = [r for r in rects if r.get("class") == "unplayed"]
    assert float(unplayed["x"] or 0) == pytest.approx(56 + 2.5 * unit, abs=0.01)
    assert float(unplayed["width"] or 0) == pytest.approx(0.6 * unit, abs=0.01)
    (cut,) = [attrs for tag, attrs in found.elements if tag == "line" and attrs["class"] == "cut"]
    assert cut["x1"] == cut["x2"] == unplayed["x"]
    assert turns[0]["y"] != turns[1]["y"], "user and bot have lanes of their own"


async def test_transcripts_are_escaped_in_the_log_the_picture_and_titles(review: Review) -> None:
    page = await (await review.client.get(f"/sessions/{review.call.session_id}")).text()
    found = parse(page)

    assert "<script>window" not in page
    assert "<b>" not in page
    escaped = "&lt;script&gt;window.__xss=1&lt;/script&gt; &amp; &quot;quoted&quot; &lt;/title&gt;"
    assert page.count(escaped) == 2, "once in the call log, once in the SVG title"
    assert SCRIPT in found.texts["span.said"]
    (title,) = [text for text in found.texts["title"] if text.startswith("turn 2,")]
    assert title.endswith(f"interrupted: {SCRIPT}")
    scripts = [attrs for tag, attrs in found.elements if tag == "script"]
    assert scripts == [{"src": "/static/review.js", "defer": None}]


def test_unplayed_audio_is_drawn_only_up_to_the_bots_next_turn() -> None:
    entries = [
        call_log_entry("assistant", 0, 1000, unplayed_ms=5000),
        call_log_entry("user", 800, 700),
        call_log_entry("assistant", 2000, 1000),
    ]

    found = parse(timeline(entries))

    unit = 928 / 3.0  # the axis ends with the last turn, not 6 s in
    (unplayed,) = [attrs for tag, attrs in found.elements if attrs.get("class") == "unplayed"]
    assert float(unplayed["x"] or 0) == pytest.approx(56 + 1.0 * unit, abs=0.01)
    assert float(unplayed["width"] or 0) == pytest.approx(1.0 * unit, abs=0.01)
    assert "turn 1: 5.00 s generated but never played" in found.texts["title"]


def test_a_turn_split_into_parts_lists_a_player_per_part_each_starting_the_next() -> None:
    entries = [
        call_log_entry("user", 0, 1000),
        call_log_entry("assistant", 1500, 900_000, segment_count=3),
    ]
    bot = entries[1]
    assert bot.turn_id is not None and bot.segment_id is not None
    parts = [bot.segment_id, new_id(), new_id()]

    found = parse(session_page(bot.session_id, entries, [], parts={bot.turn_id: parts}))

    assert found.texts["span.parts"] == ["part 1 of 3", "part 2 of 3", "part 3 of 3"]
    audios = [attrs for tag, attrs in found.elements if tag == "audio"]
    assert [(a["id"], a["src"], a.get("data-next")) for a in audios] == [
        ("audio-1", f"/audio/{entries[0].segment_id}", None),
        ("audio-2", f"/audio/{parts[0]}", "audio-2-part-2"),
        ("audio-2-part-2", f"/audio/{parts[1]}", "audio-2-part-3"),
        ("audio-2-part-3", f"/audio/{parts[2]}", None),
    ]


def test_a_turn_split_into_more_parts_than_a_page_lists_says_where_the_rest_play() -> None:
    entry = call_log_entry("assistant", 0, 1000, segment_count=defaults.SERVE_MAX_TURN_PARTS + 5)
    assert entry.turn_id is not None and entry.segment_id is not None
    parts = [entry.segment_id] + [new_id() for _ in range(defaults.SERVE_MAX_TURN_PARTS + 4)]

    found = parse(session_page(entry.session_id, [entry], [], parts={entry.turn_id: parts}))

    audios = [attrs for tag, attrs in found.elements if tag == "audio"]
    assert len(audios) == defaults.SERVE_MAX_TURN_PARTS
    last = defaults.SERVE_MAX_TURN_PARTS
    assert found.texts["span.parts"][-1] == (
        f"parts {last + 1} to {last + 5} play in the whole call only"
    )


def test_markup_refuses_names_that_are_not_plain() -> None:
    with pytest.raises(ValueError):
        element("a onclick=alert(1)")
    with pytest.raises(ValueError):
        element("a", {'href="x" onclick': "y"})
    with pytest.raises(ValueError):
        element("meta", None, "content")


async def test_pages_carry_no_inline_script_or_style(review: Review) -> None:
    for url in ("/", f"/sessions/{review.call.session_id}"):
        found = parse(await (await review.client.get(url)).text())

        tags = {tag for tag, _ in found.elements}
        attributes = {name for _, attrs in found.elements for name in attrs}
        assert "style" not in tags
        assert "style" not in attributes
        assert not [name for name in attributes if name.startswith("on")]
        assert all(attrs.get("src") for tag, attrs in found.elements if tag == "script")


@sqlite_only
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/sessions/not-a-uuid", id="session-not-a-uuid"),
        pytest.param(f"/sessions/{new_id().upper()}", id="session-not-canonical"),
        pytest.param(f"/sessions/{new_id()}", id="session-unknown"),
        pytest.param("/audio/not-a-uuid", id="audio-not-a-uuid"),
        pytest.param(f"/audio/{{{new_id()}}}", id="audio-braces"),
        pytest.param(f"/audio/{new_id()}", id="audio-unknown"),
        pytest.param("/nothing/here", id="no-route"),
    ],
)
async def test_unknown_and_invalid_ids_are_not_found(review: Review, path: str) -> None:
    response = await review.client.get(path)

    assert response.status == 404


# --- audio ------------------------------------------------------------------------------------


async def test_audio_is_the_segments_wav_with_range_support(review: Review) -> None:
    response = await review.client.get(review.audio_url(1))

    assert response.status == 200
    assert response.content_type == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == review.call.wavs[1]


@sqlite_only
@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        pytest.param("bytes=0-43", 0, 44, id="header"),
        pytest.param("bytes=1000-1999", 1000, 2000, id="middle"),
        pytest.param("bytes=30000-", 30000, None, id="open-end"),
        pytest.param("bytes=-10", -10, None, id="suffix"),
        pytest.param("bytes=100-999999", 100, None, id="past-the-end"),
    ],
)
async def test_range_requests_get_206_with_exactly_those_bytes(
    review: Review, header: str, start: int, stop: int | None
) -> None:
    wav = review.call.wavs[1]
    expected = wav[start:stop]
    first = start % len(wav)

    response = await review.client.get(review.audio_url(1), headers={"Range": header})

    assert response.status == 206
    assert response.headers["Content-Range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{len(wav)}"
    )
    assert await response.read() == expected


@sqlite_only
async def test_a_range_past_the_end_is_not_satisfiable(review: Review) -> None:
    size = len(review.call.wavs[0])

    response = await review.client.get(review.audio_url(0), headers={"Range": f"bytes={size}-"})

    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


@sqlite_only
@pytest.mark.parametrize(
    "target",
    [
        "/audio/../../secret.txt",
        "/audio/%2e%2e/%2e%2e/secret.txt",
        "/audio/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/audio/..%2f..%2frecordings%2findex.sqlite3",
        "/static/../../secret.txt",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2f..%2f..%2f..%2fsecret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "//etc/passwd",
        "/audio/%2Fetc%2Fpasswd",
        "/sessions/..%2f..%2fsecret.txt",
    ],
)
async def test_paths_that_climb_out_read_nothing(
    review: Review, tmp_path: Path, target: str
) -> None:
    (tmp_path / "secret.txt").write_bytes(SECRET)

    status, body = await raw_get(review.client, target)

    assert status in (400, 403, 404)
    assert SECRET not in body
    assert b"root:" not in body


@sqlite_only
@pytest.mark.parametrize(
    "where",
    ["absolute-outside", "dot-dot-outside", "symlink-outside", "index-file", "other-host", "http"],
)
async def test_segment_rows_that_point_elsewhere_are_not_served(
    review: Review, tmp_path: Path, where: str
) -> None:
    root = tmp_path / "recordings"
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    index_file = root / "index.sqlite3"
    index_file.write_bytes(b"SQLite format 3\x00" + SECRET)
    meta = make_segment(review.call.session_id, speaker="user", start_ms=9000)
    own_file = root / meta.session_id / f"{meta.segment_id}.wav"
    urls = {
        "absolute-outside": secret.as_uri(),
        "dot-dot-outside": f"file://{root}/{meta.session_id}/../../secret.txt",
        "symlink-outside": own_file.as_uri(),
        "index-file": index_file.as_uri(),
        "other-host": f"file://example.com{own_file}",
        "http": "https://example.com/a.wav",
    }
    if where == "symlink-outside":
        own_file.symlink_to(secret)
    await review.store.save_metadata(meta.session_id, replace(meta, audio_url=urls[where]))

    response = await review.client.get(f"/audio/{meta.segment_id}")

    assert response.status == 404
    assert SECRET not in await response.read()


@sqlite_only
async def test_local_audio_is_served_only_from_its_session_folder_in_the_recordings_folder(
    review: Review, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    without_root = await review.make_client(recordings=None)
    other_root = await review.make_client(recordings=elsewhere)
    # The file is below the parent too, but not at PARENT/SESSION_ID/SEGMENT_ID.wav.
    parent_root = await review.make_client(recordings=tmp_path)

    assert (await without_root.get(review.audio_url())).status == 404
    assert (await other_root.get(review.audio_url())).status == 404
    assert (await parent_root.get(review.audio_url())).status == 404
    assert (await review.client.get(review.audio_url())).status == 200


@sqlite_only
async def test_a_segment_swapped_for_a_symlink_while_requests_run_never_serves_the_target(
    review: Review, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET * 100)
    segment = review.call.segments[1]
    own_file = review.files.path_for(segment.session_id, segment.segment_id)
    wav = review.call.wavs[1]
    stop = threading.Event()
    flips = 0

    def flip() -> None:
        # Each state arrives by an atomic rename, as an attacker with write access would do it;
        # the real file is a fresh copy each time (a second link to it would be refused).
        nonlocal flips
        real, link = own_file.with_name("real.tmp"), own_file.with_name("link.tmp")
        while not stop.is_set():
            real.write_bytes(wav)
            os.replace(real, own_file)
            link.symlink_to(secret)
            os.replace(link, own_file)
            flips += 1

    async def fetch() -> tuple[int, bytes]:
        response = await review.client.get(review.audio_url(1))
        return response.status, await response.read()

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        results = [
            result
            for _ in range(SWAP_RACE_ROUNDS)
            for result in await asyncio.gather(*(fetch() for _ in range(SWAP_RACE_BATCH)))
        ]
    finally:
        stop.set()
        flipper.join()

    assert flips > 0
    assert not [body for _, body in results if SECRET in body]
    assert {status for status, _ in results} <= {200, 404}
    assert all(body == wav for status, body in results if status == 200)
    # Both states were met, so the race was really run.
    assert [status for status, _ in results].count(200) > 0
    assert [status for status, _ in results].count(404) > 0


@sqlite_only
async def test_a_hard_link_to_a_file_outside_the_recordings_is_not_served(
    review: Review, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    segment = review.call.segments[0]
    own_file = review.files.path_for(segment.session_id, segment.segment_id)
    own_file.unlink()
    os.link(secret, own_file)

    response = await review.client.get(review.audio_url(0))

    assert response.status == 404
    assert SECRET not in await response.read()


@sqlite_only
async def test_a_precompressed_sibling_is_never_served_instead_of_the_wav(
    review: Review,
) -> None:
    segment = review.call.segments[1]
    own_file = review.files.path_for(segment.session_id, segment.segment_id)
    for suffix in (".gz", ".br"):
        own_file.with_name(own_file.name + suffix).write_bytes(gzip.compress(SECRET))

    response = await review.client.get(review.audio_url(1), headers={"Accept-Encoding": "gzip"})

    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    assert await response.read() == review.call.wavs[1]


@sqlite_only
async def test_a_head_request_and_a_stale_if_range_get_the_whole_wav_length(
    review: Review,
) -> None:
    wav = review.call.wavs[1]

    head = await review.client.head(review.audio_url(1))
    if_range = await review.client.get(
        review.audio_url(1), headers={"Range": "bytes=0-9", "If-Range": '"some-old-etag"'}
    )

    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(wav))
    assert await head.read() == b""
    assert if_range.status == 200
    assert await if_range.read() == wav


@pytest.fixture
def signing_client(monkeypatch: pytest.MonkeyPatch) -> storage.Client:
    """A GCS client whose locally generated service-account key signs URLs offline."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credentials = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": "review@test-project.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
    return storage.Client(project="test-project", credentials=credentials)


@sqlite_only
async def test_gcs_audio_redirects_to_a_short_lived_signed_url(
    review: Review, signing_client: storage.Client
) -> None:
    meta = make_segment(review.call.session_id, start_ms=9000)
    object_url = f"gs://call-audio/calls/{meta.session_id}/{meta.segment_id}.wav"
    await review.store.save_metadata(meta.session_id, replace(meta, audio_url=object_url))
    client = await review.make_client(gcs_client=signing_client)

    response = await client.get(f"/audio/{meta.segment_id}", allow_redirects=False)

    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.netloc) == ("https", "storage.googleapis.com")
    assert location.path == f"/call-audio/calls/{meta.session_id}/{meta.segment_id}.wav"
    params = dict(parse_qsl(location.query))
    assert params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Signature"]
    assert "https://storage.googleapis.com" in response.headers["Content-Security-Policy"]


# --- headers on every response ----------------------------------------------------------------


@sqlite_only
async def test_every_response_carries_the_security_headers(review: Review) -> None:
    guarded = await review.make_client(token=TOKEN)
    responses = [
        await review.client.get("/"),
        await review.client.get(f"/sessions/{review.call.session_id}"),
        await review.client.get(review.audio_url(), headers={"Range": "bytes=0-9"}),
        await review.client.get("/static/review.css"),
        await review.client.get("/static/review.js"),
        await review.client.get("/favicon.ico"),
        await review.client.get(f"/sessions/{new_id()}"),
        await review.client.get("/?page=x"),
        await review.client.get("/", headers={"Host": "attacker.example"}),
        await guarded.get("/"),
    ]

    assert [response.status for response in responses] == [
        200, 200, 206, 200, 200, 204, 404, 400, 403, 401
    ]  # fmt: skip
    for response in responses:
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert responses[3].content_type == "text/css"
    assert responses[4].content_type in ("text/javascript", "application/javascript")


@sqlite_only
async def test_an_index_that_fails_is_a_logged_service_unavailable(review: Review) -> None:
    errors: list[str] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    await review.store.close()

    try:
        responses = [
            await review.client.get(url)
            for url in ("/", f"/sessions/{review.call.session_id}", review.audio_url())
        ]
    finally:
        logger.remove(sink)

    assert [response.status for response in responses] == [503] * 3
    assert len(errors) == 3
    assert "is closed" in errors[0]
    assert all(r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY for r in responses)


# --- access -----------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8765", 200),
        ("localhost:9000", 200),
        ("[::1]:8765", 200),
        ("127.0.0.2", 200),
        ("attacker.example:8765", 403),
        ("localhost.attacker.example", 403),
        ("[::1", 403),
    ],
)
async def test_without_a_token_only_requests_addressed_to_localhost_are_answered(
    review: Review, host: str, status: int
) -> None:
    response = await review.client.get("/", headers={"Host": host})

    assert response.status == status


@sqlite_only
async def test_with_a_token_every_request_needs_it(review: Review) -> None:
    client = await review.make_client(token=TOKEN)
    session = f"/sessions/{review.call.session_id}"

    refused = [
        await client.get(url)
        for url in ("/", session, review.audio_url(), "/static/review.js", "/favicon.ico")
    ]
    wrong = [
        await client.get("/", headers={"Authorization": "Bearer wrong-token-of-some-length"}),
        await client.get("/", headers={"Authorization": f"Basic {TOKEN}"}),
        await client.get("/", params={"token": TOKEN[:-1]}),
        await client.get("/", cookies={COOKIE: TOKEN}),
    ]
    bearer = await client.get(session, headers={"Authorization": f"Bearer {TOKEN}"})

    assert [response.status for response in refused] == [401] * 5
    assert refused[0].headers["WWW-Authenticate"].startswith("Bearer")
    assert [response.status for response in wrong] == [401] * 4
    assert bearer.status == 200
    assert "Set-Cookie" not in bearer.headers


@sqlite_only
async def test_a_token_in_the_query_once_sets_a_strict_http_only_cookie(review: Review) -> None:
    client = await review.make_client(token=TOKEN)

    first = await client.get("/", params={"token": TOKEN})
    cookie = first.cookies[COOKIE]
    later = [
        await client.get(url)
        for url in (f"/sessions/{review.call.session_id}", review.audio_url(), "/static/review.js")
    ]

    assert first.status == 200
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(defaults.SERVE_COOKIE_MAX_AGE_S)
    assert TOKEN not in cookie.value
    assert [response.status for response in later] == [200, 200, 200]


@sqlite_only
async def test_the_cookie_stops_letting_a_browser_in_once_it_expires(
    review: Review, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await review.make_client(token=TOKEN)
    cookie = (await client.get("/", params={"token": TOKEN})).cookies[COOKIE].value
    issued_s = int(cookie.split(".")[0])
    client.session.cookie_jar.clear()
    forged = [
        f"{issued_s - 1}.{cookie.split('.')[1]}",  # another time under the same MAC
        cookie.split(".")[1],  # the MAC alone
        f"{'9' * 40}.{cookie.split('.')[1]}",
        f"-1.{cookie.split('.')[1]}",
    ]

    def status_at(now_s: float, value: str) -> Awaitable[web.StreamResponse]:
        monkeypatch.setattr(security.time, "time", lambda: now_s)
        return client.get("/", cookies={COOKIE: value})

    almost_expired = await status_at(issued_s + defaults.SERVE_COOKIE_MAX_AGE_S - 1, cookie)
    expired = await status_at(issued_s + defaults.SERVE_COOKIE_MAX_AGE_S + 1, cookie)
    monkeypatch.undo()
    refused = [await client.get("/", cookies={COOKIE: value}) for value in forged]

    assert almost_expired.status == 200
    assert expired.status == 401
    assert [response.status for response in refused] == [401] * len(forged)


BAD_BYTES_REQUESTS = {
    "authorization": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\n",
    "cookie": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: call_review=1.\xff\xfe\r\n",
    "other-header": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: \xc3\x28\r\n",
    "range-header": b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=\xff-\r\n",
    "host": b"GET / HTTP/1.1\r\nHost: 127.0.0.\xff\r\n",
    "header-name": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-\xff: 1\r\n",
    "path": b"GET /sessions/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "query": b"GET /?token=\xff&page=\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n",
}
"""Requests with bytes that are not UTF-8 in each place a request can hold them."""


@sqlite_only
@pytest.mark.parametrize("guarded", [False, True], ids=["loopback-only", "token"])
@pytest.mark.parametrize("where", list(BAD_BYTES_REQUESTS))
async def test_bytes_that_are_not_utf8_anywhere_in_a_request_get_a_client_error(
    review: Review, guarded: bool, where: str
) -> None:
    client = await review.make_client(token=TOKEN) if guarded else review.client
    errors: list[str] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        status, body = await raw_request(client, BAD_BYTES_REQUESTS[where])
    finally:
        logger.remove(sink)

    assert 400 <= status < 500
    assert b"Traceback" not in body
    assert errors == []


def test_listening_beyond_loopback_needs_a_long_enough_token() -> None:
    assert token_problem("127.0.0.1", None) is None
    assert token_problem("::1", None) is None
    assert token_problem("localhost", None) is None
    assert token_problem("0.0.0.0", TOKEN) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "review.example.com"):
        problem = token_problem(host, None)
        assert problem is not None
        assert TOKEN_ENV in problem
    assert "too easy to guess" in (token_problem("127.0.0.1", "x" * 15) or "")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(" " * 16, id="16-spaces"),
        pytest.param("a" * 200, id="one-letter-repeated"),
        pytest.param("ab" * 64, id="two-letters-alternating"),
        pytest.param("password" * 16, id="a-word-repeated"),
        pytest.param("s3cret-token-for-the-tests", id="short-phrase"),
        pytest.param(secrets.token_hex(8), id="64-random-bits"),
        pytest.param(TOKEN[:-1] + " ", id="with-a-space"),
        pytest.param(TOKEN + "é", id="not-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_a_token_that_is_easy_to_guess_is_refused_whatever_its_length(token: str) -> None:
    problem = token_problem("0.0.0.0", token)

    assert problem is not None
    assert "secrets.token_urlsafe(32)" in problem


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(TOKEN, id="fixed"),
        *[pytest.param(secrets.token_urlsafe(32), id=f"token_urlsafe-{n}") for n in range(5)],
        *[pytest.param(secrets.token_hex(32), id=f"token_hex-{n}") for n in range(5)],
    ],
)
def test_a_random_token_of_the_recipe_is_accepted(token: str) -> None:
    assert token_problem("0.0.0.0", token) is None
    assert estimated_bits(token) >= 128


# --- the serve command ------------------------------------------------------------------------


@pytest.fixture
def demo_folder(tmp_path: Path) -> Path:
    """A folder laid out as the demo leaves it: ``recordings/index.sqlite3`` and the WAV files."""

    async def fill() -> None:
        async with SQLiteAudioMetaStorage(tmp_path / "recordings" / "index.sqlite3") as store:
            await record_call(store, LocalAudioStorage(tmp_path / "recordings"))

    asyncio.run(fill())
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--host", "0.0.0.0"], id="all-interfaces"),
        pytest.param(["--host", "192.168.1.20"], id="lan-address"),
        pytest.param(["--host", "0.0.0.0", "--token", "short"], id="short-token"),
        pytest.param(["--host", "0.0.0.0", "--token", " " * 16], id="16-spaces-token"),
        pytest.param(["--host", "0.0.0.0", "--token", "a" * 64], id="repeated-token"),
        pytest.param(["--port", "70000"], id="port-out-of-range"),
    ],
)
def test_serve_refuses_to_start_unsafely_or_wrongly(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo_folder: Path,
    argv: list[str],
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    code = main(["serve", "--db", str(demo_folder / "recordings" / "index.sqlite3"), *argv])
    out, err = capsys.readouterr()

    assert (code, out) == (2, "")
    assert err.startswith("pipecat-audio-capture: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_serve_needs_an_existing_index(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["serve", "--db", str(tmp_path / "missing.sqlite3")])

    assert code == 2
    assert "no audio index at" in capsys.readouterr().err


def test_serve_help_names_its_options_and_the_token_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["serve", "--help"])
    out = capsys.readouterr().out

    assert code == 0
    for option in ("--db PATH", "--dsn URL", "--host", "--port", "--recordings", "--token"):
        assert option in out
    assert f"${TOKEN_ENV}" in out


def test_serve_in_the_demo_folder_just_works_and_stops_on_ctrl_c(demo_folder: Path) -> None:
    with running_review(demo_folder) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url, timeout=10) as response:
            page = response.read().decode()
        server.process.send_signal(signal.SIGINT)
        code = server.process.wait(10)

    assert "/sessions/" in page
    assert code == 0
    assert f"audio served from {(demo_folder / 'recordings').resolve()}\n" in server.output


def test_serve_reads_the_token_from_the_environment(demo_folder: Path) -> None:
    with running_review(demo_folder, "--host", "0.0.0.0", env={TOKEN_ENV: TOKEN}) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status

    assert refused.value.code == 401
    assert status == 200
