"""Running the call review until Ctrl-C: what ``pipecat-audio-capture serve`` does.

:func:`listening` is the server itself, with its limits: a cap on open connections, a deadline
for each one's request head, an idle timeout between requests, and a log that repeated errors
cannot flood (see :mod:`.connections` and :mod:`.log_limit`).
"""

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.index_access import (
    CommandError,
    IndexTarget,
    open_index,
    recordings_folder,
)
from pipecat_audio_capture.web.app import create_app
from pipecat_audio_capture.web.connections import ConnectionGuard, connection_cap
from pipecat_audio_capture.web.log_limit import LogThrottle, throttle_stdlib_loggers
from pipecat_audio_capture.web.security import is_loopback, token_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class ServeOptions:
    """Where and how the call review listens.

    Parameters:
        host: The address to listen on; any but loopback needs ``token``.
        port: The port; 0 picks a free one (the printed URL tells which).
        recordings: The folder local audio is served from. None means the folder of a SQLite
            index (where the demo writes its WAV files), and no local audio for PostgreSQL.
        token: The access token every request must carry, or None.
        max_connections: Most client connections open at once (see
            :data:`~pipecat_audio_capture.defaults.SERVE_MAX_CONNECTIONS`).
        header_timeout_s: Longest a new connection may take to send a complete request head.
        idle_timeout_s: Longest a kept-alive connection may wait for its next request.
        read_connections: Index connections read through side by side.
        s3_endpoint_url: The endpoint of the S3-compatible store ``s3://`` audio is in, whose
            origin the page then allows; None presigns for AWS (or ``$AWS_ENDPOINT_URL_S3``).
    """

    host: str = defaults.SERVE_HOST
    port: int = defaults.SERVE_PORT
    recordings: Path | None = None
    token: str | None = None
    max_connections: int = defaults.SERVE_MAX_CONNECTIONS
    header_timeout_s: float = defaults.SERVE_HEADER_TIMEOUT_S
    idle_timeout_s: float = defaults.SERVE_IDLE_TIMEOUT_S
    read_connections: int = defaults.SERVE_READ_CONNECTIONS
    s3_endpoint_url: str | None = None


@dataclass(frozen=True)
class Listener:
    """A running call review server.

    Parameters:
        port: The port it listens on.
        guard: Its connection guard (how many are open, how many it closed).
        log: Its log throttle.
    """

    port: int
    guard: ConnectionGuard
    log: LogThrottle


@contextlib.asynccontextmanager
async def listening(
    app: web.Application,
    host: str,
    port: int,
    options: ServeOptions,
    *,
    log: LogThrottle | None = None,
) -> AsyncIterator[Listener]:
    """Serve ``app`` on ``host``/``port`` with the limits of ``options`` until the block exits.

    Args:
        app: The application, from :func:`.create_app`.
        host: The address to listen on.
        port: The port; 0 picks a free one.
        options: The limits (``max_connections``, ``header_timeout_s``, ``idle_timeout_s``).
        log: The throttle for the server's log lines (and aiohttp's and asyncio's, while it
            runs); None makes one.

    Raises:
        CommandError: If the address cannot be bound.
    """
    log = log or LogThrottle()
    runner = web.AppRunner(app, keepalive_timeout=options.idle_timeout_s)
    undo_throttle = throttle_stdlib_loggers(log)
    server: asyncio.Server | None = None
    try:
        await runner.setup()
        assert runner.server is not None, "set up above"
        guard = ConnectionGuard(
            runner.server,
            max_connections=connection_cap(options.max_connections),
            header_timeout_s=options.header_timeout_s,
            log=log,
        )
        try:
            server = await asyncio.get_running_loop().create_server(guard, host, port)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}"
            ) from exc
        yield Listener(server.sockets[0].getsockname()[1], guard, log)
    finally:
        if server is not None:
            server.close()
        # Requests under way finish first; what is left (sockets without a request) is cut.
        await runner.cleanup()
        if server is not None:
            guard.close_all()
            await server.wait_closed()
        log.flush()
        undo_throttle()


async def serve(
    target: IndexTarget,
    options: ServeOptions,
    *,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Serve the call review of an index until SIGINT or SIGTERM.

    Args:
        target: The index to read.
        options: Where and how to listen.
        say: Receives the lines that tell the user where the review is.

    Raises:
        CommandError: If the address needs a token and has none, the token is too short, the
            port is out of range or taken, or the index does not exist or has no tables.
        StorageConfigError: If the index cannot be opened.
    """
    problem = token_problem(options.host, options.token)
    if problem:
        raise CommandError(problem)
    if not 0 <= options.port <= 65535:
        raise CommandError(f"--port must be 0..65535, got {options.port}")
    recordings = recordings_folder(options.recordings, target)
    if recordings is None:
        logger.warning("no --recordings folder: file:// audio will not be played")
    if not is_loopback(options.host):
        logger.warning(
            "this is plain HTTP: the token and the recordings cross the network unencrypted; "
            "put a TLS proxy in front, or reach a loopback server through an SSH tunnel"
        )
    async with open_index(target, connections=options.read_connections) as index:
        # A first read fails now, with a clear message, rather than on the first page.
        await index.list_sessions(limit=1)
        log = LogThrottle()
        s3_client, media_origins = await _s3_signer(options.s3_endpoint_url)
        app = create_app(
            index,
            recordings=recordings,
            token=options.token,
            log=log,
            s3_client=s3_client,
            media_origins=media_origins,
        )
        async with listening(app, options.host, options.port, options, log=log) as listener:
            host = f"[{options.host}]" if ":" in options.host else options.host
            say(f"call review of {target} at http://{host}:{listener.port}/")
            if recordings is not None:
                say(f"audio served from {recordings.expanduser().resolve()}")
            if options.token is not None:
                say("open it once with ?token=YOUR_TOKEN; the browser then keeps a cookie")
            say("press Ctrl-C to stop")
            await _until_stopped()


async def _s3_signer(endpoint_url: str | None) -> tuple["S3Client | None", tuple[str, ...]]:
    """Return the client that presigns ``s3://`` audio for ``endpoint_url``, and its origin.

    Raises:
        MissingExtraError: If an endpoint is given and the ``s3`` extra is not installed.
        CommandError: If the endpoint is not an http(s) URL.
    """
    if endpoint_url is None:
        return None, ()
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"--s3-endpoint-url must be an http(s) URL: {endpoint_url!r}")
    # Imported here: only an S3 endpoint needs the s3 extra.
    from pipecat_audio_capture.storage.s3 import make_client

    client = await asyncio.to_thread(make_client, endpoint_url=endpoint_url)
    return client, (f"{parts.scheme}://{parts.netloc}",)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        # Not on Windows: there Ctrl-C stops the server with a KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(number)
