"""A process killed with SIGKILL mid-write: no partial file under a final name, and recovery.

A child process writes large segments in a loop; the test kills it the moment a temporary file
is on disk (so the kill lands inside a write), then checks every final file and cleans up.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipecat_audio_capture import LocalAudioStorage, Spool, replay_spool
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.safe_files import TEMP_SUFFIX

from support.reliability import wav_is_complete

SEGMENT_BYTES = 8 << 20
"""8 MiB of PCM per segment (about 4 minutes of 16 kHz mono): a write takes long enough to be
caught in the middle."""

ROUNDS = 5
"""Kills tried until one lands while a temporary file exists (the first one nearly always does)."""

_LOCAL_WRITER = """
import asyncio, os, sys, uuid
from pipecat_audio_capture import LocalAudioStorage
from pipecat_audio_capture.wav import encode_wav

async def main():
    storage = LocalAudioStorage(sys.argv[1])
    session = str(uuid.uuid4())
    print("ready", flush=True)
    while True:
        # Three concurrent writes of distinct large segments, as three calls would make.
        await asyncio.gather(*(
            storage.store_segment(
                session, str(uuid.uuid4()), "user", encode_wav([os.urandom(SIZE)], 16000, 1)
            )
            for _ in range(3)
        ))

asyncio.run(main())
"""

_SPOOLING_CAPTURE = """
import asyncio, os, sys, uuid
from datetime import UTC, datetime
from pipecat_audio_capture import RetryPolicy, SessionAudioCapture, StorageError
from pipecat_audio_capture.records import PendingAudioSegment

class Down:
    async def store_segment(self, *args, **kwargs):
        raise StorageError("storage is down")

    async def save_metadata(self, *args, **kwargs):
        raise StorageError("storage is down")

async def main():
    capture = SessionAudioCapture(
        str(uuid.uuid4()), Down(), retry=RetryPolicy(attempts=1), spool_dir=sys.argv[1]
    )
    print("ready", flush=True)
    while True:
        capture.record_segment(PendingAudioSegment(
            segment_id=str(uuid.uuid4()), session_id=capture.session_id,
            turn_id=str(uuid.uuid4()), speaker="user", pcm=[os.urandom(SIZE)],
            sample_rate=16000, num_channels=1, started_at=datetime.now(UTC),
        ))
        await asyncio.sleep(0.01)

asyncio.run(main())
"""


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{TEMP_SUFFIX}"))


def kill_mid_write(script: str, root: Path, finals: str) -> list[Path]:
    """Run ``script`` on ``root`` and SIGKILL it while a temporary file exists next to at least
    one finished file matching ``finals``; return the temporary files left, over ``ROUNDS``
    tries until some are."""
    code = textwrap.dedent(script).replace("SIZE", str(SEGMENT_BYTES))
    for _ in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            deadline = time.monotonic() + 30  # no hang if the child never writes
            while time.monotonic() < deadline:
                if temp_files(root) and any(root.rglob(finals)):
                    break
                time.sleep(0.001)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        left = temp_files(root)
        if left:
            return left
    pytest.fail(f"no kill in {ROUNDS} rounds landed while a temporary file existed")


async def test_a_killed_writer_leaves_only_complete_wavs_and_recover_removes_its_temp_files(
    tmp_path: Path,
) -> None:
    root = tmp_path / "recordings"

    left = kill_mid_write(_LOCAL_WRITER, root, "*.wav")

    wavs = sorted(root.rglob("*.wav"))
    assert wavs and all(wav_is_complete(path) for path in wavs)
    assert all(path.name.startswith(".") for path in left)
    storage = LocalAudioStorage(root)
    # Fresh temporary files may be another live writer's: the default age leaves them alone.
    assert await storage.recover() == 0
    assert temp_files(root) == left

    assert await storage.recover(min_age_s=0) == len(left)

    assert temp_files(root) == []
    assert sorted(root.rglob("*.wav")) == wavs
    assert all(wav_is_complete(path) for path in wavs)


async def test_a_capture_killed_while_spooling_leaves_whole_entries_that_replay_once(
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"

    left = kill_mid_write(_SPOOLING_CAPTURE, spool_dir, "*.segment")

    spool = Spool(spool_dir)
    scan = await spool.scan()
    assert scan.segments and scan.rejected == []
    assert sorted(scan.temporary) == left
    for path in scan.segments:
        await spool.read_segment(path)  # raises if an entry were partial or corrupt
    recordings = LocalAudioStorage(tmp_path / "recordings")

    first = await replay_spool(spool_dir, recordings, temp_min_age_s=0)
    second = await replay_spool(spool_dir, recordings, temp_min_age_s=0)

    assert first.temp_files_removed == len(left)
    assert (first.segments_stored, first.complete) == (len(scan.segments), True)
    assert (second.segments_stored, second.temp_files_removed) == (0, 0)
    wavs = sorted(recordings.root.rglob("*.wav"))
    assert sorted(path.stem for path in wavs) == sorted(path.stem for path in scan.segments)
    assert all(wav_is_complete(path) for path in wavs)
    assert [path for path in spool_dir.rglob("*") if path.is_file()] == []


async def test_recover_on_a_root_that_does_not_exist_yet_finds_nothing(tmp_path: Path) -> None:
    assert await LocalAudioStorage(tmp_path / "new").recover(min_age_s=0) == 0
    assert await Spool(tmp_path / "spool").recover(min_age_s=0) == 0


async def test_recover_never_follows_a_symlinked_session_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bait = outside / f".{new_id()}.abcd1234{TEMP_SUFFIX}"
    bait.write_bytes(b"not ours")
    root = tmp_path / "recordings"
    root.mkdir()
    (root / new_id()).symlink_to(outside, target_is_directory=True)

    assert await LocalAudioStorage(root).recover(min_age_s=0) == 0
    assert bait.read_bytes() == b"not ours"
