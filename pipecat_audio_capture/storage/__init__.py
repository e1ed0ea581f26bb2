"""Where segments go: the storage protocols and the backends that need no optional extra.

Backends that need an extra live in their own modules and are imported from there:
``pipecat_audio_capture.storage.postgres`` (extra ``postgres``) and
``pipecat_audio_capture.storage.gcs`` (extra ``gcs``).
"""

from pipecat_audio_capture.storage.base import AudioStorage, TranscriptStore
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.local import LocalAudioStorage

__all__ = ["AudioStorage", "CompositeAudioStorage", "LocalAudioStorage", "TranscriptStore"]
