"""``pipecat-audio-capture export``: a call's audio and transcript as plain files in a folder.

A turn's WAV is named by its place in the call and its role (``001-user.wav``,
``002-assistant.wav``); ``transcript.json`` and ``transcript.csv`` hold one row per turn with
every call-log field and the names of its files.

The index's read API gives a turn's first segment only, so a turn split into several segments
(``segment_count > 1``) exports that first part, named ``-part1``, and is reported back.

The index says where each WAV is, and an index row may be hostile, so a WAV is read only from
inside the recordings folder, opened once without following a link and checked on that
descriptor (:func:`~pipecat_audio_capture.playback.open_local`): a turn whose file is elsewhere,
a link, not a regular file, has several links, or is missing, is refused and reported on its
own while the rest is exported. Every file written is created new in the export folder
(``O_CREAT | O_EXCL | O_NOFOLLOW``): a name that already exists there, a planted symlink
included, is never written through.
"""

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipecat_audio_capture.cli_format import call_log_records, to_json
from pipecat_audio_capture.cli_index import CommandError, IndexTarget, SQLiteTarget
from pipecat_audio_capture.errors import StorageError
from pipecat_audio_capture.playback import open_local
from pipecat_audio_capture.safe_files import (
    copy_descriptor,
    create_new_file,
    open_folder,
    write_all,
)
from pipecat_audio_capture.storage.index import CallLogEntry, ResponseGap

TRANSCRIPT_JSON = "transcript.json"
TRANSCRIPT_CSV = "transcript.csv"


@dataclass(frozen=True)
class AudioCopy:
    """One WAV file to copy out.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        source: The stored WAV's ``file://`` URL, as the index holds it.
        name: Its file name in the export folder.
    """

    turn: int
    entry: CallLogEntry
    source: str
    name: str


@dataclass(frozen=True)
class RefusedAudio:
    """A turn whose audio was not exported.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        reason: Why: outside the recordings folder, a link, not a regular file, several links,
            missing, or not a local file.
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


def recordings_folder(given: Path | None, target: IndexTarget) -> Path | None:
    """The folder WAVs are read from: ``given``, else the folder of a SQLite index, else None."""
    if given is None and isinstance(target, SQLiteTarget):
        return target.path.parent
    return given


def export_call(
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    out_dir: Path,
    *,
    recordings: Path | None,
) -> ExportResult:
    """Copy a call's WAV files and write its transcript files into ``out_dir``.

    What makes the whole export impossible (``gs://`` audio, no recordings folder, a file name
    already taken in ``out_dir``) is found before anything is written. A turn whose WAV cannot
    be read safely is refused on its own (see the module docstring); the rest is exported.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it (not empty).
        gaps: The call's response gaps, as ``MetadataIndex.response_gaps`` returns them.
        out_dir: The folder to write to, created when missing.
        recordings: The folder the WAVs must be in; None when there is none (then a call with
            local audio cannot be exported).

    Raises:
        CommandError: If a turn's audio is in GCS, local audio has no recordings folder, a
            file to write already exists in ``out_dir``, or ``out_dir`` cannot be written.
    """
    planned, refused = _plan(entries, recordings)
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
            copies, unreadable = _copy_wavs(planned, recordings, folder)
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
    """Return the WAVs to copy (``file://`` audio) and the turns refused for another scheme.

    Raises:
        CommandError: For ``gs://`` audio, or ``file://`` audio without a recordings folder.
    """
    digits = max(3, len(str(len(entries))))
    planned: list[AudioCopy] = []
    refused: list[RefusedAudio] = []
    for turn, entry in enumerate(entries, start=1):
        if entry.audio_url is None:
            continue
        scheme = urlsplit(entry.audio_url).scheme
        if scheme == "gs":
            raise CommandError(_gcs_advice(turn, entry.audio_url))
        if scheme != "file":
            reason = f"its audio is not a local file:// URL: {entry.audio_url}"
            refused.append(RefusedAudio(turn, entry, reason))
            continue
        if recordings is None:
            raise CommandError(
                "say which folder holds the recordings: --recordings DIR (WAVs are read from "
                "nowhere else)"
            )
        planned.append(AudioCopy(turn, entry, entry.audio_url, _wav_name(turn, entry, digits)))
    return planned, refused


def _gcs_advice(turn: int, audio_url: str) -> str:
    # GCSAudioStorage only uploads: the package cannot read an object back yet.
    folder = audio_url.rsplit("/", 1)[0]
    return (
        f"turn {turn}: cannot export {audio_url}: only file:// audio can be exported for now; "
        f"copy the call's audio with `gcloud storage cp '{folder}/*' DIR` (Google Cloud CLI) "
        "and read its transcript with `pipecat-audio-capture show --json`"
    )


def _copy_wavs(
    planned: list[AudioCopy], recordings: Path | None, folder: int
) -> tuple[list[AudioCopy], list[RefusedAudio]]:
    """Copy each planned WAV into the export folder; return the copies made and the refusals.

    Raises:
        OSError: If a copy cannot be created or written.
    """
    copies: list[AudioCopy] = []
    refused: list[RefusedAudio] = []
    if recordings is None:  # then _plan planned nothing
        return copies, refused
    for copy in planned:
        try:
            source = open_local(copy.source, root=recordings)
        except StorageError as exc:
            refused.append(RefusedAudio(copy.turn, copy.entry, str(exc)))
            continue
        try:
            target = create_new_file(folder, copy.name)
            try:
                copy_descriptor(source, target)
            finally:
                os.close(target)
        finally:
            os.close(source)
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
