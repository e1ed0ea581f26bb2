"""Delivering the spool: store every spooled segment and index row, then remove its entry."""

import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import SpoolEntryError, SpoolEntryGoneError
from pipecat_audio_capture.records import TranscriptRecord, TurnLatencyRecord
from pipecat_audio_capture.retry import RetryPolicy, retrying
from pipecat_audio_capture.segment_write import store_segment
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import SegmentStorage, TranscriptStore, TurnLatencyStore

T = TypeVar("T")
RecordT = TypeVar("RecordT")
RecordT_co = TypeVar("RecordT_co", covariant=True)


class _Spooled(Protocol[RecordT_co]):
    """A spool entry read back: what it holds is its ``record``."""

    @property
    def record(self) -> RecordT_co: ...


DEFAULT_REPLAY_RETRY = RetryPolicy(attempts=defaults.REPLAY_ATTEMPTS)
"""Retries of each replay step: a blip is retried, an outage leaves the entry for next time."""


@dataclass
class ReplayReport:
    """What one :func:`replay_spool` run did.

    Parameters:
        segments_stored: Segments whose audio and metadata are now stored; their entries are
            gone.
        transcripts_stored: Transcript rows now stored; their entries are gone.
        segments_failed: Segments that storage still refused; their entries are kept.
        transcripts_failed: Transcript rows the store still refused; their entries are kept.
        transcripts_kept: Transcript entries left in place because no transcript store was given.
        latencies_stored: Latency breakdowns now stored; their entries are gone.
        latencies_failed: Latency breakdowns the store still refused; their entries are kept.
        latencies_kept: Latency entries left in place because no latency store was given.
        rejected: Files in the spool that are not valid entries (corrupt, renamed, symlinks,
            a format outside the limits); left in place, untouched.
        gone: Entries removed between this run's scan and its read: another replay running
            at the same time stored them, or a deletion removed them. Not errors.
        temp_files_removed: Temporary files of interrupted spool writes that were removed.
        errors: One line per failed or rejected entry.
    """

    segments_stored: int = 0
    transcripts_stored: int = 0
    segments_failed: int = 0
    transcripts_failed: int = 0
    transcripts_kept: int = 0
    latencies_stored: int = 0
    latencies_failed: int = 0
    latencies_kept: int = 0
    rejected: int = 0
    gone: int = 0
    temp_files_removed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """Entries and files still in the spool after the run."""
        failed = self.segments_failed + self.transcripts_failed + self.latencies_failed
        return failed + self.transcripts_kept + self.latencies_kept + self.rejected

    @property
    def complete(self) -> bool:
        """Whether everything spooled is now stored and the spool holds nothing else."""
        return self.remaining == 0


async def replay_spool(
    spool_dir: str | os.PathLike[str],
    storage: SegmentStorage,
    transcript_store: TranscriptStore | None = None,
    latency_store: TurnLatencyStore | None = None,
    *,
    retry: RetryPolicy = DEFAULT_REPLAY_RETRY,
    write_timeout_s: float = defaults.WRITE_TIMEOUT_S,
    temp_min_age_s: float = defaults.TEMP_FILE_MIN_AGE_S,
) -> ReplayReport:
    """Store what the spool holds and remove each entry once it is stored.

    A segment's entry is removed only after both its audio and its metadata are stored. Both
    stores are idempotent (one object per ``segment_id``, one row per ``segment_id``; one
    transcript row per session, turn and role; one latency row per session and bot turn), so a
    replay interrupted between the two steps,
    or run twice, or run by two processes at once, never stores anything twice: the next run
    finds the entry and completes it. Each entry is handled on its own: whatever one raises is
    reported for that entry (in ``report.errors`` and a count) and the run goes on with the next.
    An entry that fails stays for the next run; one that is not a valid entry (see
    :mod:`~pipecat_audio_capture.spool_format`) is never read as data, never followed if it is a
    symlink, and never removed; one that another replay took after this run listed it is counted
    in ``gone``, not as an error. Safe to run while bots write to the same spool.

    Args:
        spool_dir: The spool folder (``spool_dir`` of the captures).
        storage: Where audio and metadata go, as for the captures (e.g. a
            ``CompositeAudioStorage``).
        transcript_store: Where transcript rows go (e.g. the metadata index). Without it,
            transcript entries stay in the spool (``transcripts_kept``).
        latency_store: Where latency breakdowns go; by default ``transcript_store`` when it
            stores them too (both indexes do). Without one, latency entries stay in the spool
            (``latencies_kept``).
        retry: Attempts and backoff of each step of each entry.
        write_timeout_s: Longest one attempt may take.
        temp_min_age_s: Temporary files of spool writes older than this are removed first;
            younger ones may belong to a live writer.

    Returns:
        The counts; ``report.complete`` is true when the spool is empty.

    Raises:
        SpoolError: If the spool folder cannot be listed or cleaned.
    """
    spool = Spool(spool_dir)
    report = ReplayReport(temp_files_removed=await spool.recover(min_age_s=temp_min_age_s))
    scan = await spool.scan()
    for path in scan.rejected:
        _reject(report, path, "not a spool entry")
    for path in scan.segments:
        await _replay_segment(spool, path, storage, report, retry, write_timeout_s)
    for path in scan.transcripts:
        if transcript_store is None:
            report.transcripts_kept += 1
        elif await _replay_row(
            spool,
            path,
            spool.read_transcript,
            transcript_store.save_transcript,
            _transcript_what,
            report,
            retry,
            write_timeout_s,
        ):
            report.transcripts_stored += 1
    if latency_store is None and isinstance(transcript_store, TurnLatencyStore):
        latency_store = transcript_store
    for path in scan.latencies:
        if latency_store is None:
            report.latencies_kept += 1
        elif await _replay_row(
            spool,
            path,
            spool.read_latency,
            latency_store.save_turn_latency,
            _latency_what,
            report,
            retry,
            write_timeout_s,
        ):
            report.latencies_stored += 1
    log = logger.info if report.complete else logger.warning
    log(
        f"replayed spool {spool.root}: {report.segments_stored} segments, "
        f"{report.transcripts_stored} transcripts and {report.latencies_stored} latency rows "
        f"stored, {report.remaining} entries remain"
    )
    return report


