"""How the browser tests find a Chromium: environment variable, Playwright's own, then PATH."""

import subprocess
import sys
from pathlib import Path

import pytest

from support import browser_finder
from support.browser_finder import BROWSER_ENV, BROWSER_NAMES, NoBrowserError, find_chromium

FINDER = Path(browser_finder.__file__)


def _executable(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only an empty folder, and no browser variable."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv(BROWSER_ENV, raising=False)
    return folder


@pytest.mark.parametrize("name", BROWSER_NAMES)
def test_each_usual_browser_name_on_path_is_found(empty_path: Path, name: str) -> None:
    browser = _executable(empty_path, name)
    assert find_chromium(None) == browser


def test_playwrights_own_chromium_wins_over_path(empty_path: Path, tmp_path: Path) -> None:
    _executable(empty_path, "chromium")
    bundled = _executable(tmp_path / "ms-playwright" / "chromium-1", "chrome")
    assert find_chromium(str(bundled)) == bundled


def test_playwrights_chromium_not_downloaded_falls_back_to_path(
    empty_path: Path, tmp_path: Path
) -> None:
    on_path = _executable(empty_path, "google-chrome")
    assert find_chromium(str(tmp_path / "ms-playwright" / "missing" / "chrome")) == on_path


def test_environment_variable_wins_over_everything(
    empty_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _executable(empty_path, "chromium")
    chosen = _executable(tmp_path / "elsewhere", "my-chrome")
    monkeypatch.setenv(BROWSER_ENV, str(chosen))
    assert find_chromium(str(_executable(tmp_path / "pw", "chrome"))) == chosen


def test_environment_variable_naming_no_executable_is_an_error(
    empty_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _executable(empty_path, "chromium")
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(NoBrowserError, match=BROWSER_ENV):
        find_chromium(None)


def test_nothing_found_says_in_one_line_what_to_install(empty_path: Path) -> None:
    with pytest.raises(NoBrowserError) as raised:
        find_chromium(None)
    message = str(raised.value)
    assert "\n" not in message
    assert "apt-get install chromium" in message
    assert "playwright install chromium" in message
    assert BROWSER_ENV in message


def run_finder(path: Path, home: Path) -> "subprocess.CompletedProcess[str]":
    """Run ``python tests/support/browser_finder.py`` with only ``path`` on PATH and an empty
    Playwright browser cache."""
    return subprocess.run(
        [sys.executable, str(FINDER)],
        capture_output=True,
        text=True,
        env={
            "PATH": str(path),
            "PLAYWRIGHT_BROWSERS_PATH": str(home / "no-browsers"),
            "HOME": str(home),
        },
        timeout=60,
    )


def test_finder_script_exits_1_with_the_hint_when_nothing_is_found(
    empty_path: Path, tmp_path: Path
) -> None:
    result = run_finder(empty_path, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("no Chromium or Chrome found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_finder_script_names_the_browser_it_found(empty_path: Path, tmp_path: Path) -> None:
    browser = _executable(empty_path, "chromium-browser")
    result = run_finder(empty_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"browser tests drive {browser}\n"


def test_install_downloads_playwrights_chromium_when_nothing_is_found(
    empty_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundled = tmp_path / "ms-playwright" / "chromium-1" / "chrome"
    monkeypatch.setattr(browser_finder, "playwright_chromium_path", lambda: str(bundled))
    downloads: list[Path] = []

    def download(log: Path) -> bool:
        downloads.append(log)
        _executable(bundled.parent, bundled.name)
        return True

    monkeypatch.setattr(browser_finder, "download_chromium", download)
    log = tmp_path / "install.log"
    assert browser_finder.main(["--install", "--log", str(log)]) == 0
    assert downloads == [log]
    assert capsys.readouterr().out.endswith(f"browser tests drive {bundled}\n")


def test_install_that_cannot_download_says_in_one_line_what_to_install(
    empty_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(browser_finder, "playwright_chromium_path", lambda: None)
    monkeypatch.setattr(browser_finder, "download_chromium", lambda log: False)
    assert browser_finder.main(["--install", "--log", str(tmp_path / "install.log")]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "apt-get install chromium" in error and BROWSER_ENV in error


def test_install_does_not_download_over_a_wrong_environment_variable(
    empty_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "typo"))
    monkeypatch.setattr(browser_finder, "playwright_chromium_path", lambda: None)

    def download(log: Path) -> bool:
        raise AssertionError("downloaded although the variable names the browser to use")

    monkeypatch.setattr(browser_finder, "download_chromium", download)
    assert browser_finder.main(["--install"]) == 1
    assert BROWSER_ENV in capsys.readouterr().err
