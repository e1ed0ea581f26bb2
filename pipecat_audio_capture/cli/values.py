"""The command line's option values: parsed, and refused outside the range the commands can use.

Each parser is an argparse ``type``: a value it refuses becomes one ``error:`` line and exit 2,
never a traceback from deeper down (an integer too large for SQLite, a date before year 1).
"""

import argparse
import math
import re
from collections.abc import Callable
from datetime import timedelta

from pipecat_audio_capture.errors import AudioCaptureError

MAX_LIMIT = 10_000
"""Most calls ``sessions`` lists at once; page with ``--offset`` for more."""

MAX_OFFSET = 1_000_000_000
"""Most calls ``sessions`` skips: far beyond any index, and inside every backend's integers."""

MAX_PORT = 65_535

MIN_SPEED = 0.1
MAX_SPEED = 100.0
"""The demo's speed-up range: slower stretches a 30 s call past 5 minutes, faster outruns
Pipecat's own fixed timeouts."""

MAX_RETENTION = timedelta(days=36_500)
"""Longest retention period ``purge`` takes (100 years): older cutoffs leave the calendar."""


class ArgumentValueError(AudioCaptureError, argparse.ArgumentTypeError):
    """An option's value is refused; argparse prints the message as the ``error:`` line.

    argparse shows the message of an ``ArgumentTypeError`` only, so this is one.
    """


_PERIOD = re.compile(r"([0-9]{1,12})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_SHOWN_CHARS = 40


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """Return a parser of a whole number from ``low`` to ``high`` (ASCII digits only)."""
    expected = f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        digits = text.strip()
        # The length check comes first: int() of a 100,000-digit string is slow, then refused.
        if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(high)):
            raise ArgumentValueError(_expected(expected, text))
        value = int(digits)
        if not low <= value <= high:
            raise ArgumentValueError(_expected(expected, text))
        return value

    return parse


def speed(text: str) -> float:
    """Parse the demo's speed-up, a finite number from :data:`MIN_SPEED` to :data:`MAX_SPEED`."""
    expected = f"a number from {MIN_SPEED:g} to {MAX_SPEED:g}"
    try:
        value = float(text)
    except ValueError:
        raise ArgumentValueError(_expected(expected, text)) from None
    if not (math.isfinite(value) and MIN_SPEED <= value <= MAX_SPEED):
        raise ArgumentValueError(_expected(expected, text))
    return value


def retention_period(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``90m`` or ``3600s``: from 1 s to :data:`MAX_RETENTION`."""
    expected = f"a period like 30d, 12h, 90m or 3600s, from 1s to {MAX_RETENTION.days}d"
    match = _PERIOD.fullmatch(text.strip())
    if match is None:
        raise ArgumentValueError(_expected(expected, text))
    # Checked in whole seconds: timedelta itself overflows beyond 999,999,999 days.
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 1 <= seconds <= MAX_RETENTION.total_seconds():
        raise ArgumentValueError(_expected(expected, text))
    return timedelta(seconds=seconds)


def _expected(what: str, text: str) -> str:
    # A hostile argument can be megabytes long: the message shows its start only.
    shown = text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."
    return f"expected {what}, got {shown!r}"
