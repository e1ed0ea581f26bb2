"""``pipecat-audio-capture export``: a call's audio and transcript as plain files in a folder.

A turn's WAV is named by its place in the call and its role (``001-user.wav``,
``002-assistant.wav``); every part of a turn split into several segments is exported, as
``NNN-role-partK.wav`` in the order they were spoken. ``call.wav`` is the whole call in stereo
(user left, bot right; see :mod:`~pipecat_audio_capture.call_audio`), built from the segments
just exported, so ``gs://`` audio is downloaded once and the call holds exactly the per-turn
files' audio. ``transcript.json`` and ``transcript.csv`` hold one row per turn with every
call-log field and the names of its files.

An index row may be hostile, so each WAV is read through
:class:`~pipecat_audio_capture.segment_audio.SegmentAudioReader`: local audio from the recordings
folder, found there by the segment's ids whatever folder the row names, opened once without
following a link; ``gs://`` audio downloaded from its bucket, only the segment's own object. A
segment whose audio is not its own file or object, a link, not a regular file, has several
links, or is missing, is refused and reported on its own (and is silent in ``call.wav``) while
the rest is exported. Every file written is created new in the export folder
(``O_CREAT | O_EXCL | O_NOFOLLOW``): a name that already exists there, a planted symlink
included, is never written through, and a copy that fails halfway is removed.
"""

import argparse
import asyncio
import csv
import io
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from loguru import logger

from pipecat_audio_capture.cli.format import call_log_records, plural, to_json
from pipecat_audio_capture.cli.index import read_call
from pipecat_audio_capture.cli.status import EXIT_ERROR, EXIT_OK, PROG
from pipecat_audio_capture.errors import CallAudioError, StorageError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.index_access import (
    CommandError,
    IndexTarget,
    open_index,
    recordings_folder,
)
from pipecat_audio_capture.records import SegmentMetadata
from pipecat_audio_capture.safe_files import create_new_file, open_folder, write_all
from pipecat_audio_capture.segment_audio import SegmentAudioReader, StoredSegment
from pipecat_audio_capture.storage.index import CallLogEntry, ResponseGap

if TYPE_CHECKING:
    from google.cloud.storage import Client

    from pipecat_audio_capture.call_audio import SegmentIssue

TRANSCRIPT_JSON = "transcript.json"
TRANSCRIPT_CSV = "transcript.csv"
CALL_WAV = "call.wav"
CALL_AUDIO_MODULE = "pipecat_audio_capture.call_audio"

_SPEAKER_OF_ROLE = {"user": "user", "assistant": "bot"}
_SILENCED = ("refused", "unreadable")
"""Kinds of :class:`~pipecat_audio_capture.call_audio.SegmentIssue` that leave a segment's audio
out of ``call.wav`` (the others play it, trimmed, padded or cut where its row says)."""


@dataclass(frozen=True)
class AudioCopy:
    """One WAV file to copy out: one segment of a turn.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        source: The segment, as the index holds it.
        name: Its file name in the export folder.
        part: Its 1-based place among the turn's segments; None for a turn of one segment.
    """

    turn: int
    entry: CallLogEntry
    source: StoredSegment
    name: str
    part: int | None = None


@dataclass(frozen=True)
class RefusedAudio:
    """A segment whose audio was not exported.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        reason: Why: not the segment's own file or object, a link, not a regular file, several
            links, missing, a failed download, or another scheme.
        part: Its 1-based place among the turn's segments; None for a turn of one segment.
    """

    turn: int
    entry: CallLogEntry
    reason: str
    part: int | None = None


