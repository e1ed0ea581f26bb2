"""The metadata index's shared surface: what it returns, and what it checks before writing.

:class:`~pipecat_audio_capture.storage.postgres.PostgresAudioMetaStorage` and
:class:`~pipecat_audio_capture.storage.sqlite.SQLiteAudioMetaStorage` both follow
:class:`MetadataIndex`, so a CLI or a viewer reads either the same way.
"""

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

from loguru import logger

from pipecat_audio_capture.errors import InvalidArgumentError, StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import (
    LatencyStage,
    MeasuredFrom,
    Playback,
    Role,
    SegmentMetadata,
    TranscriptRecord,
    TurnLatencyRecord,
)

SESSIONS_LAST_ACTIVITY = """
SELECT session_id FROM (
    SELECT session_id, max(ended_at) AS last_at FROM session_audio_segments GROUP BY session_id
    UNION ALL
    SELECT session_id, max(occurred_at) FROM session_transcripts GROUP BY session_id
    UNION ALL
    SELECT session_id, max(bot_started_at) FROM session_turn_latencies GROUP BY session_id
) AS activity
GROUP BY session_id
HAVING max(last_at) < {cutoff}
ORDER BY max(last_at), session_id
"""
"""Sessions whose last audio, transcript or latency row is before a cutoff, oldest first. Every
table counts: a call's last turn may have a transcript and no audio, and a session known only by
its latency rows must still be purged. ``{cutoff}`` is the dialect's placeholder."""

LATENCY_STAGES = (
    "endpointing_wait",
    "first_request",
    "transcription",
    "turn_detection",
    "llm_inference",
    "turn_completion",
    "waiting_for_user",
    "llm_tool_call",
    "function_handler",
    "awaiting_speakable_text",
    "sentence_aggregation",
    "speech_synthesis",
    "output_transport",
    "pipeline",
)
"""The keys of Pipecat 1.14's latency contributions that ``session_turn_latency`` has a
``<key>_ms`` column for, in timeline order; any other key is summed into ``other_ms``."""

CALL_LOG_ORDER = "occurred_at, role DESC, turn_id"
"""The spoken order of ``session_call_log`` rows, the one ``session_response_gaps`` walks (on a
tie in ``occurred_at`` the user turn comes first)."""


SEGMENT_ORDER = "started_at, speaker DESC, segment_id"
"""The time order of a call's segments (on a tie in ``started_at`` the user's comes first, as in
``CALL_LOG_ORDER``)."""


@dataclass(frozen=True)
class SessionSummary:
    """One call, from the ``session_summary`` view.

    Parameters:
        session_id: UUID of the call.
        started_at: Start of its first turn (UTC).
        ended_at: End of its last audio, or the time of a later transcript-only turn (UTC).
        turns: Turns in the call log.
        segments: Stored audio segments.
        user_talk_ms: Duration of the user's audio.
        bot_talk_ms: Duration of the bot's audio.
        interruptions: Turns cut short (audio or transcript flagged interrupted).
        bytes: Size of the stored WAV files.
    """

    session_id: str
    started_at: datetime
    ended_at: datetime
    turns: int
    segments: int
    user_talk_ms: float
    bot_talk_ms: float
    interruptions: int
    bytes: int


@dataclass(frozen=True)
class CallLogEntry:
    """One turn of a call, from the ``session_call_log`` view.

    The audio columns are None for a turn with a transcript only, and ``text`` and
    ``transcript_interrupted`` are None for a turn with audio only.

    Parameters:
        session_id: UUID of the call.
        turn_id: UUID of the turn (None for audio stored without a turn).
        role: ``"user"`` or ``"assistant"`` (the audio speaker ``"bot"``).
        text: The transcript.
        audio_url: URL of the turn's first (usually only) segment.
        segment_id: UUID of that segment.
        segment_count: Segments the turn's audio is split into (0 without audio).
        duration_ms: Duration of all its segments.
        byte_size: Size of all its segments' WAV files.
        unplayed_ms: Bot audio cut by an interruption, when known.
        audio_interrupted: Whether the audio side flagged the turn as cut short.
        transcript_interrupted: Whether the transcript side did.
        occurred_at: When the turn started: the audio start, else the transcript's time (UTC).
        started_at: Start of the turn's audio (UTC).
        ended_at: End of the turn's audio (UTC).
        playback: How the turn's bot audio was cut and timed: ``"confirmed"`` (what the output
            transport wrote) or ``"estimated"`` (a play-out clock); None for user turns, turns
            without audio, and rows indexed before migration 0005.
    """

    session_id: str
    turn_id: str | None
    role: Role
    text: str | None
    audio_url: str | None
    segment_id: str | None
    segment_count: int
    duration_ms: float | None
    byte_size: int | None
    unplayed_ms: float | None
    audio_interrupted: bool | None
    transcript_interrupted: bool | None
    occurred_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    playback: Playback | None = None


