"""A log that a flood of requests cannot flood: repeated messages are counted, not written.

The call review logs what goes wrong per request (an index that fails, a connection refused at
the cap), and aiohttp and asyncio log their own errors, with tracebacks. A client that repeats a
failing request 10,000 times must not write 10,000 tracebacks. :class:`LogThrottle` lets
``burst`` lines of one kind through per ``window_s``; the rest are counted, and the count is
added to the next line of that kind that gets through (or logged by :meth:`LogThrottle.flush`).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from pipecat_audio_capture import defaults

MAX_KINDS = 200
"""Kinds of message tracked at once. A kind quiet for a whole window, with nothing left to
report, makes room for a new one; while all are busy, any further kind shares one last bucket,
so varying the message cannot grow the tracking, or the log, without bound."""
OTHER_KIND = "(other messages)"

STDLIB_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio")
"""The standard-library loggers whose errors the server's traffic can repeat: aiohttp's and
asyncio's (``socket.accept() out of system resource``, with a traceback, once per failed
accept). Not ``aiohttp.access``: an access log is meant to have a line per request, and is off
unless the application turns it on."""


@dataclass
class _Bucket:
    window_start: float
    written: int = 0
    suppressed: int = 0


class LogThrottle:
    """Decides which log lines of each kind are written, and counts the others.

    Not thread-safe: the server calls it from its event loop only.
    """

    def __init__(
        self,
        *,
        burst: int = defaults.SERVE_LOG_BURST,
        window_s: float = defaults.SERVE_LOG_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Initialize the throttle.

        Args:
            burst: Lines of one kind written per window.
            window_s: Length of a window.
            clock: Monotonic seconds (tests pass their own).
        """
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self.suppressed_total = 0
        """Lines not written since the throttle was made."""

    def admit(self, kind: str) -> str | None:
        """Return None to drop a line of ``kind``, or the suffix to write it with.

        The suffix is empty, or tells how many lines of this kind were dropped before it.
        """
        now = self._clock()
        if kind not in self._buckets and len(self._buckets) >= MAX_KINDS:
            self._forget_quiet_kinds(now)
            if len(self._buckets) >= MAX_KINDS:
                kind = OTHER_KIND
        bucket = self._buckets.setdefault(kind, _Bucket(now))
        if now - bucket.window_start >= self._window_s:
            bucket.window_start, bucket.written = now, 0
        if bucket.written >= self._burst:
            bucket.suppressed += 1
            self.suppressed_total += 1
            return None
        bucket.written += 1
        dropped, bucket.suppressed = bucket.suppressed, 0
        return f" ({dropped} more like this were not logged)" if dropped else ""

    def _forget_quiet_kinds(self, now: float) -> None:
        quiet = [
            kind
            for kind, bucket in self._buckets.items()
            if now - bucket.window_start >= self._window_s and not bucket.suppressed
        ]
        for kind in quiet:
            del self._buckets[kind]

    def error(self, kind: str, message: str) -> None:
        """Log ``message`` at ERROR through loguru unless ``kind`` is over its burst."""
        suffix = self.admit(kind)
        if suffix is not None:
            logger.error(message + suffix)

    def warning(self, kind: str, message: str) -> None:
        """Log ``message`` at WARNING through loguru unless ``kind`` is over its burst."""
        suffix = self.admit(kind)
        if suffix is not None:
            logger.warning(message + suffix)

    def flush(self) -> None:
        """Log, once, how many lines of each kind were dropped and not yet reported."""
        for kind, bucket in self._buckets.items():
            if bucket.suppressed:
                logger.warning(f"{bucket.suppressed} more log lines like {kind!r} were not logged")
                bucket.suppressed = 0


class ThrottleFilter(logging.Filter):
    """A standard-library logging filter that lets each message template through a throttle."""

    def __init__(self, throttle: LogThrottle) -> None:
        """Initialize the filter on ``throttle``."""
        super().__init__()
        self._throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record if its logger and template are within their burst."""
        # The template, not the formatted text: "%s failed" with a new address every time is
        # still one kind of message.
        suffix = self._throttle.admit(f"{record.name}: {record.msg}")
        if suffix is None:
            return False
        if suffix:
            record.msg = f"{record.msg}{suffix}"
        return True


def throttle_stdlib_loggers(throttle: LogThrottle) -> Callable[[], None]:
    """Put :data:`STDLIB_LOGGERS` behind ``throttle``; return the function that undoes it."""
    log_filter = ThrottleFilter(throttle)
    for name in STDLIB_LOGGERS:
        logging.getLogger(name).addFilter(log_filter)

    def undo() -> None:
        for name in STDLIB_LOGGERS:
            logging.getLogger(name).removeFilter(log_filter)

    return undo
