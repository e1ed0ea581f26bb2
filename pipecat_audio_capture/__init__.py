"""Per-turn audio capture for Pipecat voice bots.

Insert :class:`AudioCaptureProcessor` between the TTS service and ``transport.output()``, and its
:meth:`~AudioCaptureProcessor.playback_tap` right after ``transport.output()``; each
user and bot turn becomes its own WAV file, written in the background by
:class:`SessionAudioCapture`, with a ``turn_id`` shared (through :class:`TurnIds`) with the turn's
transcript.

The names that need Pipecat (the processor, the writer, the transcript recorder, replay) or
numpy (the spool, retention) are imported on first use, so the command-line tool's index
commands start without loading either.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pipecat_audio_capture.collector import AudioCaptureCollector
from pipecat_audio_capture.errors import (
    AudioCaptureError,
    AudioFormatError,
    CallAudioError,
    FolderGoneError,
    InvalidArgumentError,
    InvalidIdError,
    MigrationError,
    MissingExtraError,
    SimulatedCallTimeoutError,
    SpoolEntryError,
    SpoolEntryGoneError,
    SpoolError,
    SpoolFullError,
    StorageConfigError,
    StorageError,
    UnknownAttributeError,
    UnsafePathError,
    WavFileError,
    WriteTimeoutError,
)
from pipecat_audio_capture.records import (
    CaptureStats,
    LatencyStage,
    PendingAudioSegment,
    Playback,
    SegmentMetadata,
    TranscriptRecord,
    TurnLatencyRecord,
    WriteStats,
)
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.storage import (
    AudioStorage,
    CompositeAudioStorage,
    LocalAudioStorage,
    MetadataLog,
    MetadataStorage,
    SegmentStorage,
    SQLiteAudioMetaStorage,
    TranscriptStore,
    TurnLatencyStore,
)
from pipecat_audio_capture.turn_ids import TurnIds, TurnSpan

__version__ = "0.1.0"
"""The package version; ``pyproject.toml`` reads it from here."""

if TYPE_CHECKING:
    from pipecat_audio_capture.call_audio import (
        CallAudioPlan,
        CallAudioReport,
        SegmentIssue,
        plan_call_audio,
        write_call_audio,
    )
    from pipecat_audio_capture.call_audio_session import (
        local_segment_opener,
        write_session_call_audio,
    )
    from pipecat_audio_capture.capture import SessionAudioCapture, SessionCaptureStats
    from pipecat_audio_capture.latency import LatencyRecorder
    from pipecat_audio_capture.playback_tap import PlaybackTap
    from pipecat_audio_capture.processor import AudioCaptureProcessor
    from pipecat_audio_capture.processor_stats import ProcessorStats
    from pipecat_audio_capture.replay import ReplayReport, replay_spool
    from pipecat_audio_capture.retention import (
        DeletionReport,
        PurgeReport,
        delete_session,
        plan_delete_session,
        plan_purge,
        purge,
    )
    from pipecat_audio_capture.spool import Spool
    from pipecat_audio_capture.transcripts import TranscriptRecorder

_ON_FIRST_USE = {
    "CallAudioPlan": "pipecat_audio_capture.call_audio",
    "CallAudioReport": "pipecat_audio_capture.call_audio",
    "SegmentIssue": "pipecat_audio_capture.call_audio",
    "plan_call_audio": "pipecat_audio_capture.call_audio",
    "write_call_audio": "pipecat_audio_capture.call_audio",
    "local_segment_opener": "pipecat_audio_capture.call_audio_session",
    "write_session_call_audio": "pipecat_audio_capture.call_audio_session",
    "AudioCaptureProcessor": "pipecat_audio_capture.processor",
    "DeletionReport": "pipecat_audio_capture.retention",
    "LatencyRecorder": "pipecat_audio_capture.latency",
    "PlaybackTap": "pipecat_audio_capture.playback_tap",
    "ProcessorStats": "pipecat_audio_capture.processor_stats",
    "PurgeReport": "pipecat_audio_capture.retention",
    "ReplayReport": "pipecat_audio_capture.replay",
    "SessionAudioCapture": "pipecat_audio_capture.capture",
    "SessionCaptureStats": "pipecat_audio_capture.capture",
    "Spool": "pipecat_audio_capture.spool",
    "TranscriptRecorder": "pipecat_audio_capture.transcripts",
    "delete_session": "pipecat_audio_capture.retention",
    "plan_delete_session": "pipecat_audio_capture.retention",
    "plan_purge": "pipecat_audio_capture.retention",
    "purge": "pipecat_audio_capture.retention",
    "replay_spool": "pipecat_audio_capture.replay",
}

__all__ = [
    "AudioCaptureCollector",
    "AudioCaptureError",
    "AudioCaptureProcessor",
    "AudioFormatError",
    "AudioStorage",
    "CallAudioError",
    "CallAudioPlan",
    "CallAudioReport",
    "CaptureStats",
    "CompositeAudioStorage",
    "DeletionReport",
    "FolderGoneError",
    "InvalidArgumentError",
    "InvalidIdError",
    "LatencyRecorder",
    "LatencyStage",
    "LocalAudioStorage",
    "MetadataLog",
    "MetadataStorage",
    "MigrationError",
    "MissingExtraError",
    "PendingAudioSegment",
    "Playback",
    "PlaybackTap",
    "ProcessorStats",
    "PurgeReport",
    "ReplayReport",
    "RetryPolicy",
    "SQLiteAudioMetaStorage",
    "SegmentIssue",
    "SegmentMetadata",
    "SegmentStorage",
    "SessionAudioCapture",
    "SessionCaptureStats",
    "SimulatedCallTimeoutError",
    "Spool",
    "SpoolEntryError",
    "SpoolEntryGoneError",
    "SpoolError",
    "SpoolFullError",
    "StorageConfigError",
    "StorageError",
    "TranscriptRecord",
    "TranscriptRecorder",
    "TranscriptStore",
    "TurnIds",
    "TurnLatencyRecord",
    "TurnLatencyStore",
    "TurnSpan",
    "UnknownAttributeError",
    "UnsafePathError",
    "WavFileError",
    "WriteStats",
    "WriteTimeoutError",
    "__version__",
    "delete_session",
    "local_segment_opener",
    "plan_call_audio",
    "plan_delete_session",
    "plan_purge",
    "purge",
    "replay_spool",
    "write_call_audio",
    "write_session_call_audio",
]


def __getattr__(name: str) -> Any:
    """Import a name that needs Pipecat or numpy on first use (PEP 562)."""
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise UnknownAttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the names imported on first use too."""
    return sorted({*globals(), *__all__})
