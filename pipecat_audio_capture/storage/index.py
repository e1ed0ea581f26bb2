"""The metadata index's shared surface: what it returns, and what it checks before writing.

:class:`~pipecat_audio_capture.storage.postgres.PostgresAudioMetaStorage` and
:class:`~pipecat_audio_capture.storage.sqlite.SQLiteAudioMetaStorage` both follow
:class:`MetadataIndex`, so a CLI or a viewer reads either the same way.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import Playback, Role, SegmentMetadata, TranscriptRecord

SESSIONS_LAST_ACTIVITY = """
SELECT session_id FROM (
    SELECT session_id, max(ended_at) AS last_at FROM session_audio_segments GROUP BY session_id
    UNION ALL
    SELECT session_id, max(occurred_at) FROM session_transcripts GROUP BY session_id
) AS activity
GROUP BY session_id
HAVING max(last_at) < {cutoff}
ORDER BY max(last_at), session_id
"""
"""Sessions whose last audio or transcript is before a cutoff, oldest first. Both tables count:
a call's last turn may have a transcript and no audio. ``{cutoff}`` is the dialect's placeholder."""

CALL_LOG_ORDER = "occurred_at, role DESC, turn_id"
"""The spoken order of ``session_call_log`` rows, the one ``session_response_gaps`` walks (on a
tie in ``occurred_at`` the user turn comes first)."""


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
            without audio, and rows indexed before migration 0003.
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
class DeletedRows:
    """Rows one session's deletion removed from the index.

    Parameters:
        segments: Rows removed from ``session_audio_segments``.
        transcripts: Rows removed from ``session_transcripts``.
    """

    segments: int
    transcripts: int


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
class MetadataIndex(SessionRetention, Protocol):
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

    async def call_log(self, session_id: str) -> list[CallLogEntry]:
        """Return a call's turns in spoken order."""
        ...

    async def response_gaps(self, session_id: str) -> list[ResponseGap]:
        """Return a call's user turns in spoken order with the bot's response time."""
        ...

    async def segment(self, segment_id: str) -> SegmentMetadata | None:
        """Return a segment's stored metadata, or None if it is not indexed."""
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
            f"segment {meta.segment_id} belongs to session {meta.session_id}, not {session}"
        )
    return replace(
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
    return replace(
        record,
        session_id=require_uuid(record.session_id, "session_id"),
        turn_id=require_uuid(record.turn_id, "turn_id"),
        occurred_at=as_utc(record.occurred_at, "occurred_at"),
    )


def as_utc(value: datetime, what: str) -> datetime:
    """Return an aware datetime converted to UTC.

    Raises:
        StorageError: If ``value`` is naive: its zone would be a guess.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise StorageError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def check_page(limit: int, offset: int) -> None:
    """Refuse a negative page size or offset.

    Raises:
        ValueError: If ``limit`` or ``offset`` is negative.
    """
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")


@dataclass(frozen=True)
class ViewQueries:
    """The read queries over the shipped views, in one backend's parameter style."""

    sessions: str
    call_log: str
    gaps: str
    segment: str
    old_sessions: str


def view_queries(placeholder: str) -> ViewQueries:
    """Build the read queries with ``placeholder`` (``%s`` for psycopg, ``?`` for sqlite3)."""
    p = placeholder
    return ViewQueries(
        sessions=f"SELECT {column_list(SessionSummary)} FROM session_summary"
        f" ORDER BY started_at DESC, session_id LIMIT {p} OFFSET {p}",
        call_log=f"SELECT {column_list(CallLogEntry)} FROM session_call_log"
        f" WHERE session_id = {p} ORDER BY {CALL_LOG_ORDER}",
        gaps=f"SELECT {column_list(ResponseGap)} FROM session_response_gaps"
        f" WHERE session_id = {p} ORDER BY user_started_at, user_turn_id",
        segment=f"SELECT {column_list(SegmentMetadata)} FROM session_audio_segments"
        f" WHERE segment_id = {p}",
        old_sessions=SESSIONS_LAST_ACTIVITY.format(cutoff=p),
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
            ValueError: If ``limit`` or ``offset`` is negative.
            StorageError: If the query fails.
        """
        check_page(limit, offset)
        rows = await self._read(self._queries.sessions, (limit, offset))
        return [SessionSummary(**row) for row in rows]

    async def call_log(self, session_id: str) -> list[CallLogEntry]:
        """Return a call's turns from ``session_call_log`` in spoken order.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the query fails.
        """
        rows = await self._read(self._queries.call_log, (require_uuid(session_id, "session_id"),))
        return [CallLogEntry(**row) for row in rows]

    async def response_gaps(self, session_id: str) -> list[ResponseGap]:
        """Return a call's user turns from ``session_response_gaps`` in spoken order.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageError: If the query fails.
        """
        rows = await self._read(self._queries.gaps, (require_uuid(session_id, "session_id"),))
        return [ResponseGap(**row) for row in rows]

    async def segment(self, segment_id: str) -> SegmentMetadata | None:
        """Return a segment's stored metadata, or None if it is not indexed.

        Raises:
            InvalidIdError: If ``segment_id`` is not a UUID.
            StorageError: If the query fails.
        """
        rows = await self._read(self._queries.segment, (require_uuid(segment_id, "segment_id"),))
        return SegmentMetadata(**rows[0]) if rows else None

    async def sessions_older_than(self, cutoff: datetime) -> list[str]:
        """Return the sessions whose last audio or transcript is before ``cutoff``, oldest first.

        Raises:
            StorageError: If ``cutoff`` is naive or the query fails.
        """
        cutoff_param = self._timestamp(as_utc(cutoff, "cutoff"))
        rows = await self._read(self._queries.old_sessions, (cutoff_param,))
        return [row["session_id"] for row in rows]
