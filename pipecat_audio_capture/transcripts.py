"""Transcript rows from Pipecat 1.x's context aggregators, linked to the audio by turn id."""

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import Role, Speaker, TranscriptRecord
from pipecat_audio_capture.storage.base import TranscriptStore
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

    Events:

    - on_transcript_stored(recorder, record: TranscriptRecord)
    - on_transcript_failed(recorder, record: TranscriptRecord, error: Exception)
    """

    def __init__(
        self,
        session_id: str,
        turn_ids: TurnIds,
        *,
        store: TranscriptStore,
        claim_wait_s: float = defaults.TURN_CLAIM_WAIT_S,
        **kwargs,
    ) -> None:
        """Initialize the recorder.

        Args:
            session_id: UUID of the call.
            turn_ids: The same object the ``AudioCaptureProcessor`` writes.
            store: Where rows go (``PostgresAudioMetaStorage``, ``SQLiteAudioMetaStorage``, a
                ``CompositeAudioStorage`` over one of them).
            claim_wait_s: How long a transcript waits for its audio turn to appear.
            **kwargs: Passed to Pipecat's ``BaseObject``.
        """
        super().__init__(**kwargs)
        self._session_id = require_uuid(session_id, "session_id")
        self._turn_ids = turn_ids
        self._store = store
        self._claim_wait_s = claim_wait_s
        self._user_starts: deque[float] = deque(maxlen=defaults.TURN_HISTORY)
        self._assistant_start: float | None = None
        self._jobs: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.stored = 0
        self.failed = 0
        self._register_event_handler("on_transcript_stored")
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
        """Wait until every transcript noted so far is written (or ``timeout_s`` passes)."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._jobs.join(), timeout=timeout_s)
        except TimeoutError:
            logger.error(f"{self}: {self._jobs.qsize()} transcripts unwritten after {timeout_s}s")
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

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
        while True:
            pending = await self._jobs.get()
            try:
                await self._write(pending)
            finally:
                self._jobs.task_done()

    async def _write(self, pending: _Pending) -> None:
        speaker: Speaker = "user" if pending.role == "user" else "bot"
        turn_id = self._turn_ids.claim(
            speaker, started_at=pending.started_at, ended_at=pending.ended_at
        )
        if turn_id is None and not pending.text:
            logger.debug(f"{self}: skipping an empty {pending.role} turn with no audio")
            return
        if turn_id is None:
            turn_id = await self._turn_ids.wait_claim(
                speaker,
                started_at=pending.started_at,
                ended_at=pending.ended_at,
                timeout_s=self._claim_wait_s,
            )
        record = TranscriptRecord(
            session_id=self._session_id,
            turn_id=turn_id,
            role=pending.role,
            text=pending.text,
            interrupted=pending.interrupted,
            occurred_at=pending.occurred_at,
        )
        try:
            await self._store.save_transcript(record)
        except Exception as exc:
            self.failed += 1
            logger.error(
                f"{self}: failed to store the {record.role} transcript of turn {turn_id}: {exc}"
            )
            await self._call_event_handler("on_transcript_failed", record, exc)
        else:
            self.stored += 1
            await self._call_event_handler("on_transcript_stored", record)


def _parse(timestamp: str | None) -> datetime:
    if timestamp:
        try:
            parsed = datetime.fromisoformat(timestamp)
        except ValueError:
            logger.warning(f"unreadable turn timestamp {timestamp!r}; using the current time")
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)
