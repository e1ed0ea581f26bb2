"""Hostile and out-of-range command-line values, and options given before the command.

Every value a command cannot use is refused while parsing, as one ``error:`` line and exit 2:
never a traceback from deeper down (issue: ``purge --older-than 1000000d`` and
``sessions --limit 99999999999999999999`` printed tracebacks and exited 1).
"""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipecat_audio_capture.cli import main

from support.cli import Recorded, assert_fails, record_local_call, run, run_in_thread, wavs
from support.index import new_id

pytestmark = pytest.mark.usefixtures("no_index_in_environment")

SESSION = "6f1c1b7e-3b8e-4a5e-9d7e-2f3c4d5e6f70"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["purge", "--older-than", "1000000d"], id="purge-1000000d"),
        pytest.param(["sessions", "--limit", "99999999999999999999"], id="limit-20-digits"),
    ],
)
def test_the_reported_values_give_one_line_and_exit_2_in_a_real_process(
    argv: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipecat_audio_capture", *argv, "--db", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"pipecat-audio-capture: error: argument {argv[1]}: expected ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sessions", "--limit", "0"], "--limit: expected a whole number from 1 to 10000"),
        (["sessions", "--limit", "-1"], "--limit: expected a whole number from 1 to 10000"),
        (["sessions", "--limit", "10001"], "got '10001'"),
        (["sessions", "--limit", "1e3"], "got '1e3'"),
        (["sessions", "--limit", "\u0663"], "got '\u0663'"),  # an Arabic-Indic digit three
        (["sessions", "--limit", "9" * 100_000], "got '9999999999"),
        (["sessions", "--offset", "99999999999999999999"], "--offset: expected a whole number"),
        (["sessions", "--offset", "-5"], "--offset: expected a whole number from 0"),
        (["purge", "--older-than", "0d"], "--older-than: expected a period like 30d"),
        (["purge", "--older-than", "-1d"], "argument --older-than: expected one argument"),
        (["purge", "--older-than", "36501d"], "from 1s to 36500d, got '36501d'"),
        (["purge", "--older-than", "99999999999999999999999s"], "--older-than: expected"),
        (["purge", "--older-than", "999999999999d"], "--older-than: expected"),
        (["purge", "--older-than", "1e3d"], "--older-than: expected"),
        (["serve", "--port", "70000"], "--port: expected a whole number from 0 to 65535"),
        (["serve", "--port", "-1"], "--port: expected a whole number from 0 to 65535"),
        (["demo", "--speed", "nan"], "--speed: expected a number from 0.1 to 100"),
        (["demo", "--speed", "inf"], "--speed: expected a number"),
        (["demo", "--speed", "0"], "--speed: expected a number"),
        (["demo", "--speed", "-2"], "--speed: expected a number"),
        (["demo", "--speed", "1e9"], "--speed: expected a number"),
        (
            ["demo", "--out", "/dev/null/recordings"],
            "cannot create the folder /dev/null/recordings",
        ),
        (["show", "0"], "session id is not a UUID: '0'"),
        (["show", "../" * 10_000], "session id is not a UUID"),
        (["show", "\udcff\n"], "session id is not a UUID: '\\udcff\\n'"),
        (["delete", "not-a-uuid", "--recordings", "."], "session id is not a UUID"),
        (["export", f"{{{SESSION}}}", "--out", "x"], "session id is not a canonical UUID"),
        (["sessions", "--db", "a\nb"], "no audio index at a b: pass --db"),
    ],
    ids=lambda value: (
        " ".join(value)[:32].encode("ascii", "backslashreplace").decode()
        if isinstance(value, list)
        else ""
    ),
)
def test_a_value_out_of_range_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, tmp_path: Path
) -> None:
    takes_db = "--db" not in argv and argv[0] != "demo"
    db = ["--db", str(tmp_path / "absent.sqlite3")] if takes_db else []

    code, out, err = run(capsys, *argv, *db)

    assert out == ""
    assert_fails(code, err, message)
    # A megabyte of argument is not echoed back whole.
    assert len(err) < 1_000 or argv[0] == "show"


# --- options before the command ---------------------------------------------------------------


def test_index_options_work_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    after = run(capsys, "sessions", "--json", *recorded.index_args)
    before = run(capsys, *recorded.index_args, "sessions", "--json")
    both = run(capsys, *recorded.index_args, "sessions", "--json", *recorded.index_args)

    assert after[0] == 0 and recorded.call.session_id in after[1]
    assert before == after == both


async def test_audio_and_spool_options_work_before_the_command(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    spool = tmp_path / "spool"
    spool.mkdir()
    call = await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")

    where = ["--db", db, "--recordings", str(root), "--spool", str(spool)]
    code, out, _ = await run_in_thread(*where, "delete", call.session_id, "--dry-run")

    assert code == 0 and out.startswith(f"would delete session {call.session_id}: 5 audio files")
    assert len(wavs(root, call.session_id)) == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recordings", "r", "sessions"], "sessions does not take --recordings"),
        (["--spool", "s", "show", SESSION], "show does not take --spool"),
        (["--db", "x", "demo"], "demo does not take --db"),
        (["--db", "a", "sessions", "--db", "b"], "--db is given twice, before and after sessions"),
        (["--db", "a", "sessions", "--dsn", "b"], "argument --dsn: not allowed with argument --db"),
        (["--recordings", "r", "replay", "--bucket", "b", "--spool", "s"], "--bucket: not allowed"),
        (["--db", "a", "replay"], "replay needs --spool"),
    ],
)
def test_options_before_the_command_are_checked_like_those_after_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)

    assert out == ""
    assert_fails(code, err, message)


def test_every_where_option_is_listed_in_the_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")

    assert code == 0
    assert out.startswith("usage: pipecat-audio-capture [-h] [WHERE OPTIONS] COMMAND ...")
    for option in ("--db PATH", "--dsn URL", "--recordings DIR", "--bucket NAME", "--spool DIR"):
        assert option in out
    assert main(["sessions", "--help"]) == 0
    assert "before or after the command" in capsys.readouterr().out


def test_an_unknown_id_in_the_right_form_is_not_a_usage_error(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    unknown = new_id()

    code, _, err = run(capsys, "show", unknown, *recorded.index_args)

    assert_fails(code, err, f"session {unknown} not found in ")


def test_a_path_that_is_not_utf8_is_printed_escaped_not_a_traceback(tmp_path: Path) -> None:
    db = bytes(tmp_path) + b"/\xff.sqlite3"
    argv: list[str | bytes] = [sys.executable, "-m", "pipecat_audio_capture"]

    created = subprocess.run([*argv, "migrate", "--db", db], capture_output=True, check=False)
    listed = subprocess.run([*argv, "sessions", "--db", db], capture_output=True, check=False)

    assert created.returncode == listed.returncode == 0, created.stderr + listed.stderr
    assert listed.stdout == b"no sessions in " + bytes(tmp_path) + b"/\\udcff.sqlite3\n"
