"""Running the call review until Ctrl-C: what ``pipecat-audio-capture serve`` does."""

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.cli_index import CommandError, IndexTarget, SQLiteTarget, open_index
from pipecat_audio_capture.web.app import create_app
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
        s3_endpoint_url: The endpoint of the S3-compatible store ``s3://`` audio is in, whose
            origin the page then allows; None presigns for AWS (or ``$AWS_ENDPOINT_URL_S3``).
    """

    host: str = defaults.SERVE_HOST
    port: int = defaults.SERVE_PORT
    recordings: Path | None = None
    token: str | None = None
    s3_endpoint_url: str | None = None


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
    recordings = options.recordings
    if recordings is None and isinstance(target, SQLiteTarget):
        recordings = target.path.parent
    if recordings is None:
        logger.warning("no --recordings folder: file:// audio will not be played")
    if not is_loopback(options.host):
        logger.warning(
            "this is plain HTTP: the token and the recordings cross the network unencrypted; "
            "put a TLS proxy in front, or reach a loopback server through an SSH tunnel"
        )
    async with open_index(target) as index:
        # A first read fails now, with a clear message, rather than on the first page.
        await index.list_sessions(limit=1)
        s3_client, media_origins = await _s3_signer(options.s3_endpoint_url)
        app = create_app(
            index,
            recordings=recordings,
            token=options.token,
            s3_client=s3_client,
            media_origins=media_origins,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, options.host, options.port)
            try:
                await site.start()
            except OSError as exc:
                raise CommandError(
                    f"cannot listen on {options.host} port {options.port}: {exc.strerror or exc}"
                ) from exc
            port = runner.addresses[0][1]
            host = f"[{options.host}]" if ":" in options.host else options.host
            say(f"call review of {target} at http://{host}:{port}/")
            if recordings is not None:
                say(f"audio served from {recordings.expanduser().resolve()}")
            if options.token is not None:
                say("open it once with ?token=YOUR_TOKEN; the browser then keeps a cookie")
            say("press Ctrl-C to stop")
            await _until_stopped()
        finally:
            await runner.cleanup()


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
