"""Which Chromium the browser tests drive: any installed Chromium or Chrome, found without a
hard-coded path.

Looked for, in order:

1. ``$AUDIO_CAPTURE_CHROMIUM``, the executable to use (an error if it is not one);
2. Playwright's own Chromium, downloaded by ``playwright install chromium`` (into
   ``~/.cache/ms-playwright`` or ``$PLAYWRIGHT_BROWSERS_PATH``), the build this Playwright client
   was made for;
3. the first of :data:`BROWSER_NAMES` on ``PATH`` (Debian's and Ubuntu's snap ``chromium``,
   ``chromium-browser``, Google Chrome).

``make test`` runs this file first (``python tests/support/browser_finder.py --install``): when
nothing is found, it downloads Playwright's Chromium, and where that fails (no internet) it says
in one line what to install. It imports neither pytest nor the package, so the check stays quiet
and quick.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

BROWSER_ENV = "AUDIO_CAPTURE_CHROMIUM"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "no Chromium or Chrome found for the browser tests: install one (apt-get install chromium, "
    "snap install chromium, brew install --cask chromium), run .venv/bin/playwright install "
    f"chromium, or set {BROWSER_ENV} to a Chromium or Chrome executable"
)


DOWNLOAD_FAILED = (
    "could not download Playwright's Chromium (details in {log}): install Chromium or Chrome "
    "(apt-get install chromium, snap install chromium, brew install --cask chromium) or set "
    f"{BROWSER_ENV} to its executable"
)


class NoBrowserError(Exception):
    """No usable Chromium or Chrome; the message says what to install or set."""


def find_chromium(playwright_executable: str | None) -> Path:
    """Return the Chromium or Chrome executable to drive.

    Args:
        playwright_executable: Where this Playwright client keeps its own Chromium
            (``playwright.chromium.executable_path``); None when unknown.

    Raises:
        NoBrowserError: If ``$AUDIO_CAPTURE_CHROMIUM`` names no executable file, or nothing is
            found.
    """
    configured = os.environ.get(BROWSER_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise NoBrowserError(f"{BROWSER_ENV}={configured} is not an executable file")
        return path
    if playwright_executable and Path(playwright_executable).is_file():
        return Path(playwright_executable)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise NoBrowserError(INSTALL_HINT)


def playwright_chromium_path() -> str | None:
    """Where Playwright keeps its own Chromium (it may not be downloaded); None without the
    Playwright client."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as playwright:
        return playwright.chromium.executable_path


def download_chromium(log: Path) -> bool:
    """Run ``playwright install chromium`` (next to this interpreter), its output going to
    ``log``; return whether it succeeded."""
    playwright = Path(sys.executable).with_name("playwright")
    command = [str(playwright)] if playwright.is_file() else [sys.executable, "-m", "playwright"]
    with log.open("w") as output:
        result = subprocess.run(
            [*command, "install", "chromium"], stdout=output, stderr=subprocess.STDOUT
        )
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Print the browser the tests will drive; exit 1 with one line saying what to do if none.

    With ``--install``, download Playwright's Chromium when nothing is found (not when
    ``$AUDIO_CAPTURE_CHROMIUM`` names something that is not a browser: that is a mistake to fix).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="download Chromium if none found")
    parser.add_argument(
        "--log", type=Path, default=Path("playwright-install.log"), help="download output"
    )
    args = parser.parse_args(argv)
    try:
        found = find_chromium(playwright_chromium_path())
    except NoBrowserError as exc:
        if not args.install or os.environ.get(BROWSER_ENV):
            print(exc, file=sys.stderr)
            return 1
        print("no Chromium or Chrome found: downloading Playwright's Chromium (once)")
        if not download_chromium(args.log):
            print(DOWNLOAD_FAILED.format(log=args.log), file=sys.stderr)
            return 1
        found = find_chromium(playwright_chromium_path())
    print(f"browser tests drive {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
