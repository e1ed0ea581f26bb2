"""The ``demo`` command: record a simulated call offline and print its call log."""

import argparse
import os
import shlex
import sys
from pathlib import Path

from pipecat_audio_capture import defaults
from pipecat_audio_capture.cli.format import format_call_log, output_width, plural
from pipecat_audio_capture.cli.index import print_latency
from pipecat_audio_capture.cli.invocation import invocation
from pipecat_audio_capture.cli.status import EXIT_ERROR, EXIT_OK
from pipecat_audio_capture.index_access import CommandError


async def run_demo(args: argparse.Namespace) -> int:
    """Record the demo call under ``--out``, print its call log and how to read it again."""
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the folder {out}: {exc.strerror or exc}") from exc
    # Imported here: the demo pulls in the Silero VAD model and the simulated call, which the
    # index commands never need.
    from pipecat_audio_capture.demo.recorded_call import record_demo_call

    result = await record_demo_call(args.out, speed=args.speed)
    width = output_width(os.environ, sys.stdout)
    print(f"\ncall log of session {result.session_id} (from session_call_log):\n")
    print(format_call_log(result.call_log, result.gaps, width=width))
    print_latency(result.call_log, result.latency, width)
    stats = result.stats
    print(
        f"\n{stats.stored} of {plural(stats.recorded, 'segment')} stored "
        f"({stats.bytes_stored / 1000:.1f} kB) under {result.recordings.resolve()}/"
        f"{result.session_id}/, index {result.index_path.resolve()}"
    )
    # Each command on a line of its own, exactly as it runs from this folder in a new shell.
    command = invocation()
    db = shlex.quote(str(result.index_path))
    url = f"http://{defaults.SERVE_HOST}:{defaults.SERVE_PORT}/"
    print("\nread it again:")
    print(f"  {command} show {result.session_id} --db {db}")
    print(f"review it in a browser, then open {url}:")
    print(f"  {command} serve --db {db}")
    return EXIT_OK if stats.stored == stats.recorded else EXIT_ERROR