@dataclass(frozen=True)
class ResponseGap:
    """How long the bot took to answer one user turn, from ``session_response_gaps``.

    Parameters:
        session_id: UUID of the call.
        user_turn_id: UUID of the user turn.
        user_started_at: When the user turn started (UTC).
        user_ended_at: End of the user's audio (None without audio).
        bot_turn_id: UUID of the bot turn that answered, None if the user spoke again first or
            the call ended.
        bot_started_at: When that bot turn started (UTC).
        gap_ms: ``bot_started_at - user_ended_at`` in milliseconds; negative when the bot began
            before the user ended.
    """

    session_id: str
    user_turn_id: str | None
    user_started_at: datetime
    user_ended_at: datetime | None
    bot_turn_id: str | None
    bot_started_at: datetime | None
    gap_ms: float | None


@dataclass(frozen=True)
class TurnLatency:
    """Why one response was slow, from the ``session_turn_latency`` view (one row per bot turn).

    The ``*_ms`` stage columns are Pipecat's contribution keys summed (0 for a stage that did not
    happen; ``other_ms`` for keys this version does not know), so they add up to ``total_ms``.

    Parameters:
        session_id: UUID of the call.
        turn_id: UUID of the bot turn the response produced.
        measured_from: ``"user_silence"`` for an answer, ``"client_connected"`` for a greeting.
        started_at: When the wait began (UTC).
        bot_started_at: When the bot started speaking (UTC).
        total_ms: The whole wait.
        user_turn_ms: From the user falling silent to the user turn being released, if observed.
        endpointing_wait_ms: Silence the VAD waited out before calling the speech over.
        first_request_ms: For a greeting: from ready to the first LLM request.
        transcription_ms: From the VAD stop to the final transcript.
        turn_detection_ms: From the transcript to the LLM request (turn strategies).
        llm_inference_ms: The LLM's time to its first token (or speakable text).
        turn_completion_ms: Reading a turn-completion marker.
        waiting_for_user_ms: Held for the user to finish (an incomplete-turn marker).
        llm_tool_call_ms: The LLM writing a function call.
        function_handler_ms: Function handlers running.
        awaiting_speakable_text_ms: A marker-less response buffered until it can be spoken.
        sentence_aggregation_ms: Waiting for a whole sentence before synthesis.
        speech_synthesis_ms: The TTS's time to first audio.
        output_transport_ms: From the first audio to the bot speaking.
        pipeline_ms: Time no stage names (frame hops, parts too short to list).
        other_ms: Stages of keys this version does not know.
        slowest_stage: Key of the largest single part.
        slowest_owner: Who spent it (a processor, or a ``"config: ..."`` setting).
        stages: Every part, in order, with its owner.
    """

    session_id: str
    turn_id: str
    measured_from: MeasuredFrom
    started_at: datetime
    bot_started_at: datetime
    total_ms: float
    user_turn_ms: float | None
    endpointing_wait_ms: float
    first_request_ms: float
    transcription_ms: float
    turn_detection_ms: float
    llm_inference_ms: float
    turn_completion_ms: float
    waiting_for_user_ms: float
    llm_tool_call_ms: float
    function_handler_ms: float
    awaiting_speakable_text_ms: float
    sentence_aggregation_ms: float
    speech_synthesis_ms: float
    output_transport_ms: float
    pipeline_ms: float
    other_ms: float
    slowest_stage: str
    slowest_owner: str
    stages: tuple[LatencyStage, ...]


