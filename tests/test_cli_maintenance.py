"""The CLI's replay, delete and purge commands on real files, a real spool and SQLite."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli import RecordedCall, run_in_thread

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    StorageError,
)
from pipecat_audio_capture.cli import main
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage


class DownStorage(LocalAudioStorage):
    """Local storage whose disk refuses every write, as during an outage."""

    async def store_segment(self, *args, **kwargs) -> str:
        raise StorageError("disk unavailable")


async def recorded(root: Path, start: datetime) -> RecordedCall:
    call = RecordedCall(start)
    index = SQLiteAudioMetaStorage(root / "index.sqlite3")
    await call.record(LocalAudioStorage(root), index)
    await index.close()
    return call


def wavs(root: Path, session_id: str) -> list[Path]:
    return sorted((root / session_id).glob("*.wav"))


async def test_delete_removes_a_sessions_audio_and_rows_and_can_run_again(tmp_path):
    root = tmp_path / "recordings"
    kept, gone = await recorded(root, datetime.now(UTC)), await recorded(root, datetime.now(UTC))
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("delete", gone.session_id, "--db", db)
    assert code == 0 and "5 audio files, 5 segment rows, 4 transcript rows" in out
    assert wavs(root, gone.session_id) == []
    assert (await run_in_thread("show", gone.session_id, "--db", db))[0] == 2
    assert len(wavs(root, kept.session_id)) == 5
    assert (await run_in_thread("show", kept.session_id, "--db", db))[0] == 0

    code, out, _ = await run_in_thread("delete", gone.session_id, "--db", db)
    assert code == 0 and "0 audio files, 0 segment rows, 0 transcript rows" in out


async def test_purge_deletes_only_sessions_older_than_the_period(tmp_path):
    root = tmp_path / "recordings"
    old = await recorded(root, datetime.now(UTC) - timedelta(days=40))
    new = await recorded(root, datetime.now(UTC) - timedelta(days=2))
    db = str(root / "index.sqlite3")

    code, out, _ = await run_in_thread("purge", "--older-than", "30d", "--db", db)
    assert code == 0 and "purged 1 sessions" in out
    assert wavs(root, old.session_id) == [] and len(wavs(root, new.session_id)) == 5
    assert (await run_in_thread("show", old.session_id, "--db", db))[0] == 2
    assert (await run_in_thread("show", new.session_id, "--db", db))[0] == 0


async def test_replay_stores_the_spool_once_and_a_second_run_stores_nothing(tmp_path):
    root, spool = tmp_path / "recordings", tmp_path / "spool"
    index = SQLiteAudioMetaStorage(root / "index.sqlite3")
    await index.run_migrations()
    call = RecordedCall(datetime.now(UTC))
    storage = CompositeAudioStorage(files=DownStorage(root), metadata=index)
    capture = SessionAudioCapture(
        call.session_id, storage, spool_dir=spool, retry=RetryPolicy(attempts=1)
    )
    for segment in call.segments:
        capture.record_segment(segment)
    stats = await capture.close()
    await index.close()
    assert stats.spooled == len(call.segments) and stats.stored == 0
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
    assert "--recordings DIR or --bucket NAME" in capsys.readouterr().err
