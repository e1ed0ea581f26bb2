"""``export`` of a call whose audio is in a GCS bucket, against fake-gcs-server."""

import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from google.cloud import storage

from pipecat_audio_capture import (
    CompositeAudioStorage,
    PendingAudioSegment,
    SessionAudioCapture,
    SQLiteAudioMetaStorage,
    TranscriptRecord,
)
from pipecat_audio_capture.cli import main
from pipecat_audio_capture.records import Speaker
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.index import MetadataIndex
from pipecat_audio_capture.wav import read_wav_header

from support.gcs import FakeGCS, Fault, FaultProxy
from support.index import T0, IndexBackend, PgSchema, make_segment, new_id

PREFIX = "calls/"
SECRET = b"TOP SECRET: not a recording"


@dataclass(frozen=True)
class GCSCall:
    """A call recorded to a bucket, indexed in a SQLite file.

    Turns: user 0-800 ms, bot 1000-2000 ms, user 2500-3000 ms, and a user transcript at 3500 ms
    without audio.
    """

    session_id: str
    bucket: str
    index_args: list[str]
    objects: list[str]
    """The segments' object names, in spoken order."""

    @property
    def index_path(self) -> Path:
        return Path(self.index_args[1])

    def export(self, out_dir: Path) -> list[str]:
        return ["export", self.session_id, "--out", str(out_dir), *self.index_args]


pytestmark = pytest.mark.usefixtures("no_index_in_environment")


@pytest.fixture
def gcs_call(gcs_client: storage.Client, bucket_name: str, tmp_path: Path) -> GCSCall:
    async def record() -> GCSCall:
        index_path = tmp_path / "index.sqlite3"
        async with SQLiteAudioMetaStorage(index_path) as index:
            return await _record(gcs_client, bucket_name, index, ["--db", str(index_path)])

    return asyncio.run(record())


async def _record(
    client: storage.Client, bucket: str, index: MetadataIndex, index_args: list[str]
) -> GCSCall:
    session_id = new_id()
    turns: list[tuple[Speaker, int, int]] = [("user", 0, 800), ("bot", 1000, 1000)]
    turns.append(("user", 2500, 500))
    files = GCSAudioStorage(bucket=bucket, prefix=PREFIX, client=client)
    capture = SessionAudioCapture(session_id, CompositeAudioStorage(files=files, metadata=index))
    # Each segment has its own sample level, none of them silence.
    segments = [_segment(session_id, *turn, level=1000 * (n + 1)) for n, turn in enumerate(turns)]
    for segment in segments:
        assert capture.record_segment(segment)
    assert (await capture.close()).stored == len(segments)
    bye_at = T0 + timedelta(seconds=3.5)
    await index.save_transcript(
        TranscriptRecord(session_id, new_id(), "user", "Bye.", False, bye_at)
    )
    names = [files.object_name(session_id, segment.segment_id) for segment in segments]
    return GCSCall(session_id, bucket, index_args, names)


