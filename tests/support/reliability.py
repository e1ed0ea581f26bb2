"""Builders and probes shared by the retry, spool, fault, crash and retention tests.

PYTEST_DONT_REWRITE: no assertions here.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.processors.aggregators.llm_response_universal import (
    AssistantTurnStoppedMessage,
    UserTurnStoppedMessage,
)
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    SessionAudioCapture,
    SQLiteAudioMetaStorage,
    TranscriptRecorder,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import (
    PendingAudioSegment,
    SegmentMetadata,
    Speaker,
    TranscriptRecord,
)
from pipecat_audio_capture.wav import HEADER_BYTES, encode_wav

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def pending_segment(
    session_id: str,
    *,
    index: int = 0,
    seconds: float = 0.1,
    rate: int = 16000,
    speaker: Speaker = "user",
    turn_id: str | None = None,
) -> PendingAudioSegment:
    """A mono segment whose samples encode ``index``, so every segment's bytes differ."""
    samples = (np.arange(round(seconds * rate)) + index * 7919) % 30000
    return PendingAudioSegment(
        segment_id=new_id(),
        session_id=session_id,
        turn_id=turn_id or new_id(),
        speaker=speaker,
        pcm=[samples.astype("<i2").tobytes()],
        sample_rate=rate,
        num_channels=1,
        started_at=T0 + timedelta(seconds=index),
    )


def spool_entry(session_id: str, **changes: Any) -> tuple[str, bytes]:
    """A segment entry as the spool writes it, built here independently of the spool.

    ``changes`` replace header fields (``wav=`` replaces the WAV bytes); the WAV's size and
    checksum always match the WAV bytes. Returns the header's segment id and the entry.
    """
    segment = pending_segment(session_id)
    wav = changes.pop("wav", None) or encode_wav(segment.pcm, 16000, 1)
    header = {
        "format": "pipecat-audio-capture/spool-segment",
        "version": 1,
        "session_id": session_id,
        "segment_id": segment.segment_id,
        "turn_id": segment.turn_id,
        "speaker": "user",
        "sample_rate": 16000,
        "num_channels": 1,
        "started_at": segment.started_at.isoformat(),
        "interrupted": False,
        "unplayed_ms": None,
        "wav_bytes": len(wav),
        "wav_sha256": hashlib.sha256(wav).hexdigest(),
        "reason": "write_failed",
        "spooled_at": T0.isoformat(),
    }
    header.update(changes)
    return header["segment_id"], json.dumps(header).encode() + b"\n" + wav


class FaultyStore:
    """Local WAV files plus a SQLite index under ``root``, with faults on demand.

    ``errors[segment_id]`` is raised when that segment's audio is stored; each callable in
    ``on_store`` runs once, before the next audio write.
    """

    def __init__(self, root: Path) -> None:
        self.files = LocalAudioStorage(root / "recordings")
        self.index = SQLiteAudioMetaStorage(root / "index.sqlite3")
        self.real = CompositeAudioStorage(files=self.files, metadata=self.index)
        self.errors: dict[str, BaseException] = {}
        self.on_store: list[Callable[[], None]] = []

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        while self.on_store:
            self.on_store.pop()()
        if segment_id in self.errors:
            raise self.errors[segment_id]
        return await self.real.store_segment(session_id, segment_id, speaker, data, turn_id=turn_id)

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        await self.real.save_metadata(session_id, meta)

    async def save_transcript(self, record: TranscriptRecord) -> None:
        await self.real.save_transcript(record)

    def stored_ids(self) -> list[str]:
        """The segment ids of the WAV files stored, sorted."""
        return sorted(path.stem for path in self.files.root.rglob("*.wav"))


def wav_is_complete(path: Path) -> bool:
    """Whether ``path`` is a whole 16-bit PCM WAV: its header's sizes match the file's."""
    size = path.stat().st_size
    if size < HEADER_BYTES:
        return False
    with wave.open(str(path)) as reader:
        frames = reader.getnframes()
        frame_bytes = reader.getsampwidth() * reader.getnchannels()
    return HEADER_BYTES + frames * frame_bytes == size


def digest(data: bytes) -> str:
    """SHA-256 of ``data``, to compare stored audio with what was recorded."""
    return hashlib.sha256(data).hexdigest()


class LoopLagProbe:
    """Measures how late the event loop wakes a task that sleeps ``interval_s`` again and again.

    Any synchronous work on the loop (blocking I/O, a long computation) shows up as lag.

    The objects alive when the probe starts are frozen out of garbage collection while it runs
    (``gc.freeze``, as long-running servers do after startup): in the test process, which holds
    pytest, Pipecat and the Google client, one full collection of them takes up to ~45 ms, a
    pause of the test harness rather than of the code under test. Collections of the objects
    created while the probe runs still happen and still count.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def max_lag_s(self) -> float:
        """The largest lag seen."""
        return max(self.lags_s, default=0.0)

    async def __aenter__(self) -> LoopLagProbe:
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        gc.unfreeze()

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.lags_s.append(time.perf_counter() - started - self.interval_s)


@dataclass
class Speech:
    """Feeds segments to a capture at a speaking pace and times each ``record_segment`` call."""

    capture: SessionAudioCapture
    pace_s: float = 0.02
    segments: list[PendingAudioSegment] = field(default_factory=list)
    call_s: list[float] = field(default_factory=list)

    async def speak(self, count: int, **segment_options: Any) -> None:
        """Record ``count`` new segments, one every ``pace_s``."""
        for _ in range(count):
            segment = pending_segment(
                self.capture.session_id, index=len(self.segments), **segment_options
            )
            self.segments.append(segment)
            started = time.perf_counter()
            self.capture.record_segment(segment)
            self.call_s.append(time.perf_counter() - started)
            await asyncio.sleep(self.pace_s)


class _Aggregator(BaseObject):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        for event in events:
            # Handlers run inline, in call order, like the real aggregators' own awaits.
            self._register_event_handler(event, sync=True)

    async def fire(self, event: str, *args: object) -> None:
        await self._call_event_handler(event, *args)


class Conversation:
    """Stands in for Pipecat's user and assistant aggregators to drive a TranscriptRecorder."""

    def __init__(self, recorder: TranscriptRecorder) -> None:
        self.user = _Aggregator(["on_user_turn_started", "on_user_turn_stopped"])
        self.assistant = _Aggregator(["on_assistant_turn_started", "on_assistant_turn_stopped"])
        recorder.attach(self.user, self.assistant)

    async def user_says(self, text: str, *, at: datetime) -> None:
        """One user turn with its final transcript."""
        await self.user.fire("on_user_turn_started", None)
        message = UserTurnStoppedMessage(content=text, timestamp=at.isoformat())
        await self.user.fire("on_user_turn_stopped", None, message)

    async def bot_says(self, text: str, *, at: datetime, interrupted: bool = False) -> None:
        """One assistant turn with its final transcript."""
        await self.assistant.fire("on_assistant_turn_started")
        message = AssistantTurnStoppedMessage(
            content=text, interrupted=interrupted, timestamp=at.isoformat()
        )
        await self.assistant.fire("on_assistant_turn_stopped", message)


def events_of(obj: BaseObject, *names: str) -> dict[str, list[tuple[Any, ...]]]:
    """Collect the arguments of every firing of the named events of ``obj``."""
    seen: dict[str, list[tuple[Any, ...]]] = {name: [] for name in names}

    def recorder(name: str) -> Callable[..., Any]:
        async def handler(_obj: object, *args: Any) -> None:
            seen[name].append(args)

        return handler

    for name in names:
        obj.add_event_handler(name, recorder(name))
    return seen
