"""How the bucket backends (GCS, S3) name, label and log a segment's object.

Both lay a bucket out the same way, ``{prefix}{session_id}/{segment_id}.wav``, so a recording
moved from one store to the other keeps its key, and retention finds a session by its folder.
"""

from pipecat_audio_capture.errors import StorageConfigError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import Speaker

CONTENT_TYPE = "audio/wav"

CHECK_PREFIX = "_startup_check/"
"""Folder under the prefix where a backend's ``check()`` writes its probe objects. The name is
not a UUID, so it can never collide with a session folder."""

CHECK_PAYLOAD = b"pipecat-audio-capture startup check\n"


def bucket_name(bucket: str) -> str:
    """Return ``bucket`` if it is a plain bucket name.

    Raises:
        StorageConfigError: If it is empty or a URL or path (holds ``/`` or ``:``).
    """
    if not bucket or "/" in bucket or ":" in bucket:
        raise StorageConfigError(
            f"bucket must be a bucket name such as 'my-recordings': {bucket!r}"
        )
    return bucket


def folder_prefix(prefix: str) -> str:
    """Return the prefix as a folder: empty, or without a leading and with a trailing ``/``."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def segment_key(prefix: str, session_id: str, segment_id: str) -> str:
    """Return the key of a segment's WAV file under ``prefix`` (a :func:`folder_prefix`).

    Raises:
        InvalidIdError: If either id is not a UUID.
    """
    session = require_uuid(session_id, "session_id")
    segment = require_uuid(segment_id, "segment_id")
    return f"{prefix}{session}/{segment}.wav"


def session_folder(prefix: str, session_id: str) -> str:
    """Return the folder (key prefix) that holds every object of a session.

    Raises:
        InvalidIdError: If ``session_id`` is not a UUID.
    """
    return f"{prefix}{require_uuid(session_id, 'session_id')}/"


def object_metadata(session_id: str, speaker: Speaker, turn_id: str | None) -> dict[str, str]:
    """Return the metadata stored with a segment's object: its session, speaker and turn.

    Raises:
        InvalidIdError: If an id is not a UUID.
    """
    metadata = {"session_id": require_uuid(session_id, "session_id"), "speaker": speaker}
    if turn_id is not None:
        metadata["turn_id"] = require_uuid(turn_id, "turn_id")
    return metadata
