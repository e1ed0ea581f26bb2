"""What the command line loads and prints around the work: no Pipecat for the index commands,
and a demo whose closing lines run as printed."""

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipecat_audio_capture import LocalAudioStorage
from pipecat_audio_capture.cli.invocation import invocation
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.cli import RecordedCall

REPO = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("pipecat-audio-capture")
BANNER = "ᓚᘏᗢ"
LATENCY_TITLE = "why each response took its time (from session_turn_latency):"

# Runs each command through main() in one fresh interpreter, then reports every loaded module
# of Pipecat's package (and the demo's, which needs it).
LOADED_AFTER = """
import json, sys
from pipecat_audio_capture.cli import main
import pipecat_audio_capture.web
codes = [main(argv) for argv in json.loads(sys.argv[1])]
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] == "pipecat" or name.startswith("pipecat_audio_capture.demo")
)
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


@pytest.fixture
def recorded_call(tmp_path: Path) -> tuple[Path, str]:
    """A SQLite index beside the WAVs of one recorded call: its path and the call's id."""
    root = tmp_path / "recordings"
    call = RecordedCall()

    async def record() -> None:
        async with SQLiteAudioMetaStorage(root / "index.sqlite3") as index:
            await call.record(LocalAudioStorage(root), index)

    asyncio.run(record())
    return root / "index.sqlite3", call.session_id


def test_the_index_commands_never_import_pipecat(
    recorded_call: tuple[Path, str], tmp_path: Path
) -> None:
    db, session_id = recorded_call
    index = ["--db", str(db)]
    commands = [
        ["sessions", *index],
        ["sessions", "--json", *index],
        ["show", session_id, *index],
        ["show", session_id, "--json", *index],
        ["export", session_id, "--out", str(tmp_path / "export"), *index],
        ["migrate", *index],
        ["delete", session_id, "--dry-run", *index],
        ["purge", "--older-than", "1d", "--dry-run", *index],
        ["delete", session_id, *index],
        ["purge", "--older-than", "1d", *index],
        ["show", session_id, *index],
    ]

    done = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER, json.dumps(commands)],
        capture_output=True,
        text=True,
        check=True,
    )

    report = json.loads(done.stdout.splitlines()[-1])
    assert report["codes"] == [0] * (len(commands) - 1) + [2]
    assert report["loaded"] == []
    assert BANNER not in done.stderr


@pytest.mark.parametrize("command", ["sessions", "replay"])
def test_the_console_script_prints_no_pipecat_banner(
    recorded_call: tuple[Path, str], command: str, tmp_path: Path
) -> None:
    # replay does load Pipecat (it rebuilds segment metadata with the capture module), after
    # the CLI has set its log to warnings only.
    db, _ = recorded_call
    (tmp_path / "spool").mkdir()
    options = ["--spool", str(tmp_path / "spool")] if command == "replay" else []

    done = subprocess.run(
        [str(CONSOLE_SCRIPT), command, *options, "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# --- the demo's closing lines -----------------------------------------------------------------


def test_the_printed_invocation_runs_from_where_it_was_printed(tmp_path: Path) -> None:
    assert invocation(".venv/bin/pipecat-audio-capture", "/x/python", tmp_path) == (
        ".venv/bin/pipecat-audio-capture"
    )
    assert invocation(str(tmp_path / "bin" / "pac"), "/x/python", tmp_path) == "bin/pac"
    script = str(tmp_path / "main" / "__main__.py")
    assert invocation(script, str(tmp_path / "venv" / "bin" / "python"), tmp_path) == (
        "venv/bin/python -m pipecat_audio_capture"
    )
    assert invocation(script, "/opt/my python/bin/python", tmp_path) == (
        "'/opt/my python/bin/python' -m pipecat_audio_capture"
    )
    # Outside the folder: the bare name when PATH finds this very script, else its full path.
    on_path = invocation(str(CONSOLE_SCRIPT), "/x/python", tmp_path)
    found = shutil.which("pipecat-audio-capture")
    found_it = found is not None and Path(found).samefile(CONSOLE_SCRIPT)
    assert on_path == ("pipecat-audio-capture" if found_it else str(CONSOLE_SCRIPT))


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_shell_env() -> dict[str, str]:
    """A new login's environment: no activated virtual environment on PATH."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def test_the_demos_closing_lines_run_as_printed_from_the_repository_root(tmp_path: Path) -> None:
    script = os.path.relpath(CONSOLE_SCRIPT, REPO)  # .venv/bin/pipecat-audio-capture
    out = tmp_path / "recordings"

    demo = subprocess.run(
        [script, "demo", "--out", str(out), "--speed", "4"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    assert "call log of session " in demo.stdout
    assert re.search(r"^\d+ of \d+ segments stored", demo.stdout, re.MULTILINE)
    show_line = lines[lines.index("read it again:") + 1].strip()
    serve_at = next(i for i, line in enumerate(lines) if line.startswith("review it in a browser"))
    serve_line = lines[serve_at + 1].strip()
    session_id = re.search(r"call log of session (\S+) ", demo.stdout)[1]  # type: ignore[index]
    assert shlex.split(show_line)[:3] == [script, "show", session_id]
    # The call log was fitted to $COLUMNS.
    log = lines[lines.index(f"call log of session {session_id} (from session_call_log):") + 2 :]
    assert max(len(line) for line in log[: log.index("")]) <= 100
    # The recorder stored each answer's latency breakdown, printed fitted too.
    latency = lines[lines.index(LATENCY_TITLE) + 2 :]
    rows = latency[1 : latency.index("")]
    assert latency[0].split()[:2] == ["#", "TOTAL"]
    assert rows
    assert max(len(line) for line in latency[: latency.index("")]) <= 100

    shown = subprocess.run(
        ["bash", "-c", show_line],
        cwd=REPO,
        env=fresh_shell_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"session {session_id}, started ")
    assert f"\n{LATENCY_TITLE}\n" in shown.stdout

    url = re.search(r"then open (http://\S+/):", lines[serve_at])[1]  # type: ignore[index]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    # The printed line as it is; only if another program holds its port, on a free one.
    command = serve_line if port_is_free(port) else f"{serve_line} --port 0"
    server = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=REPO,
        env=fresh_shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        served = re.search(r"at (http://\S+/)", first)
        assert served, first + server.stderr.read() if server.stderr else first
        with urllib.request.urlopen(served[1], timeout=30) as page:
            assert page.status == 200
            assert session_id in page.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_package_loads_pipecat_and_numpy_only_when_a_name_needs_them() -> None:
    script = """
import json, sys
import pipecat_audio_capture as package
before = sorted(m for m in ("pipecat", "numpy") if m in sys.modules)
names = {
    name: getattr(package, name).__module__ for name in package.__all__ if name != "__version__"
}
after = sorted(m for m in ("pipecat", "numpy") if m in sys.modules)
print(json.dumps({"before": before, "after": after, "names": names, "dir": dir(package)}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    report = json.loads(done.stdout.splitlines()[-1])
    assert report["before"] == [] and report["after"] == ["numpy", "pipecat"]
    assert report["names"]["AudioCaptureProcessor"] == "pipecat_audio_capture.processor"
    assert report["names"]["plan_purge"] == "pipecat_audio_capture.retention"
    assert set(report["names"]) <= set(report["dir"])
