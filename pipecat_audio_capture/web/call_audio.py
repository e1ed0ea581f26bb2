"""The whole call as one stereo WAV for the review page: built once, kept in a private cache.

``/sessions/ID/call.wav`` is built from the call's segments with
:func:`~pipecat_audio_capture.call_audio.write_call_audio` (user left, bot right) in a worker
thread, into a folder of the server's own (``mkdtemp``: mode 0700, a fresh name), each file
created with ``O_EXCL`` and never followed through a link. The file is then sent from its
descriptor, with range support (:class:`~.files.DescriptorResponse`), so the player can seek.

A built call is kept for the next requests, keyed by a digest of its segment rows: when the
index changes for that call (a segment added, replayed or deleted), the next request builds it
again. At most ``max_calls`` calls are kept; building one more removes the least recently played
(a response still sending it keeps its open descriptor). Builds run one at a time, so a burst
of requests for different calls costs one build's CPU and memory at a time; a cached call is
served meanwhile.

``file://`` segments are read under the recordings folder by their ids; ``gs://`` segments are
downloaded first (into the same private folder, removed after the build) through
:class:`~pipecat_audio_capture.segment_audio.SegmentAudioReader`, which needs the ``gcs`` extra
and credentials. A segment that cannot be read is silent in the call, logged (see
:func:`~pipecat_audio_capture.call_audio.write_call_audio`); a call whose storage is not
configured here is not built at all, and the page says why (:meth:`CallAudioCache.plan`).
"""

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.call_audio import (
    CallAudioPlan,
    CallAudioReport,
    SegmentOpener,
    plan_call_audio,
    write_call_audio,
)
from pipecat_audio_capture.call_audio_session import local_segment_opener
from pipecat_audio_capture.errors import CallAudioError, StorageConfigError, StorageError
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.segment_audio import SegmentAudioReader, StoredSegment

if TYPE_CHECKING:
    from google.cloud.storage import Client

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_PRIVATE_FILE_MODE = 0o600
_SCHEMES = ("file", "gs")


@dataclass(frozen=True)
class _Built:
    """A call's recording in the cache folder, and the digest of the rows it was built from."""

    digest: str
    path: Path


