"""Why a response was slow: Pipecat's latency breakdowns, stored with the bot turn they timed.

Pipecat 1.14's ``UserBotLatencyObserver`` emits ``on_latency_breakdown`` when the bot starts
speaking after the user fell silent (or, for a greeting, after a client connected): the wait, cut
into named parts (end-of-speech wait, transcription, turn detection, LLM, TTS, ...). It carries no
turn id; :class:`LatencyRecorder` pairs it with the bot turn the audio processor opened, by time,
and writes one ``session_turn_latencies`` row per bot turn.
"""

import asyncio
import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from pipecat.utils.base_object import BaseObject

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError, InvalidArgumentError
from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.records import LatencyStage, MeasuredFrom, TurnLatencyRecord
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.row_writer import BackgroundRowWriter
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import TurnLatencyStore
from pipecat_audio_capture.turn_ids import TurnIds, TurnSpan

ObserverT = TypeVar("ObserverT", bound=BaseObject)

_POLL_S = 0.02
"""How often a breakdown that arrived before its bot turn looks for it again."""

_MEASURED_FROM: dict[str, MeasuredFrom] = {
    "user_silence": "user_silence",
    "client_connected": "client_connected",
}


@dataclass
class _Pending:
    """A breakdown noted by the event handler, waiting for its bot turn and its write."""

    heard_at: float
    total_s: float
    measured_from: MeasuredFrom
    bot_started_at: datetime
    user_turn_ms: float | None
    stages: tuple[LatencyStage, ...]

    def record(self, session_id: str, turn_id: str) -> TurnLatencyRecord:
        total_ms = self.total_s * 1000.0
        return TurnLatencyRecord(
            session_id=session_id,
            turn_id=turn_id,
            measured_from=self.measured_from,
            started_at=self.bot_started_at - timedelta(milliseconds=total_ms),
            bot_started_at=self.bot_started_at,
            total_ms=total_ms,
            user_turn_ms=self.user_turn_ms,
            stages=self.stages,
        )


