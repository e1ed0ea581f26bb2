"""The call review web application: the list of calls, one call, and its audio.

Routes:

- ``GET /?page=N``: the calls, newest first, :data:`~pipecat_audio_capture.defaults.SERVE_PAGE_SIZE`
  per page.
- ``GET /sessions/{session_id}``: one call: who spoke when, and the call log with a player per
  turn.
- ``GET /sessions/{session_id}/call.wav``: the whole call as one stereo WAV, user left, bot
  right, with range support (built once and cached: see :mod:`.call_audio`).
- ``GET /audio/{segment_id}``: an indexed segment's audio (see :mod:`.audio`).
- ``GET /static/...``: the stylesheet and the script; ``GET /favicon.ico``: 204, no icon.

Every request passes the access check of :mod:`.security`, and every response carries its
security headers. An id that is not a canonical UUID, or that the index does not hold, is a 404;
a failing index (or GCS or S3 signer) is a 503, logged (the same error at most a few times a minute:
see :mod:`.log_limit`).

Reads run in worker threads, on as many index connections as the index has, so a slow read
holds up only its own request; a call's page reads and draws at most ``max_turns`` turns, and is
rendered in a worker thread too.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import CallAudioError, InvalidIdError, StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.storage.index import MetadataIndex
from pipecat_audio_capture.web.audio import WAV_CONTENT_TYPE, audio_response
from pipecat_audio_capture.web.call_audio import CallAudioCache
from pipecat_audio_capture.web.files import DescriptorResponse
from pipecat_audio_capture.web.log_limit import LogThrottle
from pipecat_audio_capture.web.render import WholeCall, session_page, sessions_page
from pipecat_audio_capture.web.security import access_middleware, security_headers_adder

if TYPE_CHECKING:
    from google.cloud.storage import Client
    from mypy_boto3_s3 import S3Client

STATIC_DIR = Path(__file__).with_name("static")
MAX_PAGE_DIGITS = 9
"""Longest page number accepted: the offset it makes must fit a 64-bit integer."""


def create_app(
    index: MetadataIndex,
    *,
    recordings: Path | None,
    token: str | None = None,
    page_size: int = defaults.SERVE_PAGE_SIZE,
    gcs_client: "Client | None" = None,
    max_turns: int = defaults.SERVE_MAX_TURNS,
    log: LogThrottle | None = None,
    s3_client: "S3Client | None" = None,
    media_origins: tuple[str, ...] = (),
) -> web.Application:
    """Return the call review application, reading an index that the caller opened and closes.

    Binding the address is the caller's business; see :func:`.server.serve`, which also
    refuses to listen beyond loopback without a token.

    Args:
        index: The index to read.
        recordings: The folder ``file://`` audio is served from (nothing outside it is read);
            None serves no local audio.
        token: The access token every request must carry, or None to answer only requests
            addressed to localhost.
        page_size: Calls per page of the list.
        gcs_client: The client whose credentials sign ``gs://`` audio URLs; None uses
            Application Default Credentials.
        max_turns: Most turns a call's page shows.
        log: Where request errors are logged; None makes a throttle of the app's own.
        s3_client: The boto3 client that presigns ``s3://`` audio URLs; None uses boto3's
            default configuration.
        media_origins: Origins the player may load audio from besides this server, GCS and
            AWS: that of an S3-compatible store whose presigned URLs the audio redirects to.

    Whole-call recordings are built into a private temporary folder, removed when the
    application is cleaned up (``AppRunner.cleanup``).
    """
    log = log or LogThrottle()
    calls = CallAudioCache(recordings=recordings, gcs_client=gcs_client)
    views = _Views(index, recordings, page_size, gcs_client, max_turns, s3_client, calls, log)
    errors = _storage_errors(log)
    app = web.Application(middlewares=[access_middleware(token), errors])
    app.on_response_prepare.append(security_headers_adder(media_origins))
    app.on_response_prepare.append(_close_refused)
    app.router.add_get("/", views.sessions)
    app.router.add_get("/sessions/{session_id}", views.session)
    app.router.add_get("/sessions/{session_id}/call.wav", views.call_audio)
    app.router.add_get("/audio/{segment_id}", views.audio)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get("/favicon.ico", _no_icon)

    async def remove_cache(_: web.Application) -> None:
        await calls.close()

    app.on_cleanup.append(remove_cache)
    return app


@dataclass(frozen=True)
class _Views:
    index: MetadataIndex
    recordings: Path | None
    page_size: int
    gcs_client: "Client | None"
    max_turns: int
    s3_client: "S3Client | None"
    calls: CallAudioCache
    log: LogThrottle

    async def sessions(self, request: web.Request) -> web.Response:
        page = _page_number(request)
        # One more than a page tells whether a next page exists.
        rows = await self.index.list_sessions(
            limit=self.page_size + 1, offset=(page - 1) * self.page_size
        )
        if page > 1 and not rows:
            raise web.HTTPNotFound(text=f"404: there is no page {page} of calls")
        return _html(sessions_page(rows[: self.page_size], page, len(rows) > self.page_size))

    async def session(self, request: web.Request) -> web.Response:
        session_id = _uuid_or_404(request.match_info["session_id"])
        # One more than shown tells whether the call has more turns.
        entries = await self.index.call_log(session_id, limit=self.max_turns + 1)
        if not entries:
            raise web.HTTPNotFound(text="404: no such call in this index")
        gaps = await self.index.response_gaps(session_id, limit=self.max_turns)
        segments = await self.index.session_segments(session_id)
        latencies = await self.index.turn_latency(session_id)
        shown = entries[: self.max_turns]
        more = len(entries) > len(shown)
        whole_call = await self._whole_call(segments)
        # A long call takes tens of milliseconds to render: in a worker thread, the other
        # requests are served meanwhile.
        page = await asyncio.to_thread(
            session_page,
            session_id,
            shown,
            gaps,
            more=more,
            parts=_parts_by_turn(segments),
            latencies=latencies,
            whole_call=whole_call,
        )
        return _html(page)

    async def call_audio(self, request: web.Request) -> web.StreamResponse:
        session_id = _uuid_or_404(request.match_info["session_id"])
        segments = await self.index.session_segments(session_id)
        if not segments:
            raise web.HTTPNotFound(text="404: no such call in this index")
        try:
            fd = await self.calls.open(session_id, segments)
        except CallAudioError as exc:
            # One kind for every call: a client walking through calls writes a few lines.
            self.log.warning(
                "call.wav refused", f"not serving the recording of {session_id}: {exc}"
            )
            raise web.HTTPNotFound(text="404: this call cannot be played whole here") from exc
        except OSError as exc:
            raise StorageError(f"cannot build the recording of call {session_id}: {exc}") from exc
        return DescriptorResponse(fd, content_type=WAV_CONTENT_TYPE)

    async def _whole_call(self, segments: Sequence[SegmentMetadata]) -> WholeCall:
        try:
            plan = await self.calls.plan(segments)
        except CallAudioError as exc:
            return WholeCall(problem=str(exc))
        return WholeCall(started_at=plan.started_at)

    async def audio(self, request: web.Request) -> web.StreamResponse:
        meta = await self.index.segment(_uuid_or_404(request.match_info["segment_id"]))
        if meta is None:
            raise web.HTTPNotFound(text="404: no such segment in this index")
        return await audio_response(meta, self.recordings, self.gcs_client, self.s3_client)


def _parts_by_turn(segments: Sequence[SegmentMetadata]) -> dict[str, list[str]]:
    """Each turn's segment ids, in the time order ``session_segments`` returns them."""
    parts: dict[str, list[str]] = {}
    for segment in segments:
        parts.setdefault(segment.turn_id, []).append(segment.segment_id)
    return parts


