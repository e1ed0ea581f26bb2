"""The maintenance commands of the command-line tool: replay the spool, delete, purge."""

import argparse
import re
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from pipecat_audio_capture.cli_index import CommandError, IndexTarget, open_index
from pipecat_audio_capture.cli_recordings import RECORDINGS_HELP, recordings_folder
from pipecat_audio_capture.replay import replay_spool
from pipecat_audio_capture.retention import delete_session, purge
from pipecat_audio_capture.storage.base import AudioStorage, SessionAudioDeleter
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.local import LocalAudioStorage


class AudioBackend(AudioStorage, SessionAudioDeleter, Protocol):
    """An audio backend that stores segments and deletes sessions (local files or a bucket)."""


_PERIOD = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def add_audio_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that say where a command finds the audio files."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--recordings",
        metavar="DIR",
        type=Path,
        help=RECORDINGS_HELP,
    )
    where.add_argument("--bucket", metavar="NAME", help="GCS bucket holding the audio")
    parser.add_argument("--prefix", default="", help="object prefix in the bucket ('')")


def retention_period(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``90m`` or ``3600s`` (for argparse)."""
    match = _PERIOD.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a period like 30d, 12h, 90m, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def audio_storage(args: argparse.Namespace, target: IndexTarget) -> AudioBackend:
    """The audio backend the options name.

    Raises:
        CommandError: If nothing names it and the index is not a SQLite file to look beside.
    """
    if args.bucket:
        # Imported here: only a bucket needs the gcs extra.
        from pipecat_audio_capture.storage.gcs import GCSAudioStorage

        return GCSAudioStorage(bucket=args.bucket, prefix=args.prefix)
    recordings = recordings_folder(args.recordings, target)
    if recordings is not None:
        return LocalAudioStorage(recordings)
    raise CommandError("say where the audio is: --recordings DIR or --bucket NAME")


async def run_replay(args: argparse.Namespace, target: IndexTarget) -> int:
    """Deliver the spool to the audio backend and the index; 0 when it is empty after."""
    files = audio_storage(args, target)
    async with open_index(target) as index:
        storage = CompositeAudioStorage(files=files, metadata=index)
        report = await replay_spool(args.spool, storage, transcript_store=index)
    print(
        f"replayed {report.segments_stored} segments and {report.transcripts_stored} "
        f"transcripts from {args.spool}; {report.remaining} entries remain"
    )
    for error in report.errors:
        print(f"  {error}")
    return 0 if report.complete else 2


async def run_delete(args: argparse.Namespace, target: IndexTarget) -> int:
    """Delete one session's spool entries, audio and index rows."""
    files = audio_storage(args, target)
    async with open_index(target) as index:
        report = await delete_session(
            args.session_id, audio=files, index=index, spool_dir=args.spool
        )
    print(
        f"deleted session {report.session_id}: {report.audio_objects} audio files, "
        f"{report.segment_rows} segment rows, {report.transcript_rows} transcript rows, "
        f"{report.spool_entries} spool entries"
    )
    return 0


async def run_purge(args: argparse.Namespace, target: IndexTarget) -> int:
    """Delete every session older than the retention period; 2 if any deletion failed."""
    files = audio_storage(args, target)
    async with open_index(target) as index:
        report = await purge(
            older_than=args.older_than, audio=files, index=index, spool_dir=args.spool
        )
    cutoff = f"{report.cutoff:%Y-%m-%d %H:%M} UTC"
    print(f"purged {len(report.deleted)} sessions last active before {cutoff}")
    for session_id, error in report.failed.items():
        print(f"  failed {session_id}: {error} (run purge again to finish)")
    return 2 if report.failed else 0
