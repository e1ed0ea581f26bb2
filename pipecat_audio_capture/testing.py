"""Helpers for users' own tests: a collector that keeps segments in memory."""

from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.records import PendingAudioSegment, Speaker


class InMemoryAudioCollector:
    """An :class:`~pipecat_audio_capture.AudioCaptureCollector` that keeps every segment.

    Example::

        collector = InMemoryAudioCollector()
        processor = AudioCaptureProcessor(collector, TurnIds())
        ...  # run the pipeline
        assert [s.speaker for s in collector.segments] == ["user", "bot"]
    """

    def __init__(self, session_id: str | None = None) -> None:
        """Initialize the collector.

        Args:
            session_id: UUID of the call; a new one when omitted.
        """
        self._session_id = require_uuid(session_id, "session_id") if session_id else new_id()
        self.segments: list[PendingAudioSegment] = []

    @property
    def session_id(self) -> str:
        """UUID of the call."""
        return self._session_id

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Keep the segment; always accepted."""
        self.segments.append(segment)
        return True

    def by_speaker(self, speaker: Speaker) -> list[PendingAudioSegment]:
        """The segments of one speaker, in the order they were recorded."""
        return [segment for segment in self.segments if segment.speaker == speaker]