@dataclass(frozen=True)
class CallAudioIssue:
    """A segment that does not play in ``call.wav`` exactly as its row says.

    Parameters:
        turn: The 1-based number of its turn in spoken order; None for a segment the call log
            did not list when it was read (a call still being written).
        part: Its 1-based place among the turn's segments; None for a turn of one segment.
        issue: What the builder reported.
    """

    turn: int | None
    part: int | None
    issue: "SegmentIssue"

    @property
    def silenced(self) -> bool:
        """Whether the segment's audio is left out of ``call.wav`` (refused or unreadable)."""
        return self.issue.kind in _SILENCED


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Parameters:
        out_dir: The export folder.
        files: Names of the files written there: the turns' WAVs in spoken order, ``call.wav``,
            then the transcripts.
        refused: Segments whose audio was refused, in spoken order; their transcript rows do
            not list them.
        call_audio_issues: Segments that do not play in ``call.wav`` as their rows say.
        call_audio_error: Why ``call.wav`` was not written although some of the call's audio
            was exported; None when it was written, or when no audio was exported (the call has
            none, or every segment was refused).
    """

    out_dir: Path
    files: list[str]
    refused: list[RefusedAudio]
    call_audio_issues: list[CallAudioIssue]
    call_audio_error: str | None


async def export_call(
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    out_dir: Path,
    *,
    segments: Sequence[SegmentMetadata],
    recordings: Path | None,
    gcs_client: "Client | None" = None,
) -> ExportResult:
    """Copy a call's WAV files, build its ``call.wav`` and write its transcripts into ``out_dir``.

    What makes the whole export impossible (local audio without a recordings folder, ``gs://``
    audio without the ``gcs`` extra or credentials, a file name already taken in ``out_dir``) is
    found before anything is written. A segment whose WAV cannot be read safely is refused on
    its own (see the module docstring); the rest is exported. ``call.wav`` is written when any
    of the call's audio was exported.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it (not empty).
        gaps: The call's response gaps, as ``MetadataIndex.response_gaps`` returns them.
        out_dir: The folder to write to, created when missing.
        segments: Every segment of the call, as ``MetadataIndex.session_segments`` returns them.
        recordings: The folder local WAVs are read from; None when there is none (then a call
            with local audio cannot be exported).
        gcs_client: The client ``gs://`` audio is downloaded with; None builds one from
            Application Default Credentials when the call has ``gs://`` audio.

    Raises:
        CommandError: If local audio has no recordings folder, a file to write already exists
            in ``out_dir``, or ``out_dir`` cannot be written.
        StorageConfigError: If ``gs://`` audio needs the ``gcs`` extra or credentials that are
            missing.
    """
    planned, refused = _plan(entries, segments, recordings)
    reader = SegmentAudioReader(recordings=recordings, gcs_client=gcs_client)
    await reader.prepare(copy.source.audio_url for copy in planned)
    names = [copy.name for copy in planned] + ([CALL_WAV] if segments else [])
    for name in [*names, TRANSCRIPT_JSON, TRANSCRIPT_CSV]:
        if os.path.lexists(out_dir / name):
            raise CommandError(
                f"{out_dir / name} already exists: export writes new files only; give a new "
                "or empty folder"
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        folder = open_folder(out_dir)
        try:
            copies, unreadable = await _copy_wavs(planned, reader, folder)
            call_files: list[str] = []
            issues: list[CallAudioIssue] = []
            error = None
            if copies:
                places: dict[str, AudioCopy | _Refusal] = {
                    copy.source.segment_id: copy for copy in planned
                }
                places.update({refusal.source.segment_id: refusal for refusal in refused})
                issues, error = await _write_call_wav(segments, copies, places, folder)
                call_files = [] if error else [CALL_WAV]
            files_of_turn: dict[int, list[str]] = {}
            for copy in copies:
                files_of_turn.setdefault(copy.turn, []).append(copy.name)
            records = [
                {**record, "audio_files": files_of_turn.get(record["turn"], [])}
                for record in call_log_records(entries, gaps)
            ]
            _write_new(folder, TRANSCRIPT_JSON, to_json(records) + "\n")
            _write_new(folder, TRANSCRIPT_CSV, _csv_text(records))
        finally:
            os.close(folder)
    except OSError as exc:
        raise CommandError(f"cannot write the export to {out_dir}: {exc}") from exc
    return ExportResult(
        out_dir=out_dir,
        files=[copy.name for copy in copies] + call_files + [TRANSCRIPT_JSON, TRANSCRIPT_CSV],
        refused=[refusal.refused for refusal in sorted(refused + unreadable, key=_spoken)],
        call_audio_issues=issues,
        call_audio_error=error,
    )


@dataclass(frozen=True)
class _Refusal:
    """A planned segment refused before or while it was copied."""

    source: StoredSegment
    refused: RefusedAudio

    @property
    def turn(self) -> int:
        return self.refused.turn

    @property
    def part(self) -> int | None:
        return self.refused.part


def _spoken(refusal: _Refusal) -> tuple[int, int]:
    return refusal.turn, refusal.part or 0


def _segment_key(turn_id: str | None, segment_id: str | None, speaker: str) -> tuple[str, str]:
    """What groups a turn's segments, as ``session_call_log`` groups them."""
    return (turn_id or segment_id or "", speaker)


