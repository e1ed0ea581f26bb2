"""Transcript rows from Pipecat 1.x's context aggregators, linked to the audio by turn id."""

import asyncio
import os
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError, SpoolError
from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.queues import joined, settled, stopped
from pipecat_audio_capture.records import Role, Speaker, TranscriptRecord
from pipecat_audio_capture.retry import RetryPolicy, retrying
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import TranscriptStore
from pipecat_audio_capture.storage.batching import write_rows_as
from pipecat_audio_capture.turn_ids import TurnIds


@dataclass
class _Pending:
    role: Role
    text: str
    interrupted: bool
    occurred_at: datetime
    started_at: float
    ended_at: float


class TranscriptRecorder(BaseObject):
    """Writes one transcript row per user and assistant turn, with the audio's ``turn_id``.

    :meth:`attach` subscribes to ``LLMUserAggregator``'s ``on_user_turn_started`` /
    ``on_user_turn_stopped`` and ``LLMAssistantAggregator``'s ``on_assistant_turn_started`` /
    ``on_assistant_turn_stopped``. The handlers only note the event's time and text; a
    background task claims the matching audio turn from :class:`TurnIds` (waiting up to
    ``claim_wait_s`` for it) and writes the row, so nothing here delays the pipeline.

    A user transcript that becomes final after the next user turn has started still pairs
    with its own turn: it is matched by when its turn *started*. An assistant turn with no
    text and no audio (cut before it said anything) is not written.

    Each row is retried as ``retry`` says, each attempt bounded by ``write_timeout_s``; rows are
    upserted per session, turn and role, so a retry never adds a row. With a ``spool_dir``, a
    row still failing after the retries, or unwritten when ``close()`` times out, is kept in the
    spool for :func:`~pipecat_audio_capture.replay.replay_spool`. Without a spool, or when the
    spool refuses it (full, or a row its reader would refuse), the row counts as failed.
    Whatever one row raises is that row's outcome, and the writer goes on with the next.

    Events:

    - on_transcript_stored(recorder, record: TranscriptRecord)
    - on_transcript_spooled(recorder, record: TranscriptRecord, reason: str): kept in the spool
      (``"write_failed"`` or ``"close_timeout"``).
    - on_transcript_failed(recorder, record: TranscriptRecord, error: Exception): lost; ``error``
      is the write's last error, or the spool's refusal.
    """

    def __init__(
        self,
        session_id: str,
        turn_ids: TurnIds,
        *,
        store: TranscriptStore,
        claim_wait_s: float = defaults.TURN_CLAIM_WAIT_S,
        write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = defaults.SPOOL_MAX_BYTES,
        **kwargs,
    ) -> None:
        """Initialize the recorder.

        Args:
            session_id: UUID of the call.
            turn_ids: The same object the ``AudioCaptureProcessor`` writes.
            store: Where rows go (``PostgresAudioMetaStorage``, ``SQLiteAudioMetaStorage``, a
                ``CompositeAudioStorage`` over one of them).
            claim_wait_s: How long a transcript waits for its audio turn to appear.
            write_timeout_s: Longest one attempt at storing a row may take.
            retry: Attempts, backoff and deadline of each row; ``RetryPolicy()`` when omitted.
            spool_dir: Folder that keeps the rows the store could not take (the same one as the
                capture's); without it those rows are lost (and reported).
            spool_max_bytes: Largest size of the spool folder.
            **kwargs: Passed to Pipecat's ``BaseObject``.
        """
        super().__init__(**kwargs)
        self._session_id = require_uuid(session_id, "session_id")
        self._turn_ids = turn_ids
        self._store = store
        self._claim_wait_s = claim_wait_s
        self._write_timeout_s = write_timeout_s
        self._retry = retry if retry is not None else RetryPolicy()
        self._spool = Spool(spool_dir, max_bytes=spool_max_bytes) if spool_dir is not None else None
        self._save_task: asyncio.Task[None] | None = None
        self._abandoning = False
        self._user_starts: deque[float] = deque(maxlen=defaults.TURN_HISTORY)
        self._assistant_start: float | None = None
        self._jobs: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._emitting: set[asyncio.Task[None]] = set()
        self.stored = 0
        self.spooled = 0
        self.failed = 0
        self._register_event_handler("on_transcript_stored")
        self._register_event_handler("on_transcript_spooled")
        self._register_event_handler("on_transcript_failed")

    def attach(self, user_aggregator: BaseObject, assistant_aggregator: BaseObject) -> None:
        """Subscribe to the turn events of Pipecat's user and assistant aggregators."""
        user_aggregator.add_event_handler("on_user_turn_started", self._on_user_started)
        user_aggregator.add_event_handler("on_user_turn_stopped", self._on_user_stopped)
        assistant_aggregator.add_event_handler(
            "on_assistant_turn_started", self._on_assistant_started
        )
        assistant_aggregator.add_event_handler(
            "on_assistant_turn_stopped", self._on_assistant_stopped
        )

    async def close(self, *, timeout_s: float = defaults.CLOSE_TIMEOUT_S) -> None:
        """Wait until every transcript noted so far is stored, spooled or reported lost.

        It returns within ``timeout_s``. With a spool, the store gets the first part of it and
        the last ``CLOSE_SPOOL_SHARE`` is kept for spooling the rows left (reason
        ``"close_timeout"``): the write in progress is cancelled and they go to the spool. What
        is still unwritten at the end, or without a spool at the timeout, counts as failed.
        """
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        spool_s = timeout_s * defaults.CLOSE_SPOOL_SHARE if self._spool is not None else 0.0
        if not await joined(self._jobs, deadline - spool_s - loop.time()):
            logger.error(f"{self}: {self._jobs.qsize()} transcripts unwritten after {timeout_s}s")
            # The writer now hands what is left to the spool without waiting on the store.
            self._abandoning = True
            if self._save_task is not None:
                self._save_task.cancel()
            await joined(self._jobs, deadline - loop.time())
        await stopped(self._task)
        self._task = None
        while not self._jobs.empty():
            self._lost(self._jobs.get_nowait(), _close_timed_out())
            self._jobs.task_done()
        await settled(self._emitting, deadline)

    async def _on_user_started(self, _aggregator: object, _strategy: object) -> None:
        self._user_starts.append(self._turn_ids.now())

    async def _on_user_stopped(self, _aggregator: object, _strategy: object, message) -> None:
        now = self._turn_ids.now()
        # Turns stop in the order they started, even when a transcript is late.
        started_at = self._user_starts.popleft() if self._user_starts else now
        self._enqueue(
            _Pending(
                "user", message.content or "", False, _parse(message.timestamp), started_at, now
            )
        )

    async def _on_assistant_started(self, _aggregator: object) -> None:
        self._assistant_start = self._turn_ids.now()

    async def _on_assistant_stopped(self, _aggregator: object, message) -> None:
        now = self._turn_ids.now()
        started_at = self._assistant_start if self._assistant_start is not None else now
        self._assistant_start = None
        self._enqueue(
            _Pending(
                "assistant",
                message.content or "",
                bool(message.interrupted),
                _parse(message.timestamp),
                started_at,
                now,
            )
        )

    def _enqueue(self, pending: _Pending) -> None:
        self._jobs.put_nowait(pending)
        if self._task is None:
            # Owned by the recorder rather than an aggregator so it outlives the pipeline
            # until close() has written the last rows.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"{self}::drain"
            )

    async def _drain(self) -> None:
        # The index's batcher then knows this call may send more rows, worth a batch's wait.
        write_rows_as(self)
        while True:
            pending = await self._jobs.get()
            outcomes = self._outcomes()
            try:
                await self._write(pending)
            except asyncio.CancelledError:
                # close() gave up on the spool too.
                if self._outcomes() == outcomes:
                    self._lost(pending, _close_timed_out())
                raise
            except Exception as exc:
                # Whatever one row raises is that row's failure; the writer goes on.
                logger.exception(f"{self}: unexpected error writing a {pending.role} transcript")
                if self._outcomes() == outcomes:
                    self._lost(pending, exc)
            finally:
                self._jobs.task_done()

    def _outcomes(self) -> int:
        return self.stored + self.spooled + self.failed

    async def _write(self, pending: _Pending) -> None:
        speaker: Speaker = "user" if pending.role == "user" else "bot"
        turn_id = self._turn_ids.claim(
            speaker, started_at=pending.started_at, ended_at=pending.ended_at
        )
        if turn_id is None and not pending.text:
            logger.debug(f"{self}: skipping an empty {pending.role} turn with no audio")
            return
        if turn_id is None and not self._abandoning:
            turn_id = await self._turn_ids.wait_claim(
                speaker,
                started_at=pending.started_at,
                ended_at=pending.ended_at,
                timeout_s=self._claim_wait_s,
            )
        record = self._record(pending, turn_id or new_id())
        if self._abandoning:
            await self._divert(record, "close_timeout")
            return
        self._save_task = asyncio.get_running_loop().create_task(
            retrying(
                lambda: self._store.save_transcript(record),
                policy=self._retry,
                attempt_timeout_s=self._write_timeout_s,
                what=f"the {record.role} transcript of turn {record.turn_id}",
            )
        )
        try:
            await self._save_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # Only the save was cancelled, by close() running out of time.
            await self._divert(record, "close_timeout")
            return
        except Exception as exc:
            await self._divert(record, "write_failed", error=exc)
            return
        finally:
            self._save_task = None
        self.stored += 1
        await self._call_event_handler("on_transcript_stored", record)

    def _record(self, pending: _Pending, turn_id: str) -> TranscriptRecord:
        return TranscriptRecord(
            session_id=self._session_id,
            turn_id=turn_id,
            role=pending.role,
            text=pending.text,
            interrupted=pending.interrupted,
            occurred_at=pending.occurred_at,
        )

    async def _divert(
        self, record: TranscriptRecord, reason: str, *, error: Exception | None = None
    ) -> None:
        """Spool a row that the store did not take, or report it lost."""
        if self._spool is None:
            self._fail(record, error or AudioCaptureError(f"unwritten: {reason}"))
            return
        try:
            path = await self._spool.put_transcript(record, reason=reason)
        except Exception as spool_error:
            refused = spool_error if isinstance(spool_error, SpoolError) or error is None else error
            self._fail(record, refused, detail=f"{error}; the spool refused it too: {spool_error}")
            return
        self.spooled += 1
        cause = f": {error}" if error is not None else ""
        logger.warning(
            f"{self}: kept the {record.role} transcript of turn {record.turn_id} in the spool at "
            f"{path} ({reason}{cause}); replay the spool to store it"
        )
        self._emit("on_transcript_spooled", record, reason)

    def _lost(self, pending: _Pending, error: Exception) -> None:
        speaker: Speaker = "user" if pending.role == "user" else "bot"
        try:
            turn_id = self._turn_ids.claim(
                speaker, started_at=pending.started_at, ended_at=pending.ended_at
            )
        except Exception:
            # The failure is reported all the same, under an id of its own.
            turn_id = None
        self._fail(self._record(pending, turn_id or new_id()), error)

    def _fail(self, record: TranscriptRecord, error: Exception, *, detail: str = "") -> None:
        self.failed += 1
        logger.error(
            f"{self}: failed to store the {record.role} transcript of turn {record.turn_id}: "
            f"{detail or error}"
        )
        self._emit("on_transcript_failed", record, error)

    def _emit(self, event: str, *args: object) -> None:
        # Also called from close(), after the writer task is gone; event handlers run as tasks.
        task = asyncio.get_running_loop().create_task(self._call_event_handler(event, *args))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)


def _close_timed_out() -> AudioCaptureError:
    return AudioCaptureError("close timed out before the transcript was written or spooled")


def _parse(timestamp: str | None) -> datetime:
    if timestamp:
        try:
            parsed = datetime.fromisoformat(timestamp)
        except (TypeError, ValueError):
            logger.warning(f"unreadable turn timestamp {timestamp!r:.80}; using the current time")
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)
