"""Per-turn audio capture for Pipecat voice bots.

Insert :class:`AudioCaptureProcessor` between the TTS service and ``transport.output()``; each
user and bot turn becomes its own WAV file, written in the background by
:class:`SessionAudioCapture`, with a ``turn_id`` shared (through :class:`TurnIds`) with the turn's
transcript.
"""

from pipecat_audio_capture.capture import SessionAudioCapture
from pipecat_audio_capture.collector import AudioCaptureCollector
from pipecat_audio_capture.errors import (
    AudioCaptureError,
    InvalidIdError,
    MigrationError,
    StorageConfigError,
    StorageError,
)
from pipecat_audio_capture.processor import AudioCaptureProcessor, ProcessorStats
from pipecat_audio_capture.records import (
    CaptureStats,
    PendingAudioSegment,
    SegmentMetadata,
    TranscriptRecord,
)
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
    "InvalidIdError",
    "LocalAudioStorage",
    "MetadataStorage",
    "MigrationError",
    "PendingAudioSegment",
    "ProcessorStats",
    "SQLiteAudioMetaStorage",
    "SegmentMetadata",
    "SessionAudioCapture",
    "StorageConfigError",
    "StorageError",
    "TranscriptRecord",
    "TranscriptRecorder",
    "TranscriptStore",
    "TurnIds",
    "TurnSpan",
]