@dataclass(frozen=True)
class DeletedRows:
    """Rows one session's deletion removed from the index.

    Parameters:
        segments: Rows removed from ``session_audio_segments``.
        transcripts: Rows removed from ``session_transcripts``.
        latencies: Rows removed from ``session_turn_latencies``.
    """

    segments: int
    transcripts: int
    latencies: int = 0


@runtime_checkable
class SessionRetention(Protocol):
    """What retention needs of an index: which sessions are old, and removing one's rows."""

    async def sessions_older_than(self, cutoff: datetime) -> list[str]:
        """Return the sessions whose last audio or transcript is before ``cutoff``, oldest first."""
        ...

    async def delete_session(self, session_id: str) -> DeletedRows:
        """Remove a session's segment and transcript rows (none left is not an error)."""
        ...


@runtime_checkable
class SessionRowCounter(Protocol):
    """Counts a session's index rows without removing any (a deletion's dry run)."""

    async def count_session(self, session_id: str) -> DeletedRows:
        """Return the rows ``delete_session`` would remove now."""
        ...


@runtime_checkable
class MetadataIndex(SessionRetention, SessionRowCounter, Protocol):
    """A metadata backend that indexes segments and transcripts and reads them back."""

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Index a stored segment (a second save of the same ``segment_id`` is ignored)."""
        ...

    async def save_transcript(self, record: TranscriptRecord) -> None:
        """Index a turn's transcript (a re-sent one replaces the first)."""
        ...

    async def list_sessions(self, limit: int = 50, offset: int = 0) -> list[SessionSummary]:
        """Return a page of calls, newest first."""
        ...

    async def call_log(self, session_id: str, limit: int | None = None) -> list[CallLogEntry]:
        """Return a call's turns in spoken order (the first ``limit`` when given)."""
        ...

    async def response_gaps(self, session_id: str, limit: int | None = None) -> list[ResponseGap]:
        """Return a call's user turns in spoken order with the bot's response time.

        Only the first ``limit`` when given.
        """
        ...

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        """Index a bot turn's latency breakdown (a second save for the same turn is ignored)."""
        ...

    async def turn_latency(self, session_id: str) -> list[TurnLatency]:
        """Return a call's latency breakdowns, one per bot turn, in the order the bot spoke."""
        ...

    async def segment(self, segment_id: str) -> SegmentMetadata | None:
        """Return a segment's stored metadata, or None if it is not indexed."""
        ...

    async def session_segments(self, session_id: str) -> list[SegmentMetadata]:
        """Return every stored segment of a call (each part of a split turn) in time order."""
        ...

    async def close(self) -> None:
        """Release the backend's connections."""
        ...


def column_list(record_type: type[Any]) -> str:
    """Return a dataclass's field names as an SQL select list, in field order."""
    return ", ".join(field.name for field in fields(record_type))


def checked_segment(session_id: str, meta: SegmentMetadata) -> SegmentMetadata:
    """Return ``meta`` with canonical ids and UTC timestamps, ready to write.

    Value ranges (negative durations, unknown speakers...) are left to the database's CHECK
    constraints, so both backends refuse exactly the same rows.

    Raises:
        InvalidIdError: If an id is not a UUID.
        StorageError: If ``session_id`` differs from ``meta.session_id`` or a timestamp is naive.
    """
    session = require_uuid(session_id, "session_id")
    if require_uuid(meta.session_id, "meta.session_id") != session:
        raise StorageError(
            f"segment {meta.segment_id} belongs to session {meta.session_id}, not {session}",
            transient=False,
        )
    return _with(
        meta,
        session_id=session,
        segment_id=require_uuid(meta.segment_id, "segment_id"),
        turn_id=require_uuid(meta.turn_id, "turn_id"),
        started_at=as_utc(meta.started_at, "started_at"),
        ended_at=as_utc(meta.ended_at, "ended_at"),
    )


