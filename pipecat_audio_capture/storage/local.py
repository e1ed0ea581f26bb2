"""WAV files on local disk, written atomically in worker threads."""

import asyncio
import json
import os
import tempfile
from pathlib import Path

from loguru import logger

from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import SegmentMetadata, Speaker

TEMP_SUFFIX = ".partial"
"""Suffix of files being written; a file with it was never completed."""


class LocalAudioStorage:
    """Stores each segment at ``{root}/{session_id}/{segment_id}.wav``.

    A file is written under a temporary name, fsynced, then renamed, so the final name never
    holds half a file. Ids must be UUIDs, which keeps every path inside ``root``. Metadata is
    logged as JSON at INFO; pair this class with a database backend through
    :class:`~pipecat_audio_capture.CompositeAudioStorage` to index it.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Initialize the storage.

        Args:
            root: Folder that holds one sub-folder per session; created when missing.
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
        """Write the WAV bytes atomically and return a ``file://`` URL."""
        path = self.path_for(session_id, segment_id)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            raise StorageError(f"could not write {path}: {exc}") from exc
        return path.as_uri()

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Log the segment's metadata as one JSON line at INFO."""
        logger.info(f"audio segment stored: {json.dumps(meta.to_json_dict(), sort_keys=True)}")


def _write_atomically(path: Path, data: bytes) -> None:
    if path.exists():
        if path.read_bytes() == data:
            return
        raise StorageError(f"{path} already holds different audio for the same segment id")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
