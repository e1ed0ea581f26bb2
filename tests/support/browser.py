"""The call review as a user runs it: ``pipecat-audio-capture serve`` in a subprocess, and Chromium.

The browser is any installed Chromium or Chrome (:mod:`browser_finder` says where it looks),
driven by the Playwright client. A missing browser fails the tests that need it, with how to
install one: they never skip, so a green run always means a real browser played the audio.
"""

import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipecat_audio_capture.index_access import DB_ENV, DSN_ENV
from pipecat_audio_capture.web.security import TOKEN_ENV

from support.browser_finder import NoBrowserError, find_chromium, playwright_chromium_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
URL_LINE_PREFIX = "call review of "


@dataclass
class RunningReview:
    """A ``serve`` process, the base URL it printed (ending in ``/``), and its output lines
    (stdout and stderr; complete once the block of :func:`running_review` has ended)."""

    process: "subprocess.Popen[str]"
    url: str
    output: list[str]


@contextmanager
def running_review(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[RunningReview]:
    """Run ``python -m pipecat_audio_capture serve --port 0 ARGS`` in ``cwd`` until the block ends.

    The command's own variables are removed from the environment, so it picks its index and
    token as it would in a fresh shell, and ``env`` is added. On exit the process gets SIGINT,
    as Ctrl-C would send.

    Raises:
        pytest.fail.Exception: If the server does not print its URL in time.
    """
    ours = {DB_ENV, DSN_ENV, TOKEN_ENV}
    environ = {key: value for key, value in os.environ.items() if key not in ours}
    command = [sys.executable, "-m", "pipecat_audio_capture", "serve", "--port", "0", *args]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield RunningReview(process, _wait_for_url(lines, output), output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(SERVER_STOP_TIMEOUT_S)


def _wait_for_url(lines: "queue.Queue[str | None]", output: list[str]) -> str:
    while True:
        try:
            line = lines.get(timeout=SERVER_START_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"serve printed no URL within {SERVER_START_TIMEOUT_S} s: {output}")
        if line is None:
            pytest.fail(f"serve exited before it printed its URL: {''.join(output)}")
        if line.startswith(URL_LINE_PREFIX):
            return line.rsplit(" at ", 1)[1].strip()


def require_chromium() -> Path:
    """Return the browser to drive; fail the calling test unless one and the Playwright client
    are installed.

    Raises:
        pytest.fail.Exception: If either is missing, with how to install it.
    """
    if importlib.util.find_spec("playwright") is None:
        pytest.fail("the Playwright client is missing: pip install playwright")
    try:
        return find_chromium(playwright_chromium_path())
    except NoBrowserError as exc:
        pytest.fail(str(exc))


@contextmanager
def chromium() -> Iterator["Browser"]:
    """Launch the installed Chromium or Chrome headless through Playwright; close it on exit.

    Playwright's sync API runs an event loop in the calling thread while the browser is open:
    ``asyncio.run`` cannot be called there until it is closed.

    Raises:
        pytest.fail.Exception: If no browser or the Playwright client is installed.
    """
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
