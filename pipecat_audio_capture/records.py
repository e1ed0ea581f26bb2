"""Records that pass between the processor, the writer and the storage backends.

A record's builders live here too (:func:`metadata_for`), so every layer that makes one makes it
the same way.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

Speaker = Literal["user", "bot"]
Role = Literal["user", "assistant"]
Playback = Literal["confirmed", "estimated"]
"""Where a bot segment's cut and times come from: what the output transport wrote
(``confirmed``), or a play-out clock that assumes real-time playback (``estimated``)."""
PLAYBACK_VALUES: tuple[Playback, ...] = ("confirmed", "estimated")

SAMPLE_WIDTH_BYTES = 2
"""Pipecat's raw audio is 16-bit signed little-endian PCM."""


@dataclass
class PendingAudioSegment:
    """One speaker's audio for one turn (or one part of a long turn), not yet stored.

    Parameters:
        segment_id: UUID of this segment; names the file.
        session_id: UUID of the call.
        turn_id: UUID of the speaking turn, shared with the turn's transcript row.
        speaker: ``"user"`` or ``"bot"``.
        pcm: The audio as chunks of 16-bit PCM at ``sample_rate``, joined only when encoded so
            the audio path never copies it.
        sample_rate: Sample rate in Hz.
        num_channels: 1 (mono) or 2 (interleaved stereo).
        started_at: When the first sample was spoken (UTC).
        interrupted: Whether the turn was cut short (barge-in or session end).
        unplayed_ms: Bot audio generated for the turn but never played, or None where the
            processor cannot know (placed after the output transport, or a user turn).
        pcm_bytes: Bytes in ``pcm`` if its maker counted them (the processor does as it
            gathers the chunks), else None and counted when needed.
        playback: For a bot segment, where its cut and times come from: ``"confirmed"`` (what
            the output transport wrote) or ``"estimated"`` (a real-time play-out clock); None
            for a user segment or when unknown.
        played_until: When the output transport finished writing the last chunk (confirmed
            playback), which is then ``ended_at``: a transport slower than real time takes
            longer than the audio lasts, a bursty one less. None: the audio ended
            ``duration_ms`` after ``started_at``.
    """

    segment_id: str
    session_id: str
    turn_id: str
    speaker: Speaker
    pcm: list[bytes]
    sample_rate: int
    num_channels: int
    started_at: datetime
    interrupted: bool = False
    unplayed_ms: float | None = None
    pcm_bytes: int | None = None
    playback: Playback | None = None
    played_until: datetime | None = None

    @property
    def byte_length(self) -> int:
        """Bytes of PCM held (without the WAV header)."""
        if self.pcm_bytes is not None:
            return self.pcm_bytes
        return sum(map(len, self.pcm))

    @property
    def duration_ms(self) -> float:
        """Duration of the audio in milliseconds."""
        frame_bytes = SAMPLE_WIDTH_BYTES * self.num_channels
        return self.byte_length / frame_bytes / self.sample_rate * 1000.0

    @property
    def ended_at(self) -> datetime:
        """When the last sample was spoken, or written by the output transport (UTC)."""
        if self.played_until is not None:
            return max(self.played_until, self.started_at)
        return self.started_at + timedelta(milliseconds=self.duration_ms)


@dataclass
class SegmentMetadata:
    """What is stored about a segment once its audio is written.

    Parameters:
        segment_id: UUID of the segment.
        session_id: UUID of the call.
        turn_id: UUID of the speaking turn.
        speaker: ``"user"`` or ``"bot"``.
        audio_url: Where the WAV is (``file://`` path or ``gs://bucket/key``).
        sample_rate: Sample rate in Hz.
        num_channels: Number of channels.
        duration_ms: Duration of the audio in milliseconds.
        byte_size: Size of the stored WAV file in bytes, header included.
        interrupted: Whether the turn was cut short.
        unplayed_ms: Bot audio cut by the interruption, if known.
        started_at: When the first sample was spoken (UTC).
        ended_at: When the last sample was spoken (UTC).
        format: Container format, always ``"wav"``.
        playback: For a bot segment, ``"confirmed"`` or ``"estimated"`` (see
            :class:`PendingAudioSegment`); None for a user segment or when unknown.
    """

    segment_id: str
    session_id: str
    turn_id: str
    speaker: Speaker
    audio_url: str
    sample_rate: int
    num_channels: int
    duration_ms: float
    byte_size: int
    interrupted: bool
    unplayed_ms: float | None
    started_at: datetime
    ended_at: datetime
    format: str = "wav"
    playback: Playback | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-serialisable dict (timestamps as ISO 8601)."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        return data


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
        playback=segment.playback,
    )


