"""WAV files on local disk, written atomically in worker threads."""

import asyncio
import errno
import os
import re
from pathlib import Path

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import Speaker
from pipecat_audio_capture.safe_files import (
    CANONICAL_UUID,
    TEMP_SUFFIX,
    ensure_real_folder,
    existing_real_folder,
    fsync_folder,
    is_temp_name,
    lstat_regular,
    read_regular,
    real_subfolders,
    remove_stale_temp_files,
    write_atomically,
)
from pipecat_audio_capture.storage.metadata_log import MetadataLog

__all__ = ["TEMP_SUFFIX", "LocalAudioStorage"]

_SEGMENT_FILE = re.compile(CANONICAL_UUID.pattern + r"\.wav")


class LocalAudioStorage(MetadataLog):
    """Stores each segment at ``{root}/{session_id}/{segment_id}.wav``.

    A file is written under a temporary name (``.{segment_id}.*.partial``), fsynced, then
    renamed, so the final name never holds half a file, even if the process is killed. Ids must
    be UUIDs, and a session folder that is a symlink is refused, which keeps every read, write
    and delete inside ``root``. Metadata is logged as JSON at INFO; pair this class with a
    database backend through :class:`~pipecat_audio_capture.CompositeAudioStorage` to index it.

    At startup, :meth:`recover` removes the temporary files of writes a crash interrupted.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Initialize the storage.

        Args:
            root: Folder that holds one sub-folder per session; created when missing. It may
                itself be a symlink (resolved here); nothing below it is followed.
        """
        self._root = Path(root).expanduser().resolve()

    @property
    def root(self) -> Path:
        """The absolute root folder."""
        return self._root

    def path_for(self, session_id: str, segment_id: str) -> Path:
        """Return the final path of a segment's WAV file.

        Raises:
            InvalidIdError: If either id is not a UUID.
        """
        session = require_uuid(session_id, "session_id")
        segment = require_uuid(segment_id, "segment_id")
        return self._root / session / f"{segment}.wav"

    async def store_segment(
        self,
        session_id: str,
        segment_id: str,
        speaker: Speaker,
        data: bytes,
        *,
        turn_id: str | None = None,
    ) -> str:
        """Write the WAV bytes atomically and return a ``file://`` URL.

        Storing the same bytes again is a no-op, so a retried write never makes a second file.

        Raises:
            InvalidIdError: If an id is not a UUID.
            UnsafePathError: If the session folder or the file is a symlink.
            StorageError: If the write fails, or the file already holds other bytes.
        """
        path = self.path_for(session_id, segment_id)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            raise StorageError(
                f"could not write {path}: {exc}", transient=is_transient_os_error(exc)
            ) from exc
        return path.as_uri()

    async def delete_session(self, session_id: str) -> int:
        """Delete a session's WAV files and its folder; deleting a deleted session does nothing.

        Only files this class writes (``{uuid}.wav`` and its temporary files) are removed; a
        folder holding anything else is kept, with a warning. A symlink is never followed.

        Returns:
            How many WAV files were removed.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            UnsafePathError: If the session folder is a symlink.
            StorageError: If a file cannot be removed.
        """
        session = require_uuid(session_id, "session_id")
        try:
            removed = await asyncio.to_thread(_delete_session, self._root, session)
        except OSError as exc:
            raise StorageError(f"could not delete session {session}'s recordings: {exc}") from exc
        logger.info(f"deleted {removed} recordings of session {session} under {self._root}")
        return removed

    async def count_session(self, session_id: str) -> int:
        """Return how many WAV files :meth:`delete_session` would remove now; removes nothing.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            UnsafePathError: If the session folder is a symlink.
            StorageError: If the folder cannot be listed.
        """
        session = require_uuid(session_id, "session_id")
        try:
            return await asyncio.to_thread(_count_session, self._root, session)
        except OSError as exc:
            raise StorageError(f"could not list session {session}'s recordings: {exc}") from exc

    async def recover(self, *, min_age_s: float = defaults.TEMP_FILE_MIN_AGE_S) -> int:
        """Remove the temporary files of writes that never completed (call it at startup).

        A process killed while writing leaves ``.{segment_id}.*.partial`` beside the recordings;
        its final name was never created, so no recording is incomplete. The segment it held was
        in that process's memory and is gone with it (unless it was spooled).

        Args:
            min_age_s: Leave younger temporary files alone: another live process sharing the
                root may be writing them.

        Returns:
            How many temporary files were removed.

        Raises:
            StorageError: If the root cannot be scanned or a file cannot be removed.
        """
        try:
            return await asyncio.to_thread(_recover, self._root, min_age_s)
        except OSError as exc:
            raise StorageError(f"could not clean temporary files in {self._root}: {exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    """Write one segment file at ``{root}/{session}/{segment}.wav`` unless it is already there."""
    ensure_real_folder(path.parent.parent, path.parent.name)
    if lstat_regular(path) is not None:
        if read_regular(path) == data:
            return
        raise StorageError(
            f"{path} already holds different audio for the same segment id", transient=False
        )
    write_atomically(path, data)


def _delete_session(root: Path, session: str) -> int:
    folder = existing_real_folder(root, session)
    if folder is None:
        return 0
    removed = 0
    foreign: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            ours = _SEGMENT_FILE.fullmatch(entry.name) or is_temp_name(entry.name)
            if not ours or entry.is_dir(follow_symlinks=False):
                foreign.append(entry.name)
                continue
            # unlink removes a symlink itself, never what it points to.
            Path(entry.path).unlink(missing_ok=True)
            removed += entry.name.endswith(".wav")
    if foreign:
        logger.warning(f"kept {folder}: it holds files this package did not write: {foreign}")
        return removed
    folder.rmdir()
    fsync_folder(root)
    return removed


def _count_session(root: Path, session: str) -> int:
    folder = existing_real_folder(root, session)
    if folder is None:
        return 0
    with os.scandir(folder) as entries:
        return sum(
            1
            for entry in entries
            if _SEGMENT_FILE.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False)
        )


def _recover(root: Path, min_age_s: float) -> int:
    return sum(
        remove_stale_temp_files(folder, min_age_s=min_age_s)
        for folder in real_subfolders(root, CANONICAL_UUID)
    )


_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.EIO,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)
"""Failures of a disk or a network mount that can clear within a retry's deadline (busy, a
timeout, a stale NFS handle, space freed by the spool's own cleanup)."""


def is_transient_os_error(exc: OSError) -> bool:
    """Whether another attempt can cure a failed file write.

    A missing folder or a refused permission cannot be cured.
    """
    return isinstance(exc, TimeoutError | ConnectionError) or exc.errno in _TRANSIENT_ERRNOS
