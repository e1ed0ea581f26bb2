"""One index writer per backend: the rows of every call in the process, written in batches.

A metadata backend (:class:`~pipecat_audio_capture.storage.postgres.PostgresAudioMetaStorage`,
:class:`~pipecat_audio_capture.storage.sqlite.SQLiteAudioMetaStorage`) owns one
:class:`IndexBatcher`; every capture and transcript recorder that saves through the backend
shares it. Each save waits for its own row's outcome, so the callers' retries, spooling and
loss counts stay per row.
"""

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import InvalidArgumentError, StorageError
from pipecat_audio_capture.retry import is_transient

Statement = tuple[str, dict[str, Any]]
"""One row's SQL statement and its named parameters."""

BatchWrite = Callable[[Sequence[tuple[str, list[dict[str, Any]]]]], Awaitable[None]]
"""Writes statements, each with the parameters of its rows, in one transaction."""

_writer: ContextVar[object | None] = ContextVar("pipecat_audio_capture_index_writer", default=None)


def write_rows_as(writer: object) -> None:
    """Mark the rows the current task (and the tasks it starts) saves as sent by ``writer``.

    A capture or a transcript recorder calls it in its writer task, so the batcher knows the
    call may send more rows soon and lets a batch wait briefly for them. Without it, the task
    saving a row is its writer.
    """
    _writer.set(writer)


def row_params(record: Any) -> dict[str, Any]:
    """Return a dataclass record's fields by name, as a row's named parameters.

    Shallow, unlike ``dataclasses.asdict``, whose deep copy of every value was the largest cost
    of preparing a row.
    """
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(item.name for item in fields(record))
    return {name: getattr(record, name) for name in names}


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}
"""Field names by record type: ``dataclasses.fields`` walks the class at every call."""


