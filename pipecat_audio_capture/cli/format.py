"""Text tables and JSON-ready records of the index's read-side views.

:func:`format_call_log` is what ``pipecat-audio-capture show`` prints, and what the offline
demo prints at the end of its call.
"""

import json
import re
import shutil
import sys
import textwrap
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, TextIO

from pipecat_audio_capture.display import format_clock, format_size, response_gap_by_turn
from pipecat_audio_capture.storage.index import (
    CallLogEntry,
    ResponseGap,
    SessionSummary,
    TurnLatency,
)

TEXT_WIDTH = 60
"""Transcripts wider than this wrap onto more lines, so the audio column stays in view."""

MIN_COLUMN_WIDTH = 8
"""Narrowest a column gets when a table is fitted to the terminal."""

JSON_MS_DIGITS = 1
"""Decimals of millisecond values in JSON output: 0.1 ms, finer than any sample period matters."""

_SEPARATOR = "  "


class _Wrapper(textwrap.TextWrapper):
    """Wraps at spaces, and after ``-``, ``+`` and ``/`` (``audio+transcript``, URLs)."""

    wordsep_re = re.compile(r"(\s+|(?<=[-+/])(?=[^\s/]))")


def format_sessions(summaries: Sequence[SessionSummary]) -> str:
    """Return one aligned row per call: start, length, turns, talk times, interruptions, size."""
    headers = [
        "SESSION",
        "STARTED (UTC)",
        "LENGTH",
        "TURNS",
        "USER TALK",
        "BOT TALK",
        "INTERRUPTIONS",
        "SIZE",
    ]
    rows = [
        [
            summary.session_id,
            f"{summary.started_at:%Y-%m-%d %H:%M:%S}",
            format_clock((summary.ended_at - summary.started_at).total_seconds()),
            str(summary.turns),
            f"{summary.user_talk_ms / 1000:.1f} s",
            f"{summary.bot_talk_ms / 1000:.1f} s",
            str(summary.interruptions),
            format_size(summary.bytes),
        ]
        for summary in summaries
    ]
    return render_table(headers, rows, right=range(2, len(headers)))


def format_call_log(
    entries: list[CallLogEntry], gaps: list[ResponseGap] | None = None, *, width: int | None = None
) -> str:
    """Return a call's turns as an aligned table, in the order they were spoken.

    Columns: turn number, time since the first turn started, role, duration of the audio,
    the bot's response gap (only when ``gaps`` is given), which side flagged the turn as cut
    short (and how much bot audio went unplayed), the transcript (wrapped at
    :data:`TEXT_WIDTH`) and the audio URL.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it.
        gaps: The call's response gaps, as ``MetadataIndex.response_gaps`` returns them.
        width: Fit the table in this many columns (None for no limit): when it is wider, each
            audio URL goes on a line of its own under its turn and the flag and text columns
            wrap narrower (down to :data:`MIN_COLUMN_WIDTH`).
    """
    headers = ["#", "AT", "ROLE", "DURATION"]
    right = {0, 1, 3}
    if gaps is not None:
        right.add(len(headers))
        headers.append("GAP")
    headers += ["INTERRUPTED", "TEXT", "AUDIO"]
    gap_of = response_gap_by_turn(gaps or [])
    rows = []
    for number, entry in enumerate(entries, start=1):
        row = [
            str(number),
            format_clock((entry.occurred_at - entries[0].occurred_at).total_seconds()),
            entry.role,
            _seconds(entry.duration_ms),
        ]
        if gaps is not None:
            row.append(_seconds(gap_of.get(entry.turn_id)) if entry.role == "assistant" else "")
        row += [
            _interruption(entry),
            "(no transcript)" if entry.text is None else entry.text,
            entry.audio_url or "(no audio)",
        ]
        rows.append(row)
    text_column = len(headers) - 2
    # When it is too narrow for the audio URLs beside the text, each goes on a line of its own
    # under its turn, and the flag and text columns wrap to fit what is left.
    return _fitted_table(
        headers,
        rows,
        right=right,
        width=width,
        note="audio",
        wrap={text_column: TEXT_WIDTH},
        shrink=(text_column - 1, text_column),
    )


LATENCY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ENDPOINTING", "endpointing_wait_ms"),
    ("STT", "transcription_ms"),
    ("TURN DETECT", "turn_detection_ms"),
    ("LLM", "llm_inference_ms"),
    ("TTS", "speech_synthesis_ms"),
)
"""The main stages ``show`` prints for each response, by header: end-of-speech wait,
transcription, turn detection, LLM time to first token, TTS time to first audio."""


