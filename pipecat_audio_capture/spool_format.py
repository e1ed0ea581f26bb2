"""The files of the spool: one self-checking file per spooled segment or transcript row.

A segment entry, ``{session_id}/{segment_id}.segment``, is one line of JSON (the segment's
fields, the WAV's size and SHA-256) followed by the WAV bytes exactly as they were to be stored,
so a replay stores the same bytes an earlier attempt may already have stored. A transcript entry,
``{session_id}/{turn_id}.{role}.transcript``, is the row as JSON, and so is a latency entry,
``{session_id}/{turn_id}.latency`` (a bot turn's latency breakdown).

Reading checks everything before anything is trusted: the names are canonical UUIDs, the
content's ids match the names, every field has its type and range, and the WAV matches its size,
checksum and the header :func:`~pipecat_audio_capture.wav.encode_wav` writes, whose format is
within :mod:`~pipecat_audio_capture.limits`. Any mismatch raises
:class:`~pipecat_audio_capture.errors.SpoolEntryError`. The spool writes an entry only after
reading it back this way, so it never keeps what a replay would refuse.
"""

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from pipecat_audio_capture.errors import (
    AudioFormatError,
    InvalidArgumentError,
    InvalidIdError,
    SpoolEntryError,
)
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import (
    PLAYBACK_VALUES,
    LatencyStage,
    MeasuredFrom,
    PendingAudioSegment,
    Playback,
    Role,
    Speaker,
    TranscriptRecord,
    TurnLatencyRecord,
)
from pipecat_audio_capture.safe_files import CANONICAL_UUID
from pipecat_audio_capture.wav import HEADER_BYTES, wav_header

SEGMENT_FORMAT = "pipecat-audio-capture/spool-segment"
TRANSCRIPT_FORMAT = "pipecat-audio-capture/spool-transcript"
LATENCY_FORMAT = "pipecat-audio-capture/spool-latency"
FORMAT_VERSION = 1

MAX_HEADER_BYTES = 64 * 1024
"""Longest JSON line of a segment entry; a segment's fields take a few hundred bytes."""

SEGMENT_NAME = re.compile(rf"(?P<segment_id>{CANONICAL_UUID.pattern})\.segment")
TRANSCRIPT_NAME = re.compile(
    rf"(?P<turn_id>{CANONICAL_UUID.pattern})\.(?P<role>user|assistant)\.transcript"
)
LATENCY_NAME = re.compile(rf"(?P<turn_id>{CANONICAL_UUID.pattern})\.latency")

MAX_LATENCY_STAGES = 1000
"""Most stages a latency entry may list; Pipecat names about ten per response."""

_SEGMENT_KEYS = frozenset(
    {
        "format",
        "version",
        "session_id",
        "segment_id",
        "turn_id",
        "speaker",
        "sample_rate",
        "num_channels",
        "started_at",
        "interrupted",
        "unplayed_ms",
        "wav_bytes",
        "wav_sha256",
        "reason",
        "spooled_at",
    }
)
_SEGMENT_OPTIONAL_KEYS = frozenset({"playback", "played_until"})
"""Keys added after the first release: entries spooled by an older version lack them."""
_TRANSCRIPT_KEYS = frozenset(
    {
        "format",
        "version",
        "session_id",
        "turn_id",
        "role",
        "text",
        "interrupted",
        "occurred_at",
        "reason",
        "spooled_at",
    }
)
_LATENCY_KEYS = frozenset(
    {
        "format",
        "version",
        "session_id",
        "turn_id",
        "measured_from",
        "started_at",
        "bot_started_at",
        "total_ms",
        "user_turn_ms",
        "stages",
        "reason",
        "spooled_at",
    }
)
_STAGE_KEYS = frozenset({"stage", "label", "owner", "owner_kind", "offset_ms", "duration_ms"})


@dataclass(frozen=True)
class SpooledSegment:
    """A segment read back from the spool.

    Parameters:
        segment: The segment, its PCM being the WAV's data.
        wav: The WAV file to store, byte for byte what the capture tried to store.
        reason: Why it was spooled (``"write_failed"``, ``"queue_full"``, ``"close_timeout"``).
        spooled_at: When it was spooled (UTC).
    """

    segment: PendingAudioSegment
    wav: bytes
    reason: str
    spooled_at: datetime


