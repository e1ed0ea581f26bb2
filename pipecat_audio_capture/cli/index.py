"""The index commands: ``sessions``, ``show`` and ``migrate``."""

import argparse
import os
import sys

from pipecat_audio_capture.cli.format import (
    call_log_records,
    format_call_log,
    format_sessions,
    format_turn_latency,
    output_width,
    session_records,
    to_json,
)
from pipecat_audio_capture.cli.status import EXIT_OK
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.index_access import (
    CommandError,
    IndexTarget,
    migrate_index,
    open_index,
)
from pipecat_audio_capture.storage.index import (
    CallLogEntry,
    MetadataIndex,
    ResponseGap,
    TurnLatency,
)


async def run_sessions(args: argparse.Namespace, target: IndexTarget) -> int:
    """List the calls, newest first, as a table or JSON."""
    async with open_index(target) as index:
        summaries = await index.list_sessions(limit=args.limit, offset=args.offset)
    if args.json:
        print(to_json(session_records(summaries)))
    elif summaries:
        print(format_sessions(summaries))
    else:
        skipped = f" after the first {args.offset}" if args.offset else ""
        print(f"no sessions{skipped} in {target}")
    return EXIT_OK


async def run_show(args: argparse.Namespace, target: IndexTarget) -> int:
    """Print one call's turns in spoken order, then why each response took its time."""
    session_id = require_uuid(args.session_id, "session id")
    async with open_index(target) as index:
        entries, gaps = await read_call(index, session_id, target)
        latency = await index.turn_latency(session_id)
    if args.json:
        print(to_json(call_log_records(entries, gaps, latency=latency)))
        return EXIT_OK
    width = output_width(os.environ, sys.stdout)
    started = entries[0].occurred_at
    print(f"session {session_id}, started {started:%Y-%m-%d %H:%M:%S} UTC\n")
    print(format_call_log(entries, gaps, width=width))
    print_latency(entries, latency, width)
    return EXIT_OK


def print_latency(
    entries: list[CallLogEntry], latency: list[TurnLatency], width: int | None
) -> None:
    """Print the turn latency table under a call log, if the call has any."""
    if latency:
        print("\nwhy each response took its time (from session_turn_latency):\n")
        print(format_turn_latency(entries, latency, width=width))


async def run_migrate(args: argparse.Namespace, target: IndexTarget) -> int:
    """Create or upgrade the index and print the migrations applied."""
    applied = await migrate_index(target)
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"{target} is up to date")
    return EXIT_OK


async def read_call(
    index: MetadataIndex, session_id: str, target: IndexTarget
) -> tuple[list[CallLogEntry], list[ResponseGap]]:
    """Return a call's call log and response gaps.

    Raises:
        CommandError: If the index holds no turn of the call.
    """
    entries = await index.call_log(session_id)
    if not entries:
        raise CommandError(f"session {session_id} not found in {target}")
    return entries, await index.response_gaps(session_id)
