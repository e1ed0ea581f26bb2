"""The maintenance commands of the command-line tool: replay the spool, delete, purge.

``delete`` and ``purge`` show what would go with ``--dry-run``. Otherwise they ask first when
someone can answer (standard input is a terminal) unless ``--yes`` is given; run from a script,
cron or a pipe they proceed, as they always did, so scheduled retention keeps working.
"""

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipecat_audio_capture.cli.format import plural
from pipecat_audio_capture.cli.recordings import RECORDINGS_HELP
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.index_access import (
    CommandError,
    IndexTarget,
    open_index,
    recordings_folder,
)
from pipecat_audio_capture.storage.base import (
    AudioStorage,
    SessionAudioCounter,
    SessionAudioDeleter,
)
from pipecat_audio_capture.storage.composite import CompositeAudioStorage
from pipecat_audio_capture.storage.local import LocalAudioStorage

if TYPE_CHECKING:
    from pipecat_audio_capture.retention import DeletionReport


class AudioBackend(AudioStorage, SessionAudioDeleter, SessionAudioCounter, Protocol):
    """An audio backend that stores, counts and deletes sessions (local files or a bucket)."""


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
    where.add_argument("--s3-bucket", metavar="NAME", help="S3 bucket holding the audio")
    parser.add_argument("--prefix", help="object prefix in the GCS bucket ('')")
    parser.add_argument("--s3-prefix", metavar="PREFIX", help="key prefix in the S3 bucket ('')")
    parser.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="endpoint of an S3-compatible store (default: AWS, or $AWS_ENDPOINT_URL_S3)",
    )


