"""The CLI's replay, delete and purge commands on real files, a real spool and SQLite."""

import asyncio
import os
import pty
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from pipecat_audio_capture.cli import main
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.cli import record_local_call, run_in_thread, spooled_call, wavs


async def test_delete_removes_a_sessions_audio_and_rows_and_can_run_again(tmp_path):
    root = tmp_path / "recordings"
    kept, gone = (
        await record_local_call(root, datetime.now(UTC)),
        await record_local_call(root, datetime.now(UTC)),
    )
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("delete", gone.session_id, "--db", db)
    assert code == 0 and "5 audio files, 5 segment rows, 4 transcript rows" in out
    assert wavs(root, gone.session_id) == []
    assert (await run_in_thread("show", gone.session_id, "--db", db))[0] == 2
    assert len(wavs(root, kept.session_id)) == 5
    assert (await run_in_thread("show", kept.session_id, "--db", db))[0] == 0

    # Nothing of it is left: a second delete is an unknown session, not a quiet success.
    code, out, err = await run_in_thread("delete", gone.session_id, "--db", db)
    assert (code, out) == (2, "")
    assert f"error: session {gone.session_id} not found: no rows in {db}, no audio in {root}" in err


async def test_purge_deletes_only_sessions_older_than_the_period(tmp_path):
    root = tmp_path / "recordings"
    old = await record_local_call(root, datetime.now(UTC) - timedelta(days=40))
    new = await record_local_call(root, datetime.now(UTC) - timedelta(days=2))
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("purge", "--older-than", "30d", "--db", db)
    assert code == 0 and out.startswith("purged 1 session last active before ")
    assert wavs(root, old.session_id) == [] and len(wavs(root, new.session_id)) == 5
    assert (await run_in_thread("show", old.session_id, "--db", db))[0] == 2
    assert (await run_in_thread("show", new.session_id, "--db", db))[0] == 0


async def test_replay_stores_the_spool_once_and_a_second_run_stores_nothing(tmp_path):
    call, root, spool = await spooled_call(tmp_path)
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("replay", "--spool", str(spool), "--db", db)
    assert code == 0 and "replayed 5 segments" in out and "0 entries remain" in out
    assert len(wavs(root, call.session_id)) == 5
    code, out, _ = await run_in_thread("replay", "--spool", str(spool), "--db", db)
    assert code == 0 and "replayed 0 segments" in out
    index = SQLiteAudioMetaStorage(root / "index.sqlite3")
    assert sum(e.segment_count for e in await index.call_log(call.session_id)) == 5
    await index.close()


@pytest.mark.parametrize("period", ["30", "d30", "1w", "3.5d"])
def test_purge_refuses_a_period_it_cannot_read(tmp_path, period, capsys):
    assert main(["purge", f"--older-than={period}", "--db", str(tmp_path / "x.sqlite3")]) == 2
    assert "expected a period" in capsys.readouterr().err


def test_delete_with_a_dsn_needs_to_be_told_where_the_audio_is(capsys):
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    session_id = "6f1c1b7e-3b8e-4a5e-9d7e-2f3c4d5e6f70"
    assert main(["delete", session_id, "--dsn", dsn]) == 2
    assert "--recordings DIR, --bucket NAME or --s3-bucket NAME" in capsys.readouterr().err


# --- never a quiet success --------------------------------------------------------------------


def assert_one_line_error(code, out, err, message):
    assert (code, out) == (2, "")
    assert err.startswith("pipecat-audio-capture: error: ") and err.count("\n") == 1, err
    assert message in err


async def test_deleting_a_mistyped_session_exits_2_and_deletes_nothing(tmp_path):
    root = tmp_path / "recordings"
    kept = await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")
    typo = "00000000-0000-0000-0000-000000000000"

    code, out, err = await run_in_thread("delete", typo, "--db", db)

    assert_one_line_error(code, out, err, f"session {typo} not found: no rows in {db}")
    assert len(wavs(root, kept.session_id)) == 5


async def test_replaying_a_missing_spool_folder_exits_2(tmp_path):
    root = tmp_path / "recordings"
    await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")

    code, out, err = await run_in_thread("replay", "--spool", "/no/such/folder", "--db", db)

    assert_one_line_error(code, out, err, "no spool folder at /no/such/folder: check --spool")


@pytest.mark.parametrize("command", ["delete", "purge"])
async def test_a_mistyped_spool_folder_stops_a_deletion_before_anything_goes(tmp_path, command):
    # Deleting the audio but not the spooled entries would let a replay bring the call back.
    root = tmp_path / "recordings"
    call = await record_local_call(root, datetime.now(UTC) - timedelta(days=40))
    db = str(root / "index.sqlite3")
    which = [call.session_id] if command == "delete" else ["--older-than", "30d"]

    code, out, err = await run_in_thread(
        command, *which, "--spool", str(tmp_path / "spoool"), "--db", db
    )

    assert_one_line_error(code, out, err, "no spool folder at ")
    assert len(wavs(root, call.session_id)) == 5


