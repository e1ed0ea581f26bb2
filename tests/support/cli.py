"""The command-line tests' calls and runners: a known call recorded into real WAVs and an index,
and ``main`` run in-process, from a thread, or checked for a one-line usage error."""

import asyncio
import contextlib
import io
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    PendingAudioSegment,
    RetryPolicy,
    SessionAudioCapture,
    StorageError,
    TranscriptRecord,
)
from pipecat_audio_capture.cli import main
from pipecat_audio_capture.records import Role, Speaker
from pipecat_audio_capture.storage.index import MetadataIndex
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

from support.index import T0, IndexBackend, PgSchema, SQLiteBackend, new_id


class RecordedCall:
    """A call written through SessionAudioCapture into real WAV files and an index.

    Times are milliseconds after ``start``; user audio is 16 kHz, bot audio 24 kHz.

    ====  =======  ==========================================  ===================================
    turn  speaker  audio                                       transcript
    ====  =======  ==========================================  ===================================
    1     user     0 - 1000                                    "Hi, where is my order?"
    2     bot      1500 - 2500, 2500 - 3000 (2 segments; the   "It shipped yesterday and it",
                   second interrupted, 400 unplayed)           interrupted
    3     user     2900 - 3500 (barge-in)                      'Can I change the address, "please"?'
    4     bot      4250 - 5050                                 none
    5     user     none                                        "Thanks, bye." at 5500
    ====  =======  ==========================================  ===================================
    """

    def __init__(self, start: datetime = T0) -> None:
        self.session_id = new_id()
        self.start = start
        self.turns = [new_id() for _ in range(5)]
        # Every segment gets its own sample value, so a file copied to the wrong name shows.
        self._levels = itertools.count(1000, 1000)
        turn = self.turns
        self.segments = [
            self._segment(turn[0], "user", 0, 1000),
            self._segment(turn[1], "bot", 1500, 1000),
            self._segment(turn[1], "bot", 2500, 500, interrupted=True, unplayed_ms=400.0),
            self._segment(turn[2], "user", 2900, 600),
            self._segment(turn[3], "bot", 4250, 800),
        ]
        self.texts = ["Hi, where is my order?", "It shipped yesterday and it"]
        self.texts += ['Can I change the address, "please"?', None, "Thanks, bye."]
        self.transcripts = [
            self._transcript(turn[0], "user", self.texts[0], 0),
            self._transcript(turn[1], "assistant", self.texts[1], 1500, interrupted=True),
            self._transcript(turn[2], "user", self.texts[2], 2900),
            self._transcript(turn[4], "user", self.texts[4], 5500),
        ]

    async def record(self, files: LocalAudioStorage, metadata: MetadataIndex) -> None:
        storage = CompositeAudioStorage(files=files, metadata=metadata)
        capture = SessionAudioCapture(self.session_id, storage)
        for segment in self.segments:
            assert capture.record_segment(segment)
        assert (await capture.close()).stored == len(self.segments)
        for record in self.transcripts:
            await metadata.save_transcript(record)

    def _segment(
        self,
        turn_id: str,
        speaker: Speaker,
        start_ms: int,
        duration_ms: int,
        *,
        interrupted: bool = False,
        unplayed_ms: float | None = None,
    ) -> PendingAudioSegment:
        rate = 16_000 if speaker == "user" else 24_000
        samples = np.full(rate * duration_ms // 1000, next(self._levels), dtype="<i2")
        return PendingAudioSegment(
            segment_id=new_id(),
            session_id=self.session_id,
            turn_id=turn_id,
            speaker=speaker,
            pcm=[samples.tobytes()],
            sample_rate=rate,
            num_channels=1,
            started_at=self.start + timedelta(milliseconds=start_ms),
            interrupted=interrupted,
            unplayed_ms=unplayed_ms,
        )

    def _transcript(
        self, turn_id: str, role: Role, text: str, at_ms: int, *, interrupted: bool = False
    ) -> TranscriptRecord:
        return TranscriptRecord(
            session_id=self.session_id,
            turn_id=turn_id,
            role=role,
            text=text,
            interrupted=interrupted,
            occurred_at=self.start + timedelta(milliseconds=at_ms),
        )


@dataclass
class Recorded:
    """Two calls an hour apart in one index, and how to point the CLI at it."""

    index_args: list[str]
    files: LocalAudioStorage
    call: RecordedCall
    older: RecordedCall

    def wav(self, segment: PendingAudioSegment) -> Path:
        return self.files.path_for(segment.session_id, segment.segment_id)

    @property
    def export_args(self) -> list[str]:
        """The index arguments, and the folder the WAVs are in."""
        return [*self.index_args, "--recordings", str(self.files.root)]


def index_args_of(backend: IndexBackend, request: pytest.FixtureRequest) -> list[str]:
    """The ``--db`` or ``--dsn`` arguments that point the CLI at ``backend``."""
    if isinstance(backend, SQLiteBackend):
        return ["--db", str(backend.path)]
    schema: PgSchema = request.getfixturevalue("pg_schema")
    return ["--dsn", schema.dsn]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def run_in_thread(*argv: str) -> tuple[int, str, str]:
    """Run the CLI from an async test: main runs its own event loop, which cannot nest."""

    def call_main() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(call_main)


def assert_fails(code: int, err: str, message: str) -> None:
    """Check a usage error: exit 2 and one ``error:`` line holding ``message``, no traceback."""
    assert code == 2
    assert err.startswith("pipecat-audio-capture: error: ")
    assert message in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


class DownStorage(LocalAudioStorage):
    """Local storage whose disk refuses every write, as during an outage."""

    async def store_segment(self, *args, **kwargs) -> str:
        raise StorageError("disk unavailable")


async def record_local_call(root: Path, start: datetime) -> RecordedCall:
    """Record a :class:`RecordedCall` starting at ``start`` into a folder and its SQLite index."""
    call = RecordedCall(start)
    index = SQLiteAudioMetaStorage(root / "index.sqlite3")
    await call.record(LocalAudioStorage(root), index)
    await index.close()
    return call


async def spooled_call(tmp_path: Path) -> tuple[RecordedCall, Path, Path]:
    """A call whose every segment went to the spool (storage was down): in no index, no folder."""
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
    return call, root, spool


def wavs(root: Path, session_id: str) -> list[Path]:
    """The WAV files of a session in a local recordings folder, by name."""
    return sorted((root / session_id).glob("*.wav"))
