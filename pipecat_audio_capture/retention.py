"""Deleting recordings: one session everywhere, or every session past a retention period.

Order of deletion, for each session: its spool entries, then its audio, then its index rows.
The index is the list :func:`purge` works from, so its rows go last: if anything before fails,
the session is still listed and a re-run finds it and finishes. Every step is idempotent
(deleting what is already gone does nothing), so re-running after a partial failure is safe.
Audio is found by the session's folder or prefix, not through the index, so audio whose metadata
was never indexed is deleted too; spool entries go first so a later replay cannot bring the
session back.

:func:`plan_delete_session` and :func:`plan_purge` are their dry runs: they count what would go and
remove nothing.
"""

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger

from pipecat_audio_capture.errors import AudioCaptureError, InvalidArgumentError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.spool import Spool
from pipecat_audio_capture.storage.base import SessionAudioCounter, SessionAudioDeleter
from pipecat_audio_capture.storage.index import (
    DeletedRows,
    MetadataIndex,
    SessionRetention,
    SessionRowCounter,
    as_utc,
)


@dataclass(frozen=True)
class DeletionReport:
    """What deleting one session removed.

    Parameters:
        session_id: UUID of the session.
        spool_entries: Spooled segments, transcript rows and latency rows removed.
        audio_objects: WAV files, or bucket object generations, removed.
        segment_rows: Index rows of segments removed.
        transcript_rows: Index rows of transcripts removed.
        latency_rows: Index rows of latency breakdowns removed.
    """

    session_id: str
    spool_entries: int
    audio_objects: int
    segment_rows: int
    transcript_rows: int
    latency_rows: int = 0

    @property
    def empty(self) -> bool:
        """Whether nothing of the session was (or would be) removed."""
        counts = (self.spool_entries, self.audio_objects, self.segment_rows, self.transcript_rows)
        return not any(counts)


