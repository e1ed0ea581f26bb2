"""The background writer of one call: a bounded queue drained off the audio path."""

import asyncio

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import CaptureStats, PendingAudioSegment, SegmentMetadata
from pipecat_audio_capture.storage.base import AudioStorage
from pipecat_audio_capture.wav import encode_wav


class SessionAudioCapture(BaseObject):
    """Stores the segments of one call in the background.

    ``record_segment`` (called on the audio path) only puts the segment on a bounded queue; a
    background task encodes each one to WAV in a worker thread and hands it to the storage
    backend. Segments are written one at a time, in the order they were recorded.

    Loss policy: nothing is dropped silently. When the queue is full the *new* segment is
    refused (the ones already queued are older and further along); when a write raises or
    exceeds ``write_timeout_s`` the segment counts as failed. Either way the segment id is added
    to ``stats.lost_segment_ids``, a warning or error is logged, and an event fires.

    Events:

    - on_segment_stored(capture, meta: SegmentMetadata): audio and metadata were written.
    - on_segment_dropped(capture, segment: PendingAudioSegment, reason: str): refused before
      writing (``"queue_full"``, ``"closed"`` or ``"close_timeout"``).
    - on_segment_failed(capture, segment: PendingAudioSegment, error: Exception): the write
      raised or timed out.

    Example::

        capture = SessionAudioCapture(session_id, LocalAudioStorage("./recordings"))
        ...  # run the pipeline with AudioCaptureProcessor(capture, turn_ids)
        stats = await capture.close()
    """

    def __init__(
        self,
        session_id: str,
        storage: AudioStorage,
        *,
        capacity: int = defaults.QUEUE_CAPACITY,
        write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
        **kwargs,
    ) -> None:
        """Initialize the capture.

        Args:
            session_id: UUID of the call.
            storage: Where the WAV files and their metadata go.
            capacity: Segments that may wait for the writer before new ones are refused.
            write_timeout_s: Longest one segment may take to encode and store.
            **kwargs: Passed to Pipecat's ``BaseObject`` (e.g. ``name``).

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
        """
        super().__init__(**kwargs)
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._session_id = require_uuid(session_id, "session_id")
        self._storage = storage
        self._write_timeout_s = write_timeout_s
        self._queue: asyncio.Queue[PendingAudioSegment] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._stats = CaptureStats()
        self._emitting: set[asyncio.Task[None]] = set()
        self._register_event_handler("on_segment_stored")
        self._register_event_handler("on_segment_dropped")
        self._register_event_handler("on_segment_failed")

    @property
    def session_id(self) -> str:
        """UUID of the call."""
        return self._session_id

    @property
    def storage(self) -> AudioStorage:
        """The storage backend segments are written to."""
        return self._storage

    @property
    def stats(self) -> CaptureStats:
        """Live counters (recorded, stored, dropped, failed, bytes)."""
        return self._stats

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Queue a finished segment for writing; never blocks.

        Returns:
            True if queued, False if refused (queue full or capture closed; reported).
        """
        self._stats.recorded += 1
        if self._closed:
            self._drop(segment, "closed")
            return False
        try:
            self._queue.put_nowait(segment)
        except asyncio.QueueFull:
            self._drop(segment, "queue_full")
            return False
        if self._task is None:
            # The writer belongs to the capture, not to a processor: it must outlive the
            # pipeline so close() can drain what the last frames produced.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"{self}::drain"
            )
        return True

    async def close(self, *, timeout_s: float = defaults.CLOSE_TIMEOUT_S) -> CaptureStats:
        """Refuse new segments and wait until every queued one is written or lost.

        Call it after the pipeline run returns. Segments still queued when ``timeout_s`` runs
        out are dropped with reason ``"close_timeout"`` (counted, logged, reported).

        Returns:
            The final counters.
        """
        self._closed = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=timeout_s)
            except TimeoutError:
                logger.error(f"{self}: close timed out after {timeout_s}s with segments unwritten")
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while not self._queue.empty():
            self._drop(self._queue.get_nowait(), "close_timeout")
            self._queue.task_done()
        await self._wait_for_event_handlers()
        return self._stats

    async def __aenter__(self) -> "SessionAudioCapture":
        """Return the capture; ``close()`` runs on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Drain and close."""
        await self.close()

    async def _drain(self) -> None:
        while True:
            segment = await self._queue.get()
            try:
                meta = await asyncio.wait_for(self._write(segment), timeout=self._write_timeout_s)
            except asyncio.CancelledError:
                # Cancelled by close() after its timeout: this segment was not written.
                self._drop(segment, "close_timeout")
                self._queue.task_done()
                raise
            except Exception as exc:
                self._fail(segment, exc)
            else:
                self._stats.stored += 1
                self._stats.bytes_stored += meta.byte_size
                await self._call_event_handler("on_segment_stored", meta)
            self._queue.task_done()

    async def _write(self, segment: PendingAudioSegment) -> SegmentMetadata:
        data = await asyncio.to_thread(
            encode_wav, segment.pcm, segment.sample_rate, segment.num_channels
        )
        url = await self._storage.store_segment(
            self._session_id, segment.segment_id, segment.speaker, data, turn_id=segment.turn_id
        )
        meta = metadata_for(segment, audio_url=url, byte_size=len(data))
        await self._storage.save_metadata(self._session_id, meta)
        return meta

    def _drop(self, segment: PendingAudioSegment, reason: str) -> None:
        self._stats.dropped += 1
        self._stats.lost_segment_ids.append(segment.segment_id)
        logger.warning(
            f"{self}: dropped {segment.speaker} segment {segment.segment_id} "
            f"(turn {segment.turn_id}, {segment.duration_ms:.0f} ms): {reason}"
        )
        self._emit("on_segment_dropped", segment, reason)

    def _fail(self, segment: PendingAudioSegment, exc: Exception) -> None:
        self._stats.failed += 1
        self._stats.lost_segment_ids.append(segment.segment_id)
        if isinstance(exc, TimeoutError):
            exc = AudioCaptureError(f"write took longer than {self._write_timeout_s}s")
        logger.error(
            f"{self}: failed to store {segment.speaker} segment {segment.segment_id} "
            f"(turn {segment.turn_id}): {exc}"
        )
        self._emit("on_segment_failed", segment, exc)

    def _emit(self, event: str, *args: object) -> None:
        # Handlers of these events run as tasks (not sync), so scheduling them here is cheap
        # and keeps record_segment synchronous for the audio path.
        task = asyncio.get_running_loop().create_task(self._call_event_handler(event, *args))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)

    async def _wait_for_event_handlers(self) -> None:
        await asyncio.gather(*self._emitting, return_exceptions=True)
        await asyncio.gather(*(task for _, task in self._event_tasks), return_exceptions=True)


def metadata_for(
    segment: PendingAudioSegment, *, audio_url: str, byte_size: int
) -> SegmentMetadata:
    """Build the stored metadata of a segment written to ``audio_url``."""
    return SegmentMetadata(
        segment_id=segment.segment_id,
        session_id=segment.session_id,
        turn_id=segment.turn_id,
        speaker=segment.speaker,
        audio_url=audio_url,
        sample_rate=segment.sample_rate,
        num_channels=segment.num_channels,
        duration_ms=segment.duration_ms,
        byte_size=byte_size,
        interrupted=segment.interrupted,
        unplayed_ms=segment.unplayed_ms,
        started_at=segment.started_at,
        ended_at=segment.ended_at,
    )
