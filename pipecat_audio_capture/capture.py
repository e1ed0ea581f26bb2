"""The background writer of one call: a bounded queue drained off the audio path."""

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import (
    AudioCaptureError,
    AudioFormatError,
    InvalidArgumentError,
    SpoolError,
    SpoolFullError,
)
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.queues import joined, settled, stopped
from pipecat_audio_capture.records import (
    CaptureStats,
    PendingAudioSegment,
    SegmentMetadata,
    WriteStats,
)
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.row_writer import BackgroundRowWriter
from pipecat_audio_capture.segment_write import store_segment
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import SegmentStorage
from pipecat_audio_capture.wav import check_format, encode_wav


@dataclass
class SessionCaptureStats(CaptureStats, WriteStats):
    """:class:`~pipecat_audio_capture.CaptureStats` plus what went to the spool.

    It is a :class:`~pipecat_audio_capture.records.WriteStats` too, the counters every
    background writer's ``close()`` returns (``stored``, ``spooled``, ``failed``).

    Parameters:
        spooled: Segments kept in the spool, to be stored by a replay (not lost).
        spooled_segment_ids: Their ids.
    """

    spooled: int = 0
    spooled_segment_ids: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Segments recorded but neither stored, spooled nor lost yet."""
        return super().pending - self.spooled


@dataclass(frozen=True)
class _Encoded:
    """A segment on its way to storage, with its WAV bytes once encoded.

    ``wav`` is None before encoding, or when close() gave up before encoding it.
    """

    segment: PendingAudioSegment
    wav: bytes | None


class SessionAudioCapture(BackgroundRowWriter[PendingAudioSegment, _Encoded]):
    """Stores the segments of one call in the background.

    ``record_segment`` (called on the audio path) only puts the segment on a bounded queue; a
    background task encodes each one to WAV in a worker thread and hands it to the storage
    backend. Segments are written one at a time, in the order they were recorded.

    Each write (the audio, then the metadata, through
    :func:`~pipecat_audio_capture.segment_write.store_segment`) is retried as ``retry`` says,
    each attempt bounded by ``write_timeout_s``. Backends store a segment once per
    ``segment_id``, so a retry never duplicates a file or a row. The queue, retries, spooling
    and ``close()`` are :class:`~pipecat_audio_capture.row_writer.BackgroundRowWriter`'s.

    Loss policy: nothing is dropped silently. With a ``spool_dir``, a segment that storage
    cannot take is kept there, durably, for :func:`~pipecat_audio_capture.replay.replay_spool`:

    - its write still fails after the retries (reason ``"write_failed"``);
    - the queue is full because storage is slower than speech (``"queue_full"``): it waits in a
      second bounded queue, ``spill_capacity`` segments, for the spool's own writer thread;
    - ``close()`` timed out before it was written (``"close_timeout"``).

    A segment is lost only when it can be neither stored nor spooled: without a spool, in the
    cases above; with one, when the spool is at ``spool_max_bytes`` (reason ``"spool_full"``)
    or cannot be written (``"spool_failed"``), when the spill queue is full too, or when it
    arrives after ``close()``. A segment no layer could store fails at once, never spooled: a
    format outside :mod:`~pipecat_audio_capture.limits` (refused by ``record_segment``), audio
    that cannot be encoded as WAV, or an entry the spool's reader would refuse. Whatever one
    segment raises is that segment's outcome, and the writer goes on with the next. Each loss
    adds the segment id to ``stats.lost_segment_ids``, is logged at WARNING or ERROR and fires
    an event. Memory is bounded by ``capacity + spill_capacity`` segments.

    Events:

    - on_segment_stored(capture, meta: SegmentMetadata): audio and metadata were written.
    - on_segment_spooled(capture, segment: PendingAudioSegment, reason: str): kept in the
      spool (``"write_failed"``, ``"queue_full"`` or ``"close_timeout"``).
    - on_segment_dropped(capture, segment: PendingAudioSegment, reason: str): lost without a
      write failure (``"queue_full"``, ``"closed"``, ``"close_timeout"``, ``"spool_full"`` or
      ``"spool_failed"``).
    - on_segment_failed(capture, segment: PendingAudioSegment, error: Exception): the segment
      can never be stored (``error`` is an
      :class:`~pipecat_audio_capture.errors.AudioFormatError` or what encoding raised), or its
      write failed after its retries and it could not be spooled (``error`` is the write's last
      error, or the :class:`~pipecat_audio_capture.errors.SpoolError`, such as
      :class:`~pipecat_audio_capture.errors.SpoolFullError`, that refused it).

    Example::

        capture = SessionAudioCapture(
            session_id, storage, spool_dir="/var/spool/recordings"
        )
        ...  # run the pipeline with AudioCaptureProcessor(capture, turn_ids)
        stats = await capture.close()
    """

    ROW_KIND = "segment"

    def __init__(
        self,
        session_id: str,
        storage: SegmentStorage,
        *,
        capacity: int = defaults.QUEUE_CAPACITY,
        write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = defaults.SPOOL_MAX_BYTES,
        spill_capacity: int = defaults.SPILL_CAPACITY,
        **kwargs: Any,
    ) -> None:
        """Initialize the capture.

        Args:
            session_id: UUID of the call.
            storage: Where the WAV files and their metadata go.
            capacity: Segments that may wait for the writer before new ones spill to the spool
                (or, without one, are refused).
            write_timeout_s: Longest one attempt at storing audio or metadata may take.
            retry: Attempts, backoff and deadline of each write; ``RetryPolicy()`` when omitted.
            spool_dir: Folder that keeps the segments storage could not take; without it those
                segments are lost (and reported).
            spool_max_bytes: Largest size of the spool folder.
            spill_capacity: Segments that may wait for the spool writer when the queue is full.
            **kwargs: Passed to Pipecat's ``BaseObject`` (e.g. ``name``).

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            InvalidArgumentError: If a capacity is below 1.
        """
        if capacity < 1 or spill_capacity < 1:
            raise InvalidArgumentError("capacity and spill_capacity must be at least 1")
        super().__init__(
            capacity=capacity,
            write_timeout_s=write_timeout_s,
            retry=retry,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            **kwargs,
        )
        self._session_id = require_uuid(session_id, "session_id")
        self._storage = storage
        self._spill: asyncio.Queue[PendingAudioSegment] = asyncio.Queue(maxsize=spill_capacity)
        self._spill_task: asyncio.Task[None] | None = None
        self._closed = False
        self._capture_stats = SessionCaptureStats()
        self._stats = self._capture_stats
        self._register_event_handler("on_segment_dropped")

    @property
    def session_id(self) -> str:
        """UUID of the call."""
        return self._session_id

    @property
    def storage(self) -> SegmentStorage:
        """The storage backend segments are written to."""
        return self._storage

    @property
    def spool(self) -> Spool | None:
        """The spool segments go to when storage cannot take them, if configured."""
        return self._spool

    @property
    def stats(self) -> SessionCaptureStats:
        """Live counters (recorded, stored, spooled, dropped, failed, bytes)."""
        return self._capture_stats

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Queue a finished segment for writing (or, if the queue is full, for the spool).

        Never blocks and never does I/O: both queues are in memory. A segment whose format is
        outside :mod:`~pipecat_audio_capture.limits` is refused and counts as failed.

        Returns:
            True if taken, False if refused (and reported).
        """
        self._capture_stats.recorded += 1
        try:
            # Constant work; the processor checks frames too, but this class is public API and
            # nothing past this point may meet a format a layer would refuse.
            check_format(segment.sample_rate, segment.num_channels)
        except AudioFormatError as exc:
            self._fail_segment(segment, exc)
            return False
        if self._closed:
            self._drop(segment, "closed")
            return False
        try:
            self._enqueue(segment)
        except asyncio.QueueFull:
            return self._spill_over(segment)
        return True

    async def close(self, *, timeout_s: float = defaults.CLOSE_TIMEOUT_S) -> SessionCaptureStats:
        """Refuse new segments and wait until every queued one is stored, spooled or lost.

        Call it after the pipeline run returns. It returns within ``timeout_s``. With a spool,
        storage gets the first part of it and the last ``CLOSE_SPOOL_SHARE`` is kept for
        spooling what storage did not take by then (reason ``"close_timeout"``): the write in
        progress is cancelled and the segments left go to the spool. What is still unwritten at
        the end, or without a spool at the timeout, is dropped with that reason (counted,
        logged, reported). Event handlers still running then go on in the background.

        Returns:
            The final counters.
        """
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        await self._finish(timeout_s, deadline)
        if self._spill_task is not None:
            await joined(self._spill, deadline - loop.time())
            await stopped(self._spill_task)
            self._spill_task = None
            while not self._spill.empty():
                self._drop(self._spill.get_nowait(), "close_timeout")
                self._spill.task_done()
        # A handler that hangs must not hold close() past its timeout. The emitting tasks start
        # the handlers' tasks, so they are waited for first.
        await settled(self._emitting, deadline)
        await settled({task for _, task in self._event_tasks}, deadline)
        return self._capture_stats

    async def __aenter__(self) -> "SessionAudioCapture":
        """Return the capture; ``close()`` runs on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Drain and close."""
        await self.close()

    def _spill_over(self, segment: PendingAudioSegment) -> bool:
        if self._spool is None:
            self._drop(segment, "queue_full")
            return False
        try:
            self._spill.put_nowait(segment)
        except asyncio.QueueFull:
            # The spool's writer fell behind too: memory stays bounded.
            self._drop(segment, "queue_full")
            return False
        if self._spill_task is None:
            self._spill_task = asyncio.get_running_loop().create_task(
                self._drain_spill(), name=f"{self}::spill"
            )
        return True

    async def _drain_spill(self) -> None:
        while True:
            segment = await self._spill.get()
            await self._settle(segment, self._divert(_Encoded(segment, None), "queue_full"))
            self._spill.task_done()

    async def _row(self, pending: PendingAudioSegment, *, abandoning: bool) -> "_Encoded | None":
        if abandoning:
            return _Encoded(pending, None)
        try:
            wav = await asyncio.to_thread(
                encode_wav,
                pending.pcm,
                pending.sample_rate,
                pending.num_channels,
                data_size=pending.pcm_bytes,
            )
        except Exception as exc:
            # Audio that cannot be a WAV file: no backend and no spool could take it.
            self._fail_segment(pending, exc)
            return None
        return _Encoded(pending, wav)

    def _lost_row(self, pending: PendingAudioSegment) -> _Encoded:
        return _Encoded(pending, None)

    async def _persist(self, row: _Encoded) -> SegmentMetadata:
        if row.wav is None:
            # Only a segment close() gave up on has no WAV, and that one goes to the spool.
            raise AudioCaptureError(f"segment {row.segment.segment_id} was never encoded")
        return await store_segment(
            self._storage,
            self._session_id,
            row.segment,
            row.wav,
            policy=self._retry,
            attempt_timeout_s=self._write_timeout_s,
        )

    async def _spool_row(self, spool: Spool, row: _Encoded, reason: str) -> Path:
        return await spool.put_segment(row.segment, reason=reason, wav=row.wav)

    def _describe(self, row: _Encoded) -> str:
        return f"{row.segment.speaker} segment {row.segment.segment_id}"

    async def _stored(self, row: _Encoded, result: Any) -> None:
        meta: SegmentMetadata = result
        self._settled()
        self._capture_stats.stored += 1
        self._capture_stats.bytes_stored += meta.byte_size
        await self._call_event_handler("on_segment_stored", meta)

    def _spooled(self, row: _Encoded, reason: str, error: Exception | None, path: Path) -> None:
        self._capture_stats.spooled_segment_ids.append(row.segment.segment_id)
        super()._spooled(row, reason, error, path)

    def _subject(self, row: _Encoded) -> PendingAudioSegment:
        return row.segment

    def _unspooled(
        self,
        row: _Encoded,
        reason: str,
        error: Exception | None,
        spool_error: Exception | None,
    ) -> None:
        segment = row.segment
        if spool_error is None:
            # No spool: a write that failed is a failure, anything else a drop.
            if error is not None:
                self._fail_segment(segment, error)
            else:
                self._drop(segment, reason)
        elif error is None:
            full = isinstance(spool_error, SpoolFullError)
            self._drop(segment, "spool_full" if full else "spool_failed", spool_error)
        else:
            refused = spool_error if isinstance(spool_error, SpoolError) else error
            self._fail_segment(segment, refused, spool_error=spool_error, write_error=error)

    def _lost(self, pending: PendingAudioSegment, error: Exception) -> None:
        self._fail_segment(pending, error)

    def _abandoned(self, pending: PendingAudioSegment) -> None:
        self._drop(pending, "close_timeout")

    def _drop(
        self, segment: PendingAudioSegment, reason: str, cause: Exception | None = None
    ) -> None:
        self._settled()
        self._capture_stats.dropped += 1
        self._capture_stats.lost_segment_ids.append(segment.segment_id)
        because = f" ({cause})" if cause is not None else ""
        logger.warning(
            f"{self}: dropped {segment.speaker} segment {segment.segment_id} "
            f"(turn {segment.turn_id}, {segment.duration_ms:.0f} ms): {reason}{because}"
        )
        self._emit("on_segment_dropped", segment, reason)

    def _fail_segment(
        self,
        segment: PendingAudioSegment,
        error: Exception,
        *,
        spool_error: Exception | None = None,
        write_error: Exception | None = None,
    ) -> None:
        self._settled()
        self._capture_stats.failed += 1
        self._capture_stats.lost_segment_ids.append(segment.segment_id)
        detail = f"{write_error}; the spool refused it too: {spool_error}" if spool_error else error
        logger.error(
            f"{self}: failed to store {segment.speaker} segment {segment.segment_id} "
            f"(turn {segment.turn_id}): {detail}"
        )
        self._emit("on_segment_failed", segment, error)
