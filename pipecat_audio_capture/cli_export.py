"""``pipecat-audio-capture export``: a call's audio and transcript as plain files in a folder.

A turn's WAV is named by its place in the call and its role (``001-user.wav``,
``002-assistant.wav``); ``transcript.json`` and ``transcript.csv`` hold one row per turn with
every call-log field and the names of its files.

The index's read API gives a turn's first segment only, so a turn split into several segments
(``segment_count > 1``) exports that first part, named ``-part1``, and is reported back.
"""

import csv
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pipecat_audio_capture.cli_format import call_log_records, to_json
from pipecat_audio_capture.cli_index import CommandError
from pipecat_audio_capture.storage.index import CallLogEntry, ResponseGap

TRANSCRIPT_JSON = "transcript.json"
TRANSCRIPT_CSV = "transcript.csv"


@dataclass(frozen=True)
class AudioCopy:
    """One WAV file to copy out.

    Parameters:
        turn: The turn's 1-based number in spoken order.
        entry: The turn's call-log row.
        source: The stored WAV.
        name: Its file name in the export folder.
    """

    turn: int
    entry: CallLogEntry
    source: Path
    name: str


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Parameters:
        out_dir: The export folder.
        files: Names of the files written there, WAVs in spoken order then the transcripts.
        partial: Turns of several segments of which only the first part was exported.
    """

    out_dir: Path
    files: list[str]
    partial: list[AudioCopy]


def export_call(
    entries: Sequence[CallLogEntry], gaps: Sequence[ResponseGap], out_dir: Path
) -> ExportResult:
    """Copy a call's WAV files and write its transcript files into ``out_dir``.

    Every source file is checked before anything is written, so a call whose audio cannot be
    read leaves no half export. Files of the same names in ``out_dir`` are replaced.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it (not empty).
        gaps: The call's response gaps, as ``MetadataIndex.response_gaps`` returns them.
        out_dir: The folder to write to, created when missing.

    Raises:
        CommandError: If a turn's audio is not a readable local file, or ``out_dir`` cannot be
            written.
    """
    digits = max(3, len(str(len(entries))))
    copies = [
        AudioCopy(
            turn=turn,
            entry=entry,
            source=_local_source(turn, entry.audio_url),
            name=_wav_name(turn, entry, digits),
        )
        for turn, entry in enumerate(entries, start=1)
        if entry.audio_url is not None
    ]
    files_of_turn = {copy.turn: [copy.name] for copy in copies}
    records = [
        {**record, "audio_files": files_of_turn.get(record["turn"], [])}
        for record in call_log_records(entries, gaps)
    ]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for copy in copies:
            shutil.copyfile(copy.source, out_dir / copy.name)
        (out_dir / TRANSCRIPT_JSON).write_text(to_json(records) + "\n", encoding="utf-8")
        _write_csv(out_dir / TRANSCRIPT_CSV, records)
    except OSError as exc:
        raise CommandError(f"cannot write the export to {out_dir}: {exc}") from exc
    return ExportResult(
        out_dir=out_dir,
        files=[copy.name for copy in copies] + [TRANSCRIPT_JSON, TRANSCRIPT_CSV],
        partial=[copy for copy in copies if copy.entry.segment_count > 1],
    )


def _wav_name(turn: int, entry: CallLogEntry, digits: int) -> str:
    part = "-part1" if entry.segment_count > 1 else ""
    return f"{turn:0{digits}d}-{entry.role}{part}.wav"


def _local_source(turn: int, audio_url: str) -> Path:
    """Return the existing local file of a turn's ``file://`` audio URL.

    Raises:
        CommandError: For another scheme (``gs://`` included) or a missing file.
    """
    parts = urlsplit(audio_url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = Path(url2pathname(parts.path))
        if not path.is_file():
            raise CommandError(f"turn {turn}: its audio file is missing: {path}")
        return path
    if parts.scheme == "gs":
        # GCSAudioStorage only uploads: the package cannot read an object back yet.
        folder = audio_url.rsplit("/", 1)[0]
        raise CommandError(
            f"turn {turn}: cannot export {audio_url}: only file:// audio can be exported for now; "
            f"copy the call's audio with `gcloud storage cp '{folder}/*' DIR` (Google Cloud CLI) "
            "and read its transcript with `pipecat-audio-capture show --json`"
        )
    raise CommandError(f"turn {turn}: cannot export {audio_url}: not a local file:// URL")


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in records)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)
