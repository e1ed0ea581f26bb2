"""What the bucket backends (GCS, S3) share.

How they name and label a segment's object, and their async face (:class:`BucketStorage`).
Both lay a bucket out the same way, ``{prefix}{session_id}/{segment_id}.wav``, so a recording
moved from one store to the other keeps its key, and retention finds a session by its folder.
"""

import asyncio
from abc import ABC, abstractmethod
from typing import BinaryIO, ClassVar

from loguru import logger

from pipecat_audio_capture.errors import StorageConfigError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import Speaker
from pipecat_audio_capture.storage.metadata_log import MetadataLog

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


class BucketStorage(MetadataLog, ABC):
    """What the bucket backends share: the layout, the URLs and an async face.

    Every call of the blocking client runs in a worker thread. A subclass names its URL scheme
    and service and implements the blocking calls: upload create-only, download checked, list
    and delete a folder, and the startup probe.
    """

    scheme: ClassVar[str]
    """The scheme of the URLs in the index (``gs``, ``s3``)."""
    service: ClassVar[str]
    """The service's name in log lines."""

    def __init__(self, bucket: str, prefix: str) -> None:
        """Check and keep the bucket's name and the recordings' folder in it.

        Raises:
            StorageConfigError: If ``bucket`` is not a plain bucket name.
        """
        self._bucket_name = bucket_name(bucket)
        self._prefix = folder_prefix(prefix)

    @property
    def bucket_name(self) -> str:
        """The bucket's name."""
        return self._bucket_name

    @property
    def prefix(self) -> str:
        """The folder inside the bucket: empty or ending with ``/``."""
        return self._prefix

    def object_key(self, session_id: str, segment_id: str) -> str:
        """Return the key (object name) of a segment's WAV file.

        Raises:
            InvalidIdError: If either id is not a UUID.
        """
        return segment_key(self._prefix, session_id, segment_id)

    def url_for(self, key: str) -> str:
        """Return the URL of an object in the bucket, as the index holds it."""
        return f"{self.scheme}://{self._bucket_name}/{key}"

    async def check(self) -> None:
        """Write, read back and delete a probe object, so bad settings fail at startup.

        A probe write exercises everything an upload does: credentials, bucket, permissions
        and policies, conditional writes and the network path. The probe goes to
        ``{prefix}_startup_check/{uuid}``; its delete is best effort and logs a warning when
        refused (a lifecycle rule on that folder can clear what is left).

        Raises:
            StorageConfigError: If there are no usable credentials, the bucket does not exist,
                the credentials may not create or read objects, or the service cannot be reached
                before the retry deadline.
        """
        await asyncio.to_thread(self._check)
        logger.info(f"{self.service} audio storage ready at {self.url_for(self._prefix)}")

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        """Upload the WAV bytes create-only and return their URL.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageConfigError: If no credentials can be found.
            StorageError: If the upload fails, or the object already exists with other bytes.
        """
        key = self.object_key(session_id, segment_id)
        metadata = object_metadata(session_id, speaker, turn_id)
        await asyncio.to_thread(self._upload, key, data, metadata)
        return self.url_for(key)

    async def delete_session(self, session_id: str) -> int:
        """Delete every object under the session's folder, every stored version of each.

        In a bucket that keeps versions, deleting only the live object would keep the audio as
        a noncurrent version, so each listed version is deleted by its number. An object
        already gone is skipped, so a re-run after a partial failure finishes the job.

        Returns:
            How many object versions holding data were deleted.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageConfigError: If no credentials can be found.
            StorageError: If listing or deleting fails.
        """
        folder = session_folder(self._prefix, session_id)
        removed = await asyncio.to_thread(self._delete_folder, folder)
        logger.info(f"deleted {removed} objects under {self.url_for(folder)}")
        return removed

    async def count_session(self, session_id: str) -> int:
        """Return how many object versions :meth:`delete_session` would delete now.

        Deletes nothing.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            StorageConfigError: If no credentials can be found.
            StorageError: If listing fails.
        """
        folder = session_folder(self._prefix, session_id)
        return await asyncio.to_thread(self._count_folder, folder)

    async def download_segment(self, session_id: str, segment_id: str, target: BinaryIO) -> int:
        """Write a segment's WAV object into ``target``, checked against its stored checksum.

        Transient failures are retried until the retry deadline. What was written before a
        final failure stays in ``target``: discard it.

        Args:
            session_id: UUID of the session.
            segment_id: UUID of the segment.
            target: A seekable binary file open for writing; it is written from a worker thread.

        Returns:
            The bytes written.

        Raises:
            InvalidIdError: If an id is not a UUID.
            StorageConfigError: If no credentials can be found.
            StorageError: If the object does not exist, or the download fails or arrives
                corrupted.
        """
        key = self.object_key(session_id, segment_id)
        return await asyncio.to_thread(self._download, key, target)

    @abstractmethod
    def _check(self) -> None:
        """Write, read back and delete a probe object (blocking)."""

    @abstractmethod
    def _upload(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        """Upload create-only, settling a refusal because the object exists (blocking)."""

    @abstractmethod
    def _download(self, key: str, target: BinaryIO) -> int:
        """Write an object into ``target``, checked; return its size (blocking)."""

    @abstractmethod
    def _delete_folder(self, folder: str) -> int:
        """Delete every version of every object under ``folder``; return how many held data."""

    @abstractmethod
    def _count_folder(self, folder: str) -> int:
        """Return how many versions holding data are under ``folder`` (blocking)."""
