"""What the processor hands finished segments to."""

from typing import Protocol, runtime_checkable

from pipecat_audio_capture.records import PendingAudioSegment


@runtime_checkable
class AudioCaptureCollector(Protocol):
    """Receives finished segments from :class:`~pipecat_audio_capture.AudioCaptureProcessor`.

    ``record_segment`` is called from ``process_frame``, on the audio path: it must return at
    once, never wait on I/O, and report (not raise) when it cannot take a segment.
    """

    @property
    def session_id(self) -> str:
        """UUID of the call the segments belong to."""
        ...

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Take a finished segment; return False if it was refused (and reported)."""
        ...