@dataclass(frozen=True)
class SpooledTranscript:
    """A transcript row read back from the spool.

    Parameters:
        record: The row.
        reason: Why it was spooled (``"write_failed"`` or ``"close_timeout"``).
        spooled_at: When it was spooled (UTC).
    """

    record: TranscriptRecord
    reason: str
    spooled_at: datetime


@dataclass(frozen=True)
class SpooledLatency:
    """A latency breakdown read back from the spool.

    Parameters:
        record: The breakdown.
        reason: Why it was spooled (``"write_failed"`` or ``"close_timeout"``).
        spooled_at: When it was spooled (UTC).
    """

    record: TurnLatencyRecord
    reason: str
    spooled_at: datetime


def segment_file_name(segment_id: str) -> str:
    """Return the entry file name of a segment.

    Raises:
        InvalidIdError: If ``segment_id`` is not a UUID.
    """
    return f"{require_uuid(segment_id, 'segment_id')}.segment"


def transcript_file_name(turn_id: str, role: Role) -> str:
    """Return the entry file name of a transcript row; a later row of the same turn replaces it.

    Raises:
        InvalidIdError: If ``turn_id`` is not a UUID.
        InvalidArgumentError: If ``role`` is not ``"user"`` or ``"assistant"``.
    """
    if role not in ("user", "assistant"):
        raise InvalidArgumentError(f"role must be 'user' or 'assistant', got {role!r}")
    return f"{require_uuid(turn_id, 'turn_id')}.{role}.transcript"


def latency_file_name(turn_id: str) -> str:
    """Return the entry file name of a bot turn's latency breakdown.

    Raises:
        InvalidIdError: If ``turn_id`` is not a UUID.
    """
    return f"{require_uuid(turn_id, 'turn_id')}.latency"


def encode_segment(
    segment: PendingAudioSegment, wav: bytes, *, reason: str, spooled_at: datetime
) -> bytes:
    """Return the entry file's bytes for a segment and its encoded WAV."""
    header = {
        "format": SEGMENT_FORMAT,
        "version": FORMAT_VERSION,
        "session_id": segment.session_id,
        "segment_id": segment.segment_id,
        "turn_id": segment.turn_id,
        "speaker": segment.speaker,
        "sample_rate": segment.sample_rate,
        "num_channels": segment.num_channels,
        "started_at": segment.started_at.isoformat(),
        "interrupted": segment.interrupted,
        "unplayed_ms": segment.unplayed_ms,
        "playback": segment.playback,
        "played_until": None if segment.played_until is None else segment.played_until.isoformat(),
        "wav_bytes": len(wav),
        "wav_sha256": hashlib.sha256(wav).hexdigest(),
        "reason": reason,
        "spooled_at": spooled_at.isoformat(),
    }
    return json.dumps(header, allow_nan=False).encode() + b"\n" + wav