def _plan(
    entries: Sequence[CallLogEntry], segments: Sequence[SegmentMetadata], recordings: Path | None
) -> tuple[list[AudioCopy], list[_Refusal]]:
    """Return the WAVs to copy (``file://`` and ``gs://`` audio) and the segments of another scheme.

    Raises:
        CommandError: For ``file://`` audio without a recordings folder.
    """
    parts_of: dict[tuple[str, str], list[SegmentMetadata]] = {}
    for segment in sorted(segments, key=lambda s: (s.started_at, s.segment_id)):
        key = _segment_key(segment.turn_id, segment.segment_id, segment.speaker)
        parts_of.setdefault(key, []).append(segment)
    digits = max(3, len(str(len(entries))))
    planned: list[AudioCopy] = []
    refused: list[_Refusal] = []
    for turn, entry in enumerate(entries, start=1):
        if entry.audio_url is None or entry.segment_id is None:
            continue
        speaker = _SPEAKER_OF_ROLE[entry.role]
        sources = [
            StoredSegment(entry.session_id, part.segment_id, part.audio_url)
            for part in parts_of.get(_segment_key(entry.turn_id, entry.segment_id, speaker), [])
        ] or [StoredSegment(entry.session_id, entry.segment_id, entry.audio_url)]
        for number, source in enumerate(sources, start=1):
            part = number if len(sources) > 1 else None
            suffix = f"-part{part}" if part else ""
            name = f"{turn:0{digits}d}-{entry.role}{suffix}.wav"
            scheme = urlsplit(source.audio_url).scheme
            if scheme not in ("file", "gs"):
                reason = f"its audio is neither a file:// nor a gs:// URL: {source.audio_url}"
                refused.append(_Refusal(source, RefusedAudio(turn, entry, reason, part)))
                continue
            if scheme == "file" and recordings is None:
                raise CommandError(
                    "say which folder holds the recordings: --recordings DIR (WAVs are read "
                    "from nowhere else)"
                )
            planned.append(AudioCopy(turn, entry, source, name, part))
    return planned, refused


async def _copy_wavs(
    planned: list[AudioCopy], reader: SegmentAudioReader, folder: int
) -> tuple[list[AudioCopy], list[_Refusal]]:
    """Copy each planned WAV into the export folder; return the copies made and the refusals.

    A copy that fails halfway (a download cut off, a full disk) is removed, so no file of the
    export holds part of a recording.

    Raises:
        OSError: If a copy cannot be created or written.
    """
    copies: list[AudioCopy] = []
    refused: list[_Refusal] = []
    for copy in planned:
        target = create_new_file(folder, copy.name)
        try:
            try:
                await reader.copy_to(copy.source, target)
            finally:
                os.close(target)
        except BaseException as exc:
            os.unlink(copy.name, dir_fd=folder)
            if not isinstance(exc, StorageError):
                raise
            refusal = RefusedAudio(copy.turn, copy.entry, str(exc), copy.part)
            refused.append(_Refusal(copy.source, refusal))
            continue
        copies.append(copy)
    return copies, refused


