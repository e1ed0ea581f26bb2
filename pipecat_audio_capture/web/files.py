"""Sending a file from a descriptor opened (and checked) beforehand, with byte ranges."""

import asyncio
import os

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from loguru import logger

from pipecat_audio_capture import defaults


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
        """Send the headers and the bytes asked for.

        aiohttp calls this once, after the handler and the middlewares.
        """
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
    """Return the ``[start, stop)`` bytes to send and whether that is a range (``206``).

    None if the range asked for is not satisfiable.
    """
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
