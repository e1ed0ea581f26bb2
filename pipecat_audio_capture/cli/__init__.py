"""The ``pipecat-audio-capture`` command.

It runs the demo, lists calls, reads one, exports it, migrates, and serves calls for review in
a browser.

Run ``pipecat-audio-capture --help`` (or ``python -m pipecat_audio_capture --help``).
Expected failures (a bad id, an unknown call, no index, no server) and usage errors (an unknown
option, a value out of range) print one line on stderr and exit with 2.

The index commands import neither Pipecat nor numpy: they start in a fraction of a second,
without Pipecat's banner. One module per command group: :mod:`.index` (sessions, show,
migrate), :mod:`.export`, :mod:`.maintenance` (replay, delete, purge), :mod:`.demo` and
:mod:`.serve`; :mod:`.parser` holds the grammar.
"""

import asyncio
import io
import os
import sys

from loguru import logger

from pipecat_audio_capture.cli.parser import (
    Command,
    StandaloneCommand,
    apply_where_options,
    build_parser,
)
from pipecat_audio_capture.cli.status import EXIT_ERROR, EXIT_INTERRUPTED, PROG, one_line
from pipecat_audio_capture.errors import AudioCaptureError
from pipecat_audio_capture.index_access import resolve_target

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit code.

    As a console script it owns the process, so it routes the package's log to stderr at
    WARNING and above (migrations and connections log at INFO).

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 2 on a usage error or an expected failure (reported on stderr), 130 on
        Ctrl-C.
    """
    for stream in (sys.stdout, sys.stderr):
        # A path from argv that is not UTF-8 holds surrogates, which must not end in a
        # UnicodeEncodeError when printed back.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        apply_where_options(args)
    except SystemExit as exc:
        # --help and usage errors: argparse has printed what it had to say.
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    logger.remove()
    logger.add(_to_stderr, level="WARNING", format="{message}")
    try:
        if args.standalone:
            standalone: StandaloneCommand = args.command
            return asyncio.run(standalone(args))
        command: Command = args.command
        target = resolve_target(args.db, args.dsn, os.environ)
        return asyncio.run(command(args, target))
    except AudioCaptureError as exc:
        # Driver messages span lines (hints, SQL context); the CLI promises one.
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _to_stderr(message: str) -> None:
    # Looks sys.stderr up on each message (a sink given the stream would keep the one of the
    # first call, which tests replace).
    sys.stderr.write(message)