async def _replay_segment(
    spool: Spool,
    path: Path,
    storage: SegmentStorage,
    report: ReplayReport,
    retry: RetryPolicy,
    write_timeout_s: float,
) -> None:
    entry = await _read(spool.read_segment, path, report)
    if entry is None:
        return
    segment = entry.segment
    try:
        await store_segment(
            storage,
            segment.session_id,
            segment,
            entry.wav,
            policy=retry,
            attempt_timeout_s=write_timeout_s,
            what="spooled segment",
        )
        await spool.remove(path)
    except Exception as exc:
        # Whatever a backend raises, one entry must not stop the others.
        _failed(report, path, exc)
        return
    report.segments_stored += 1


async def _replay_row(
    spool: Spool,
    path: Path,
    read: Callable[[Path], Awaitable[_Spooled[RecordT]]],
    save: Callable[[RecordT], Awaitable[None]],
    describe: Callable[[RecordT], str],
    report: ReplayReport,
    retry: RetryPolicy,
    write_timeout_s: float,
) -> bool:
    """Store one spooled index row and remove its entry; whether it is now stored."""
    entry = await _read(read, path, report)
    if entry is None:
        return False
    record = entry.record
    try:
        await retrying(
            functools.partial(save, record),
            policy=retry,
            attempt_timeout_s=write_timeout_s,
            what=describe(record),
        )
        await spool.remove(path)
    except Exception as exc:
        # Whatever a backend raises, one entry must not stop the others.
        _failed(report, path, exc)
        return False
    return True


def _transcript_what(record: TranscriptRecord) -> str:
    return f"the spooled {record.role} transcript of turn {record.turn_id}"


def _latency_what(record: TurnLatencyRecord) -> str:
    return f"the spooled latency of turn {record.turn_id}"


async def _read(read: Callable[[Path], Awaitable[T]], path: Path, report: ReplayReport) -> T | None:
    """Read one entry; None, with the outcome counted, if there is nothing to store."""
    try:
        return await read(path)
    except SpoolEntryGoneError:
        report.gone += 1
        logger.info(f"{path} was taken by another replay (or deleted) since the scan")
    except SpoolEntryError as exc:
        _reject(report, path, str(exc))
    except Exception as exc:
        # Unreadable for now (permissions, I/O, memory): it stays for the next run.
        _failed(report, path, exc)
    return None


def _failed(report: ReplayReport, path: Path, error: Exception) -> None:
    if path.name.endswith(".segment"):
        report.segments_failed += 1
    elif path.name.endswith(".latency"):
        report.latencies_failed += 1
    else:
        report.transcripts_failed += 1
    report.errors.append(f"{path}: {error}")
    logger.error(f"could not replay {path}; it stays in the spool: {error}")


def _reject(report: ReplayReport, path: Path, why: str) -> None:
    report.rejected += 1
    report.errors.append(f"{path}: {why}")
    logger.error(f"left {path} in the spool untouched: {why}")