class LatencyRecorder(BackgroundRowWriter[_Pending, TurnLatencyRecord]):
    """Stores each response's latency breakdown with the ``turn_id`` of the bot turn it timed.

    Attach it to Pipecat's ``UserBotLatencyObserver`` (the pipeline needs
    ``PipelineParams(enable_metrics=True)`` for the LLM and TTS parts) with :meth:`attach`; the
    handler only notes the breakdown and the time, and a background task pairs it with its bot
    turn and writes it, so nothing here delays the pipeline.

    Matching rule. The observer emits the breakdown when the output transport reports that the
    bot started speaking, so the breakdown's arrival time (on the ``TurnIds`` clock) is that
    start, and arrival less the breakdown's total is when the wait began (the user fell silent).
    The breakdown belongs to the bot turn that started nearest to its arrival among the turns
    that started after the wait began and at most ``tolerance_s`` after the arrival, and that no
    earlier breakdown took. The processor usually opens that turn before the breakdown arrives
    (placed before the output transport it opens the turn when the first TTS audio reaches it);
    when it has not yet (placed after the output transport, or the observer ran first), the
    breakdown waits up to ``claim_wait_s`` for the turn to appear. A breakdown with no bot turn
    (audio capture off, or the turn was discarded) is stored under a turn id of its own, so the
    numbers are kept. These claims are the recorder's own: they do not take a turn away from the
    transcript recorder.

    A breakdown with no named parts (the observer had no start to measure from) is skipped
    (counted in :attr:`skipped`). One whose numbers are not finite counts as
    failed. Rows are written once per session and bot turn, retried as ``retry`` says, each
    attempt bounded by ``write_timeout_s``; with a ``spool_dir`` a row still failing is kept in
    the spool for :func:`~pipecat_audio_capture.replay.replay_spool`, otherwise it counts as
    failed.

    Events:

    - on_latency_stored(recorder, record: TurnLatencyRecord)
    - on_latency_spooled(recorder, record: TurnLatencyRecord, reason: str): kept in the spool
      (``"write_failed"`` or ``"close_timeout"``).
    - on_latency_failed(recorder, record: TurnLatencyRecord | None, error: Exception): lost;
      ``record`` is None for a breakdown that could not be read.
    """

    ROW_KIND = "latency"

    def __init__(
        self,
        session_id: str,
        turn_ids: TurnIds,
        *,
        store: TurnLatencyStore,
        tolerance_s: float = defaults.TURN_MATCH_TOLERANCE_S,
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
            tolerance_s: Latest a bot turn may start after the breakdown arrived and still pair.
            claim_wait_s: How long a breakdown waits for its bot turn to appear.
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
        self._tolerance_s = tolerance_s
        self._claim_wait_s = claim_wait_s
        self._taken: deque[str] = deque(maxlen=defaults.TURN_HISTORY)
        self.skipped = 0
        self.unmatched = 0

    def attach(self, observer: ObserverT) -> ObserverT:
        """Subscribe to a ``UserBotLatencyObserver``'s ``on_latency_breakdown`` and return it.

        So one line adds both to a worker:
        ``PipelineWorker(..., observers=[recorder.attach(UserBotLatencyObserver())])``.
        """
        observer.add_event_handler("on_latency_breakdown", self._on_breakdown)
        return observer

    async def _on_breakdown(self, _observer: object, breakdown: Any) -> None:
        heard_at = self._turn_ids.now()
        try:
            pending = _pending(breakdown, heard_at)
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            self._fail(None, AudioCaptureError(f"unreadable latency breakdown: {exc}"))
            return
        if pending is None:
            self.skipped += 1
            logger.debug(f"{self}: skipping a latency breakdown with nothing measured")
            return
        self._enqueue(pending)

    async def _row(self, pending: _Pending, *, abandoning: bool) -> TurnLatencyRecord:
        return pending.record(self._session_id, await self._bot_turn(pending, abandoning))

    def _lost_row(self, pending: _Pending) -> TurnLatencyRecord:
        span = self._match(pending)
        return pending.record(self._session_id, span.turn_id if span else new_id())

    async def _persist(self, row: TurnLatencyRecord) -> None:
        await self._retried(lambda: self._store.save_turn_latency(row), row)

    async def _spool_row(self, spool: Spool, row: TurnLatencyRecord, reason: str) -> Path:
        return await spool.put_latency(row, reason=reason)

    def _describe(self, row: TurnLatencyRecord) -> str:
        return f"the latency of turn {row.turn_id}"

    async def _bot_turn(self, pending: _Pending, abandoning: bool) -> str:
        """Take the bot turn the breakdown timed (see the class docstring), or a new id."""
        deadline = pending.heard_at + self._claim_wait_s
        while True:
            span = self._match(pending)
            if span is not None:
                self._taken.append(span.turn_id)
                return span.turn_id
            if abandoning or self._turn_ids.now() >= deadline:
                break
            await asyncio.sleep(_POLL_S)
        self.unmatched += 1
        logger.warning(
            f"{self}: no bot turn started when the bot spoke after a {pending.total_s:.3f} s "
            "wait; storing its latency under a turn id of its own"
        )
        return new_id()

    def _match(self, pending: _Pending) -> TurnSpan | None:
        began = pending.heard_at - pending.total_s
        latest = pending.heard_at + self._tolerance_s
        candidates = [
            span
            for span in self._turn_ids.spans("bot")
            if began <= span.started_at <= latest and span.turn_id not in self._taken
        ]
        return min(
            candidates, key=lambda span: abs(span.started_at - pending.heard_at), default=None
        )


def _pending(breakdown: Any, heard_at: float) -> _Pending | None:
    """Read what is kept of a ``LatencyBreakdown``; None if it names no part of the wait.

    Raises:
        InvalidArgumentError: If a number is not finite, or a duration negative.
    """
    contributions: Sequence[Any] = breakdown.contributions
    if not contributions or breakdown.measured_from is None:
        return None
    measured_from = _MEASURED_FROM.get(str(breakdown.measured_from))
    if measured_from is None:
        raise InvalidArgumentError(f"unknown measured_from {breakdown.measured_from!r}")
    began = min(float(part.start_time) for part in contributions)
    stages = tuple(
        LatencyStage(
            stage=str(part.key),
            label=str(part.label),
            owner=str(part.owner),
            owner_kind=str(part.owner_kind),
            offset_ms=_ms(float(part.start_time) - began, allow_negative=True),
            duration_ms=_ms(part.duration_secs),
        )
        for part in contributions
    )
    user_turn_s = breakdown.user_turn_secs
    return _Pending(
        heard_at=heard_at,
        total_s=_ms(breakdown.total_secs) / 1000.0,
        measured_from=measured_from,
        # The observer may run on a clock of its own (its time_source); the wall clock now is
        # when the bot started speaking, within the observer's few milliseconds of delay.
        bot_started_at=datetime.now(UTC),
        user_turn_ms=None if user_turn_s is None else _ms(user_turn_s),
        stages=stages,
    )


def _ms(seconds: Any, *, allow_negative: bool = False) -> float:
    value = float(seconds) * 1000.0
    if not math.isfinite(value) or (value < 0 and not allow_negative):
        raise InvalidArgumentError(f"{seconds!r} is not a duration in seconds")
    return value
