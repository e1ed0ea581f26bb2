"""Per-turn audio capture for Pipecat voice bots.

Insert :class:`AudioCaptureProcessor` between the TTS service and ``transport.output()``, and its
:meth:`~AudioCaptureProcessor.playback_tap` right after ``transport.output()``; each
user and bot turn becomes its own WAV file, written in the background by
:class:`SessionAudioCapture`, with a ``turn_id`` shared (through :class:`TurnIds`) with the turn's
transcript.
"""

from pipecat_audio_capture.capture import SessionAudioCapture, SessionCaptureStats
from pipecat_audio_capture.collector import AudioCaptureCollector
from pipecat_audio_capture.errors import (
    AudioCaptureError,
    InvalidIdError,
    MigrationError,
    SpoolEntryError,
    SpoolError,
    SpoolFullError,
    StorageConfigError,
    StorageError,
    UnsafePathError,
    WriteTimeoutError,
)
from pipecat_audio_capture.playback_tap import PlaybackTap
from pipecat_audio_capture.processor import AudioCaptureProcessor
from pipecat_audio_capture.processor_stats import ProcessorStats
from pipecat_audio_capture.records import (
    CaptureStats,
    PendingAudioSegment,
    Playback,
    SegmentMetadata,
    TranscriptRecord,
)
from pipecat_audio_capture.replay import ReplayReport, replay_spool
from pipecat_audio_capture.retention import DeletionReport, PurgeReport, delete_session, purge
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage import (
    AudioStorage,
    CompositeAudioStorage,
    LocalAudioStorage,
    MetadataStorage,
    SQLiteAudioMetaStorage,
    TranscriptStore,
)
from pipecat_audio_capture.transcripts import TranscriptRecorder
from pipecat_audio_capture.turn_ids import TurnIds, TurnSpan

__all__ = [
    "AudioCaptureCollector",
    "AudioCaptureError",
    "AudioCaptureProcessor",
    "AudioStorage",
    "CaptureStats",
    "CompositeAudioStorage",
    "DeletionReport",
    "InvalidIdError",
    "LocalAudioStorage",
    "MetadataStorage",
    "MigrationError",
    "PendingAudioSegment",
    "Playback",
    "PlaybackTap",
    "ProcessorStats",
    "PurgeReport",
    "ReplayReport",
    "RetryPolicy",
    "SQLiteAudioMetaStorage",
    "SegmentMetadata",
    "SessionAudioCapture",
    "SessionCaptureStats",
    "Spool",
    "SpoolEntryError",
    "SpoolError",
    "SpoolFullError",
    "StorageConfigError",
    "StorageError",
    "TranscriptRecord",
    "TranscriptRecorder",
    "TranscriptStore",
    "TurnIds",
    "TurnSpan",
    "UnsafePathError",
    "WriteTimeoutError",
    "delete_session",
    "purge",
    "replay_spool",
]
