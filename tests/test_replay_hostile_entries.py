"""Replay treats every spool entry on its own: hostile entries, failing stores, rival replays."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipecat_audio_capture import (
    RetryPolicy,
    Spool,
    SQLiteAudioMetaStorage,
    replay_spool,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import TranscriptRecord

from support.index import SQLiteBackend
from support.reliability import T0, FaultyStore, pending_segment, spool_entry

ONCE = RetryPolicy(attempts=1)


def plant(spool_dir: Path, session_id: str, segment_id: str, data: bytes) -> Path:
    path = spool_dir / session_id / f"{segment_id}.segment"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def three_channel_wav() -> bytes:
    # The header a WAV writer without limits would put before 3-channel audio.
    samples = b"\x01\x00" * 3 * 4
    fields = [
        b"RIFF",
        (36 + len(samples)).to_bytes(4, "little"),
        b"WAVEfmt ",
        (16).to_bytes(4, "little"),
        (1).to_bytes(2, "little"),
        (3).to_bytes(2, "little"),
        (16000).to_bytes(4, "little"),
        (16000 * 6).to_bytes(4, "little"),
        (6).to_bytes(2, "little"),
        (16).to_bytes(2, "little"),
        b"data",
        len(samples).to_bytes(4, "little"),
    ]
    return b"".join(fields) + samples


async def test_one_hostile_entry_is_rejected_alone_and_every_other_entry_is_stored(
    tmp_path: Path,
) -> None:
    spool_dir, session = tmp_path / "spool", new_id()
    good = dict(spool_entry(session) for _ in range(3))
    # 60,000 '[' in the header made the JSON parser raise RecursionError.
    brackets = (new_id(), b"[" * 60_000 + b"\n")
    hostile = {
        plant(spool_dir, session, *entry): why
        for entry, why in [
            (brackets, "nested too deep"),
            (spool_entry(session, sample_rate=2**40), "OverflowError in the WAV header"),
            (spool_entry(session, num_channels=3, wav=three_channel_wav()), "3 channels"),
            (spool_entry(session, started_at="0001-01-01T00:00:00+05:00"), "before year 1"),
            (spool_entry(session, started_at="9999-12-31T23:59:59.9+00:00"), "ends after 9999"),
            (spool_entry(session, unplayed_ms=10**400), "too large for a float"),
            (spool_entry(session, wav=b"RIFF"), "a WAV shorter than its header"),
        ]
    }
    for segment_id, data in good.items():
        plant(spool_dir, session, segment_id, data)
    contents = {path: path.read_bytes() for path in hostile}
    store = FaultyStore(tmp_path / "store")

    report = await replay_spool(spool_dir, store, retry=ONCE)

    assert (report.segments_stored, report.rejected, report.segments_failed) == (3, len(hostile), 0)
    assert store.stored_ids() == sorted(good)
    for path, data in contents.items():
        assert path.read_bytes() == data
        assert sum(str(path) in error for error in report.errors) == 1, hostile[path]


async def test_whatever_storage_raises_for_one_entry_is_reported_for_it_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    spool_dir, session = tmp_path / "spool", new_id()
    entries = dict(spool_entry(session) for _ in range(4))
    paths = {
        segment_id: plant(spool_dir, session, segment_id, data)
        for segment_id, data in entries.items()
    }
    store = FaultyStore(tmp_path / "store")
    broken = sorted(entries)[1:3]
    store.errors[broken[0]] = RecursionError("maximum recursion depth exceeded")
    store.errors[broken[1]] = OverflowError("Python int too large to convert to C int")

    report = await replay_spool(spool_dir, store, retry=ONCE)

    assert (report.segments_stored, report.segments_failed, report.complete) == (2, 2, False)
    assert [
        str(paths[segment_id]) in error
        for segment_id, error in zip(broken, report.errors, strict=True)
    ] == [True, True]
    assert all(paths[segment_id].exists() for segment_id in broken)
    store.errors.clear()
    again = await replay_spool(spool_dir, store, retry=ONCE)
    assert (again.segments_stored, again.complete) == (2, True)
    assert store.stored_ids() == sorted(entries)


async def test_an_entry_another_replay_took_after_the_scan_is_not_an_error(
    tmp_path: Path,
) -> None:
    spool_dir, store = tmp_path / "spool", FaultyStore(tmp_path / "store")
    first, second = new_id(), new_id()
    spool = Spool(spool_dir)
    # Session ``first`` sorts before ``second``: its entry is stored first, and while it is,
    # a rival replay takes one entry of ``second`` and then the whole of that session.
    first, second = sorted([first, second])
    await spool.put_segment(pending_segment(first), reason="write_failed")
    taken = [pending_segment(second, index=i) for i in range(2)]
    for segment in taken:
        await spool.put_segment(segment, reason="write_failed")
    record = TranscriptRecord(second, new_id(), "user", "hello", False, T0)
    await spool.put_transcript(record, reason="write_failed")
    session_folder = spool_dir / second

    def rival_replay() -> None:
        for path in sorted(session_folder.iterdir()):
            path.unlink()
        session_folder.rmdir()

    store.on_store.append(rival_replay)

    report = await replay_spool(spool_dir, store, transcript_store=store, retry=ONCE)

    assert (report.segments_stored, report.gone, report.errors) == (1, 3, [])
    assert report.complete


@pytest.mark.parametrize("lister", ["_scan", "remove_stale_temp_files"])
async def test_a_session_folder_a_rival_replay_removes_while_it_is_listed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lister: str
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    kept, removed = new_id(), new_id()
    await spool.put_segment(pending_segment(kept), reason="write_failed")
    await spool.put_segment(pending_segment(removed), reason="write_failed")
    real_scandir = os.scandir
    fired: list[str] = []

    def rival_scandir(path: Any) -> Any:
        # The rival empties and removes the folder just as ``lister`` opens it.
        if str(path).endswith(removed) and sys._getframe(1).f_code.co_name == lister:
            for child in Path(path).iterdir():
                child.unlink()
            Path(path).rmdir()
            fired.append(lister)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", rival_scandir)
    store = FaultyStore(tmp_path / "store")

    report = await replay_spool(spool_dir, store, retry=ONCE)

    assert fired == [lister]
    assert (report.segments_stored, report.complete, report.errors) == (1, True, [])


REPLAY_WHEN_TOLD = """
import sys, time
from pathlib import Path
from pipecat_audio_capture.cli import main