def _segment(
    session_id: str, speaker: Speaker, start_ms: int, duration_ms: int, *, level: int
) -> PendingAudioSegment:
    rate = 16_000 if speaker == "user" else 24_000
    samples = np.full(rate * duration_ms // 1000, level, dtype="<i2")
    return PendingAudioSegment(
        segment_id=new_id(),
        session_id=session_id,
        turn_id=new_id(),
        speaker=speaker,
        pcm=[samples.tobytes()],
        sample_rate=rate,
        num_channels=1,
        started_at=T0 + timedelta(milliseconds=start_ms),
    )


def object_bytes(client: storage.Client, bucket: str, name: str) -> bytes:
    return bytes(client.bucket(bucket).blob(name).download_as_bytes())


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_downloaded(client: storage.Client, call: GCSCall, out_dir: Path, out: str) -> None:
    """Each turn's object is in the folder, and call.wav holds them where they were spoken."""
    wavs = ["001-user.wav", "002-assistant.wav", "003-user.wav"]
    assert out == f"exported 6 files to {out_dir}: {', '.join(wavs)}, call.wav, " + (
        "transcript.json, transcript.csv\n"
    )
    for name, object_name in zip(wavs, call.objects, strict=True):
        assert (out_dir / name).read_bytes() == object_bytes(client, call.bucket, object_name)
    turns = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    assert [turn["audio_files"] for turn in turns] == [[name] for name in wavs] + [[]]
    assert turns[1]["audio_url"] == f"gs://{call.bucket}/{call.objects[1]}"
    with (out_dir / "call.wav").open("rb") as file:
        wav = read_wav_header(file)
        stereo = np.frombuffer(file.read(), dtype="<i2").reshape(-1, 2)
    assert (wav.sample_rate, len(stereo)) == (24_000, 3 * 24_000)
    user, bot = stereo[:, 0], stereo[:, 1]
    assert [int(user[ms * 24]) for ms in (400, 1500, 2750)] == [1000, 0, 3000]
    assert [int(bot[ms * 24]) for ms in (400, 1500, 2750)] == [0, 2000, 0]


def test_export_downloads_each_turns_object_into_the_folder_and_builds_call_wav(
    emulator_env: str,
    gcs_client: storage.Client,
    gcs_call: GCSCall,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_dir = tmp_path / "export"

    code, out, err = run(capsys, gcs_call.export(out_dir))

    assert (code, err) == (0, "")
    assert_downloaded(gcs_client, gcs_call, out_dir, out)


async def test_export_of_a_gcs_call_indexed_in_postgres_builds_call_wav(
    emulator_env: str,
    gcs_client: storage.Client,
    bucket_name: str,
    postgres_index: IndexBackend,
    pg_schema: PgSchema,
    tmp_path: Path,
) -> None:
    call = await _record(gcs_client, bucket_name, postgres_index.store, ["--dsn", pg_schema.dsn])
    out_dir = tmp_path / "export"

    code, out, err = await asyncio.to_thread(_main_capturing_stderr, call.export(out_dir))

    assert (code, err) == (0, "")
    assert_downloaded(gcs_client, call, out_dir, out)


async def test_export_downloads_only_each_rows_own_object_and_counts_each_refusal(
    emulator_env: str,
    gcs_client: storage.Client,
    gcs_call: GCSCall,
    tmp_path: Path,
) -> None:
    bucket = gcs_client.bucket(gcs_call.bucket)
    bucket.blob(f"{PREFIX}secret.wav").upload_from_string(SECRET)
    gcs_client.bucket(gcs_call.bucket).blob(gcs_call.objects[2]).delete()
    async with SQLiteAudioMetaStorage(gcs_call.index_path) as index:
        for url, at_ms in [
            (f"gs://{gcs_call.bucket}/{PREFIX}secret.wav", 4000),
            (f"gs://{gcs_call.bucket}/{PREFIX}{gcs_call.session_id}/{new_id()}.wav", 5000),
        ]:
            row = replace(make_segment(gcs_call.session_id, start_ms=at_ms), audio_url=url)
            await index.save_metadata(gcs_call.session_id, row)
    out_dir = tmp_path / "export"

    code, _, err = await asyncio.to_thread(_main_capturing_stderr, gcs_call.export(out_dir))

    assert code == 2
    refused = dict(re.findall(r"error: turn (\d+): not exported: (.*)", err))
    assert list(refused) == ["3", "5", "6"]
    assert refused["3"] == f"no object at gs://{gcs_call.bucket}/{gcs_call.objects[2]}"
    assert "secret.wav is not the segment's own object" in refused["5"]
    # Another segment's object name is not this row's own object either.
    assert "is not the segment's own object" in refused["6"]
    assert "the audio of 3 turns was refused; the rest was exported" in err
    assert "error: call.wav: 3 segments not played as indexed, 3 of them silent" in err
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "001-user.wav", "002-assistant.wav", "call.wav", "transcript.csv", "transcript.json"
    ]  # fmt: skip
    for path in out_dir.iterdir():
        assert SECRET not in path.read_bytes()


def _main_capturing_stderr(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in a worker thread (it runs its own event loop) and return its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


async def test_a_download_that_fails_leaves_no_file_in_the_folder(
    fake_gcs: FakeGCS,
    fault_proxy: Callable[..., FaultProxy],
    gcs_client: storage.Client,
    gcs_call: GCSCall,
    tmp_path: Path,
) -> None:
    from pipecat_audio_capture.cli.export import export_call

    proxy = fault_proxy(Fault.FORWARD, Fault.FORBIDDEN)
    async with SQLiteAudioMetaStorage(gcs_call.index_path) as index:
        entries = await index.call_log(gcs_call.session_id)
        gaps = await index.response_gaps(gcs_call.session_id)
        segments = await index.session_segments(gcs_call.session_id)
    out_dir = tmp_path / "export"

    result = await export_call(
        entries,
        gaps,
        out_dir,
        segments=segments,
        recordings=None,
        gcs_client=fake_gcs.client(proxy.url),
    )

    assert [refusal.turn for refusal in result.refused] == [2]
    assert result.refused[0].reason.startswith(f"could not download gs://{gcs_call.bucket}/")
    assert result.files == [
        "001-user.wav", "003-user.wav", "call.wav", "transcript.json", "transcript.csv"
    ]  # fmt: skip
    assert sorted(os.listdir(out_dir)) == sorted(result.files)
    # Its turn is silent in call.wav, and reported as such.
    assert [(issue.turn, issue.silenced) for issue in result.call_audio_issues] == [(2, True)]


def test_export_of_gcs_audio_without_credentials_writes_nothing(
    gcs_call: GCSCall,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    out_dir = tmp_path / "export"

    code, out, err = run(capsys, gcs_call.export(out_dir))

    assert (code, out) == (2, "")
    assert err.startswith("pipecat-audio-capture: error: no Google Cloud credentials found")
    assert err.count("\n") == 1
    assert not out_dir.exists()


def test_export_of_gcs_audio_without_the_gcs_extra_says_what_to_install(
    gcs_call: GCSCall, tmp_path: Path
) -> None:
    out_dir = tmp_path / "export"
    script = f"""
import sys
sys.modules["google.cloud.storage"] = None
from pipecat_audio_capture.cli import main
sys.exit(main({gcs_call.export(out_dir)!r}))
"""

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2
    assert done.stderr == (
        "pipecat-audio-capture: error: gs:// audio needs the gcs extra: "
        "pip install 'pipecat-audio-capture[gcs]'\n"
    )
    assert not out_dir.exists()