def checked_transcript(record: TranscriptRecord) -> TranscriptRecord:
    """Return ``record`` with canonical ids and a UTC timestamp, ready to write.

    Raises:
        InvalidIdError: If an id is not a UUID.
        StorageError: If ``occurred_at`` is naive.
    """
    return _with(
        record,
        session_id=require_uuid(record.session_id, "session_id"),
        turn_id=require_uuid(record.turn_id, "turn_id"),
        occurred_at=as_utc(record.occurred_at, "occurred_at"),
    )


def checked_latency(record: TurnLatencyRecord) -> TurnLatencyRecord:
    """Return ``record`` with canonical ids and UTC timestamps, ready to write.

    The stage list is checked here because it is stored as JSON, which no CHECK constraint sees;
    the columns' ranges are left to the database.

    Raises:
        InvalidIdError: If an id is not a UUID.
        StorageError: If a timestamp is naive, there are no stages, or a stage's numbers are not
            finite (durations not negative).
    """
    if not record.stages:
        raise StorageError(
            f"the latency breakdown of turn {record.turn_id} has no stages", transient=False
        )
    for stage in record.stages:
        if not (
            math.isfinite(stage.offset_ms)
            and math.isfinite(stage.duration_ms)
            and stage.duration_ms >= 0
        ):
            raise StorageError(
                f"latency stage {stage.stage!r} has impossible times: {stage}", transient=False
            )
    return replace(
        record,
        session_id=require_uuid(record.session_id, "session_id"),
        turn_id=require_uuid(record.turn_id, "turn_id"),
        started_at=as_utc(record.started_at, "started_at"),
        bot_started_at=as_utc(record.bot_started_at, "bot_started_at"),
    )


def latency_row(record: TurnLatencyRecord) -> dict[str, Any]:
    """Return the ``session_turn_latencies`` columns of a checked record.

    Timestamps stay datetimes; a backend that stores them as text converts them.
    """
    stage_ms = dict.fromkeys((*LATENCY_STAGES, "other"), 0.0)
    for stage in record.stages:
        key = stage.stage if stage.stage in stage_ms else "other"
        stage_ms[key] += stage.duration_ms
    # max() keeps the first of equal stages: the earlier one in the timeline.
    slowest = max(record.stages, key=lambda stage: stage.duration_ms)
    return {
        "session_id": record.session_id,
        "turn_id": record.turn_id,
        "measured_from": record.measured_from,
        "started_at": record.started_at,
        "bot_started_at": record.bot_started_at,
        "total_ms": record.total_ms,
        "user_turn_ms": record.user_turn_ms,
        **{f"{key}_ms": ms for key, ms in stage_ms.items()},
        "slowest_stage": slowest.stage,
        "slowest_owner": slowest.owner,
        "stages": json.dumps([asdict(stage) for stage in record.stages], allow_nan=False),
    }


def insert_sql(
    table: str, record_type: type[Any], param: Callable[[str], str], on_conflict: str
) -> str:
    """Return an INSERT of one row holding every field of a record dataclass, by name.

    Built from the record's fields, so a field added to the record is written without a
    hand-kept column list to update (and a column the record lacks fails loudly).

    Args:
        table: The table, with an alias if ``on_conflict`` needs one (``session_transcripts AS t``).
        record_type: The dataclass whose fields are the columns, in field order.
        param: Spells a named parameter in the backend's style (``%(name)s``, ``:name``).
        on_conflict: The ``ON CONFLICT`` clause that makes the insert idempotent.
    """
    columns = [field.name for field in fields(record_type)]
    return (
        f"INSERT INTO {table} ({', '.join(columns)})"
        f" VALUES ({', '.join(param(column) for column in columns)})"
        f" {on_conflict}"
    )


def segment_insert(param: Callable[[str], str]) -> str:
    """Return the idempotent insert of a ``session_audio_segments`` row.

    Args:
        param: Spells a named parameter in the backend's style (``%(name)s``, ``:name``).
    """
    return insert_sql(
        "session_audio_segments", SegmentMetadata, param, "ON CONFLICT (segment_id) DO NOTHING"
    )


def latency_insert(param: Callable[[str], str]) -> str:
    """Return the idempotent insert of a ``session_turn_latencies`` row.

    Args:
        param: Spells a named parameter in the backend's style (``%(name)s``, ``:name``).
    """
    return insert_sql(
        "session_turn_latencies", TurnLatency, param, "ON CONFLICT (session_id, turn_id) DO NOTHING"
    )