Path(sys.argv[1]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.002)
sys.exit(main(sys.argv[3:]))
"""


def test_four_concurrent_replay_commands_all_exit_0_and_store_each_entry_once(
    tmp_path: Path,
) -> None:
    spool_dir, db, recordings = tmp_path / "spool", tmp_path / "index.sqlite3", tmp_path / "rec"
    sessions = [new_id() for _ in range(4)]

    async def fill() -> tuple[int, int]:
        index = SQLiteAudioMetaStorage(db)
        await index.run_migrations()
        await index.close()
        spool = Spool(spool_dir)
        segments = transcripts = 0
        for n, session in enumerate(sessions):
            for i in range(20):
                segment = pending_segment(session, index=n * 100 + i, seconds=0.05)
                await spool.put_segment(segment, reason="write_failed")
                segments += 1
                if i % 4 == 0:
                    record = TranscriptRecord(session, segment.turn_id, "user", f"t{i}", False, T0)
                    await spool.put_transcript(record, reason="write_failed")
                    transcripts += 1
        return segments, transcripts

    segments, transcripts = asyncio.run(fill())
    go = tmp_path / "go"
    command = [
        sys.executable,
        "-c",
        REPLAY_WHEN_TOLD,
        "READY",
        str(go),
        "replay",
        "--spool",
        str(spool_dir),
        "--db",
        str(db),
        "--recordings",
        str(recordings),
    ]
    ready = [tmp_path / f"ready-{n}" for n in range(4)]
    runs = [
        subprocess.Popen(
            [str(flag) if part == "READY" else part for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    # All four start replaying at once, once each has imported the package.
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    assert all("Traceback" not in err for _, err in outputs), outputs
    index = SQLiteBackend(db)
    rows = asyncio.run(
        index.fetch("SELECT count(*), count(DISTINCT segment_id) FROM session_audio_segments")
    )
    assert rows == [(segments, segments)]
    assert asyncio.run(index.count("session_transcripts")) == transcripts
    assert len(list(recordings.rglob("*.wav"))) == segments
    assert not any(path.is_file() for path in spool_dir.rglob("*"))