async def _write_call_wav(
    segments: Sequence[SegmentMetadata],
    copies: list[AudioCopy],
    places: Mapping[str, AudioCopy | _Refusal],
    folder: int,
) -> tuple[list[CallAudioIssue], str | None]:
    """Build ``call.wav`` from the copies just written; return its issues, or why it failed.

    A file that could not be built (no segment can be placed) is removed.

    Raises:
        OSError: If ``call.wav`` cannot be created or written.
    """
    # Imported here: numpy and soxr are for this file only, not for the other commands.
    from pipecat_audio_capture.call_audio import write_call_audio

    exported = {copy.source.segment_id: copy.name for copy in copies}

    def open_copy(segment: SegmentMetadata) -> BinaryIO:
        name = exported.get(segment.segment_id)
        if name is None:
            raise StorageError("its audio was refused")
        return _open_own_copy(folder, name)

    target = create_new_file(folder, CALL_WAV)
    try:
        with os.fdopen(target, "wb") as out:
            report = await asyncio.to_thread(
                write_call_audio, segments, out, open_segment=open_copy
            )
    except BaseException as exc:
        os.unlink(CALL_WAV, dir_fd=folder)
        if not isinstance(exc, CallAudioError):
            raise
        return [], str(exc)
    issues = []
    for issue in report.issues:
        place = places.get(issue.segment_id)
        issues.append(
            CallAudioIssue(place.turn if place else None, place.part if place else None, issue)
        )
    return issues, None


def _open_own_copy(folder: int, name: str) -> BinaryIO:
    """Open a WAV this export wrote in ``folder``, refusing anything put there in its place.

    Raises:
        StorageError: If it is no longer a regular file of one link.
        OSError: If it cannot be opened (a link, for one).
    """
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=folder)
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(fd)
        raise StorageError(f"{name} was replaced in the export folder; it is not read")
    return os.fdopen(fd, "rb")


def _write_new(folder: int, name: str, text: str) -> None:
    fd = create_new_file(folder, name)
    try:
        write_all(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _csv_text(records: list[dict[str, Any]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in records)
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


async def run_export(args: argparse.Namespace, target: IndexTarget) -> int:
    """Export one call into a folder and report what was left out."""
    session_id = require_uuid(args.session_id, "session id")
    async with open_index(target) as index:
        entries, gaps = await read_call(index, session_id, target)
        segments = await index.session_segments(session_id)
    recordings = recordings_folder(args.recordings, target)
    # The builder logs each segment's issue; they are printed below, with their turns, instead.
    logger.disable(CALL_AUDIO_MODULE)
    try:
        result = await export_call(
            entries, gaps, args.out, segments=segments, recordings=recordings
        )
    finally:
        logger.enable(CALL_AUDIO_MODULE)
    return report_export(result)


def report_export(result: ExportResult) -> int:
    """Print what an export wrote and what it left out; return the exit code.

    A segment left out of a turn's files or silent in ``call.wav``, or a ``call.wav`` that
    could not be built, is an error (exit 2); one trimmed, padded or cut in ``call.wav`` a
    warning.
    """
    for refusal in result.refused:
        print(
            f"{PROG}: error: {_turn_label(refusal.turn, refusal.part)}: not exported: "
            f"{refusal.reason}",
            file=sys.stderr,
        )
    issues = result.call_audio_issues
    for issue in issues:
        detail = issue.issue
        print(
            f"{PROG}: warning: {CALL_WAV}: {_turn_label(issue.turn, issue.part)} "
            f"({detail.speaker} segment {detail.segment_id}): {detail.kind}: {detail.detail}",
            file=sys.stderr,
        )
    written = plural(len(result.files), "file")
    print(f"exported {written} to {result.out_dir}: {', '.join(result.files)}")
    errors = []
    silenced = sum(issue.silenced for issue in issues)
    if issues:
        summary = (
            f"{CALL_WAV}: {plural(len(issues), 'segment')} not played as indexed, "
            f"{silenced} of them silent"
        )
        if silenced:
            errors.append(summary)
        else:
            print(f"{PROG}: warning: {summary}", file=sys.stderr)
    if result.refused:
        turns = len({refusal.turn for refusal in result.refused})
        errors.append(f"the audio of {plural(turns, 'turn')} was refused; the rest was exported")
    if result.call_audio_error is not None:
        errors.append(f"{CALL_WAV} not written: {result.call_audio_error}")
    for error in errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return EXIT_ERROR if errors else EXIT_OK


def _turn_label(turn: int | None, part: int | None) -> str:
    label = "a segment outside the call log" if turn is None else f"turn {turn}"
    return label if part is None else f"{label} part {part}"