def format_turn_latency(
    entries: Sequence[CallLogEntry], latency: Sequence[TurnLatency], *, width: int | None = None
) -> str:
    """Return why each response took its time: one row per bot turn of ``session_turn_latency``.

    Columns: the bot turn's number in the call log (``-`` for a breakdown stored under a turn
    the call log does not hold), the whole wait, the main stages (:data:`LATENCY_COLUMNS`; ``-``
    for a stage that did not happen, as in a greeting), and the slowest single part with who
    spent it.

    Args:
        entries: The call log, as ``MetadataIndex.call_log`` returns it (for turn numbers).
        latency: The call's rows, as ``MetadataIndex.turn_latency`` returns them.
        width: Fit the table in this many columns (None for no limit): when it is wider, each
            slowest part goes on a line of its own under its turn.
    """
    number_of = {
        entry.turn_id: number
        for number, entry in enumerate(entries, start=1)
        if entry.role == "assistant"
    }
    headers = ["#", "TOTAL", *(header for header, _ in LATENCY_COLUMNS), "SLOWEST"]
    rows = [
        [
            str(number_of.get(row.turn_id, "-")),
            _seconds(row.total_ms),
            *(_stage_seconds(getattr(row, column)) for _, column in LATENCY_COLUMNS),
            slowest_stage(row),
        ]
        for row in latency
    ]
    # When it is too narrow for the slowest part beside the numbers, that goes on a line of its
    # own under its turn, as the call log's audio URLs do.
    return _fitted_table(headers, rows, right=range(len(headers) - 1), width=width, note="slowest")


def _fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int],
    width: int | None,
    note: str,
    wrap: Mapping[int, int] | None = None,
    shrink: Collection[int] = (),
) -> str:
    """Render a table that fits ``width`` by moving its last column under each row.

    When the table is wider than ``width``, the last column moves under each row as
    ``{note}: {cell}``, the ``shrink`` columns wrapping to fit what is left.
    """
    table = render_table(headers, rows, right=right, wrap=wrap)
    if width is None or max(len(line) for line in table.splitlines()) <= width:
        return table
    return render_table(
        headers[:-1],
        [row[:-1] for row in rows],
        right=right,
        wrap=wrap,
        width=width,
        shrink=shrink,
        notes=[f"{note}: {row[-1]}" for row in rows],
    )


def slowest_stage(row: TurnLatency) -> str:
    """Return a response's largest part: ``llm_inference 0.81 s (OpenAILLMService#0)``."""
    spent = max(
        (stage.duration_ms for stage in row.stages if stage.stage == row.slowest_stage),
        default=None,
    )
    took = "" if spent is None else f" {_seconds(spent)}"
    return f"{row.slowest_stage}{took} ({row.slowest_owner})"


def session_records(summaries: Sequence[SessionSummary]) -> list[dict[str, Any]]:
    """Return the calls as JSON-ready dicts (ISO 8601 timestamps, milliseconds to 0.1 ms)."""
    return [_json_ready(asdict(summary)) for summary in summaries]


def call_log_records(
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    *,
    latency: Sequence[TurnLatency] | None = None,
) -> list[dict[str, Any]]:
    """Return a call's turns as JSON-ready dicts.

    Each holds ``turn`` (its 1-based number in spoken order), every call-log field (timestamps in
    ISO 8601, milliseconds to 0.1 ms), and ``response_gap_ms``: for a bot turn, how long the
    caller waited for it. Given ``latency``, each also holds ``latency``: for a bot turn with a
    row in ``session_turn_latency``, that row's fields (``stages`` as a list, its
    ``session_id`` and ``turn_id`` left out: the turn's own), else None.
    """
    gap_of = response_gap_by_turn(gaps)
    latency_of = {row.turn_id: row for row in latency or ()}
    records = []
    for number, entry in enumerate(entries, start=1):
        bot = entry.role == "assistant"
        record = {
            "turn": number,
            **asdict(entry),
            "response_gap_ms": gap_of.get(entry.turn_id) if bot else None,
        }
        if latency is not None:
            row = latency_of.get(entry.turn_id or "") if bot else None
            record["latency"] = None if row is None else _latency_record(row)
        records.append(_json_ready(record))
    return records


def _latency_record(row: TurnLatency) -> dict[str, Any]:
    record = asdict(row)
    del record["session_id"], record["turn_id"]
    record["stages"] = [_json_ready(stage) for stage in record["stages"]]
    return _json_ready(record)


def output_width(environ: Mapping[str, str], stream: TextIO) -> int | None:
    """Return the width to fit tables in: ``$COLUMNS``, else the terminal's, else None.

    Output that goes to a file or a pipe is not cut to a guessed width (set ``COLUMNS`` for
    that), so a script's ``grep`` still finds a whole line.
    """
    columns = environ.get("COLUMNS", "").strip()
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    if stream.isatty():
        return shutil.get_terminal_size().columns
    return None


