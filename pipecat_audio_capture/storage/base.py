"""The protocols every storage backend follows.

File storage (:class:`AudioStorage`) and index storage (:class:`MetadataStorage`) are separate:
a file backend stores audio only, an index backend rows only, and a
:class:`SegmentStorage` (the composite) takes one of each.
"""

from typing import Protocol, runtime_checkable

from pipecat_audio_capture.records import (
    SegmentMetadata,
    Speaker,
    TranscriptRecord,
    TurnLatencyRecord,
)


@runtime_checkable
class AudioStorage(Protocol):
    """Stores a segment's WAV bytes: a file backend (a folder, a bucket).

    Implementations must not block the event loop: blocking work (file writes, fsync, HTTP calls)
    runs in worker threads. Storing must be idempotent for the same ids, so a retried write
    never stores a segment twice.
    """

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        """Store one WAV file and return its URL (``file://...``, ``gs://...``, ``s3://...``)."""
        ...


@runtime_checkable
class MetadataStorage(Protocol):
    """Records the metadata of stored segments: an index backend (a database, or a log)."""

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Record a stored segment's metadata (idempotent per segment id)."""
        ...


@runtime_checkable
class SegmentStorage(AudioStorage, MetadataStorage, Protocol):
    """Where a capture writes a whole segment: its audio, then its metadata.

    :class:`~pipecat_audio_capture.storage.composite.CompositeAudioStorage` is one, over a file
    backend and an index backend.
    """


@runtime_checkable
class TranscriptStore(Protocol):
    """Stores transcript rows; a metadata backend that indexes turns implements it too."""

    async def save_transcript(self, record: TranscriptRecord) -> None:
        """Record one turn's transcript (idempotent per session, turn and role)."""
        ...


@runtime_checkable
class TurnLatencyStore(Protocol):
    """Stores the latency breakdown of bot turns; both metadata indexes implement it."""

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        """Record one bot turn's latency breakdown (idempotent per session and turn)."""
        ...


@runtime_checkable
class SessionAudioDeleter(Protocol):
    """Deletes every stored recording of a session (local files, bucket objects)."""

    async def delete_session(self, session_id: str) -> int:
        """Delete the session's audio and return how many files or objects went.

        Finds them by the session's folder or prefix, not through the index, so audio whose
        metadata was never indexed goes too. Deleting a deleted session does nothing.
        """
        ...


@runtime_checkable
class SessionAudioCounter(Protocol):
    """Counts a session's stored recordings without removing any (a deletion's dry run)."""

    async def count_session(self, session_id: str) -> int:
        """Return how many files or objects ``delete_session`` would remove now."""
        ...