def add_deletion_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--dry-run`` and ``--yes`` to a command that deletes."""
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )
    parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation on a terminal"
    )


def audio_storage(args: argparse.Namespace, target: IndexTarget) -> AudioBackend:
    """The audio backend the options name.

    Raises:
        CommandError: If nothing names it and the index is not a SQLite file to look beside,
            or an option of one bucket kind comes with the other kind's bucket.
    """
    _check_bucket_options(args)
    if args.s3_bucket:
        # Imported here: only an S3 bucket needs the s3 extra.
        from pipecat_audio_capture.storage.s3 import S3AudioStorage

        return S3AudioStorage(
            bucket=args.s3_bucket, prefix=args.s3_prefix or "", endpoint_url=args.s3_endpoint_url
        )
    if args.bucket:
        # Imported here: only a bucket needs the gcs extra.
        from pipecat_audio_capture.storage.gcs import GCSAudioStorage

        return GCSAudioStorage(bucket=args.bucket, prefix=args.prefix or "")
    recordings = recordings_folder(args.recordings, target)
    if recordings is not None:
        return LocalAudioStorage(recordings)
    raise CommandError(
        "say where the audio is: --recordings DIR, --bucket NAME or --s3-bucket NAME"
    )


def _check_bucket_options(args: argparse.Namespace) -> None:
    """Refuse a prefix or endpoint that the bucket given would silently ignore.

    Raises:
        CommandError: If ``--prefix`` comes without ``--bucket``, or ``--s3-prefix`` or
            ``--s3-endpoint-url`` without ``--s3-bucket``.
    """
    if args.prefix is not None and not args.bucket:
        raise CommandError("--prefix is the GCS bucket's: give --bucket, or --s3-prefix for S3")
    for option, value in (
        ("--s3-prefix", args.s3_prefix),
        ("--s3-endpoint-url", args.s3_endpoint_url),
    ):
        if value is not None and not args.s3_bucket:
            raise CommandError(f"{option} needs --s3-bucket")


async def run_replay(args: argparse.Namespace, target: IndexTarget) -> int:
    """Deliver the spool to the audio backend and the index; 0 when it is empty after.

    Raises:
        CommandError: If the spool folder does not exist.
    """
    # Imported here: replaying builds segment metadata with the capture module, which loads
    # Pipecat; the other commands start without it.
    from pipecat_audio_capture.replay import replay_spool

    spool: Path = args.spool
    check_spool(spool)
    files = audio_storage(args, target)
    async with open_index(target) as index:
        storage = CompositeAudioStorage(files=files, metadata=index)
        report = await replay_spool(spool, storage, transcript_store=index)
    remaining = report.remaining
    print(
        f"replayed {plural(report.segments_stored, 'segment')} and "
        f"{plural(report.transcripts_stored, 'transcript')} from {spool}; "
        f"{plural(remaining, 'entry', 'entries')} {'remains' if remaining == 1 else 'remain'}"
    )
    for error in report.errors:
        print(f"  {error}")
    return 0 if report.complete else 2


async def run_delete(args: argparse.Namespace, target: IndexTarget) -> int:
    """Delete one session's spool entries, audio and index rows, after a dry run or a question.

    Raises:
        InvalidIdError: If the session id is not a UUID (checked before anything is opened).
        CommandError: If nothing of the session exists, the spool folder does not, or the
            question was not answered yes.
    """
    # Imported here, as in run_purge: retention reads the spool, whose format loads numpy; the
    # read commands start without it.
    from pipecat_audio_capture.retention import delete_session, plan_delete_session

    session_id = require_uuid(args.session_id, "session id")
    spool: Path | None = args.spool
    check_spool(spool)
    files = audio_storage(args, target)
    async with open_index(target) as index:
        plan = await plan_delete_session(session_id, audio=files, index=index, spool_dir=spool)
        if plan.empty:
            raise CommandError(
                f"session {plan.session_id} not found: no rows in {target}, no audio in "
                f"{_audio_place(args, files)}"
                + (f", no entries in the spool {spool}" if spool else "")
            )
        if args.dry_run:
            print(f"would delete session {plan.session_id}: {_counts(plan)}")
            return 0
        _confirm(args, f"delete session {plan.session_id}: {_counts(plan)}?")
        report = await delete_session(plan.session_id, audio=files, index=index, spool_dir=spool)
    print(f"deleted session {report.session_id}: {_counts(report)}")
    return 0


async def run_purge(args: argparse.Namespace, target: IndexTarget) -> int:
    """Delete every session older than the retention period; 2 if any deletion failed.

    Raises:
        CommandError: If the spool folder does not exist, or the question was not answered yes.
    """
    from pipecat_audio_capture.retention import plan_purge, purge

    spool: Path | None = args.spool
    check_spool(spool)
    files = audio_storage(args, target)
    # One cutoff for the dry run or question and the deletion: a session that ages past it
    # while the question waits is not deleted unasked.
    cutoff = datetime.now(UTC) - args.older_than
    before = f"last active before {cutoff:%Y-%m-%d %H:%M} UTC"
    async with open_index(target) as index:
        if args.dry_run:
            plan = await plan_purge(older_than=cutoff, audio=files, index=index, spool_dir=spool)
            for counted in plan.deleted:
                print(f"would delete session {counted.session_id}: {_counts(counted)}")
            for session_id, error in plan.failed.items():
                print(f"  could not count {session_id}: {error}")
            print(f"would purge {plural(len(plan.deleted), 'session')} {before}")
            return 2 if plan.failed else 0
        sessions = await index.sessions_older_than(cutoff)
        if not sessions:
            print(f"purged no sessions: none {before}")
            return 0
        _confirm(args, f"delete {plural(len(sessions), 'session')} {before}?")
        report = await purge(older_than=cutoff, audio=files, index=index, spool_dir=spool)
    print(f"purged {plural(len(report.deleted), 'session')} {before}")
    for session_id, error in report.failed.items():
        print(f"  failed {session_id}: {error} (run purge again to finish)")
    return 2 if report.failed else 0


def check_spool(spool: Path | None) -> None:
    """Check that the spool folder named by ``--spool`` exists.

    A mistyped folder would replay nothing, or leave a deleted call's spooled entries to come
    back at the next replay, and both would look like success.

    Raises:
        CommandError: If ``spool`` is given and is not a folder.
    """
    if spool is not None and not spool.is_dir():
        raise CommandError(
            f"no spool folder at {spool}: check --spool (a capture creates the folder when it "
            "first spools something)"
        )


def _confirm(args: argparse.Namespace, question: str) -> None:
    """Ask ``question`` on a terminal unless ``--yes``; without a terminal, go on.

    Raises:
        CommandError: If the answer is not yes.
    """
    if args.yes or not sys.stdin.isatty():
        return
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if _read_answer().strip().lower() not in {"y", "yes"}:
        raise CommandError("not confirmed: nothing was deleted")


def _read_answer() -> str:
    """Read one line from the terminal; Ctrl-C or end of input is no answer."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    # asyncio.run's Ctrl-C handler only cancels the task, which cannot run while this read
    # blocks: Python's own handler interrupts the read instead.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if on_main_thread else None
    try:
        return sys.stdin.readline()
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return ""
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _counts(report: "DeletionReport") -> str:
    return ", ".join(
        [
            plural(report.audio_objects, "audio file"),
            plural(report.segment_rows, "segment row"),
            plural(report.transcript_rows, "transcript row"),
            plural(report.spool_entries, "spool entry", "spool entries"),
        ]
    )


def _audio_place(args: argparse.Namespace, files: AudioBackend) -> str:
    if isinstance(files, LocalAudioStorage):
        return str(files.root)
    if args.s3_bucket:
        return f"s3://{args.s3_bucket}/{args.s3_prefix or ''}"
    return f"gs://{args.bucket}/{args.prefix or ''}"