def turn_latency_of(row: dict[str, Any]) -> TurnLatency:
    """Build a :class:`TurnLatency` from a view row whose ``stages`` is still JSON text.

    A ``stages`` value that is not the JSON this package writes (edited by hand, another tool)
    reads as no stages, with a warning: the row's stage columns still hold the numbers.
    """
    raw = row["stages"]
    try:
        stages = tuple(LatencyStage(**stage) for stage in json.loads(raw))
    except (TypeError, ValueError) as exc:
        logger.warning(f"unreadable latency stages of turn {row['turn_id']}: {exc}")
        stages = ()
    return TurnLatency(**{**row, "stages": stages})


R = TypeVar("R", SegmentMetadata, TranscriptRecord)
"""A record checked before it is written."""


def _with(record: R, **checked: Any) -> R:
    """Return ``record`` with the checked values.

    The record itself when checking changed none of them: the usual case, where copying the
    record was a tenth of what preparing a batched row cost.
    """
    if all(getattr(record, name) is value for name, value in checked.items()):
        return record
    return replace(record, **checked)


def as_utc(value: datetime, what: str) -> datetime:
    """Return an aware datetime converted to UTC.

    Raises:
        StorageError: If ``value`` is naive: its zone would be a guess.
    """
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise StorageError(
            f"{what} must be timezone-aware, got {value.isoformat()}", transient=False
        )
    return value.astimezone(UTC)


def check_page(limit: int, offset: int) -> None:
    """Refuse a negative page size or offset.

    Raises:
        InvalidArgumentError: If ``limit`` or ``offset`` is negative.
    """
    if limit < 0 or offset < 0:
        raise InvalidArgumentError(
            f"limit and offset must be >= 0, got limit={limit}, offset={offset}"
        )


ALL_ROWS = 2**62
"""The LIMIT of a read that wants every row: both databases take it, unlike NULL or -1."""


def _row_limit(limit: int | None) -> int:
    if limit is None:
        return ALL_ROWS
    check_page(limit, 0)
    return min(limit, ALL_ROWS)


@dataclass(frozen=True)
class ViewQueries:
    """The read queries over the shipped views, in one backend's parameter style."""

    sessions: str
    call_log: str
    gaps: str
    segment: str
    session_segments: str
    old_sessions: str
    session_rows: str
    latency: str


def view_queries(placeholder: str) -> ViewQueries:
    """Build the read queries with ``placeholder`` (``%s`` for psycopg, ``?`` for sqlite3)."""
    p = placeholder
    return ViewQueries(
        sessions=f"SELECT {column_list(SessionSummary)} FROM session_summary"
        f" ORDER BY started_at DESC, session_id LIMIT {p} OFFSET {p}",
        call_log=f"SELECT {column_list(CallLogEntry)} FROM session_call_log"
        f" WHERE session_id = {p} ORDER BY {CALL_LOG_ORDER} LIMIT {p}",
        gaps=f"SELECT {column_list(ResponseGap)} FROM session_response_gaps"
        f" WHERE session_id = {p} ORDER BY user_started_at, user_turn_id LIMIT {p}",
        segment=f"SELECT {column_list(SegmentMetadata)} FROM session_audio_segments"
        f" WHERE segment_id = {p}",
        session_segments=f"SELECT {column_list(SegmentMetadata)} FROM session_audio_segments"
        f" WHERE session_id = {p} ORDER BY {SEGMENT_ORDER}",
        old_sessions=SESSIONS_LAST_ACTIVITY.format(cutoff=p),
        session_rows=f"SELECT (SELECT count(*) FROM session_audio_segments WHERE session_id = {p})"
        f" AS segments, (SELECT count(*) FROM session_transcripts WHERE session_id = {p})"
        f" AS transcripts, (SELECT count(*) FROM session_turn_latencies WHERE session_id = {p})"
        " AS latencies",
        latency=f"SELECT {column_list(TurnLatency)} FROM session_turn_latency"
        f" WHERE session_id = {p} ORDER BY bot_started_at, turn_id",
    )


