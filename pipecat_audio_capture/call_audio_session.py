"""A stored call's stereo recording, read from the index and the recordings folder."""

import asyncio
import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pipecat_audio_capture.call_audio import (
    CallAudioReport,
    SegmentOpener,
    write_call_audio,
)
from pipecat_audio_capture.errors import CallAudioError, StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.safe_files import open_regular_under
from pipecat_audio_capture.storage.index import MetadataIndex


def local_segment_opener(recordings: str | os.PathLike[str]) -> SegmentOpener:
    """Return an opener of ``file://`` segments stored under a recordings folder.

    A segment is opened by its ids, as ``{recordings}/{session_id}/{segment_id}.wav``, whatever
    absolute path its row holds, so a recordings folder copied or moved elsewhere still plays;
    the session folder and the file must be real (not symlinks), so nothing outside
    ``recordings`` is read.

    Args:
        recordings: The folder ``LocalAudioStorage`` wrote to (it may itself be a symlink).
    """
    root = Path(recordings).expanduser().resolve()

    def open_segment(segment: SegmentMetadata) -> BinaryIO:
        scheme = urlsplit(segment.audio_url).scheme
        if scheme != "file":
            raise StorageError(f"{scheme or 'scheme-less'} audio is not in a recordings folder")
        session = require_uuid(segment.session_id, "session_id")
        name = f"{require_uuid(segment.segment_id, 'segment_id')}.wav"
        return os.fdopen(open_regular_under(root, root / session / name), "rb")

    return open_segment


async def write_session_call_audio(
    index: MetadataIndex,
    session_id: str,
    out: BinaryIO | str | os.PathLike[str],
    *,
    recordings: str | os.PathLike[str] | None = None,
    open_segment: SegmentOpener | None = None,
    sample_rate: int | None = None,
) -> CallAudioReport:
    """Write a stored call's stereo recording (user left, bot right) as one WAV.

    The build runs in a worker thread; see :func:`~pipecat_audio_capture.call_audio.
    write_call_audio` for how segments are placed and what the report holds.

    Args:
        index: The metadata index the call is in.
        session_id: UUID of the call.
        out: A binary file to write to, or a path (replaced only once the file is complete).
        recordings: The folder local audio is stored in (see :func:`local_segment_opener`).
        open_segment: Opens each segment's WAV instead (``gs://`` audio, for one).
        sample_rate: Sample rate of the recording; by default the highest of the call.

    Raises:
        CallAudioError: If the call has no stored audio, neither ``recordings`` nor
            ``open_segment`` is given, or as ``write_call_audio`` does.
        InvalidIdError: If ``session_id`` is not a UUID.
        StorageError: If the index cannot be read.
        OSError: If writing ``out`` fails.
    """
    if open_segment is None:
        if recordings is None:
            raise CallAudioError("give the recordings folder or a segment opener")
        open_segment = local_segment_opener(recordings)
    segments = await index.session_segments(session_id)
    if not segments:
        raise CallAudioError(f"call {session_id} has no stored audio")
    return await asyncio.to_thread(
        write_call_audio, segments, out, open_segment=open_segment, sample_rate=sample_rate
    )
