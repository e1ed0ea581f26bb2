"""Counters of what the processor did with the frames it saw."""

from dataclasses import dataclass


@dataclass
class ProcessorStats:
    """Counters of :class:`~pipecat_audio_capture.AudioCaptureProcessor`, for logs and tests.

    Parameters:
        segments: Segments handed to the collector.
        refused: Segments the collector refused (it reports them itself).
        trimmed_bytes: Bytes cut off audio frames that were not whole samples. Input frames in
            the pre-roll are checked when a turn starts, so those dropped before any turn could
            use them are not counted.
        unsupported_format_frames: Audio frames passed on unrecorded because their sample rate
            or channel count is outside :mod:`pipecat_audio_capture.limits` (or impossible).
        unsupported_format_ms: The audio of those frames, where its duration can be computed.
        format_churn_ms: Audio of either speaker not recorded because its turn had already
            changed format ``max_format_changes`` times.
        unplayed_ms: Bot audio generated but cut by interruptions before it played.
        ignored_bot_audio_ms: Played bot audio outside any bot turn (after the output
            transport: the chunk being written when a barge-in arrives, or mixer output between
            turns; after a barge-in, the one chunk still written before the next
            ``TTSStartedFrame``).
        stops_without_start: ``UserStoppedSpeakingFrame`` with no user turn open.
    """

    segments: int = 0
    refused: int = 0
    trimmed_bytes: int = 0
    unsupported_format_frames: int = 0
    unsupported_format_ms: float = 0.0
    format_churn_ms: float = 0.0
    unplayed_ms: float = 0.0
    ignored_bot_audio_ms: float = 0.0
    stops_without_start: int = 0