async def test_delete_dry_run_counts_what_would_go_and_deletes_nothing(tmp_path):
    root = tmp_path / "recordings"
    call = await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")
    counts = "5 audio files, 5 segment rows, 4 transcript rows, 0 spool entries"

    dry = await run_in_thread("delete", call.session_id, "--dry-run", "--db", db)
    assert dry == (0, f"would delete session {call.session_id}: {counts}\n", "")
    assert len(wavs(root, call.session_id)) == 5
    assert (await run_in_thread("show", call.session_id, "--db", db))[0] == 0

    done = await run_in_thread("delete", call.session_id, "--db", db)
    assert done == (0, f"deleted session {call.session_id}: {counts}\n", "")


async def test_a_call_kept_only_in_the_spool_is_found_counted_and_deleted(tmp_path):
    call, root, spool = await spooled_call(tmp_path)
    db = str(root / "index.sqlite3")
    argv = ["delete", call.session_id, "--spool", str(spool), "--db", db]
    counts = "0 audio files, 0 segment rows, 0 transcript rows, 5 spool entries"

    assert await run_in_thread(*argv, "--dry-run") == (
        0,
        f"would delete session {call.session_id}: {counts}\n",
        "",
    )
    assert await run_in_thread(*argv) == (0, f"deleted session {call.session_id}: {counts}\n", "")
    code, out, _ = await run_in_thread("replay", "--spool", str(spool), "--db", db)
    assert code == 0 and out.startswith("replayed 0 segments and 0 transcripts")


async def test_purge_dry_run_lists_each_session_it_would_delete_and_deletes_nothing(tmp_path):
    root = tmp_path / "recordings"
    old = await record_local_call(root, datetime.now(UTC) - timedelta(days=40))
    new = await record_local_call(root, datetime.now(UTC) - timedelta(days=2))
    db = str(root / "index.sqlite3")

    code, out, err = await run_in_thread("purge", "--older-than", "30d", "--dry-run", "--db", db)

    assert (code, err) == (0, "")
    each, total = out.splitlines()
    assert each == (
        f"would delete session {old.session_id}: 5 audio files, 5 segment rows, "
        "4 transcript rows, 0 spool entries"
    )
    assert total.startswith("would purge 1 session last active before ")
    assert len(wavs(root, old.session_id)) == len(wavs(root, new.session_id)) == 5


async def test_purge_with_nothing_old_enough_says_so(tmp_path):
    root = tmp_path / "recordings"
    await record_local_call(root, datetime.now(UTC))

    code, out, _ = await run_in_thread(
        "purge", "--older-than", "30d", "--db", str(root / "index.sqlite3")
    )

    assert code == 0 and out.startswith("purged no sessions: none last active before ")


async def test_replay_counts_in_words_that_agree(tmp_path):
    call, root, spool = await spooled_call(tmp_path)
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("replay", "--spool", str(spool), "--db", db)

    assert code == 0
    assert out == f"replayed 5 segments and 0 transcripts from {spool}; 0 entries remain\n"
    assert len(wavs(root, call.session_id)) == 5


# --- asking first on a terminal ---------------------------------------------------------------


def run_on_terminal(argv, answer):
    """Run the CLI with a terminal as stdin and stderr; answer its question, if it asks one.

    Returns the exit code, stdout, and what the terminal showed.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipecat_audio_capture", *argv],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    try:
        while process.poll() is None or select.select([controller], [], [], 0)[0]:
            if not select.select([controller], [], [], 30)[0]:
                break
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # Linux: the terminal's last user is gone
                break
            if not chunk:
                break
            shown += chunk
            if shown.endswith(b"[y/N] ") and answer is not None:
                os.write(controller, answer)
                answer = None
        out = process.stdout.read().decode()
        code = process.wait(timeout=60)
    finally:
        os.close(controller)
        process.kill()
    return code, out, shown.decode()


@pytest.mark.parametrize("answer", [b"n\n", b"\n", b"\x04"], ids=["no", "enter", "end-of-input"])
async def test_delete_on_a_terminal_asks_and_anything_but_yes_keeps_the_call(tmp_path, answer):
    root = tmp_path / "recordings"
    call = await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")

    code, out, shown = await asyncio.to_thread(
        run_on_terminal, ["delete", call.session_id, "--db", db], answer
    )

    assert f"delete session {call.session_id}: 5 audio files, 5 segment rows" in shown
    assert "[y/N]" in shown and "not confirmed: nothing was deleted" in shown
    assert (code, out) == (2, "")
    assert len(wavs(root, call.session_id)) == 5


async def test_purge_on_a_terminal_deletes_after_a_yes(tmp_path):
    root = tmp_path / "recordings"
    old = await record_local_call(root, datetime.now(UTC) - timedelta(days=40))
    db = str(root / "index.sqlite3")

    code, out, shown = await asyncio.to_thread(
        run_on_terminal, ["purge", "--older-than", "30d", "--db", db], b"y\n"
    )

    assert "delete 1 session last active before " in shown and "[y/N]" in shown
    assert code == 0 and out.startswith("purged 1 session ")
    assert wavs(root, old.session_id) == []


async def test_yes_deletes_on_a_terminal_without_asking(tmp_path):
    root = tmp_path / "recordings"
    call = await record_local_call(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")

    code, out, shown = await asyncio.to_thread(
        run_on_terminal, ["delete", call.session_id, "--yes", "--db", db], None
    )

    assert "[y/N]" not in shown
    assert code == 0 and out.startswith(f"deleted session {call.session_id}: 5 audio files")
    assert wavs(root, call.session_id) == []
