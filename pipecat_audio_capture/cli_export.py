"""``pipecat-audio-capture export``: a call's audio and transcript as plain files in a folder.

A turn's WAV is named by its place in the call and its role (``001-user.wav``,
``002-assistant.wav``); ``transcript.json`` and ``transcript.csv`` hold one row per turn with
every call-log field and the names of its files.

The index's read API gives a turn's first segment only, so a turn split into several segments
(``segment_count > 1``) exports that first part, named ``-part1``, and is reported back.

An index row may be hostile, so each WAV is read through
:class:`~pipecat_audio_capture.segment_audio.SegmentAudioReader`: local audio from the recordings
folder, found there by the segment's ids whatever folder the row names, opened once without
following a link; ``gs://`` audio downloaded from its bucket, only the segment's own object. A
turn whose audio is not its own file or object, a link, not a regular file, has several links,
or is missing, is refused and reported on its own while the rest is exported. Every file written
is created new in the export folder (``O_CREAT | O_EXCL | O_NOFOLLOW``): a name that already
exists there, a planted symlink included, is never written through, and a copy that fails
halfway is removed.
"""

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipecat_audio_capture.cli_format import call_log_records, to_json
from pipecat_audio_capture.cli_index import CommandError
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.safe_files import create_new_file, open_folder, write_all
from pipecat_audio_capture.segment_audio import SegmentAudioReader, StoredSegment
from pipecat_audio_capture.storage.index import CallLogEntry, ResponseGap

if TYPE_CHECKING:
    from google.cloud.storage import Client

TRANSCRIPT_JSON = "transcript.json"
TRANSCRIPT_CSV = "transcript.csv"


@dataclass(frozen=True)
class AudioCopy:
    """One WAV file to copy out.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        source: Its first segment, as the index holds it.
        name: Its file name in the export folder.
    """

    turn: int
    entry: CallLogEntry
    source: StoredSegment
    name: str


@dataclass(frozen=True)
class RefusedAudio:
    """A turn whose audio was not exported.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        reason: Why: not the segment's own file or object, a link, not a regular file, several
            links, missing, a failed download, or another scheme.
    """

    turn: int
    entry: CallLogEntry
    reason: str


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Parameters:
        out_dir: The export folder.
        files: Names of the files written there, WAVs in spoken order then the transcripts.
        partial: Turns of several segments of which only the first part was exported.
        refused: Turns whose audio was refused, in spoken order; their transcript rows list no
            audio file.
    """

    out_dir: Path
    files: list[str]
    partial: list[AudioCopy]
    refused: list[RefusedAudio]


async def export_call(
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    out_dir: Path,
    *,
    recordings: Path | None,
    gcs_client: "Client | None" = None,
) -> ExportResult:
    """Copy a call's WAV files and write its transcript files into ``out_dir``.

    What makes the whole export impossible (local audio without a recordings folder, ``gs://``
    audio without the ``gcs`` extra or credentials, a file name already taken in ``out_dir``) is
    found before anything is written. A turn whose WAV cannot be read safely is refused on its
    own (see the module docstring); the rest is exported.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it (not empty).
        gaps: The call's response gaps, as ``MetadataIndex.response_gaps`` returns them.
        out_dir: The folder to write to, created when missing.
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
    planned, refused = _plan(entries, recordings)
    reader = SegmentAudioReader(recordings=recordings, gcs_client=gcs_client)
    await reader.prepare(copy.source.audio_url for copy in planned)
    for name in [copy.name for copy in planned] + [TRANSCRIPT_JSON, TRANSCRIPT_CSV]:
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
            files_of_turn = {copy.turn: [copy.name] for copy in copies}
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
        files=[copy.name for copy in copies] + [TRANSCRIPT_JSON, TRANSCRIPT_CSV],
        partial=[copy for copy in copies if copy.entry.segment_count > 1],
        refused=sorted(refused + unreadable, key=lambda refusal: refusal.turn),
    )


def _wav_name(turn: int, entry: CallLogEntry, digits: int) -> str:
    part = "-part1" if entry.segment_count > 1 else ""
    return f"{turn:0{digits}d}-{entry.role}{part}.wav"


def _plan(
    entries: Sequence[CallLogEntry], recordings: Path | None
) -> tuple[list[AudioCopy], list[RefusedAudio]]:
    """Return the WAVs to copy (``file://`` and ``gs://`` audio) and the turns of another scheme.

    Raises:
        CommandError: For ``file://`` audio without a recordings folder.
    """
    digits = max(3, len(str(len(entries))))
    planned: list[AudioCopy] = []
    refused: list[RefusedAudio] = []
    for turn, entry in enumerate(entries, start=1):
        if entry.audio_url is None or entry.segment_id is None:
            continue
        scheme = urlsplit(entry.audio_url).scheme
        if scheme not in ("file", "gs"):
            reason = f"its audio is neither a file:// nor a gs:// URL: {entry.audio_url}"
            refused.append(RefusedAudio(turn, entry, reason))
            continue
        if scheme == "file" and recordings is None:
            raise CommandError(
                "say which folder holds the recordings: --recordings DIR (WAVs are read from "
                "nowhere else)"
            )
        source = StoredSegment(entry.session_id, entry.segment_id, entry.audio_url)
        planned.append(AudioCopy(turn, entry, source, _wav_name(turn, entry, digits)))
    return planned, refused


async def _copy_wavs(
    planned: list[AudioCopy], reader: SegmentAudioReader, folder: int
) -> tuple[list[AudioCopy], list[RefusedAudio]]:
    """Copy each planned WAV into the export folder; return the copies made and the refusals.

    A copy that fails halfway (a download cut off, a full disk) is removed, so no file of the
    export holds part of a recording.

    Raises:
        OSError: If a copy cannot be created or written.
    """
    copies: list[AudioCopy] = []
    refused: list[RefusedAudio] = []
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
            refused.append(RefusedAudio(copy.turn, copy.entry, str(exc)))
            continue
        copies.append(copy)
    return copies, refused


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
