"""Transcript rows from Pipecat 1.x's context aggregators, linked to the audio by turn id."""

import os
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.records import Role, Speaker, TranscriptRecord
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.row_writer import BackgroundRowWriter
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import TranscriptStore
from pipecat_audio_capture.turn_ids import TurnIds

if TYPE_CHECKING:
    # Only for the handlers' annotations: importing the aggregators costs ~90 ms.
    from pipecat.processors.aggregators.llm_response_universal import (
        AssistantTurnStoppedMessage,
        UserTurnStoppedMessage,
    )


@dataclass
class _Pending:
    role: Role
    text: str
    interrupted: bool
    occurred_at: datetime
    started_at: float
    ended_at: float


class TranscriptRecorder(BackgroundRowWriter[_Pending, TranscriptRecord]):
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
    Whatever one row raises is that row's outcome, and the writer goes on with the next. The
    queue, retries, spooling, ``close()`` and the counters are
    :class:`~pipecat_audio_capture.row_writer.BackgroundRowWriter`'s.

    Events:

    - on_transcript_stored(recorder, record: TranscriptRecord)
    - on_transcript_spooled(recorder, record: TranscriptRecord, reason: str): kept in the spool
      (``"write_failed"`` or ``"close_timeout"``).
    - on_transcript_failed(recorder, record: TranscriptRecord, error: Exception): lost; ``error``
      is the write's last error, or the spool's refusal.
    """

    ROW_KIND = "transcript"

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
        **kwargs: Any,
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
        super().__init__(
            write_timeout_s=write_timeout_s,
            retry=retry,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            **kwargs,
        )
        self._session_id = require_uuid(session_id, "session_id")
        self._turn_ids = turn_ids
        self._store = store
        self._claim_wait_s = claim_wait_s
        self._user_starts: deque[float] = deque(maxlen=defaults.TURN_HISTORY)
        self._assistant_start: float | None = None

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

    async def _on_user_started(self, _aggregator: object, _strategy: object) -> None:
        self._user_starts.append(self._turn_ids.now())

    async def _on_user_stopped(
        self, _aggregator: object, _strategy: object, message: "UserTurnStoppedMessage"
    ) -> None:
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

    async def _on_assistant_stopped(
        self, _aggregator: object, message: "AssistantTurnStoppedMessage"
    ) -> None:
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

    async def _row(self, pending: _Pending, *, abandoning: bool) -> TranscriptRecord | None:
        speaker = _speaker(pending.role)
        turn_id = self._turn_ids.claim(
            speaker, started_at=pending.started_at, ended_at=pending.ended_at
        )
        if turn_id is None and not pending.text:
            logger.debug(f"{self}: skipping an empty {pending.role} turn with no audio")
            return None
        if turn_id is None and not abandoning:
            turn_id = await self._turn_ids.wait_claim(
                speaker,
                started_at=pending.started_at,
                ended_at=pending.ended_at,
                timeout_s=self._claim_wait_s,
            )
        return self._record(pending, turn_id or new_id())

    def _lost_row(self, pending: _Pending) -> TranscriptRecord:
        try:
            turn_id = self._turn_ids.claim(
                _speaker(pending.role), started_at=pending.started_at, ended_at=pending.ended_at
            )
        except Exception:
            # The failure is reported all the same, under an id of its own.
            turn_id = None
        return self._record(pending, turn_id or new_id())

    async def _persist(self, row: TranscriptRecord) -> None:
        await self._retried(lambda: self._store.save_transcript(row), row)

    async def _spool_row(self, spool: Spool, row: TranscriptRecord, reason: str) -> Path:
        return await spool.put_transcript(row, reason=reason)

    def _describe(self, row: TranscriptRecord) -> str:
        return f"the {row.role} transcript of turn {row.turn_id}"

    def _record(self, pending: _Pending, turn_id: str) -> TranscriptRecord:
        return TranscriptRecord(
            session_id=self._session_id,
            turn_id=turn_id,
            role=pending.role,
            text=pending.text,
            interrupted=pending.interrupted,
            occurred_at=pending.occurred_at,
        )


def _speaker(role: Role) -> Speaker:
    return "user" if role == "user" else "bot"


def _parse(timestamp: str | None) -> datetime:
    if timestamp:
        try:
            parsed = datetime.fromisoformat(timestamp)
        except (TypeError, ValueError):
            logger.warning(f"unreadable turn timestamp {timestamp!r:.80}; using the current time")
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)
