"""Retrying one storage call: bounded attempts, a timeout per attempt, jittered backoff."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import InvalidArgumentError, StorageError, WriteTimeoutError

T = TypeVar("T")

_jitter = random.Random()


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how long a write is retried before its data goes to the spool.

    An attempt that raises, or that runs longer than the caller's per-attempt timeout, is
    retried after a random wait below ``min(max_backoff_s, initial_backoff_s * 2**n)``
    (full jitter), until ``attempts`` attempts were made or ``deadline_s`` has passed since the
    first one started. No attempt starts after the deadline, so one write takes at most
    ``deadline_s`` plus one attempt's timeout. Only :func:`is_transient` failures are retried;
    any other error ends the retries at once. Retrying is safe because every backend write is
    idempotent: a segment is stored once per ``segment_id``, a transcript once per session,
    turn and role.

    Parameters:
        attempts: Attempts in all, the first included (1 disables retrying).
        initial_backoff_s: Bound of the first wait.
        max_backoff_s: Largest bound of one wait.
        deadline_s: Time after the first attempt's start from which no attempt starts.
    """

    attempts: int = defaults.RETRY_ATTEMPTS
    initial_backoff_s: float = defaults.RETRY_INITIAL_BACKOFF_S
    max_backoff_s: float = defaults.RETRY_MAX_BACKOFF_S
    deadline_s: float = defaults.RETRY_DEADLINE_S

    def __post_init__(self) -> None:
        """Refuse settings that would never attempt, or never stop.

        Raises:
            InvalidArgumentError: If ``attempts`` is below 1 or a duration is negative.
        """
        if self.attempts < 1:
            raise InvalidArgumentError(f"attempts must be at least 1, got {self.attempts}")
        if min(self.initial_backoff_s, self.max_backoff_s, self.deadline_s) < 0:
            raise InvalidArgumentError("backoff and deadline durations must not be negative")

    def backoff_s(self, retry: int, rng: random.Random = _jitter) -> float:
        """Return the wait before retry number ``retry`` (1 for the second attempt).

        Args:
            retry: How many attempts failed so far.
            rng: Source of the jitter.
        """
        bound = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (retry - 1))
        return rng.uniform(0.0, bound)


def is_transient(error: BaseException) -> bool:
    """Whether another attempt can cure ``error``: the allowlist of retried failures.

    Transient are a :class:`~pipecat_audio_capture.errors.StorageError` its backend marked
    transient (each backend classifies its client's errors: timeouts, lost connections, 429,
    5xx, PostgreSQL's connection and serialization classes, SQLite busy or locked), a timeout
    and a lost connection. Everything else (an id that is not a UUID, a missing bucket, a file
    that already holds different audio, a bug) repeats identically, so retrying it would only
    delay the spool.
    """
    if isinstance(error, StorageError):
        return error.transient
    return isinstance(error, TimeoutError | ConnectionError)


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    attempt_timeout_s: float,
    what: str,
    started_at: float | None = None,
) -> T:
    """Run ``operation`` until it succeeds or ``policy`` gives up, then re-raise its last error.

    The last error is raised unchanged (a note records the attempts), so callers and event
    handlers see the backend's own exception; an attempt that timed out raises
    :class:`WriteTimeoutError`. An error that is not :func:`is_transient` is raised after its
    first attempt.

    Args:
        operation: Makes one attempt; called anew for each.
        policy: Attempts, backoff and deadline.
        attempt_timeout_s: Longest one attempt may run.
        what: What is written, for the log.
        started_at: Event-loop time the deadline counts from, so several steps of one write
            (audio, then metadata) share one budget; now when omitted.

    Raises:
        Exception: The last attempt's error.
    """
    loop = asyncio.get_running_loop()
    deadline = (loop.time() if started_at is None else started_at) + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(attempt_timeout_s):
                return await operation()
        except TimeoutError as exc:
            error: Exception = WriteTimeoutError(
                f"writing {what} took longer than {attempt_timeout_s} s"
            )
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        if not is_transient(error):
            error.add_note(f"not retried: writing {what} cannot succeed on another attempt")
            raise error
        wait_s = policy.backoff_s(attempt)
        if attempt >= policy.attempts or loop.time() + wait_s >= deadline:
            error.add_note(f"gave up writing {what} after {attempt} attempt(s)")
            raise error
        logger.warning(
            f"attempt {attempt}/{policy.attempts} at writing {what} failed: {error}; "
            f"retrying in {wait_s:.2f} s"
        )
        await asyncio.sleep(wait_s)
