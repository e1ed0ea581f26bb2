"""Serving one indexed segment's audio: a local WAV file, or a redirect to a signed GCS URL.

Only segments found in the index are served, and a local file only if it is the segment's own
file (``{session_id}/{segment_id}.wav``) under the recordings folder, so neither a request nor a
row of the index can make the server read anything else (the index file next to the
recordings, for one). The file is opened once, from the recordings folder down without following
a link, checked on that descriptor (a regular file with one link) and sent from it: swapping it
for a symlink or a hard link meanwhile serves nothing else. Only the WAV itself is ever sent (no
pre-compressed ``.gz`` or ``.br`` sibling, whatever ``Accept-Encoding`` asks).
"""

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.playback import file_url_path, open_local, signed_url
from pipecat_audio_capture.records import SegmentMetadata

if TYPE_CHECKING:
    from google.cloud.storage import Client

WAV_CONTENT_TYPE = "audio/wav"


async def audio_response(
    meta: SegmentMetadata, recordings: Path | None, gcs_client: "Client | None"
) -> web.StreamResponse:
    """Return the response that plays a segment.

    A ``file://`` segment is sent with range support (``206 Partial Content`` for a ``Range``
    request), which the browser's player needs to seek. A ``gs://`` segment answers
    ``302 Found`` to a V4 signed URL valid for
    :data:`~pipecat_audio_capture.playback.SIGNED_URL_EXPIRES_S`; the signing runs in a thread,
    as it may call the IAM API.

    Args:
        meta: The segment, as the index holds it.
        recordings: The folder local audio is served from; None serves no local audio.
        gcs_client: The client whose credentials sign, or None for Application Default
            Credentials.

    Raises:
        HTTPNotFound: If the audio is not servable from here: local audio outside
            ``recordings``, reached through a link, not the segment's own file or not a regular
            file with one link, a missing file, or another scheme.
        HTTPFound: The redirect to the signed URL of a ``gs://`` segment.
        StorageError: If signing a ``gs://`` URL fails.
    """
    scheme = urlsplit(meta.audio_url).scheme
    if scheme == "gs":
        url = await asyncio.to_thread(signed_url, meta.audio_url, client=gcs_client)
        raise web.HTTPFound(url)
    if scheme != "file":
        raise _refused(meta, f"{scheme or 'scheme-less'} audio URLs are not served")
    if recordings is None:
        raise _refused(meta, "no recordings folder is configured (serve --recordings DIR)")
    try:
        path = file_url_path(meta.audio_url)
        if (path.parent.name, path.name) != (meta.session_id, f"{meta.segment_id}.wav"):
            raise _refused(meta, f"{path} is not the segment's own recording")
        fd = await asyncio.to_thread(open_local, meta.audio_url, root=recordings)
    except StorageError as exc:
        raise _refused(meta, str(exc)) from exc
    return DescriptorResponse(fd, content_type=WAV_CONTENT_TYPE)


class DescriptorResponse(web.StreamResponse):
    """Sends a file from a descriptor opened beforehand, whole or one byte range, then closes it.

    ``Range: bytes=...`` (one range) answers ``206`` with those bytes, an unsatisfiable range
    ``416``. No validators (ETag, Last-Modified) are sent, so an ``If-Range`` request never
    matches and gets the whole file, as RFC 9110 asks. The reads run in worker threads.
    """

    def __init__(self, fd: int, *, content_type: str) -> None:
        """Take ownership of ``fd``: it is closed once sent, or when the response is dropped."""
        super().__init__()
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.content_type = content_type

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        """Send the headers and the bytes asked for (aiohttp calls this once, after the
        handler and the middlewares)."""
        try:
            return await self._send(request)
        finally:
            self._file.close()

    async def _send(self, request: BaseRequest) -> AbstractStreamWriter | None:
        size = os.fstat(self._file.fileno()).st_size
        self.headers[hdrs.ACCEPT_RANGES] = "bytes"
        span = _byte_span(request, size)
        if span is None:
            self.set_status(web.HTTPRequestRangeNotSatisfiable.status_code)
            self.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
            self.content_length = 0
            return await super().prepare(request)
        start, stop, partial = span
        if partial:
            self.set_status(web.HTTPPartialContent.status_code)
            self.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{size}"
        self.content_length = stop - start
        writer = await super().prepare(request)
        if request.method != hdrs.METH_HEAD:
            await self._write_span(start, stop)
        return writer

    async def _write_span(self, start: int, stop: int) -> None:
        offset = start
        while offset < stop:
            count = min(defaults.SERVE_AUDIO_CHUNK_BYTES, stop - offset)
            chunk = await asyncio.to_thread(os.pread, self._file.fileno(), count, offset)
            if not chunk:
                # The file shrank after its size was sent: the body cannot be completed, so the
                # connection closes rather than leave the client waiting for the rest.
                logger.warning(
                    f"an audio file shrank while it was sent; {stop - offset} bytes short"
                )
                self.force_close()
                return
            await self.write(chunk)
            offset += len(chunk)


def _byte_span(request: BaseRequest, size: int) -> tuple[int, int, bool] | None:
    """Return the ``[start, stop)`` bytes to send and whether that is a range (``206``), or None
    if the range asked for is not satisfiable."""
    if hdrs.RANGE not in request.headers or hdrs.IF_RANGE in request.headers:
        return 0, size, False
    try:
        asked = request.http_range
    except ValueError:
        return None
    start = 0 if asked.start is None else asked.start
    if start < 0:  # a suffix: the last -start bytes
        start = max(0, size + start)
    stop = size if asked.stop is None else min(asked.stop, size)
    return (start, stop, True) if start < stop else None


def _refused(meta: SegmentMetadata, reason: str) -> web.HTTPNotFound:
    logger.warning(f"not serving the audio of segment {meta.segment_id}: {reason}")
    return web.HTTPNotFound(text="404: no playable audio for this segment")
