"""Audio to one backend, metadata (and transcripts) to another."""

from pipecat_audio_capture.errors import StorageConfigError
from pipecat_audio_capture.records import (
    SegmentMetadata,
    Speaker,
    TranscriptRecord,
    TurnLatencyRecord,
)
from pipecat_audio_capture.storage.base import (
    AudioStorage,
    MetadataStorage,
    SessionAudioCounter,
    SessionAudioDeleter,
    TranscriptStore,
    TurnLatencyStore,
)


class CompositeAudioStorage:
    """Sends WAV bytes to ``files`` and metadata and transcripts to ``metadata``.

    Typical use: ``CompositeAudioStorage(files=GCSAudioStorage(...),
    metadata=PostgresAudioMetaStorage(pool))``.
    """

    def __init__(self, *, files: AudioStorage, metadata: MetadataStorage) -> None:
        """Initialize the composite storage.

        Args:
            files: Backend that stores the WAV files.
            metadata: Backend that stores the metadata rows (and transcripts, if it can).
        """
        self._files = files
        self._metadata = metadata

    @property
    def files(self) -> AudioStorage:
        """The backend that stores the audio."""
        return self._files

    @property
    def metadata(self) -> MetadataStorage:
        """The backend that stores the metadata."""
        return self._metadata

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        """Store the WAV bytes in the files backend and return its URL."""
        return await self._files.store_segment(
            session_id, segment_id, speaker, data, turn_id=turn_id
        )

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Store the metadata in the metadata backend."""
        await self._metadata.save_metadata(session_id, meta)

    async def save_transcript(self, record: TranscriptRecord) -> None:
        """Store a transcript row in the metadata backend.

        Raises:
            StorageConfigError: If the metadata backend does not store transcripts.
        """
        if not isinstance(self._metadata, TranscriptStore):
            raise StorageConfigError(f"{type(self._metadata).__name__} does not store transcripts")
        await self._metadata.save_transcript(record)

    async def save_turn_latency(self, record: TurnLatencyRecord) -> None:
        """Store a bot turn's latency breakdown in the metadata backend.

        Raises:
            StorageConfigError: If the metadata backend does not store latency breakdowns.
        """
        if not isinstance(self._metadata, TurnLatencyStore):
            raise StorageConfigError(
                f"{type(self._metadata).__name__} does not store latency breakdowns"
            )
        await self._metadata.save_turn_latency(record)

    async def delete_session(self, session_id: str) -> int:
        """Delete the session's audio from the files backend (its rows are the index's).

        Raises:
            StorageConfigError: If the files backend cannot delete.
        """
        if not isinstance(self._files, SessionAudioDeleter):
            raise StorageConfigError(f"{type(self._files).__name__} cannot delete recordings")
        return await self._files.delete_session(session_id)

    async def count_session(self, session_id: str) -> int:
        """Count the session's audio in the files backend, as :meth:`delete_session` would go.

        Raises:
            StorageConfigError: If the files backend cannot count.
        """
        if not isinstance(self._files, SessionAudioCounter):
            raise StorageConfigError(f"{type(self._files).__name__} cannot count recordings")
        return await self._files.count_session(session_id)
