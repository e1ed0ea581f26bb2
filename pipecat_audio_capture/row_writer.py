"""Writing index rows in the background: one at a time, retried, spooled or reported lost.

A recorder notes what an event said (a "pending" item) and returns at once; this base class
turns each pending item into a row and stores it from a task of its own, so nothing here delays
the pipeline. :class:`~pipecat_audio_capture.TranscriptRecorder` and
:class:`~pipecat_audio_capture.LatencyRecorder` are built on it.
"""

import asyncio
import os
from abc import abstractmethod
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
    row is stored (:meth:`_save`) and spooled (:meth:`_spool_row`), and what to call it in logs
    (:meth:`_describe`); it hands items over with :meth:`_enqueue`.
    """

    ROW_KIND: ClassVar[str]
    """Names the events, e.g. ``"latency"`` for ``on_latency_stored``."""

    def __init__(
        self,
        *,
        write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = defaults.SPOOL_MAX_BYTES,
        **kwargs: Any,
    ) -> None:
        """Initialize the writer.

        Args:
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
        self._jobs: asyncio.Queue[PendingT] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._abandoning = False
        self._emitting: set[asyncio.Task[None]] = set()
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
        if self._task is None:
            return self._stats
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
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
            self._lost(self._jobs.get_nowait(), self._close_timed_out())
            self._jobs.task_done()
        await settled(self._emitting, deadline)
        return self._stats

    @abstractmethod
    async def _row(self, pending: PendingT, *, abandoning: bool) -> RowT | None:
        """Return the row to store for ``pending``, or None if there is nothing to store.

        ``abandoning`` is true once :meth:`close` ran out of time: do not wait for anything.
        """

    @abstractmethod
    def _lost_row(self, pending: PendingT) -> RowT:
        """Return the row ``pending`` would have become, without waiting, to report it lost."""

    @abstractmethod
    async def _save(self, row: RowT) -> None:
        """Store one row (idempotently: a retry must not add a row)."""

    @abstractmethod
    async def _spool_row(self, spool: Spool, row: RowT, reason: str) -> Path:
        """Keep one row in the spool and return its entry's path."""

    @abstractmethod
    def _describe(self, row: RowT) -> str:
        """Name the row in messages, e.g. ``"the latency of turn ..."``."""

    def _enqueue(self, pending: PendingT) -> None:
        self._jobs.put_nowait(pending)
        if self._task is None:
            # Owned by the writer rather than whoever fired the event, so it outlives the
            # pipeline until close() has written the last rows.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"{self}::drain"
            )

    async def _drain(self) -> None:
        # The index's batcher then knows this writer may send more rows, worth a batch's wait.
        write_rows_as(self)
        while True:
            pending = await self._jobs.get()
            outcomes = self._outcomes()
            try:
                await self._write(pending)
            except asyncio.CancelledError:
                # close() gave up on the spool too.
                if self._outcomes() == outcomes:
                    self._lost(pending, self._close_timed_out())
                raise
            except Exception as exc:
                # Whatever one row raises is that row's failure; the writer goes on.
                logger.exception(f"{self}: unexpected error writing a {self.ROW_KIND} row")
                if self._outcomes() == outcomes:
                    self._lost(pending, exc)
            finally:
                self._jobs.task_done()

    def _outcomes(self) -> int:
        return self._stats.stored + self._stats.spooled + self._stats.failed

    async def _write(self, pending: PendingT) -> None:
        row = await self._row(pending, abandoning=self._abandoning)
        if row is None:
            return
        if self._abandoning:
            await self._divert(row, "close_timeout")
            return
        what = self._describe(row)
        self._save_task = asyncio.get_running_loop().create_task(
            retrying(
                lambda: self._save(row),
                policy=self._retry,
                attempt_timeout_s=self._write_timeout_s,
                what=what,
            )
        )
        try:
            await self._save_task
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
        self._stats.stored += 1
        await self._call_event_handler(f"on_{self.ROW_KIND}_stored", row)

    async def _divert(self, row: RowT, reason: str, *, error: Exception | None = None) -> None:
        """Spool a row that the store did not take, or report it lost."""
        if self._spool is None:
            self._fail(row, error or AudioCaptureError(f"unwritten: {reason}"))
            return
        try:
            path = await self._spool_row(self._spool, row, reason)
        except Exception as spool_error:
            refused = spool_error if isinstance(spool_error, SpoolError) or error is None else error
            self._fail(row, refused, detail=f"{error}; the spool refused it too: {spool_error}")
            return
        self._stats.spooled += 1
        cause = f": {error}" if error is not None else ""
        logger.warning(
            f"{self}: kept {self._describe(row)} in the spool at {path} ({reason}{cause}); "
            "replay the spool to store it"
        )
        self._emit(f"on_{self.ROW_KIND}_spooled", row, reason)

    def _lost(self, pending: PendingT, error: Exception) -> None:
        self._fail(self._lost_row(pending), error)

    def _close_timed_out(self) -> AudioCaptureError:
        return AudioCaptureError(
            f"close timed out before the {self.ROW_KIND} row was written or spooled"
        )

    def _fail(self, row: RowT | None, error: Exception, *, detail: str = "") -> None:
        self._stats.failed += 1
        what = self._describe(row) if row is not None else f"a {self.ROW_KIND} row"
        logger.error(f"{self}: failed to store {what}: {detail or error}")
        self._emit(f"on_{self.ROW_KIND}_failed", row, error)

    def _emit(self, event: str, *args: object) -> None:
        # Also called from close(), after the writer task is gone; event handlers run as tasks.
        task = asyncio.get_running_loop().create_task(self._call_event_handler(event, *args))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)