@dataclass
class PurgeReport:
    """What one :func:`purge` run did.

    Parameters:
        cutoff: Sessions whose last audio or transcript was before this were deleted (UTC).
        deleted: One report per session deleted.
        failed: Sessions whose deletion failed, with the error; a re-run retries them.
    """

    cutoff: datetime
    deleted: list[DeletionReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def delete_session(
    session_id: str,
    *,
    audio: SessionAudioDeleter,
    index: SessionRetention | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> DeletionReport:
    """Delete a session's spool entries, audio and index rows, in that order.

    Call it once the call has ended: a capture still running could store more afterwards.

    Args:
        session_id: UUID of the session.
        audio: Where its audio is (``LocalAudioStorage``, ``GCSAudioStorage``, or a
            ``CompositeAudioStorage`` over one of them).
        index: Where its rows are (``PostgresAudioMetaStorage``, ``SQLiteAudioMetaStorage``);
            None when nothing is indexed.
        spool_dir: The spool folder, if captures use one.

    Returns:
        What was removed; all zeros when the session was already gone.

    Raises:
        InvalidIdError: If ``session_id`` is not a UUID (before anything is touched).
        AudioCaptureError: If a step fails; the steps before it are done, the ones after are
            not, and a re-run completes them.
    """
    session = require_uuid(session_id, "session_id")
    spooled = await Spool(spool_dir).delete_session(session) if spool_dir is not None else 0
    objects = await audio.delete_session(session)
    rows = await index.delete_session(session) if index is not None else DeletedRows(0, 0)
    report = _report(session, spooled, objects, rows)
    logger.info(f"deleted session {session}: {report}")
    return report


async def plan_delete_session(
    session_id: str,
    *,
    audio: SessionAudioCounter,
    index: SessionRowCounter | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> DeletionReport:
    """Return what :func:`delete_session` would remove now, removing nothing (its dry run).

    Args:
        session_id: UUID of the session.
        audio: Where its audio is.
        index: Where its rows are; None when nothing is indexed.
        spool_dir: The spool folder, if captures use one.

    Raises:
        InvalidIdError: If ``session_id`` is not a UUID.
        AudioCaptureError: If a backend cannot be listed.
    """
    session = require_uuid(session_id, "session_id")
    spooled = await Spool(spool_dir).count_session(session) if spool_dir is not None else 0
    objects = await audio.count_session(session)
    rows = await index.count_session(session) if index is not None else DeletedRows(0, 0)
    return _report(session, spooled, objects, rows)


async def plan_purge(
    *,
    older_than: timedelta | datetime,
    audio: SessionAudioCounter,
    index: MetadataIndex,
    spool_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> PurgeReport:
    """Return what :func:`purge` would delete now, deleting nothing (its dry run).

    Takes the arguments of :func:`purge`. The report's ``deleted`` holds what each session would
    lose; ``failed`` the sessions that could not be counted.

    Raises:
        InvalidArgumentError: If the period is negative.
        StorageError: If the cutoff is naive or the index cannot list the sessions.
    """

    async def count(session: str) -> DeletionReport:
        return await plan_delete_session(session, audio=audio, index=index, spool_dir=spool_dir)

    return await _each_old_session(PurgeReport(cutoff=_cutoff(older_than, now)), index, count)


async def purge(
    *,
    older_than: timedelta | datetime,
    audio: SessionAudioDeleter,
    index: SessionRetention,
    spool_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete every session whose last audio or transcript is older than the retention period.

    Sessions are found through the index, oldest first, and deleted one by one as by
    :func:`delete_session`; one that fails is reported in ``failed`` and the others go on.
    A session that exists only in the spool (nothing of it was ever indexed) is not found here:
    it waits for a replay, after which the next purge finds it.

    Args:
        older_than: The retention period (``timedelta(days=30)``), or the cutoff itself (an
            aware ``datetime``).
        audio: Where the audio is.
        index: Where the rows are; it lists the sessions.
        spool_dir: The spool folder, if captures use one.
        now: The current time, for a period (defaults to the clock).

    Returns:
        The cutoff, the sessions deleted and those that failed.

    Raises:
        InvalidArgumentError: If the period is negative.
        StorageError: If the cutoff is naive or the index cannot list the sessions.
    """

    async def delete(session: str) -> DeletionReport:
        return await delete_session(session, audio=audio, index=index, spool_dir=spool_dir)

    report = await _each_old_session(PurgeReport(cutoff=_cutoff(older_than, now)), index, delete)
    logger.info(
        f"purged {len(report.deleted)} sessions older than {report.cutoff.isoformat()}, "
        f"{len(report.failed)} failed"
    )
    return report


async def _each_old_session(
    report: PurgeReport,
    index: SessionRetention,
    step: Callable[[str], Awaitable[DeletionReport]],
) -> PurgeReport:
    """Run ``step`` on each session older than the report's cutoff, oldest first.

    A session whose step fails goes to ``failed`` and the others go on.
    """
    for session in await index.sessions_older_than(report.cutoff):
        try:
            report.deleted.append(await step(session))
        except AudioCaptureError as exc:
            report.failed[session] = str(exc)
            logger.error(f"session {session} failed; a re-run will retry it: {exc}")
    return report


def _report(session: str, spooled: int, objects: int, rows: DeletedRows) -> DeletionReport:
    return DeletionReport(
        session_id=session,
        spool_entries=spooled,
        audio_objects=objects,
        segment_rows=rows.segments,
        transcript_rows=rows.transcripts,
        latency_rows=rows.latencies,
    )


def _cutoff(older_than: timedelta | datetime, now: datetime | None) -> datetime:
    """Return the purge cutoff in UTC: a period back from ``now``, or the cutoff given.

    Raises:
        InvalidArgumentError: If the period is negative.
        StorageError: If the cutoff is naive.
    """
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgumentError(f"older_than must not be negative, got {older_than}")
        return as_utc((now or datetime.now(UTC)) - older_than, "cutoff")
    return as_utc(older_than, "cutoff")