class CallAudioCache:
    """Builds and keeps the stereo recordings of the calls the review plays whole.

    The cache folder is made on the first build and removed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        recordings: Path | None,
        gcs_client: "Client | None" = None,
        max_calls: int = defaults.SERVE_CALL_AUDIO_CACHE_CALLS,
        max_bytes: int = defaults.SERVE_CALL_AUDIO_MAX_BYTES,
    ) -> None:
        """Initialize the cache. Makes no call and creates nothing.

        Args:
            recordings: The folder ``file://`` audio is read from; None reads none.
            gcs_client: The client ``gs://`` audio is downloaded with; None uses Application
                Default Credentials, when the ``gcs`` extra is installed.
            max_calls: Most built calls kept (at least 1).
            max_bytes: Largest recording built.
        """
        self._recordings = recordings
        self._reader = SegmentAudioReader(recordings=recordings, gcs_client=gcs_client)
        self._max_calls = max(1, max_calls)
        self._max_bytes = max_bytes
        self._built: OrderedDict[str, _Built] = OrderedDict()
        self._build_slot = asyncio.Lock()
        self._folder: Path | None = None
        self._gcs_problem: str | None = None
        self._gcs_checked = False

    @property
    def folder(self) -> Path | None:
        """The private folder the recordings are built in, once the first build made it."""
        return self._folder

    async def _unavailable(self, audio_urls: Iterable[str | None]) -> str | None:
        """Return why a call with these audio URLs cannot be played whole here, or None if it can.

        The first ``gs://`` call checks, once, that GCS can be read (the ``gcs`` extra and
        credentials), in a worker thread.
        """
        schemes = {urlsplit(url).scheme for url in audio_urls if url}
        if not schemes & set(_SCHEMES):
            return "no turn of this call has audio this server can read"
        if "file" in schemes and self._recordings is None:
            return "this server has no recordings folder (serve --recordings DIR)"
        if "gs" in schemes:
            if not self._gcs_checked:
                try:
                    await self._reader.prepare(["gs://bucket/object"])
                except StorageConfigError as exc:
                    logger.warning(f"gs:// calls will not play whole: {exc}")
                    self._gcs_problem = (
                        "this server cannot read Google Cloud Storage (the gcs extra or "
                        "credentials are missing; the server log says which)"
                    )
                self._gcs_checked = True
            return self._gcs_problem
        return None

    async def plan(self, segments: Sequence[SegmentMetadata]) -> CallAudioPlan:
        """Return the layout of a call's recording, if it can be built here.

        Args:
            segments: Every stored segment of the call.

        Raises:
            CallAudioError: If it cannot, saying why: a storage this server cannot read, no
                placeable segment, or a recording larger than ``max_bytes``.
        """
        problem = await self._unavailable(segment.audio_url for segment in segments)
        if problem is not None:
            raise CallAudioError(problem)
        plan = await asyncio.to_thread(plan_call_audio, segments)
        if plan.wav_bytes > self._max_bytes:
            raise CallAudioError(
                f"the call's recording would take {plan.wav_bytes} bytes, more than the "
                f"{self._max_bytes} this server builds"
            )
        return plan

    async def open(self, session_id: str, segments: Sequence[SegmentMetadata]) -> int:
        """Return a descriptor open on the call's recording, building it if the cache lacks it.

        Args:
            session_id: The call.
            segments: Every stored segment of the call (``MetadataIndex.session_segments``).

        Returns:
            A descriptor open for reading, owned by the caller.

        Raises:
            CallAudioError: If the call cannot be played whole here: no placeable segment, a
                storage this server cannot read, or a recording larger than ``max_bytes``.
            OSError: If the cache folder cannot be written.
        """
        plan = await self.plan(segments)
        digest = await asyncio.to_thread(_digest, segments)
        fd = await self._open_built(session_id, digest)
        if fd is not None:
            return fd
        async with self._build_slot:
            # Another request may have built it while this one waited for the slot.
            fd = await self._open_built(session_id, digest)
            if fd is not None:
                return fd
            path = await self._build(session_id, segments, plan, digest)
            fd = await asyncio.to_thread(os.open, path, _READ_FLAGS)
            await self._keep(session_id, _Built(digest, path))
            return fd

    async def close(self) -> None:
        """Remove the cache folder and everything built in it."""
        self._built.clear()
        if self._folder is not None:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)
            self._folder = None

    async def _open_built(self, session_id: str, digest: str) -> int | None:
        built = self._built.get(session_id)
        if built is None or built.digest != digest:
            return None
        try:
            fd = await asyncio.to_thread(os.open, built.path, _READ_FLAGS)
        except FileNotFoundError:
            # Evicted by a build that finished while this request waited for its thread.
            return None
        self._built.move_to_end(session_id)
        return fd

    async def _keep(self, session_id: str, built: _Built) -> None:
        stale = self._built.pop(session_id, None)
        self._built[session_id] = built
        dropped = [] if stale is None else [stale.path]
        while len(self._built) > self._max_calls:
            dropped.append(self._built.popitem(last=False)[1].path)
        for path in dropped:
            await asyncio.to_thread(_remove, path)

    async def _build(
        self,
        session_id: str,
        segments: Sequence[SegmentMetadata],
        plan: CallAudioPlan,
        digest: str,
    ) -> Path:
        folder = await self._cache_folder()
        downloads = await self._download_gcs(folder, segments)
        path = folder / f"{session_id}.{digest[:16]}.{os.urandom(4).hex()}.wav"
        try:
            report = await asyncio.to_thread(
                _write_new, path, segments, self._opener(downloads), plan.sample_rate
            )
        finally:
            for download in downloads.values():
                await asyncio.to_thread(_remove, download)
        logger.info(
            f"built the recording of call {session_id}: {report.plan.duration_ms / 1000:.1f} s, "
            f"{len(report.issues)} segment(s) not as their rows say"
        )
        return path

    async def _cache_folder(self) -> Path:
        if self._folder is None:
            made = await asyncio.to_thread(tempfile.mkdtemp, prefix="pipecat-audio-capture-call-")
            self._folder = Path(made)
        return self._folder

    async def _download_gcs(
        self, folder: Path, segments: Sequence[SegmentMetadata]
    ) -> dict[str, Path]:
        """Download the call's ``gs://`` segments into the cache folder, one file each.

        A segment that fails is left out (logged): the build reports it and keeps it silent.
        """
        downloads: dict[str, Path] = {}
        for segment in segments:
            if urlsplit(segment.audio_url).scheme != "gs":
                continue
            path = folder / f"{segment.segment_id}.{os.urandom(4).hex()}.part"
            fd = await asyncio.to_thread(os.open, path, _CREATE_FLAGS, _PRIVATE_FILE_MODE)
            stored = StoredSegment(segment.session_id, segment.segment_id, segment.audio_url)
            try:
                await self._reader.copy_to(stored, fd)
            except (StorageError, OSError) as exc:
                logger.warning(f"segment {segment.segment_id} could not be downloaded: {exc}")
                await asyncio.to_thread(_remove, path)
                continue
            finally:
                os.close(fd)
            downloads[segment.segment_id] = path
        return downloads

    def _opener(self, downloads: dict[str, Path]) -> "_Opener":
        local = local_segment_opener(self._recordings) if self._recordings is not None else None
        return _Opener(local, downloads)


@dataclass(frozen=True)
class _Opener:
    """Opens a segment from the recordings folder, or the download of a ``gs://`` segment."""

    local: SegmentOpener | None
    downloads: dict[str, Path]

    def __call__(self, segment: SegmentMetadata) -> BinaryIO:
        scheme = urlsplit(segment.audio_url).scheme
        if scheme == "gs":
            path = self.downloads.get(segment.segment_id)
            if path is None:
                raise StorageError(f"segment {segment.segment_id} was not downloaded")
            return os.fdopen(os.open(path, _READ_FLAGS), "rb")
        if scheme == "file" and self.local is not None:
            return self.local(segment)
        raise StorageError(f"{scheme or 'scheme-less'} audio is not read here")


def _write_new(
    path: Path, segments: Sequence[SegmentMetadata], opener: _Opener, sample_rate: int
) -> CallAudioReport:
    fd = os.open(path, _CREATE_FLAGS, _PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            return write_call_audio(segments, out, open_segment=opener, sample_rate=sample_rate)
    except BaseException:
        _remove(path)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _digest(segments: Sequence[SegmentMetadata]) -> str:
    """A digest of everything in the rows that changes the recording."""
    hasher = hashlib.sha256()
    for segment in sorted(segments, key=lambda item: item.segment_id):
        fields = (
            segment.segment_id,
            segment.speaker,
            segment.audio_url,
            segment.sample_rate,
            segment.num_channels,
            segment.duration_ms,
            segment.byte_size,
            segment.started_at.isoformat(),
        )
        hasher.update(repr(fields).encode())
    return hasher.hexdigest()