class IndexReader(ABC):
    """The read side both index backends share: the same views, queried the same way.

    A backend says how a query runs (:meth:`_read`), in which parameter style
    (``_queries``), and how a timestamp parameter is passed (:meth:`_timestamp`).
    """

    _queries: ClassVar[ViewQueries]

    @abstractmethod
    async def _read(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts of Python values."""

    @abstractmethod
    async def close(self) -> None:
        """Release the backend's connections."""

    async def __aenter__(self) -> Self:
        """Return the index itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the index."""
        await self.close()

    def _timestamp(self, value: datetime) -> object:
        return value

    async def list_sessions(self, limit: int = 50, offset: int = 0) -> list[SessionSummary]:
        """Return a page of calls from ``session_summary``, newest first.

        Raises:
            InvalidArgumentError: If ``limit`` or ``offset`` is negative.
            StorageError: If the query fails.
        """
        check_page(limit, offset)
        rows = await self._read(self._queries.sessions, (limit, offset))
        return [SessionSummary(**row) for row in rows]

    async def call_log(self, session_id: str, limit: int | None = None) -> list[CallLogEntry]:
        """Return a call's turns from ``session_call_log`` in spoken order.

        Args:
            session_id: The call.
            limit: Return only the first turns, this many; None returns them all.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            InvalidArgumentError: If ``limit`` is negative.
            StorageError: If the query fails.
        """
        params = (require_uuid(session_id, "session_id"), _row_limit(limit))
        rows = await self._read(self._queries.call_log, params)
        return [CallLogEntry(**row) for row in rows]

    async def response_gaps(self, session_id: str, limit: int | None = None) -> list[ResponseGap]:
        """Return a call's user turns from ``session_response_gaps`` in spoken order.

        Args:
            session_id: The call.
            limit: Return only the first user turns, this many; None returns them all.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            InvalidArgumentError: If ``limit`` is negative.
            StorageError: If the query fails.
        """
        params = (require_uuid(session_id, "session_id"), _row_limit(limit))
        rows = await self._read(self._queries.gaps, params)
        return [ResponseGap(**row) for row in rows]

    async def turn_latency(self, session_id: str) -> list[TurnLatency]:
        """Return a call's rows of ``session_turn_latency``, in the order the bot spoke.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the query fails.
        """
        rows = await self._read(self._queries.latency, (require_uuid(session_id, "session_id"),))
        return [turn_latency_of(row) for row in rows]

    async def segment(self, segment_id: str) -> SegmentMetadata | None:
        """Return a segment's stored metadata, or None if it is not indexed.

        Raises:
            InvalidIdError: If ``segment_id`` is not a UUID.
            StorageError: If the query fails.
        """
        rows = await self._read(self._queries.segment, (require_uuid(segment_id, "segment_id"),))
        return SegmentMetadata(**rows[0]) if rows else None

    async def session_segments(self, session_id: str) -> list[SegmentMetadata]:
        """Return every stored segment of a call in time order, each part of a split turn included.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the query fails.
        """
        session = require_uuid(session_id, "session_id")
        rows = await self._read(self._queries.session_segments, (session,))
        return [SegmentMetadata(**row) for row in rows]

    async def count_session(self, session_id: str) -> DeletedRows:
        """Return the segment and transcript rows ``delete_session`` would remove now.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the query fails.
        """
        session = require_uuid(session_id, "session_id")
        (row,) = await self._read(self._queries.session_rows, (session, session, session))
        return DeletedRows(
            segments=int(row["segments"]),
            transcripts=int(row["transcripts"]),
            latencies=int(row["latencies"]),
        )

    async def sessions_older_than(self, cutoff: datetime) -> list[str]:
        """Return the sessions whose last audio or transcript is before ``cutoff``, oldest first.

        Raises:
            StorageError: If ``cutoff`` is naive or the query fails.
        """
        cutoff_param = self._timestamp(as_utc(cutoff, "cutoff"))
        rows = await self._read(self._queries.old_sessions, (cutoff_param,))
        return [row["session_id"] for row in rows]
