"""The call review's whole-call recording (``/sessions/ID/call.wav``), split turns, and latency.

The calls are :func:`test_web.record_call`'s: user 0-1 s (level 1000), bot 1.5-2.5 s (2000),
user 2.4-3 s (3000), all 16 kHz, so each channel of the stereo file shows which segment plays.
"""

import asyncio
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from google.cloud import storage
from loguru import logger

from pipecat_audio_capture.call_audio import write_call_audio
from pipecat_audio_capture.call_audio_session import local_segment_opener
from pipecat_audio_capture.errors import CallAudioError
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.wav import HEADER_BYTES, encode_wav
from pipecat_audio_capture.web import call_audio as web_call_audio
from pipecat_audio_capture.web.call_audio import CallAudioCache
from pipecat_audio_capture.web.timeline import timeline

from support.index import IndexBackend, make_segment, new_id
from support.latency import make_latency, stage
from support.web import (
    SAMPLE_RATE,
    TOKEN,
    MakeClient,
    Review,
    call_log_entry,
    parse,
    record_call,
    sqlite_only,
)

BUILT = "built the recording of call"


def channels(wav: bytes) -> np.ndarray:
    """The frames of a 16-bit stereo WAV as an array of (left, right) rows."""
    return np.frombuffer(wav[HEADER_BYTES:], dtype="<i2").reshape(-1, 2)


def at_ms(frames: np.ndarray, ms: float) -> tuple[int, int]:
    left, right = frames[round(ms * SAMPLE_RATE / 1000)]
    return int(left), int(right)


def call_wav(session_id: str) -> str:
    return f"/sessions/{session_id}/call.wav"


def build_logs() -> list[str]:
    lines: list[str] = []
    logger.add(lambda message: lines.append(str(message)), level="INFO", filter=_built_only)
    return lines


def _built_only(record: object) -> bool:
    return BUILT in str(record["message"])  # type: ignore[index]


# --- call.wav over HTTP ---------------------------------------------------------------------


async def test_call_wav_is_the_whole_call_in_stereo_user_left_bot_right(review: Review) -> None:
    response = await review.client.get(call_wav(review.call.session_id))
    wav = await response.read()

    assert response.status == 200
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    frames = channels(wav)
    assert len(frames) == 3 * SAMPLE_RATE, "from the first segment's start to the last's end"
    assert at_ms(frames, 500) == (1000, 0)
    assert at_ms(frames, 1200) == (0, 0), "silence where nobody spoke"
    assert at_ms(frames, 2000) == (0, 2000)
    assert at_ms(frames, 2450) == (3000, 2000), "a barge-in keeps both channels"
    assert at_ms(frames, 2800) == (3000, 0)


@sqlite_only
async def test_call_wav_ranges_get_206_with_exactly_those_bytes(review: Review) -> None:
    url = call_wav(review.call.session_id)
    whole = await (await review.client.get(url)).read()

    part = await review.client.get(url, headers={"Range": "bytes=1000-4999"})
    tail = await review.client.get(url, headers={"Range": "bytes=-100"})
    past = await review.client.get(url, headers={"Range": f"bytes={len(whole)}-"})

    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 1000-4999/{len(whole)}"
    assert await part.read() == whole[1000:5000]
    assert tail.status == 206
    assert await tail.read() == whole[-100:]
    assert past.status == 416


@sqlite_only
@pytest.mark.parametrize("session", ["unknown", "not-a-uuid"])
async def test_call_wav_of_an_unknown_call_is_not_found(review: Review, session: str) -> None:
    session_id = new_id() if session == "unknown" else session

    response = await review.client.get(call_wav(session_id))

    assert response.status == 404


@sqlite_only
async def test_call_wav_needs_the_token_like_the_audio(review: Review) -> None:
    client = await review.make_client(token=TOKEN)
    url = call_wav(review.call.session_id)

    refused = await client.get(url)
    allowed = await client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})

    assert refused.status == 401
    assert allowed.status == 200
    assert len(await allowed.read()) == HEADER_BYTES + 3 * SAMPLE_RATE * 4


