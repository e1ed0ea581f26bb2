"""Where segments go: the storage protocols and the backends that need no optional extra.

``SQLiteAudioMetaStorage`` is the embedded index (stdlib ``sqlite3``). Backends that need an extra
live in their own modules and are imported from there:
``pipecat_audio_capture.storage.postgres`` (extra ``postgres``),
``pipecat_audio_capture.storage.gcs`` (extra ``gcs``) and
``pipecat_audio_capture.storage.s3`` (extra ``s3``).
"""

from pipecat_audio_capture.storage.base import (
    AudioStorage,
    MetadataStorage,
    SegmentStorage,
    TranscriptStore,
    TurnLatencyStore,
)
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.storage.metadata_log import MetadataLog
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

__all__ = [
    "AudioStorage",
    "CompositeAudioStorage",
    "LocalAudioStorage",
    "MetadataLog",
    "MetadataStorage",
    "SQLiteAudioMetaStorage",
    "SegmentStorage",
    "TranscriptStore",
    "TurnLatencyStore",
]
