"""Plain-text forms shared by every reader of the index: clock times, sizes, response gaps."""

from collections.abc import Sequence

from pipecat_audio_capture.storage.index import ResponseGap

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB")


def response_gap_by_turn(gaps: Sequence[ResponseGap]) -> dict[str | None, float | None]:
    """Map each bot turn that answered a user turn to its response gap in milliseconds."""
    return {gap.bot_turn_id: gap.gap_ms for gap in gaps if gap.bot_turn_id is not None}


def format_clock(seconds: float) -> str:
    """Return a time span as ``m:ss.ss``, or ``h:mm:ss.ss`` from one hour."""
    hundredths = round(seconds * 100)
    minutes, hundredths = divmod(hundredths, 6000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{hundredths // 100:02d}.{hundredths % 100:02d}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def format_size(size: int) -> str:
    """Return a byte count in decimal units: ``512 B``, ``161.8 kB``, ``2.0 MB``."""
    value, unit = float(size), _SIZE_UNITS[0]
    for larger in _SIZE_UNITS[1:]:
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == _SIZE_UNITS[0] else f"{value:.1f} {unit}"