def decode_segment(data: bytes, *, session_id: str, segment_id: str) -> SpooledSegment:
    """Parse and check a segment entry found at ``{session_id}/{segment_id}.segment``.

    Raises:
        SpoolEntryError: If anything in it is missing, malformed or inconsistent.
    """
    end = data.find(b"\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise SpoolEntryError("no header line")
    header = _json_object(data[:end], _SEGMENT_KEYS, SEGMENT_FORMAT, _SEGMENT_OPTIONAL_KEYS)
    _same_id(header, "session_id", session_id)
    _same_id(header, "segment_id", segment_id)
    wav = data[end + 1 :]
    if _int(header, "wav_bytes", 0) != len(wav):
        raise SpoolEntryError(f"the WAV is {len(wav)} bytes, not {header['wav_bytes']}")
    if _str(header, "wav_sha256") != hashlib.sha256(wav).hexdigest():
        raise SpoolEntryError("the WAV's SHA-256 differs from the one recorded")
    sample_rate = _int(header, "sample_rate", 1)
    num_channels = _int(header, "num_channels", 1)
    try:
        # Refuses formats outside the package's limits, as the capture does.
        expected = wav_header(len(wav) - HEADER_BYTES, sample_rate, num_channels)
    except AudioFormatError as exc:
        raise SpoolEntryError(f"the WAV does not fit its format: {exc}") from exc
    if wav[:HEADER_BYTES] != expected:
        raise SpoolEntryError("the WAV header differs from the one this package writes")
    segment = PendingAudioSegment(
        segment_id=segment_id,
        session_id=session_id,
        turn_id=_uuid(header, "turn_id"),
        speaker=cast(Speaker, _choice(header, "speaker", ("user", "bot"))),
        pcm=[wav[HEADER_BYTES:]],
        sample_rate=sample_rate,
        num_channels=num_channels,
        started_at=_time(header, "started_at"),
        interrupted=_bool(header, "interrupted"),
        unplayed_ms=_optional_ms(header, "unplayed_ms"),
        playback=cast(Playback | None, _optional_choice(header, "playback", PLAYBACK_VALUES)),
        played_until=_optional_time(header, "played_until"),
    )
    try:
        # The index stores the end time; a start near year 9999 has none.
        _ = segment.ended_at
    except OverflowError as exc:
        raise SpoolEntryError("started_at plus the duration is past the last datetime") from exc
    return SpooledSegment(segment, wav, _str(header, "reason"), _time(header, "spooled_at"))


def encode_transcript(record: TranscriptRecord, *, reason: str, spooled_at: datetime) -> bytes:
    """Return the entry file's bytes for a transcript row."""
    body = {
        "format": TRANSCRIPT_FORMAT,
        "version": FORMAT_VERSION,
        "session_id": record.session_id,
        "turn_id": record.turn_id,
        "role": record.role,
        "text": record.text,
        "interrupted": record.interrupted,
        "occurred_at": record.occurred_at.isoformat(),
        "reason": reason,
        "spooled_at": spooled_at.isoformat(),
    }
    return json.dumps(body, allow_nan=False).encode() + b"\n"


def decode_transcript(
    data: bytes, *, session_id: str, turn_id: str, role: str
) -> SpooledTranscript:
    """Parse and check a transcript entry found at ``{session_id}/{turn_id}.{role}.transcript``.

    Raises:
        SpoolEntryError: If anything in it is missing, malformed or inconsistent.
    """
    body = _json_object(data, _TRANSCRIPT_KEYS, TRANSCRIPT_FORMAT)
    _same_id(body, "session_id", session_id)
    _same_id(body, "turn_id", turn_id)
    if body["role"] != role:
        raise SpoolEntryError(f"role is {body['role']!r} in a file named for {role!r}")
    record = TranscriptRecord(
        session_id=session_id,
        turn_id=turn_id,
        role=cast(Role, _choice(body, "role", ("user", "assistant"))),
        text=_str(body, "text"),
        interrupted=_bool(body, "interrupted"),
        occurred_at=_time(body, "occurred_at"),
    )
    return SpooledTranscript(record, _str(body, "reason"), _time(body, "spooled_at"))


def encode_latency(record: TurnLatencyRecord, *, reason: str, spooled_at: datetime) -> bytes:
    """Return the entry file's bytes for a latency breakdown."""
    body = {
        "format": LATENCY_FORMAT,
        "version": FORMAT_VERSION,
        "session_id": record.session_id,
        "turn_id": record.turn_id,
        "measured_from": record.measured_from,
        "started_at": record.started_at.isoformat(),
        "bot_started_at": record.bot_started_at.isoformat(),
        "total_ms": record.total_ms,
        "user_turn_ms": record.user_turn_ms,
        "stages": [asdict(stage) for stage in record.stages],
        "reason": reason,
        "spooled_at": spooled_at.isoformat(),
    }
    return json.dumps(body, allow_nan=False).encode() + b"\n"


def decode_latency(data: bytes, *, session_id: str, turn_id: str) -> SpooledLatency:
    """Parse and check a latency entry found at ``{session_id}/{turn_id}.latency``.

    Raises:
        SpoolEntryError: If anything in it is missing, malformed or inconsistent.
    """
    body = _json_object(data, _LATENCY_KEYS, LATENCY_FORMAT)
    _same_id(body, "session_id", session_id)
    _same_id(body, "turn_id", turn_id)
    stages = body["stages"]
    if not isinstance(stages, list) or not 0 < len(stages) <= MAX_LATENCY_STAGES:
        raise SpoolEntryError(f"stages is not a list of 1 to {MAX_LATENCY_STAGES} stages")
    total_ms = _optional_ms(body, "total_ms")
    if total_ms is None:
        raise SpoolEntryError("total_ms is missing")
    record = TurnLatencyRecord(
        session_id=session_id,
        turn_id=turn_id,
        measured_from=cast(
            MeasuredFrom, _choice(body, "measured_from", ("user_silence", "client_connected"))
        ),
        started_at=_time(body, "started_at"),
        bot_started_at=_time(body, "bot_started_at"),
        total_ms=total_ms,
        user_turn_ms=_optional_ms(body, "user_turn_ms"),
        stages=tuple(_stage(stage) for stage in stages),
    )
    return SpooledLatency(record, _str(body, "reason"), _time(body, "spooled_at"))


def _stage(value: object) -> LatencyStage:
    if not isinstance(value, dict) or set(value) != _STAGE_KEYS:
        raise SpoolEntryError(f"a stage is not an object of the fields {sorted(_STAGE_KEYS)}")
    duration_ms = _optional_ms(value, "duration_ms")
    offset_ms = value["offset_ms"]
    if duration_ms is None or not isinstance(offset_ms, int | float) or isinstance(offset_ms, bool):
        raise SpoolEntryError(f"stage {value['stage']!r} has no duration or offset")
    if not math.isfinite(offset_ms):
        raise SpoolEntryError(f"stage {value['stage']!r} has offset {offset_ms}")
    return LatencyStage(
        stage=_str(value, "stage"),
        label=_str(value, "label"),
        owner=_str(value, "owner"),
        owner_kind=_str(value, "owner_kind"),
        offset_ms=float(offset_ms),
        duration_ms=duration_ms,
    )


def _json_object(
    raw: bytes,
    keys: frozenset[str],
    expected_format: str,
    optional_keys: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpoolEntryError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        # Thousands of nested brackets fit in the header's size limit.
        raise SpoolEntryError("not valid JSON: nested too deeply") from exc
    if not isinstance(value, dict):
        raise SpoolEntryError("not a JSON object")
    if value.get("format") != expected_format or value.get("version") != FORMAT_VERSION:
        raise SpoolEntryError(
            f"format {value.get('format')!r} version {value.get('version')!r} is not "
            f"{expected_format!r} version {FORMAT_VERSION}"
        )
    if not keys <= set(value) <= keys | optional_keys:
        raise SpoolEntryError(f"fields differ: {sorted((set(value) - optional_keys) ^ keys)}")
    return value


def _refuse_constant(name: str) -> float:
    raise SpoolEntryError(f"{name} is not a number an entry may hold")


def _same_id(values: dict[str, Any], key: str, from_name: str) -> None:
    if _uuid(values, key) != from_name:
        raise SpoolEntryError(f"{key} {values[key]!r} differs from the file's name {from_name}")


def _uuid(values: dict[str, Any], key: str) -> str:
    try:
        return require_uuid(values[key], key)
    except InvalidIdError as exc:
        raise SpoolEntryError(str(exc)) from exc


def _str(values: dict[str, Any], key: str) -> str:
    value = values[key]
    if not isinstance(value, str):
        raise SpoolEntryError(f"{key} is not a string")
    return value


def _bool(values: dict[str, Any], key: str) -> bool:
    value = values[key]
    if not isinstance(value, bool):
        raise SpoolEntryError(f"{key} is not true or false")
    return value


def _int(values: dict[str, Any], key: str, minimum: int) -> int:
    value = values[key]
    # bool is an int in Python, but true is not a sample rate.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpoolEntryError(f"{key} is not an integer >= {minimum}")
    return value


def _choice(values: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = values[key]
    if value not in allowed:
        raise SpoolEntryError(f"{key} is {value!r}, not one of {allowed}")
    return str(value)


def _optional_ms(values: dict[str, Any], key: str) -> float | None:
    value = values[key]
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise SpoolEntryError(f"{key} is not a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise SpoolEntryError(f"{key} is too large") from exc
    if not math.isfinite(number) or number < 0:
        raise SpoolEntryError(f"{key} is {number}")
    return number


def _optional_choice(values: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    if values.get(key) is None:
        return None
    return _choice(values, key, allowed)


def _optional_time(values: dict[str, Any], key: str) -> datetime | None:
    return None if values.get(key) is None else _time(values, key)


def _time(values: dict[str, Any], key: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(_str(values, key))
    except ValueError as exc:
        raise SpoolEntryError(f"{key} is not an ISO 8601 time: {exc}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise SpoolEntryError(f"{key} has no time zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise SpoolEntryError(f"{key} is outside the years a datetime holds in UTC") from exc