def grouped(rows: Sequence[Statement]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Group rows by statement, keeping the order of first appearance and the rows' order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for statement, params in rows:
        groups.setdefault(statement, []).append(params)
    return list(groups.items())


@dataclass
class _Row:
    statement: Statement
    what: str
    writer: object
    future: "asyncio.Future[None]"
    queued_at: float


@dataclass
class _LoopState:
    """The queue and task of one event loop (a backend may outlive a loop, as in tests)."""

    loop: asyncio.AbstractEventLoop
    pending: deque[_Row] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    recent: dict[object, float] = field(default_factory=dict)
    waiting: Counter[object] = field(default_factory=Counter)
    task: "asyncio.Task[None] | None" = None


class IndexBatcher:
    """Writes rows from many callers in batches: one transaction and one statement per batch.

    A batch starts when ``max_rows`` rows wait, when its first row has waited ``max_delay_s``,
    or as soon as every writer seen in the last ``writer_idle_s`` has a row waiting (no other
    row is expected soon, so a lone writer is never delayed). One batch runs at a time.

    Outcomes are per row. A batch that a row's own data breaks (a CHECK or type error: one of
    ``row_errors``) is split, and its rows are written one per transaction, so only that row
    fails. Any other failure (the server down, a timeout) fails every row of the batch with its
    own :class:`~pipecat_audio_capture.errors.StorageError`: each caller's retry policy then
    retries its row in a later batch, and spools it when the retries are spent. A row whose
    caller stopped waiting (its attempt timed out) before its batch started is skipped.

    Attributes:
        batches: Batches committed.
        rows: Rows those batches committed.
        splits: Batches split into single rows after a row's data broke them.
    """

    def __init__(
        self,
        write: BatchWrite,
        *,
        row_errors: tuple[type[Exception], ...],
        transient: Callable[[BaseException], bool],
        max_rows: int = defaults.INDEX_BATCH_MAX_ROWS,
        max_delay_s: float = defaults.INDEX_BATCH_MAX_DELAY_S,
        writer_idle_s: float = defaults.INDEX_BATCH_WRITER_IDLE_S,
        timeout_s: float = defaults.INDEX_BATCH_TIMEOUT_S,
        name: str = "index",
    ) -> None:
        """Initialize the batcher; its task starts with the first row.

        Args:
            write: Writes a batch in one transaction; raises the driver's error.
            row_errors: Errors that one row's data causes, after which a batch is split.
            transient: Whether a failed batch's error can be cured by another attempt (the
                backend's classification of its driver's errors); marks the rows' errors.
            max_rows: Most rows per batch.
            max_delay_s: Longest a row waits for others to join its batch.
            writer_idle_s: How long after its last row a writer is still waited for.
            timeout_s: Longest one batch may take.
            name: Names the task and log lines.

        Raises:
            InvalidArgumentError: If ``max_rows`` is below 1 or a duration is negative.
        """
        if max_rows < 1:
            raise InvalidArgumentError(f"max_rows must be at least 1, got {max_rows}")
        if min(max_delay_s, writer_idle_s) < 0 or timeout_s <= 0:
            raise InvalidArgumentError("batch delays must not be negative, nor the timeout zero")
        self._write = write
        self._row_errors = row_errors
        self._transient = transient
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._writer_idle_s = writer_idle_s
        self._timeout_s = timeout_s
        self._name = name
        self._state: _LoopState | None = None
        self.batches = 0
        self.rows = 0
        self.splits = 0

    async def write(self, statement: str, params: dict[str, Any], what: str) -> None:
        """Queue one row and return once its batch committed it.

        Args:
            statement: The row's idempotent INSERT.
            params: Its named parameters.
            what: The row, for messages (``"segment <id>"``).

        Raises:
            StorageError: If the row could not be written; chained to the driver's error.
        """
        state = self._bound()
        loop = state.loop
        writer = _writer.get() or asyncio.current_task()
        future: asyncio.Future[None] = loop.create_future()
        state.pending.append(_Row((statement, params), what, writer, future, loop.time()))
        state.recent[writer] = loop.time()
        state.waiting[writer] += 1
        if len(state.pending) == 1 or self._ready(state):
            # Waking the batcher for each row would cost more than writing it.
            state.changed.set()
        if state.task is None or state.task.done():
            state.task = loop.create_task(self._run(state), name=f"{self._name}::batches")
        # A caller that stops waiting cancels the future, and the row is skipped if not yet sent.
        await future

    async def close(self, *, timeout_s: float = defaults.CLOSE_TIMEOUT_S) -> None:
        """Wait up to ``timeout_s`` for queued rows, then stop; rows left fail as closed."""
        state = self._state
        self._state = None
        if state is None or state.task is None or state.loop is not asyncio.get_running_loop():
            return
        waiting = [row.future for row in state.pending]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)
        state.task.cancel()
        await asyncio.gather(state.task, return_exceptions=True)
        for row in state.pending:
            _settle(row, StorageError(f"could not index {row.what}: the index was closed"))

    def _bound(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = _LoopState(loop)
        return self._state

    async def _run(self, state: _LoopState) -> None:
        while True:
            await self._gathered(state)
            batch = _take(state, self._max_rows)
            if batch:
                await self._write_batch(batch)

    async def _gathered(self, state: _LoopState) -> None:
        """Return when the rows waiting should go as a batch."""
        while not state.pending:
            state.changed.clear()
            await state.changed.wait()
        deadline = state.pending[0].queued_at + self._max_delay_s
        self._forget_idle(state)
        while not self._ready(state):
            remaining = deadline - state.loop.time()
            if remaining <= 0:
                return
            state.changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await state.changed.wait()
            except TimeoutError:
                return

    def _ready(self, state: _LoopState) -> bool:
        """Whether the batch is full, or every recent writer has a row waiting."""
        # Each waiting writer is a recent one, so equal counts mean no other row is expected.
        return len(state.pending) >= self._max_rows or len(state.recent) <= len(state.waiting)

    def _forget_idle(self, state: _LoopState) -> None:
        """Stop waiting for writers that finished or sent nothing for ``writer_idle_s``."""
        now = state.loop.time()
        for writer, seen in list(state.recent.items()):
            gone = isinstance(writer, asyncio.Task) and writer.done()
            if (gone or now - seen > self._writer_idle_s) and writer not in state.waiting:
                del state.recent[writer]

    async def _write_batch(self, batch: list[_Row]) -> None:
        error = await self._attempt(batch)
        if error is None:
            self.batches += 1
            self.rows += len(batch)
            for row in batch:
                _settle(row, None)
            return
        if len(batch) > 1 and isinstance(error, self._row_errors):
            # One row's data broke the transaction: each row alone shows which.
            self.splits += 1
            logger.warning(
                f"{self._name}: a batch of {len(batch)} rows failed ({error}); "
                "writing its rows one by one"
            )
            for row in batch:
                await self._write_batch([row])
            return
        logger.warning(f"{self._name}: a batch of {len(batch)} rows failed: {error}")
        transient = is_transient(error) or self._transient(error)
        for row in batch:
            _settle(row, error, transient=transient)

    async def _attempt(self, batch: list[_Row]) -> Exception | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._write(grouped([row.statement for row in batch]))
        except TimeoutError:
            return TimeoutError(f"the index did not answer within {self._timeout_s} s")
        except Exception as exc:
            return exc
        return None


class BatchedWrites:
    """The write side both index backends share: rows go through their own batcher."""

    _rows: IndexBatcher

    @property
    def batcher(self) -> IndexBatcher:
        """The writer shared by every call saving through this storage."""
        return self._rows


def _take(state: _LoopState, max_rows: int) -> list[_Row]:
    batch: list[_Row] = []
    while state.pending and len(batch) < max_rows:
        row = state.pending.popleft()
        state.waiting[row.writer] -= 1
        if not state.waiting[row.writer]:
            del state.waiting[row.writer]
        if not row.future.done():
            batch.append(row)
    return batch


def _settle(row: _Row, error: Exception | None, *, transient: bool = False) -> None:
    if row.future.done():
        return
    if error is None:
        row.future.set_result(None)
        return
    # Each caller gets an exception of its own (a shared one would gather every awaiter's
    # traceback), and a package error keeps its class and the backend's verdict travels with
    # it, so a retry policy still tells a transient failure from one that repeats.
    kind = type(error) if isinstance(error, StorageError) else StorageError
    failure = kind(f"could not index {row.what}: {error}", transient=transient)
    failure.__cause__ = error
    row.future.set_exception(failure)