@sqlite_only
async def test_a_call_is_built_once_for_many_requests_and_again_when_its_segments_change(
    review: Review,
) -> None:
    built = build_logs()
    url = call_wav(review.call.session_id)

    first = await asyncio.gather(*(review.client.get(url) for _ in range(5)))
    bodies = {await response.read() for response in first}
    again = await (await review.client.get(url)).read()
    assert len(built) == 1, "five requests at once and one later: one build"
    # A later bot turn, 3.5 - 4 s: the call is now longer, and built again.
    session_id = review.call.session_id
    meta = make_segment(session_id, turn_id=new_id(), speaker="bot", start_ms=3500, duration_ms=500)
    samples = np.full(SAMPLE_RATE // 2, 4000, dtype="<i2")
    wav = encode_wav([samples.tobytes()], SAMPLE_RATE, 1)
    audio_url = await review.files.store_segment(
        session_id, meta.segment_id, "bot", wav, turn_id=meta.turn_id
    )
    await review.store.save_metadata(session_id, replace(meta, audio_url=audio_url))
    longer = await (await review.client.get(url)).read()

    assert bodies == {again}
    assert len(built) == 2
    frames = channels(longer)
    assert len(frames) == 4 * SAMPLE_RATE
    assert at_ms(frames, 3750) == (0, 4000)


@sqlite_only
async def test_the_page_says_the_whole_call_player_is_unavailable_without_a_recordings_folder(
    review: Review,
) -> None:
    client = await review.make_client(recordings=None)

    page = await (await client.get(f"/sessions/{review.call.session_id}")).text()
    refused = await client.get(call_wav(review.call.session_id))

    found = parse(page)
    assert "call-audio" not in {attrs.get("id") for _, attrs in found.elements}
    (note,) = found.texts["p.whole-call"]
    assert note.startswith("The whole-call player is unavailable: ")
    assert "no recordings folder" in page
    assert refused.status == 404
    timeline_classes = [attrs["class"] for tag, attrs in found.elements if tag == "svg"]
    assert timeline_classes == ["timeline"], "not seekable: a click plays a turn instead"


# --- the cache ------------------------------------------------------------------------------


async def test_the_cache_keeps_a_few_recent_calls_in_a_private_folder_removed_on_close(
    sqlite_index: IndexBackend, tmp_path: Path
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    calls = [await record_call(sqlite_index.store, files) for _ in range(3)]
    cache = CallAudioCache(recordings=tmp_path / "recordings", max_calls=2)
    descriptors = []
    try:
        for call in calls:
            segments = await sqlite_index.store.session_segments(call.session_id)
            descriptors.append(await cache.open(call.session_id, segments))
        folder = cache.folder
        assert folder is not None
        kept = sorted(folder.iterdir())
        modes = [stat.S_IMODE(path.stat().st_mode) for path in kept]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [path.name.split(".")[0] for path in kept] == sorted(
            call.session_id for call in calls[1:]
        ), "the oldest call was removed"
        assert modes == [0o600, 0o600]
        # A descriptor handed out before the eviction still reads its whole file.
        assert len(os.pread(descriptors[0], 100, 0)) == 100
    finally:
        for fd in descriptors:
            os.close(fd)
        await cache.close()

    assert not folder.exists()


@dataclass(frozen=True)
class StoredCall:
    """A call recorded under ``recordings``, and its segment rows."""

    recordings: Path
    session_id: str
    segments: list[SegmentMetadata]


@pytest_asyncio.fixture
async def stored_call(sqlite_index: IndexBackend, tmp_path: Path) -> StoredCall:
    recordings = tmp_path / "recordings"
    call = await record_call(sqlite_index.store, LocalAudioStorage(recordings))
    segments = await sqlite_index.store.session_segments(call.session_id)
    return StoredCall(recordings, call.session_id, segments)


async def test_the_cache_serves_the_same_bytes_the_export_builder_writes(
    stored_call: StoredCall, tmp_path: Path
) -> None:
    expected = tmp_path / "call.wav"
    opener = local_segment_opener(stored_call.recordings)
    write_call_audio(stored_call.segments, expected, open_segment=opener)
    cache = CallAudioCache(recordings=stored_call.recordings)
    try:
        fd = await cache.open(stored_call.session_id, stored_call.segments)
        with os.fdopen(fd, "rb") as served:
            assert served.read() == expected.read_bytes()
    finally:
        await cache.close()


async def test_a_call_larger_than_the_cache_allows_is_not_built(stored_call: StoredCall) -> None:
    cache = CallAudioCache(recordings=stored_call.recordings, max_bytes=1000)

    with pytest.raises(CallAudioError, match="more than the 1000 this server builds"):
        await cache.open(stored_call.session_id, stored_call.segments)
    assert cache.folder is None, "nothing was written"


# --- gs:// calls ----------------------------------------------------------------------------


@sqlite_only
async def test_a_gcs_call_plays_whole_through_the_objects_downloaded(
    index: IndexBackend,
    gcs_client: storage.Client,
    bucket_name: str,
    make_client: MakeClient,
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls/", client=gcs_client)
    call = await record_call(index.store, files)
    client = await make_client(recordings=None, gcs_client=gcs_client)

    page = await (await client.get(f"/sessions/{call.session_id}")).text()
    response = await client.get(call_wav(call.session_id))

    assert 'id="call-audio"' in page
    assert response.status == 200
    frames = channels(await response.read())
    assert at_ms(frames, 500) == (1000, 0)
    assert at_ms(frames, 2450) == (3000, 2000)


@sqlite_only
async def test_a_gcs_call_without_credentials_says_the_whole_call_player_is_unavailable(
    index: IndexBackend,
    gcs_client: storage.Client,
    bucket_name: str,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls/", client=gcs_client)
    call = await record_call(index.store, files)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    client = await make_client(recordings=None)

    page = await (await client.get(f"/sessions/{call.session_id}")).text()
    response = await client.get(call_wav(call.session_id))

    (note,) = parse(page).texts["p.whole-call"]
    assert note == (
        "The whole-call player is unavailable: this server cannot read Google Cloud Storage "
        "(the gcs extra or credentials are missing; the server log says which). "
        "Each turn still plays below."
    )
    assert 'id="call-audio"' not in page
    assert response.status == 404


# --- latency on the page --------------------------------------------------------------------


RESPONSE = (
    stage("endpointing_wait", "config: VAD stop_secs", 0.0, 100.0),
    stage("transcription", "STT#0", 100.0, 50.0),
    stage("llm_inference", "LLM#0", 150.0, 250.0),
    # A key this version has no column for: it shows as "other".
    stage("quantum_wait", "FutureService#0", 400.0, 20.0),
    stage("speech_synthesis", "TTS#0", 420.0, 80.0),
)
"""The bot's answer of the call: 0.5 s from the user's end (1.0 s) to the bot's start (1.5 s)."""


@sqlite_only
async def test_each_bot_turns_latency_is_a_bar_of_its_stages_before_it_and_a_table_row(
    review: Review,
) -> None:
    bot = review.call.segments[1]
    latency = make_latency(review.call.session_id, bot.turn_id, bot_ms=1500, stages=RESPONSE)
    await review.store.save_turn_latency(latency)
    # A breakdown of a turn the page does not show is not drawn.
    await review.store.save_turn_latency(make_latency(review.call.session_id, new_id()))

    page = await (await review.client.get(f"/sessions/{review.call.session_id}")).text()

    found = parse(page)
    groups = [attrs for tag, attrs in found.elements if tag == "g"]
    assert [group["data-latency-turn"] for group in groups] == ["2"]
    stages = [attrs for tag, attrs in found.elements if tag == "rect" and "stage" in attrs["class"]]
    assert [rect["class"] for rect in stages] == [
        "stage wait",
        "stage stt",
        "stage llm",
        "stage tts",
        "stage pipeline",
    ]
    unit = 928 / 3.1
    x0, x1 = 56 + 1.0 * unit, 56 + 1.5 * unit
    assert float(stages[0]["x"] or 0) == pytest.approx(x0, abs=0.02)
    widths = [float(rect["width"] or 0) for rect in stages]
    assert sum(widths) == pytest.approx(x1 - x0, abs=0.05)
    assert widths[2] == pytest.approx(0.25 * unit, abs=0.02), "LLM: 250 ms"
    titles = found.texts["title"]
    assert "turn 2: LLM 250 ms" in titles
    assert "turn 2: the bot answered after 500 ms; slowest: LLM (LLM#0)" in titles
    (row,) = [attrs for tag, attrs in found.elements if attrs.get("class") == "latency-row"]
    assert row["id"] == "latency-2"
    (breakdown,) = [t for t in found.texts["td"] if t.startswith("end-of-speech wait")]
    assert breakdown == (
        "end-of-speech wait 100 ms, transcription 50 ms, LLM 250 ms, TTS 80 ms, other 20 ms"
    )
    assert "<td>LLM <code>LLM#0</code></td>" in page, "the slowest stage and its owner"


async def test_a_wait_longer_than_the_call_so_far_is_drawn_from_the_calls_start(
    sqlite_index: IndexBackend,
) -> None:
    entries = [call_log_entry("user", 0, 100), call_log_entry("assistant", 500, 1000)]
    entry = entries[1]
    assert entry.turn_id is not None
    # 1.85 s of waiting before a bot turn 0.5 s into the call.
    await sqlite_index.store.save_turn_latency(
        make_latency(entry.session_id, entry.turn_id, bot_ms=500)
    )
    (latency,) = await sqlite_index.store.turn_latency(entry.session_id)

    found = parse(timeline(entries, latencies={entry.turn_id: latency}))

    stages = [attrs for tag, attrs in found.elements if "stage" in attrs.get("class", "")]
    assert float(stages[0]["x"] or 0) == pytest.approx(56)
    end = float(stages[-1]["x"] or 0) + float(stages[-1]["width"] or 0)
    assert end == pytest.approx(56 + 0.5 / 1.5 * 928, abs=0.05)


@sqlite_only
async def test_a_call_without_latency_rows_has_no_bars_and_no_table(review: Review) -> None:
    page = await (await review.client.get(f"/sessions/{review.call.session_id}")).text()

    assert "latency-table" not in page
    assert "data-latency-turn" not in page


@sqlite_only
async def test_the_picture_carries_the_cursor_and_where_the_recording_starts(
    review: Review,
) -> None:
    page = await (await review.client.get(f"/sessions/{review.call.session_id}")).text()

    found = parse(page)
    (svg,) = [attrs for tag, attrs in found.elements if tag == "svg"]
    assert svg["class"] == "timeline seekable"
    assert (svg["data-plot-left"], svg["data-plot-width"]) == ("56", "928")
    assert (svg["data-span-s"], svg["data-audio-offset-s"]) == ("3.100", "0.000")
    assert [attrs["id"] for tag, attrs in found.elements if attrs.get("class") == "cursor"] == [
        "call-cursor"
    ]


# --- split turns over HTTP ------------------------------------------------------------------


@sqlite_only
async def test_every_part_of_a_split_turn_gets_a_player_that_serves_that_part(
    review: Review,
) -> None:
    session_id = review.call.session_id
    bot = review.call.segments[1]
    # The bot turn goes on in a second part, 2.5 - 2.9 s.
    part = make_segment(
        session_id, turn_id=bot.turn_id, speaker="bot", start_ms=2500, duration_ms=400
    )
    wav = encode_wav([np.full(6400, 5000, dtype="<i2").tobytes()], SAMPLE_RATE, 1)
    audio_url = await review.files.store_segment(
        session_id, part.segment_id, "bot", wav, turn_id=bot.turn_id
    )
    await review.store.save_metadata(session_id, replace(part, audio_url=audio_url))

    page = await (await review.client.get(f"/sessions/{session_id}")).text()

    found = parse(page)
    players = {attrs["id"]: attrs for tag, attrs in found.elements if tag == "audio"}
    assert players["audio-2"]["data-next"] == "audio-2-part-2"
    second = await review.client.get(players["audio-2-part-2"]["src"] or "")
    assert await second.read() == wav
    whole = channels(await (await review.client.get(call_wav(session_id))).read())
    assert at_ms(whole, 2700) == (3000, 5000), "the whole call plays the second part too"


@sqlite_only
async def test_a_build_that_cannot_write_is_a_service_unavailable_not_a_missing_call(
    review: Review, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(**_: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(web_call_audio.tempfile, "mkdtemp", no_room)

    response = await review.client.get(call_wav(review.call.session_id))

    assert response.status == 503
