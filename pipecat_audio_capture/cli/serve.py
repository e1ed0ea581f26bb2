"""The ``serve`` command: the one way from the command line into the review page."""

import argparse
import os

from pipecat_audio_capture.cli.status import EXIT_OK
from pipecat_audio_capture.index_access import IndexTarget


async def run_serve(args: argparse.Namespace, target: IndexTarget) -> int:
    """Serve the call review until Ctrl-C."""
    # Imported here: aiohttp and the pages are needed by this command only.
    from pipecat_audio_capture.web import ServeOptions, serve
    from pipecat_audio_capture.web.security import TOKEN_ENV

    token = args.token or os.environ.get(TOKEN_ENV) or None
    options = ServeOptions(
        args.host, args.port, args.recordings, token, s3_endpoint_url=args.s3_endpoint_url
    )
    await serve(target, options)
    return EXIT_OK
