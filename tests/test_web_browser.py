"""The call review in a real browser, on calls recorded by the offline demo's pipeline.

The demo call runs once for the module (about 15 s at twice real time), and the same simulated
call again with Pipecat's ``UserBotLatencyObserver`` and a ``LatencyRecorder`` attached, into the
same index, so its page shows each response's latency. Then ``pipecat-audio-capture serve`` runs
in the demo's folder with no options, as a user would start it, and headless Chromium opens it.
With ``UPDATE_SCREENSHOT=1`` the calls run in real time and the page of the call with latency is
saved to ``docs/call-review.png``.
"""

import asyncio
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipecat_audio_capture.demo.recorded_call import DemoResult, record_demo_call
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import SegmentMetadata, TranscriptRecord
from pipecat_audio_capture.storage.index import CallLogEntry
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.web.security import TOKEN_ENV

from support.browser import RunningReview, chromium, require_chromium, running_review
from support.latency import record_call_with_latency

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

UPDATE_SCREENSHOT = os.environ.get("UPDATE_SCREENSHOT") == "1"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "call-review.png"
SPEED = 1.0 if UPDATE_SCREENSHOT else 2.0
XSS = "<script>window.__xss=1</script>"
TOKEN = "faD1eY7GHXyyjmaWwZBoP4p1u7t4dQRaDaXGe5pjd0M"
DURATION_TOLERANCE_S = 0.05
PLAY_TIMEOUT_MS = 10_000

AUDIO_DURATION_JS = """
async (id) => {
  const audio = document.getElementById(id);
  if (audio.readyState < HTMLMediaElement.HAVE_METADATA) {
    await new Promise((loaded, failed) => {
      audio.addEventListener("loadedmetadata", loaded, { once: true });
      audio.addEventListener("error", () => failed(new Error(`${id}: ${audio.error.code}`)));
    });
  }
  return audio.duration;
}
"""

CURRENT_TIME_JS = "(id) => document.getElementById(id).currentTime"

PLOT_JS = """
() => {
  const data = document.getElementById("call-timeline").dataset;
  return {
    left: Number(data.plotLeft),
    width: Number(data.plotWidth),
    spanS: Number(data.spanS),
    offsetS: Number(data.audioOffsetS),
  };
}
"""

CURSOR_JS = """
() => {
  const audio = document.getElementById("call-audio");
  const cursor = document.getElementById("call-cursor");
  const data = document.getElementById("call-timeline").dataset;
  const t = audio.currentTime;
  const expected =
    Number(data.plotLeft) +
    ((t + Number(data.audioOffsetS)) / Number(data.spanS)) * Number(data.plotWidth);
  return {
    t,
    x: Number(cursor.getAttribute("x1")),
    expected,
    shown: cursor.classList.contains("shown"),
  };
}
"""

SHOW_CURSOR_AT_JS = """
async (fraction) => {
  const audio = document.getElementById("call-audio");
  audio.currentTime = audio.duration * fraction;
  await new Promise((seeked) => audio.addEventListener("seeked", seeked, { once: true }));
}
"""

CURSOR_TOLERANCE = 4.0
"""viewBox units (of 1000) the cursor may lag the player: it moves once per animation frame."""
SEEK_TOLERANCE_S = 1.0
"""How far a player may have played on between a seek and the test reading its position."""
SCREENSHOT_CURSOR_FRACTION = 0.4
"""Where the README's picture shows the cursor."""

IS_PLAYING_JS = """
(id) => {
  const audio = document.getElementById(id);
  return !audio.paused && audio.currentTime > 0.2;
}
"""


@dataclass(frozen=True)
class Recorded:
    """The demo's folder, its call, a call whose transcript holds a script, a call of one bot
    turn split into two parts, and the demo's call recorded again with its latency."""

    folder: Path
    demo: DemoResult
    xss_session_id: str
    split_session_id: str
    latency_session_id: str
    latency_log: list[CallLogEntry]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    folder = tmp_path_factory.mktemp("review")
    demo = asyncio.run(record_demo_call(folder / "recordings", speed=SPEED, say=lambda _: None))
    assert demo.stats.stored == demo.stats.recorded
    xss_session_id = asyncio.run(_add_call_with_a_script(demo))
    split_session_id = asyncio.run(_add_call_with_a_split_turn(demo))
    latency_session_id, latency_log = asyncio.run(_record_call_with_latency(demo))
    return Recorded(folder, demo, xss_session_id, split_session_id, latency_session_id, latency_log)


async def _record_call_with_latency(demo: DemoResult) -> tuple[str, list[CallLogEntry]]:
    """Run the demo's simulated call again, with the latency observer and recorder attached."""
    async with SQLiteAudioMetaStorage(demo.index_path) as index:
        call = await record_call_with_latency(index, demo.recordings, speed=SPEED, timeout_s=120)
        assert call.recorder.stored > 0
        return call.session_id, await index.call_log(call.session_id)


