"""Serving one indexed segment's audio: a local WAV file, or a redirect to a signed GCS or S3 URL.

Only segments found in the index are served, and a local file only if it is the segment's own
file (``{session_id}/{segment_id}.wav``), looked up by those ids under the recordings folder
(whatever folder the index's URL was written with: recordings copied or moved elsewhere still
play), so neither a request nor a row of the index can make the server read anything else (the
index file next to the recordings, for one). The file is opened once, from the recordings
folder down without following a link, checked on that descriptor (a regular file with one link)
and sent from it: swapping it for a symlink or a hard link meanwhile serves nothing else. Only
the WAV itself is ever sent (no pre-compressed ``.gz`` or ``.br`` sibling, whatever
``Accept-Encoding`` asks).
"""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from loguru import logger

from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.playback import open_segment_file, presigned_s3_url, signed_url
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.web.files import DescriptorResponse

if TYPE_CHECKING:
    from google.cloud.storage import Client
    from mypy_boto3_s3 import S3Client

WAV_CONTENT_TYPE = "audio/wav"


async def audio_response(
    meta: SegmentMetadata,
    recordings: Path | None,
    gcs_client: "Client | None",
    s3_client: "S3Client | None" = None,
) -> web.StreamResponse:
    """Return the response that plays a segment.

    A ``file://`` segment is sent with range support (``206 Partial Content`` for a ``Range``
    request), which the browser's player needs to seek. A ``gs://`` segment answers
    ``302 Found`` to a V4 signed URL valid for
    :data:`~pipecat_audio_capture.playback.SIGNED_URL_EXPIRES_S`; the signing runs in a thread,
    as it may call the IAM API. An ``s3://`` segment answers ``302 Found`` to a SigV4 presigned
    URL of the same lifetime.

    Args:
        meta: The segment, as the index holds it.
        recordings: The folder local audio is served from; None serves no local audio.
        gcs_client: The client whose credentials sign, or None for Application Default
            Credentials.
        s3_client: The boto3 client whose credentials and endpoint presign ``s3://`` URLs, or
            None for boto3's default configuration.

    Raises:
        HTTPNotFound: If the audio is not servable from here: a URL naming another file than
            the segment's own, ids that are not UUIDs, a file reached through a link or not a
            regular file with one link, a missing file, or another scheme.
        HTTPFound: The redirect to the signed URL of a ``gs://`` or ``s3://`` segment.
        StorageError: If signing a ``gs://`` or ``s3://`` URL fails.
    """
    scheme = urlsplit(meta.audio_url).scheme
    if scheme == "gs":
        url = await asyncio.to_thread(signed_url, meta.audio_url, client=gcs_client)
        raise web.HTTPFound(url)
    if scheme == "s3":
        url = await asyncio.to_thread(presigned_s3_url, meta.audio_url, client=s3_client)
        raise web.HTTPFound(url)
    if scheme != "file":
        raise _refused(meta, f"{scheme or 'scheme-less'} audio URLs are not served")
    if recordings is None:
        raise _refused(meta, "no recordings folder is configured (serve --recordings DIR)")
    try:
        fd = await asyncio.to_thread(
            open_segment_file,
            meta.audio_url,
            session_id=meta.session_id,
            segment_id=meta.segment_id,
            root=recordings,
        )
    except StorageError as exc:
        raise _refused(meta, str(exc)) from exc
    return DescriptorResponse(fd, content_type=WAV_CONTENT_TYPE)


def _refused(meta: SegmentMetadata, reason: str) -> web.HTTPNotFound:
    logger.warning(f"not serving the audio of segment {meta.segment_id}: {reason}")
    return web.HTTPNotFound(text="404: no playable audio for this segment")
