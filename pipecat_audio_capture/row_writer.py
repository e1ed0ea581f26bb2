"""The one background writer: a queue drained off the audio path, retried, spooled or reported.

A recorder notes what an event or a frame said (a "pending" item) and returns at once; this
base class turns each pending item into a row and stores it from a task of its own, so nothing
here delays the pipeline. :class:`~pipecat_audio_capture.SessionAudioCapture` (audio segments),
:class:`~pipecat_audio_capture.TranscriptRecorder` and
:class:`~pipecat_audio_capture.LatencyRecorder` are built on it.
"""

import asyncio
import os
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError, SpoolError
from pipecat_audio_capture.queues import joined, settled, stopped
from pipecat_audio_capture.records import WriteStats
from pipecat_audio_capture.retry import RetryPolicy, retrying
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.batching import write_rows_as

PendingT = TypeVar("PendingT")
RowT = TypeVar("RowT")
T = TypeVar("T")


class BackgroundRowWriter(BaseObject, Generic[PendingT, RowT]):
    """Stores rows made from pending items, in the order they were noted.

    Each row is retried as ``retry`` says, each attempt bounded by ``write_timeout_s``. With a
    ``spool_dir``, a row still failing after the retries, or unwritten when :meth:`close` times
    out, is kept in the spool for :func:`~pipecat_audio_capture.replay.replay_spool`. Without a
    spool, or when the spool refuses it, the row counts as failed. Whatever one row raises is
    that row's outcome, and the writer goes on with the next. Counted in :attr:`stats` (also
    read as :attr:`stored`, :attr:`spooled` and :attr:`failed`), and reported through the events
    ``on_<kind>_stored(writer, row)``, ``on_<kind>_spooled(writer, row, reason)`` and
    ``on_<kind>_failed(writer, row, error)``, where ``<kind>`` is :attr:`ROW_KIND`.

    A subclass says how a pending item becomes a row (:meth:`_row`, :meth:`_lost_row`), how a
    row is stored (:meth:`_persist`) and spooled
    (:meth:`_spool_row`), and what to call it in logs (:meth:`_describe`); it hands items over
    with :meth:`_enqueue`. It may report outcomes its own way by overriding :meth:`_stored`,
    :meth:`_spooled`, :meth:`_unspooled`, :meth:`_lost` and :meth:`_abandoned`; each outcome
    method calls :meth:`_settled` first.
    """

    ROW_KIND: ClassVar[str]
    """Names the events, e.g. ``"latency"`` for ``on_latency_stored``."""

    def __init__(
        self,
        *,
        capacity: int = 0,
        write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = defaults.SPOOL_MAX_BYTES,
        **kwargs: Any,
    ) -> None:
        """Initialize the writer.

        Args:
            capacity: Items that may wait for the writer (0: no bound); :meth:`_enqueue` raises
                ``asyncio.QueueFull`` past it.
            write_timeout_s: Longest one attempt at storing a row may take.
            retry: Attempts, backoff and deadline of each row; ``RetryPolicy()`` when omitted.
            spool_dir: Folder that keeps the rows the store could not take (the same one as the
                capture's); without it those rows are lost (and reported).
            spool_max_bytes: Largest size of the spool folder.
            **kwargs: Passed to Pipecat's ``BaseObject``.
        """
        super().__init__(**kwargs)
        self._write_timeout_s = write_timeout_s
        self._retry = retry if retry is not None else RetryPolicy()
        self._spool = Spool(spool_dir, max_bytes=spool_max_bytes) if spool_dir is not None else None
        self._jobs: asyncio.Queue[PendingT] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[Any] | None = None
        self._abandoning = False
        self._emitting: set[asyncio.Task[None]] = set()
        # The tasks now writing an item that has no outcome yet (a subclass may drain a second
        # queue at the same time), so an item that raises is counted exactly once.
        self._unsettled: set[asyncio.Task[Any] | None] = set()
        self._stats = WriteStats()
        for outcome in ("stored", "spooled", "failed"):
            self._register_event_handler(f"on_{self.ROW_KIND}_{outcome}")

    @property
    def stats(self) -> WriteStats:
        """Live counters (stored, spooled, failed)."""
        return self._stats

    @property
    def stored(self) -> int:
        """Rows written to the store."""
        return self._stats.stored

    @property
    def spooled(self) -> int:
        """Rows kept in the spool for a replay."""
        return self._stats.spooled

    @property
    def failed(self) -> int:
        """Rows lost (and reported)."""
        return self._stats.failed

    async def close(self, *, timeout_s: float = defaults.CLOSE_TIMEOUT_S) -> WriteStats:
        """Wait until every item noted so far is stored, spooled or reported lost.

        It returns within ``timeout_s``. With a spool, the store gets the first part of it and
        the last ``CLOSE_SPOOL_SHARE`` is kept for spooling the rows left (reason
        ``"close_timeout"``): the write in progress is cancelled and they go to the spool. What
        is still unwritten at the end, or without a spool at the timeout, counts as failed.

        Returns:
            The final counters.
        """
        deadline = asyncio.get_running_loop().time() + max(timeout_s, 0.0)
        await self._finish(timeout_s, deadline)
        await settled(self._emitting, deadline)
        return self._stats

    async def _finish(self, timeout_s: float, deadline: float) -> None:
        """Drain the queue by ``deadline``, the spool's share last; what is left is abandoned."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        spool_s = timeout_s * defaults.CLOSE_SPOOL_SHARE if self._spool is not None else 0.0
        if not await joined(self._jobs, deadline - spool_s - loop.time()):
            logger.error(
                f"{self}: {self._jobs.qsize()} {self.ROW_KIND} rows unwritten after {timeout_s}s"
            )
            # The writer now hands what is left to the spool without waiting on the store.
            self._abandoning = True
            if self._save_task is not None:
                self._save_task.cancel()
            await joined(self._jobs, deadline - loop.time())
        await stopped(self._task)
        self._task = None
        while not self._jobs.empty():
            self._abandoned(self._jobs.get_nowait())
            self._jobs.task_done()

    @abstractmethod
    async def _row(self, pending: PendingT, *, abandoning: bool) -> RowT | None:
        """Return the row to store for ``pending``, or None if there is nothing to store.

        ``abandoning`` is true once :meth:`close` ran out of time: do not wait for anything.
        Returning None after reporting an outcome (e.g. :meth:`_lost`) is allowed.
        """

    @abstractmethod
    def _lost_row(self, pending: PendingT) -> RowT:
        """Return the row ``pending`` would have become, without waiting, to report it lost."""

    @abstractmethod
    async def _persist(self, row: RowT) -> object:
        """Store one row with its retries (:meth:`_retried`) and return what the store answered.

        Each step must be idempotent: a retry must not add a row.
        """

    async def _retried(self, operation: Callable[[], Awaitable[T]], row: RowT) -> T:
        """Run one store call as the writer's retry policy and attempt timeout say."""
        return await retrying(
            operation,
            policy=self._retry,
            attempt_timeout_s=self._write_timeout_s,
            what=self._describe(row),
        )

    @abstractmethod
    async def _spool_row(self, spool: Spool, row: RowT, reason: str) -> Path:
        """Keep one row in the spool and return its entry's path."""

    @abstractmethod
    def _describe(self, row: RowT) -> str:
        """Name the row in messages, e.g. ``"the latency of turn ..."``."""

    def _enqueue(self, pending: PendingT) -> None:
        self._jobs.put_nowait(pending)
        if self._task is None:
            # Owned by the writer rather than whoever fired the event or pushed the frame, so it
            # outlives the pipeline until close() has written the last rows.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"{self}::drain"
            )

    async def _drain(self) -> None:
        # The index's batcher then knows this writer may send more rows, worth a batch's wait.
        write_rows_as(self)
        while True:
            pending = await self._jobs.get()
            await self._settle(pending, self._write(pending))
            self._jobs.task_done()

    async def _settle(self, pending: PendingT, work: Awaitable[None]) -> None:
        """Run one item's work so that the item ends with exactly one outcome.

        Whatever the work raises is this item's failure, and the writer goes on to the next.
        """
        task = asyncio.current_task()
        self._unsettled.add(task)
        try:
            await work
        except asyncio.CancelledError:
            # close() gave up on the spool too.
            if task in self._unsettled:
                self._abandoned(pending)
            raise
        except Exception as exc:
            logger.exception(f"{self}: unexpected error writing a {self.ROW_KIND} row")
            if task in self._unsettled:
                self._lost(pending, exc)
        finally:
            self._unsettled.discard(task)

    async def _write(self, pending: PendingT) -> None:
        row = await self._row(pending, abandoning=self._abandoning)
        if row is None:
            return
        if self._abandoning:
            # close() ran out of time while the row was being made.
            await self._divert(row, "close_timeout")
            return
        self._save_task = asyncio.get_running_loop().create_task(self._persist(row))
        try:
            result = await self._save_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # Only the save was cancelled, by close() running out of time.
            await self._divert(row, "close_timeout")
            return
        except Exception as exc:
            await self._divert(row, "write_failed", error=exc)
            return
        finally:
            self._save_task = None
        await self._stored(row, result)

    async def _divert(self, row: RowT, reason: str, *, error: Exception | None = None) -> None:
        """Spool a row that the store did not take, or report it lost."""
        if self._spool is None:
            self._unspooled(row, reason, error, None)
            return
        try:
            path = await self._spool_row(self._spool, row, reason)
        except Exception as spool_error:
            self._unspooled(row, reason, error, spool_error)
            return
        self._spooled(row, reason, error, path)

    def _settled(self) -> None:
        """Mark the item the current task is writing as having its outcome."""
        self._unsettled.discard(asyncio.current_task())

    async def _stored(self, row: RowT, result: object) -> None:
        """Count and report a stored row; ``result`` is what :meth:`_persist` returned."""
        self._settled()
        self._stats.stored += 1
        await self._call_event_handler(f"on_{self.ROW_KIND}_stored", row)

    def _spooled(self, row: RowT, reason: str, error: Exception | None, path: Path) -> None:
        """Count and report a row kept in the spool at ``path``."""
        self._settled()
        self._stats.spooled += 1
        cause = f": {error}" if error is not None else ""
        logger.warning(
            f"{self}: kept {self._describe(row)} in the spool at {path} ({reason}{cause}); "
            "replay the spool to store it"
        )
        self._emit(f"on_{self.ROW_KIND}_spooled", self._subject(row), reason)

    def _subject(self, row: RowT) -> object:
        """What the ``spooled`` event reports for ``row``: the row itself unless overridden."""
        return row

    def _unspooled(
        self, row: RowT, reason: str, error: Exception | None, spool_error: Exception | None
    ) -> None:
        """Report a row neither stored nor spooled: there is no spool, or it refused the row."""
        if spool_error is None:
            self._fail(row, error or AudioCaptureError(f"unwritten: {reason}"))
            return
        refused = spool_error if isinstance(spool_error, SpoolError) or error is None else error
        self._fail(row, refused, detail=f"{error}; the spool refused it too: {spool_error}")

    def _lost(self, pending: PendingT, error: Exception) -> None:
        """Report an item whose writing raised ``error``."""
        self._fail(self._lost_row(pending), error)

    def _abandoned(self, pending: PendingT) -> None:
        """Report an item still unwritten when :meth:`close` gave up."""
        self._lost(
            pending,
            AudioCaptureError(
                f"close timed out before the {self.ROW_KIND} row was written or spooled"
            ),
        )

    def _fail(self, row: RowT | None, error: Exception, *, detail: str = "") -> None:
        self._settled()
        self._stats.failed += 1
        what = self._describe(row) if row is not None else f"a {self.ROW_KIND} row"
        logger.error(f"{self}: failed to store {what}: {detail or error}")
        self._emit(f"on_{self.ROW_KIND}_failed", row, error)

    def _emit(self, event: str, *args: object) -> None:
        # Also called from close(), after the writer task is gone; event handlers run as tasks,
        # so scheduling them here is cheap and keeps callers on the audio path synchronous.
        task = asyncio.get_running_loop().create_task(self._call_event_handler(event, *args))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)