async def _add_call_with_a_script(demo: DemoResult) -> str:
    """Index a one-turn call (a copy of the demo's first user audio) whose transcript is XSS."""
    async with SQLiteAudioMetaStorage(demo.index_path) as index:
        first_user = next(entry for entry in demo.call_log if entry.role == "user")
        source = await index.segment(first_user.segment_id or "")
        assert source is not None
        session_id, turn_id = new_id(), new_id()
        meta = await _copy_segment(index, demo, source, session_id, turn_id=turn_id)
        await index.save_transcript(
            TranscriptRecord(session_id, turn_id, "user", XSS, False, meta.started_at)
        )
    return session_id


async def _add_call_with_a_split_turn(demo: DemoResult) -> str:
    """Index a call of one bot turn in two parts: copies of the demo's first two bot segments,
    the second starting where the first ends."""
    async with SQLiteAudioMetaStorage(demo.index_path) as index:
        bots = [entry for entry in demo.call_log if entry.role == "assistant" and entry.segment_id]
        session_id, turn_id = new_id(), new_id()
        started_at = None
        for entry in bots[:2]:
            source = await index.segment(entry.segment_id or "")
            assert source is not None
            start = started_at or source.started_at
            meta = await _copy_segment(
                index,
                demo,
                source,
                session_id,
                turn_id=turn_id,
                interrupted=False,
                unplayed_ms=None,
                started_at=start,
                ended_at=start + (source.ended_at - source.started_at),
            )
            started_at = meta.ended_at
    return session_id


async def _copy_segment(
    index: SQLiteAudioMetaStorage,
    demo: DemoResult,
    source: SegmentMetadata,
    session_id: str,
    **changes: Any,
) -> SegmentMetadata:
    """Copy a demo segment's WAV into another call, index it there with ``changes``, return it."""
    segment_id = new_id()
    target = demo.recordings / session_id / f"{segment_id}.wav"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(demo.recordings / source.session_id / f"{source.segment_id}.wav", target)
    meta = replace(
        source,
        session_id=session_id,
        segment_id=segment_id,
        audio_url=target.resolve().as_uri(),
        **changes,
    )
    await index.save_metadata(session_id, meta)
    return meta


@pytest.fixture(scope="module")
def server(recorded: Recorded) -> Iterator[RunningReview]:
    with running_review(recorded.folder) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    """Fail the module at once when there is no browser, before the demo call is recorded."""
    require_chromium()


@pytest.fixture(scope="module")
def browser(server: RunningReview) -> Iterator["Browser"]:
    # After the server, so after the demo call: while Playwright's sync API is open, this
    # thread has an event loop running, and asyncio.run cannot record a call in it.
    with chromium() as launched:
        yield launched


@dataclass
class Tab:
    """A page of the browser, and the errors its console and scripts reported."""

    page: "Page"
    errors: list[str]


@pytest.fixture
def tab(browser: "Browser") -> Iterator[Tab]:
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield Tab(page, errors)
    page.close()


def audio_turns(call_log: list[CallLogEntry]) -> list[tuple[int, CallLogEntry]]:
    return [(n, entry) for n, entry in enumerate(call_log, start=1) if entry.segment_id]


def clickable_turns(call_log: list[CallLogEntry]) -> list[int]:
    """Return the turns whose middle no other turn of the same speaker covers in the picture."""
    spans = [
        (number, entry.role, entry.started_at, entry.ended_at)
        for number, entry in audio_turns(call_log)
        if entry.started_at and entry.ended_at
    ]
    clear = []
    for number, role, start, end in spans:
        middle = start + (end - start) / 2
        if not any(
            other != number and other_role == role and other_start <= middle <= other_end
            for other, other_role, other_start, other_end in spans
        ):
            clear.append(number)
    return clear


