"""The one clock a recording reads, and how its readings become wall-clock timestamps."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], float]
"""A monotonic clock in seconds, such as ``time.monotonic`` (the default everywhere)."""


class Timeline:
    """Turns readings of a monotonic clock into UTC timestamps through one anchor.

    Every timestamp of a call is derived from the monotonic clock through the same anchor, so the
    timestamps of one call never step back when the system clock is adjusted.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        """Initialize the timeline, anchored now.

        Args:
            clock: The monotonic clock to read.
        """
        self.now = clock
        self._wall_anchor = datetime.now(UTC)
        self._mono_anchor = clock()

    def wall(self, monotonic_s: float) -> datetime:
        """The UTC time a reading of the clock stands for."""
        return self._wall_anchor + timedelta(seconds=monotonic_s - self._mono_anchor)