@dataclass
class TranscriptRecord:
    """The transcript of one turn, linked to its audio by ``turn_id``.

    Parameters:
        session_id: UUID of the call.
        turn_id: UUID of the speaking turn (the same as the audio segment's).
        role: ``"user"`` or ``"assistant"``.
        text: What was said; for an interrupted assistant turn, what was spoken before the cut.
        interrupted: Whether the turn was cut short.
        occurred_at: When the turn started (UTC).
    """

    session_id: str
    turn_id: str
    role: Role
    text: str
    interrupted: bool
    occurred_at: datetime


@dataclass
class WriteStats:
    """What a background writer did with the items handed to it.

    Every writer's ``close()`` returns one (a
    :class:`~pipecat_audio_capture.capture.SessionCaptureStats` for segments).

    Parameters:
        stored: Items written to storage.
        spooled: Items kept in the spool, to be stored by a replay (not lost).
        failed: Items that could be neither stored nor spooled (lost, and reported).
    """

    stored: int = 0
    spooled: int = 0
    failed: int = 0


@dataclass
class CaptureStats:
    """Counters kept by :class:`~pipecat_audio_capture.SessionAudioCapture`.

    Parameters:
        recorded: Segments handed to the capture.
        stored: Segments whose audio and metadata were written.
        dropped: Segments refused because the queue was full or the capture closed.
        failed: Segments whose write raised or timed out.
        bytes_stored: WAV bytes written.
    """

    recorded: int = 0
    stored: int = 0
    dropped: int = 0
    failed: int = 0
    bytes_stored: int = 0
    lost_segment_ids: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Segments recorded but neither stored nor lost yet."""
        return self.recorded - self.stored - self.dropped - self.failed


MeasuredFrom = Literal["user_silence", "client_connected"]


@dataclass(frozen=True)
class LatencyStage:
    """One named part of a response's wait, as Pipecat's ``UserBotLatencyObserver`` names it.

    Parameters:
        stage: Pipecat's stable key (``"transcription"``, ``"llm_inference"``, ...).
        label: How Pipecat words it (``"LLM inference"``).
        owner: Who spent the time: a processor's name, or a ``"config: ..."`` setting.
        owner_kind: ``"service"``, ``"setting"``, ``"bot"`` or ``"pipeline"``.
        offset_ms: When it began, after the wait began.
        duration_ms: How long it took.
    """

    stage: str
    label: str
    owner: str
    owner_kind: str
    offset_ms: float
    duration_ms: float


@dataclass(frozen=True)
class TurnLatencyRecord:
    """Why one response took the time it took, linked to the bot turn it produced.

    Parameters:
        session_id: UUID of the call.
        turn_id: UUID of the bot turn (the same as its audio's and its transcript's).
        measured_from: ``"user_silence"`` for an answer, ``"client_connected"`` for a greeting.
        started_at: When the wait began: the user fell silent, or the pipeline was ready (UTC).
        bot_started_at: When the bot started speaking (UTC).
        total_ms: The whole wait; the stages add up to it.
        user_turn_ms: From the user falling silent to the user turn being released, if observed.
        stages: The parts of the wait in the order they happened.
    """

    session_id: str
    turn_id: str
    measured_from: MeasuredFrom
    started_at: datetime
    bot_started_at: datetime
    total_ms: float
    user_turn_ms: float | None
    stages: tuple[LatencyStage, ...]
