"""Copying a stored segment's WAV out of storage, wherever the index says it was stored.

The index's rows may be hostile, so the URL a row holds only says which backend has the audio
and must name the segment's own recording; the ids find it:

- ``file://``: ``{recordings}/{session_id}/{segment_id}.wav``, whatever folder the URL was
  written with (recordings copied or moved elsewhere still read), opened once without following
  a link and checked on the descriptor (see
  :func:`~pipecat_audio_capture.playback.open_segment_file`).
- ``gs://``: the object ``{prefix}{session_id}/{segment_id}.wav`` (as ``GCSAudioStorage`` names
  it) in the bucket the URL names, downloaded through ``GCSAudioStorage`` in a worker thread
  and checked against its stored crc32c. Needs the ``gcs`` extra and Application Default
  Credentials (or ``STORAGE_EMULATOR_HOST``) with ``storage.objects.get``.

Whatever reads stored segments back (``export``, a whole-call builder) goes through
:class:`SegmentAudioReader`, so every reader refuses the same rows.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipecat_audio_capture.errors import InvalidIdError, StorageConfigError, StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.playback import open_segment_file, parse_gs_url
from pipecat_audio_capture.safe_files import copy_descriptor

if TYPE_CHECKING:
    from google.cloud.storage import Client

    from pipecat_audio_capture.storage.gcs import GCSAudioStorage

GCS_EXTRA_HINT = "pip install 'pipecat-audio-capture[gcs]'"


@dataclass(frozen=True)
class StoredSegment:
    """One segment as the index holds it.

    Parameters:
        session_id: UUID of its session.
        segment_id: UUID of the segment.
        audio_url: Where it was stored: ``file://`` or ``gs://``.
    """

    session_id: str
    segment_id: str
    audio_url: str


class SegmentAudioReader:
    """Copies stored segments' WAV bytes into open files, local or from GCS.

    Call :meth:`prepare` with every URL first: what would stop every copy (no recordings
    folder, no ``gcs`` extra, no credentials) fails there, before anything is written. One
    :meth:`copy_to` failing (a hostile row, a missing file or object) fails that segment only.
    """

    def __init__(self, *, recordings: Path | None, gcs_client: Client | None = None) -> None:
        """Initialize the reader. Makes no call and opens nothing.

        Args:
            recordings: The folder ``file://`` audio is read from; None reads none.
            gcs_client: The client ``gs://`` audio is downloaded with; when omitted, one is
                built by :meth:`prepare` from Application Default Credentials.
        """
        self._recordings = recordings
        self._gcs_client = gcs_client
        self._buckets: dict[tuple[str, str], GCSAudioStorage] = {}

    async def prepare(self, audio_urls: Iterable[str]) -> None:
        """Make sure the backends these URLs need are usable.

        Raises:
            StorageConfigError: If a ``file://`` URL has no recordings folder, or a ``gs://``
                URL needs the ``gcs`` extra that is not installed or credentials that cannot
                be found.
        """
        schemes = {urlsplit(url).scheme for url in audio_urls}
        if "file" in schemes and self._recordings is None:
            raise StorageConfigError("local file:// audio needs a recordings folder to read from")
        if "gs" in schemes and self._gcs_client is None:
            gcs = _gcs_module()
            self._gcs_client = await asyncio.to_thread(gcs.default_client)

    async def copy_to(self, segment: StoredSegment, target: int) -> int:
        """Write a segment's WAV bytes to ``target`` at its current position.

        On failure, what was written before stays in ``target``: discard the file.

        Args:
            segment: The segment, as the index holds it.
            target: A descriptor open for writing.

        Returns:
            The bytes written.

        Raises:
            UnsafePathError: If the URL names another file than the segment's own, an id is not
                a UUID, or the file is reached through a link, not a regular file or has
                several links.
            StorageError: If the audio is missing, another object than the segment's own, in
                another scheme, or the download fails.
        """
        scheme = urlsplit(segment.audio_url).scheme
        if scheme == "file":
            return await asyncio.to_thread(self._copy_local, segment, target)
        if scheme == "gs":
            files = self._bucket_of(segment)
            with open(target, "wb", closefd=False) as out:
                return await files.download_segment(segment.session_id, segment.segment_id, out)
        raise StorageError(
            f"{scheme or 'scheme-less'} audio URLs cannot be read: {segment.audio_url!r}"
        )

    def _copy_local(self, segment: StoredSegment, target: int) -> int:
        if self._recordings is None:
            raise StorageError("no recordings folder to read local audio from")
        source = open_segment_file(
            segment.audio_url,
            session_id=segment.session_id,
            segment_id=segment.segment_id,
            root=self._recordings,
        )
        try:
            return copy_descriptor(source, target)
        finally:
            os.close(source)

    def _bucket_of(self, segment: StoredSegment) -> GCSAudioStorage:
        """The storage holding the segment's own object, where its URL says it is.

        Raises:
            StorageError: If the URL's object is not ``{prefix}{session_id}/{segment_id}.wav``.
        """
        bucket, name = parse_gs_url(segment.audio_url)
        try:
            own = f"{require_uuid(segment.session_id)}/{require_uuid(segment.segment_id)}.wav"
        except InvalidIdError as exc:
            raise StorageError(f"{segment.audio_url}: an id of its row is not a UUID") from exc
        prefix = name.removesuffix(own)
        key = (bucket, prefix)
        if key not in self._buckets:
            gcs = _gcs_module()
            self._buckets[key] = gcs.GCSAudioStorage(
                bucket=bucket, prefix=prefix, client=self._gcs_client
            )
        files = self._buckets[key]
        if files.object_name(segment.session_id, segment.segment_id) != name:
            raise StorageError(
                f"{segment.audio_url} is not the segment's own object (.../{own}); it is not "
                "downloaded"
            )
        return files


def _gcs_module() -> ModuleType:
    """Import the GCS backend, which needs the ``gcs`` extra, when a ``gs://`` URL is met."""
    try:
        from pipecat_audio_capture.storage import gcs
    except ImportError as exc:
        raise StorageConfigError(f"gs:// audio needs the gcs extra: {GCS_EXTRA_HINT}") from exc
    return gcs
