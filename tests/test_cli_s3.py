"""The CLI's --s3-bucket, --s3-prefix and --s3-endpoint-url, against moto's S3 server."""

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipecat_audio_capture.storage.s3 import S3AudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.cli import RecordedCall, assert_fails, run_in_thread, spooled_call

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def keys(client: "S3Client", bucket: str, session_id: str) -> list[str]:
    listed = client.list_object_versions(Bucket=bucket, Prefix=f"calls/{session_id}/")
    return sorted(item["Key"] for item in listed.get("Versions", []))


async def recorded(db: Path, files: S3AudioStorage, start: datetime) -> RecordedCall:
    call = RecordedCall(start)
    index = SQLiteAudioMetaStorage(db)
    await call.record(files, index)  # type: ignore[arg-type]
    await index.close()
    return call


async def test_delete_and_purge_reach_every_version_in_the_s3_bucket(
    s3_env: str, s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> None:
    db = str(tmp_path / "index.sqlite3")
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls", endpoint_url=s3_env)
    old = await recorded(Path(db), files, datetime.now(UTC) - timedelta(days=40))
    kept = await recorded(Path(db), files, datetime.now(UTC))
    s3 = ("--s3-bucket", s3_bucket, "--s3-prefix", "calls", "--s3-endpoint-url", s3_env)
    assert len(keys(s3_client, s3_bucket, old.session_id)) == 5

    code, out, _ = await run_in_thread("delete", old.session_id, "--db", db, *s3, "--dry-run")
    assert code == 0
    assert "would delete session" in out and "5 audio files, 5 segment rows" in out
    assert len(keys(s3_client, s3_bucket, old.session_id)) == 5

    # The where-options also go before the command.
    code, out, _ = await run_in_thread(*s3, "purge", "--db", db, "--older-than", "30d")
    assert (code, out.splitlines()[-1][:23]) == (0, "purged 1 session last a")
    assert keys(s3_client, s3_bucket, old.session_id) == []
    assert len(keys(s3_client, s3_bucket, kept.session_id)) == 5

    code, _, err = await run_in_thread("delete", old.session_id, "--db", db, *s3)
    assert_fails(code, err, f"no audio in s3://{s3_bucket}/calls")


async def test_replay_delivers_the_spool_to_the_s3_bucket(
    s3_env: str, s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> None:
    call, root, spool = await spooled_call(tmp_path)
    db = str(root / "index.sqlite3")
    s3 = ("--s3-bucket", s3_bucket, "--s3-prefix", "calls", "--s3-endpoint-url", s3_env)

    code, out, _ = await run_in_thread("replay", "--db", db, "--spool", str(spool), *s3)

    assert code == 0, out
    assert out.startswith("replayed 5 segments")
    assert len(keys(s3_client, s3_bucket, call.session_id)) == 5
    with contextlib.closing(sqlite3.connect(db)) as index:
        urls = [row[0] for row in index.execute("SELECT audio_url FROM session_audio_segments")]
    assert sorted(urls) == [
        f"s3://{s3_bucket}/{key}" for key in keys(s3_client, s3_bucket, call.session_id)
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bucket", "g", "purge", "--s3-bucket", "s"], "--s3-bucket: not allowed with"),
        (["--s3-bucket", "a", "purge", "--s3-bucket", "b"], "--s3-bucket is given twice"),
        (["--s3-bucket", "a", "sessions"], "sessions does not take --s3-bucket"),
        (["--s3-endpoint-url", "http://x", "show", "x"], "show does not take --s3-endpoint-url"),
    ],
)
def test_s3_options_are_checked_like_the_others(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from pipecat_audio_capture.cli import main

    code = main([*argv, "--older-than", "1d"] if "purge" in argv else argv)

    out, err = capsys.readouterr()
    assert out == ""
    assert_fails(code, err, message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--s3-prefix", "calls"], "--s3-prefix needs --s3-bucket"),
        (["--s3-endpoint-url", "http://127.0.0.1:9"], "--s3-endpoint-url needs --s3-bucket"),
        (["--s3-bucket", "b", "--prefix", "calls"], "--prefix is the GCS bucket's"),
    ],
)
async def test_a_prefix_or_endpoint_without_its_bucket_is_refused(
    tmp_path: Path, options: list[str], message: str
) -> None:
    db = str(tmp_path / "index.sqlite3")

    code, _, err = await run_in_thread("purge", "--db", db, "--older-than", "1d", *options)

    assert_fails(code, err, message)