def _storage_errors(log: LogThrottle) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StorageError as exc:
            # One kind per error text, whatever the path: a client repeating a failing request,
            # or walking through ids, writes a few lines a minute.
            log.error(str(exc), f"{request.method} {request.path} failed: {exc}")
            raise web.HTTPServiceUnavailable(
                text="503: the index or the audio store cannot be reached; the server log says why"
            ) from exc

    return middleware


async def _close_refused(request: web.Request, response: web.StreamResponse) -> None:
    # A refused client keeps no connection: held open idle, it would take one of the server's
    # few slots (see .connections) for the whole idle timeout, for the price of one request.
    if response.status in (web.HTTPUnauthorized.status_code, web.HTTPForbidden.status_code):
        response.force_close()
        # Headers are already prepared when this hook runs: say it to the client too, or it
        # would send its next request on the closed connection.
        response.headers[hdrs.CONNECTION] = "close"


async def _no_icon(request: web.Request) -> web.Response:
    # Browsers ask for it on every page; an empty answer keeps their console free of 404s,
    # where a violation of the Content-Security-Policy would show.
    return web.Response(status=204)


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_PAGE_DIGITS and int(text)):
        raise web.HTTPBadRequest(text="400: page must be a whole number from 1")
    return int(text)


def _uuid_or_404(value: str) -> str:
    try:
        return require_uuid(value)
    except InvalidIdError as exc:
        raise web.HTTPNotFound(text="404: not a known id") from exc


def _html(page: str) -> web.Response:
    return web.Response(text=page, content_type="text/html", charset="utf-8")