def to_json(records: list[dict[str, Any]]) -> str:
    """Return records as indented JSON, non-ASCII text kept readable."""
    return json.dumps(records, indent=2, ensure_ascii=False)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    wrap: Mapping[int, int] | None = None,
    width: int | None = None,
    shrink: Collection[int] = (),
    notes: Sequence[str] | None = None,
) -> str:
    """Return rows as columns two spaces apart under upper-case headers.

    Args:
        headers: The column titles.
        rows: The cells, one list per row, as many as ``headers``.
        right: Columns aligned right (numbers).
        wrap: Columns whose cells wrap at a width, by column; a wrapped row takes more lines,
            blank in the other columns.
        width: The widest a line may be; None for no limit.
        shrink: Columns that wrap narrower when the table is wider than ``width``, sharing what
            the other columns leave, none below :data:`MIN_COLUMN_WIDTH` or its header.
        notes: One line per row, printed under it from the second column on (wrapped at
            ``width``).
    """
    wrap = dict(wrap or {})
    if width is not None:
        wrap.update(_fitted(headers, rows, wrap, width, shrink))
    lines_of_rows = [
        [
            (_Wrapper(wrap[column]).wrap(cell) or [""]) if column in wrap else [cell]
            for column, cell in enumerate(row)
        ]
        for row in rows
    ]
    widths = [len(header) for header in headers]
    for row in lines_of_rows:
        for column, lines in enumerate(row):
            widths[column] = max(widths[column], *(len(line) for line in lines))

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(widths[column]) if column in right else cell.ljust(widths[column])
            for column, cell in enumerate(cells)
        )
        return _SEPARATOR.join(padded).rstrip()

    indent = " " * (widths[0] + len(_SEPARATOR))
    note_wrapper = _Wrapper(
        max(MIN_COLUMN_WIDTH, (width or sys.maxsize) - len(indent)),
        initial_indent=indent,
        subsequent_indent=indent,
    )
    out = [line(headers)]
    for number, row in enumerate(lines_of_rows):
        height = max(len(lines) for lines in row)
        for index in range(height):
            out.append(line([lines[index] if index < len(lines) else "" for lines in row]))
        if notes is not None:
            out += note_wrapper.wrap(notes[number])
    return "\n".join(out)


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def _stage_seconds(ms: float) -> str:
    # The view holds 0 for a stage that did not happen (a greeting has no transcription).
    return _seconds(ms) if ms else "-"


def _interruption(entry: CallLogEntry) -> str:
    sides = [
        side
        for side, flagged in (
            ("audio", entry.audio_interrupted),
            ("transcript", entry.transcript_interrupted),
        )
        if flagged
    ]
    mark = "+".join(sides)
    if entry.unplayed_ms:
        mark += f" ({entry.unplayed_ms / 1000:.2f} s unplayed)"
    return mark


def _fitted(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    wrap: Mapping[int, int],
    width: int,
    shrink: Collection[int],
) -> dict[int, int]:
    """Return the wrap widths that fit the ``shrink`` columns into ``width``, if needed."""
    natural = [len(header) for header in headers]
    for row in rows:
        for column, cell in enumerate(row):
            natural[column] = max(natural[column], len(cell))
    natural = [
        min(size, wrap[column]) if column in wrap else size for column, size in enumerate(natural)
    ]
    fixed = sum(size for column, size in enumerate(natural) if column not in shrink)
    available = width - fixed - len(_SEPARATOR) * (len(headers) - 1)
    if sum(natural[column] for column in shrink) <= available:
        return {}
    # Equal shares, narrowest first: a column that needs less than its share leaves the rest
    # to the wider ones.
    fitted: dict[int, int] = {}
    ordered = sorted(shrink, key=lambda column: natural[column])
    for done, column in enumerate(ordered):
        share = available // (len(ordered) - done)
        floor = max(MIN_COLUMN_WIDTH, len(headers[column]))
        fitted[column] = max(floor, min(natural[column], share))
        available -= fitted[column]
    return fitted


def _json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """Timestamps in ISO 8601; millisecond floats rounded to :data:`JSON_MS_DIGITS` decimals."""
    return {key: _json_value(key, value) for key, value in record.items()}


def _json_value(key: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if key.endswith("_ms") and isinstance(value, float):
        return round(value, JSON_MS_DIGITS)
    return value


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return ``1 segment``, ``2 segments`` (or the irregular ``plural_form``: ``2 entries``)."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"
