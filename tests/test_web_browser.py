"""The call review in a real browser, on a call recorded by the offline demo.

The demo call runs once for the module (about 15 s at twice real time), then
``pipecat-audio-capture serve`` runs in the demo's folder with no options, as a user would start
it, and headless Chromium opens it. With ``UPDATE_SCREENSHOT=1`` the call runs in real time and
the session page is saved to ``docs/call-review.png``.
"""

import asyncio
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import RunningReview, chromium, require_chromium, running_review

from pipecat_audio_capture.demo.recorded_call import DemoResult, record_demo_call
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import TranscriptRecord
from pipecat_audio_capture.storage.index import CallLogEntry
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.web.security import TOKEN_ENV

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

IS_PLAYING_JS = """
(id) => {
  const audio = document.getElementById(id);
  return !audio.paused && audio.currentTime > 0.2;
}
"""


@dataclass(frozen=True)
class Recorded:
    """The demo's folder, its call, and a second call whose transcript holds a script."""

    folder: Path
    demo: DemoResult
    xss_session_id: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    folder = tmp_path_factory.mktemp("review")
    demo = asyncio.run(record_demo_call(folder / "recordings", speed=SPEED, say=lambda _: None))
    assert demo.stats.stored == demo.stats.recorded
    xss_session_id = asyncio.run(_add_call_with_a_script(demo))
    return Recorded(folder, demo, xss_session_id)


async def _add_call_with_a_script(demo: DemoResult) -> str:
    """Index a one-turn call (a copy of the demo's first user audio) whose transcript is XSS."""
    async with SQLiteAudioMetaStorage(demo.index_path) as index:
        first_user = next(entry for entry in demo.call_log if entry.role == "user")
        assert first_user.segment_id is not None
        source = await index.segment(first_user.segment_id)
        assert source is not None
        session_id, segment_id, turn_id = new_id(), new_id(), new_id()
        target = demo.recordings / session_id / f"{segment_id}.wav"
        target.parent.mkdir()
        shutil.copyfile(demo.recordings / source.session_id / f"{source.segment_id}.wav", target)
        meta = replace(
            source,
            session_id=session_id,
            segment_id=segment_id,
            turn_id=turn_id,
            audio_url=target.resolve().as_uri(),
        )
        await index.save_metadata(session_id, meta)
        await index.save_transcript(
            TranscriptRecord(session_id, turn_id, "user", XSS, False, meta.started_at)
        )
    return session_id


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
    assert tab.page.locator("table.sessions tbody tr").count() == 2


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
    if UPDATE_SCREENSHOT:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        tab.page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_each_turns_audio_loads_with_the_indexed_duration(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")

    for number, entry in audio_turns(recorded.demo.call_log):
        assert entry.duration_ms is not None
        duration_s = tab.page.evaluate(AUDIO_DURATION_JS, f"audio-{number}")
        assert duration_s == pytest.approx(entry.duration_ms / 1000, abs=DURATION_TOLERANCE_S)


def test_clicking_a_turn_in_the_picture_plays_that_turn(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    first, second = clickable_turns(recorded.demo.call_log)[:2]
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")

    tab.page.locator(f'svg [data-turn="audio-{first}"]').click()
    tab.page.wait_for_function(IS_PLAYING_JS, arg=f"audio-{first}", timeout=PLAY_TIMEOUT_MS)
    highlighted = tab.page.locator("svg .turn.playing").get_attribute("data-turn")
    tab.page.locator(f'svg [data-turn="audio-{second}"]').click()
    tab.page.wait_for_function(IS_PLAYING_JS, arg=f"audio-{second}", timeout=PLAY_TIMEOUT_MS)

    assert highlighted == f"audio-{first}"
    playing = tab.page.evaluate(
        "() => [...document.querySelectorAll('audio')].filter((a) => !a.paused).map((a) => a.id)"
    )
    assert playing == [f"audio-{second}"], "one turn plays at a time"
    row_classes = [
        (tab.page.locator(f"#turn-{number}").get_attribute("class") or "").split()
        for number in (first, second)
    ]
    assert ["playing" in classes for classes in row_classes] == [False, True]


def test_enter_on_a_focused_turn_in_the_picture_plays_it(
    server: RunningReview, recorded: Recorded, tab: Tab
) -> None:
    turn = clickable_turns(recorded.demo.call_log)[-1]
    tab.page.goto(f"{server.url}sessions/{recorded.demo.session_id}")

    tab.page.locator(f'svg [data-turn="audio-{turn}"]').focus()
    tab.page.keyboard.press("Enter")

    tab.page.wait_for_function(IS_PLAYING_JS, arg=f"audio-{turn}", timeout=PLAY_TIMEOUT_MS)


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
    for path in ("", f"sessions/{recorded.demo.session_id}", f"sessions/{recorded.xss_session_id}"):
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

    assert address == guarded.url
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