def test_sessions_page_lists_the_recorded_call(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(server.url)

    link = tab.page.locator(f'a[href="/sessions/{recorded.demo.session_id}"]').first
    assert link.is_visible()
    row = tab.page.locator("table.sessions tbody tr", has=link)
    cells = row.locator("td").all_inner_texts()
    assert cells[2] == str(len(recorded.demo.call_log))
    assert tab.page.locator("table.sessions tbody tr").count() == 4


def test_session_page_shows_every_turn_with_its_text(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")

    rows = tab.page.locator("table.call-log tbody tr")
    assert rows.count() == len(recorded.demo.call_log)
    for number, entry in enumerate(recorded.demo.call_log, start=1):
        row = tab.page.locator(f"#turn-{number}")
        assert (entry.text or "(no transcript)") in row.inner_text()
    drawn = tab.page.locator("svg.timeline [data-turn]")
    assert drawn.count() == len(audio_turns(recorded.demo.call_log))


def test_each_turns_audio_loads_with_the_indexed_duration(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")

    for number, entry in audio_turns(recorded.demo.call_log):
        assert entry.duration_ms is not None
        duration_s = tab.page.evaluate(AUDIO_DURATION_JS, f"audio-{number}")
        assert duration_s == pytest.approx(entry.duration_ms / 1000, abs=DURATION_TOLERANCE_S)


def test_the_whole_call_plays_with_a_cursor_moving_along_the_picture(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")
    starts = [entry.started_at for entry in recorded.demo.call_log if entry.started_at]
    ends = [entry.ended_at for entry in recorded.demo.call_log if entry.ended_at]
    duration_s = tab.page.evaluate(AUDIO_DURATION_JS, "call-audio")

    tab.page.evaluate("() => document.getElementById('call-audio').play()")
    tab.page.wait_for_function(IS_PLAYING_JS, arg="call-audio", timeout=PLAY_TIMEOUT_MS)
    first = tab.page.evaluate(CURSOR_JS)
    tab.page.wait_for_function(
        f"() => document.getElementById('call-audio').currentTime > {first['t'] + 0.5}",
        timeout=PLAY_TIMEOUT_MS,
    )
    later = tab.page.evaluate(CURSOR_JS)

    assert duration_s == pytest.approx(
        (max(ends) - min(starts)).total_seconds(), abs=DURATION_TOLERANCE_S
    )
    assert later["x"] > first["x"], "the cursor moves right as the call plays"
    for cursor in (first, later):
        assert cursor["shown"]
        assert cursor["x"] == pytest.approx(cursor["expected"], abs=CURSOR_TOLERANCE)


def test_clicking_a_point_of_the_picture_plays_the_whole_call_from_there(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")
    tab.page.evaluate(AUDIO_DURATION_JS, "call-audio")
    picture = tab.page.locator("#call-timeline")
    box = picture.bounding_box()
    assert box is not None
    plot = tab.page.evaluate(PLOT_JS)
    scale = box["width"] / 1000  # the viewBox is 1000 units wide
    played = []
    for fraction in (0.6, 0.25):
        x = box["x"] + (plot["left"] + fraction * plot["width"]) * scale
        tab.page.mouse.click(x, box["y"] + 25 * scale)  # in the user's lane
        tab.page.wait_for_function(IS_PLAYING_JS, arg="call-audio", timeout=PLAY_TIMEOUT_MS)
        played.append((fraction, tab.page.evaluate(CURRENT_TIME_JS, "call-audio")))

    # A click lands on a whole pixel: the seek may fall a pixel's worth of the axis either side.
    pixel_s = plot["spanS"] / (plot["width"] * scale)
    for fraction, current_s in played:
        wanted_s = fraction * plot["spanS"] - plot["offsetS"]
        assert wanted_s - pixel_s <= current_s <= wanted_s + SEEK_TOLERANCE_S, fraction


def test_enter_on_a_focused_turn_plays_the_whole_call_from_that_turn(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    turn = clickable_turns(recorded.demo.call_log)[-1]
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")
    tab.page.evaluate(AUDIO_DURATION_JS, "call-audio")
    shape = tab.page.locator(f'svg [data-turn="audio-{turn}"]')
    begin_s = float(shape.get_attribute("data-begin-s") or "nan")

    shape.focus()
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_function(IS_PLAYING_JS, arg="call-audio", timeout=PLAY_TIMEOUT_MS)
    current_s = tab.page.evaluate(CURRENT_TIME_JS, "call-audio")
    tab.page.wait_for_selector(f'svg [data-turn="audio-{turn}"].playing', timeout=PLAY_TIMEOUT_MS)

    offset_s = tab.page.evaluate(PLOT_JS)["offsetS"]
    assert begin_s - offset_s <= current_s <= begin_s - offset_s + SEEK_TOLERANCE_S


def test_playing_a_turns_own_player_pauses_the_whole_call_and_marks_its_row(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    turn = clickable_turns(recorded.demo.call_log)[0]
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")
    tab.page.evaluate("() => document.getElementById('call-audio').play()")
    tab.page.wait_for_function(IS_PLAYING_JS, arg="call-audio", timeout=PLAY_TIMEOUT_MS)

    tab.page.evaluate(f"() => document.getElementById('audio-{turn}').play()")
    tab.page.wait_for_function(IS_PLAYING_JS, arg=f"audio-{turn}", timeout=PLAY_TIMEOUT_MS)

    playing = tab.page.evaluate(
        "() => [...document.querySelectorAll('audio')].filter((a) => !a.paused).map((a) => a.id)"
    )
    assert playing == [f"audio-{turn}"], "one player at a time"
    assert "playing" in (tab.page.locator(f"#turn-{turn}").get_attribute("class") or "").split()


def test_a_split_turns_parts_each_have_a_player_and_play_one_after_the_other(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.split_session_id}")
    first_s = tab.page.evaluate(AUDIO_DURATION_JS, "audio-1")
    tab.page.evaluate(AUDIO_DURATION_JS, "audio-1-part-2")

    # Played from just before its end, the first part hands over to the second.
    tab.page.evaluate(
        f"() => {{ const a = document.getElementById('audio-1'); a.currentTime = {first_s - 0.3};"
        " a.play(); }"
    )
    tab.page.wait_for_function(IS_PLAYING_JS, arg="audio-1-part-2", timeout=PLAY_TIMEOUT_MS)

    assert tab.page.locator("#turn-1 .parts").all_inner_texts() == ["part 1 of 2", "part 2 of 2"]


def test_each_answer_shows_its_latency_before_the_bot_turn_and_in_a_table(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.latency_session_id}")

    bars = tab.page.locator("svg.timeline g.latency")
    rows = tab.page.locator("table.latency-table tbody tr")
    answers = [
        number
        for number, entry in enumerate(recorded.latency_log, start=1)
        if entry.role == "assistant"
    ][1:]  # the greeting is not measured: the simulated call has no client connecting
    assert [bars.nth(i).get_attribute("data-latency-turn") for i in range(bars.count())] == [
        str(number) for number in answers
    ]
    assert rows.count() == len(answers)
    first_bar = bars.first.bounding_box()
    first_turn = tab.page.locator(f'svg [data-turn="audio-{answers[0]}"]').bounding_box()
    assert first_bar is not None and first_turn is not None
    assert first_bar["x"] + first_bar["width"] == pytest.approx(first_turn["x"], abs=2.0), (
        "the bar ends where the bot starts"
    )
    assert "LLM" in rows.first.inner_text()
    if UPDATE_SCREENSHOT:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        tab.page.evaluate(AUDIO_DURATION_JS, "call-audio")
        tab.page.evaluate(SHOW_CURSOR_AT_JS, SCREENSHOT_CURSOR_FRACTION)
        tab.page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_a_script_in_a_transcript_shows_as_text_and_never_runs(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    for path in ("", f"sessions/{recorded.xss_session_id}"):
        tab.page.goto(f"{server.url}{path}")

        assert tab.page.evaluate("() => typeof window.__xss") == "undefined"
    assert tab.page.locator("#turn-1 .said").inner_text() == XSS
    title = tab.page.locator('svg [data-turn="audio-1"] title').text_content() or ""
    assert title.endswith(f": {XSS}")


def test_pages_load_without_script_errors_or_policy_violations(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    sessions = [
        recorded.demo.session_id,
        recorded.xss_session_id,
        recorded.split_session_id,
        recorded.latency_session_id,
    ]
    for path in ["", *(f"sessions/{session_id}" for session_id in sessions)]:
        tab.page.goto(f"{server.url}{path}", wait_until="networkidle")

    assert tab.errors == []


def test_a_token_in_the_link_once_lets_the_browser_in_and_leaves_the_address_bar(
    recorded: Recorded, tab: Tab
) -> None:
    with running_review(recorded.folder, env={TOKEN_ENV: TOKEN}) as guarded:
        refused = tab.page.goto(guarded.url)
        assert refused is not None
        assert refused.status == 401
        tab.page.goto(f"{guarded.url}?token={TOKEN}")
        address = tab.page.url
        tab.page.locator(f'a[href="/sessions/{recorded.demo.session_id}"]').first.click()
        tab.page.wait_for_url(f"**/sessions/{recorded.demo.session_id}")
        duration_s = tab.page.evaluate(AUDIO_DURATION_JS, "audio-1")
        call_s = tab.page.evaluate(AUDIO_DURATION_JS, "call-audio")

    assert address == guarded.url
    assert call_s > duration_s, "the whole call loads with the cookie too"
    first = recorded.demo.call_log[0]
    assert first.duration_ms is not None
    assert duration_s == pytest.approx(first.duration_ms / 1000, abs=DURATION_TOLERANCE_S)


@pytest.mark.parametrize(
    "target",
    [
        "audio/%2e%2e%2f%2e%2e%2findex.sqlite3",
        "audio/..%2findex.sqlite3",
        "static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2frecordings%2findex.sqlite3",
        "static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    ],
)
def test_a_path_traversal_request_is_refused(server: RunningReview, tab: Tab, target: str) -> None:
    response = tab.page.request.get(f"{server.url}{target}")

    assert response.status in (403, 404)
    assert b"SQLite format 3" not in response.body()
    assert b"root:" not in response.body()
