"""A cap on the call review's connections, and a deadline for each one's first request head.

aiohttp keeps every accepted connection until the client sends a request or its idle timer
fires, and has no limit on how many it holds. A client that opens connections and sends nothing
(or a request head a byte at a time) can then hold every file descriptor the process has, and a
token holder's request is never read. :class:`ConnectionGuard` wraps aiohttp's protocol
factory:

- at most ``max_connections`` are open; at the cap, a new connection closes the oldest one that
  has not yet sent a complete request head (the cheapest to lose, and the likeliest to be an
  attack); when every open connection has sent one, the new connection is refused;
- a connection that has not sent a complete request head ``header_timeout_s`` after it opened
  is closed.

After the first request, aiohttp's own idle timeout closes a connection that waits too long
for its next one. Each closing is counted and logged through a :class:`.LogThrottle`.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pipecat_audio_capture.errors import InvalidArgumentError
from pipecat_audio_capture.web.log_limit import LogThrottle

HEAD_END = b"\r\n\r\n"


@dataclass
class GuardCounts:
    """What the guard closed, since it started.

    Parameters:
        refused: Connections closed on arrival: the cap was reached and none could make room.
        evicted: Connections closed to make room for a new one, before their request head.
        timed_out: Connections closed for taking longer than the deadline to send a head.
    """

    refused: int = 0
    evicted: int = 0
    timed_out: int = 0


def connection_cap(wanted: int) -> int:
    """Return ``wanted``, or half the process's open-file limit when that is lower.

    The other half is left to the index, the audio files and the log. Without the ``resource``
    module (Windows), ``wanted`` as it is.
    """
    try:
        import resource
    except ImportError:
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


class ConnectionGuard:
    """A protocol factory for ``loop.create_server`` that caps and times out connections."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        max_connections: int,
        header_timeout_s: float,
        log: LogThrottle,
    ) -> None:
        """Initialize the guard.

        Args:
            factory: aiohttp's protocol factory (``AppRunner.server``).
            max_connections: Most connections open at once (at least 1).
            header_timeout_s: Longest a connection may take to send its first request head.
            log: Where closings are logged.

        Raises:
            InvalidArgumentError: If ``max_connections`` is below 1 or ``header_timeout_s`` is not
                positive.
        """
        if max_connections < 1 or not header_timeout_s > 0:
            raise InvalidArgumentError(
                f"max_connections must be >= 1 and header_timeout_s > 0, got "
                f"{max_connections} and {header_timeout_s}"
            )
        self._factory = factory
        self._max_connections = max_connections
        self._header_timeout_s = header_timeout_s
        self._log = log
        self._open: set[_GuardedConnection] = set()
        # Connections still waiting for their first request head, oldest first.
        self._waiting: OrderedDict[_GuardedConnection, None] = OrderedDict()
        self.counts = GuardCounts()

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        """Return the protocol of one new connection."""
        return _GuardedConnection(self)

    def close_all(self) -> None:
        """Close every connection still open (the server is stopping)."""
        for connection in list(self._open):
            connection.close()

    def _admit(self, connection: "_GuardedConnection") -> bool:
        if len(self._open) >= self._max_connections:
            if not self._waiting:
                self.counts.refused += 1
                self._log.warning(
                    "refused",
                    f"refused a connection: {self._max_connections} are open and all are "
                    "serving requests",
                )
                return False
            oldest = next(iter(self._waiting))
            self.counts.evicted += 1
            self._log.warning(
                "evicted",
                f"{self._max_connections} connections open: closed the oldest one that had not "
                "sent a request, to make room",
            )
            oldest.close()
        self._open.add(connection)
        self._waiting[connection] = None
        return True

    def _head_received(self, connection: "_GuardedConnection") -> None:
        self._waiting.pop(connection, None)

    def _timed_out(self, connection: "_GuardedConnection") -> None:
        self.counts.timed_out += 1
        self._log.warning(
            "timed out",
            f"closed a connection that sent no complete request head in "
            f"{self._header_timeout_s:g} s",
        )
        connection.close()

    def _forget(self, connection: "_GuardedConnection") -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)


class _GuardedConnection(asyncio.Protocol):
    """One connection: passes everything to aiohttp's protocol once the guard admitted it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._guard._admit(self):
            self._transport = None
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard._header_timeout_s, self._guard._timed_out, self)
        self._inner = self._guard._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            # The head may end across two reads: keep the last three bytes of the previous one.
            if HEAD_END in self._tail + data[: len(HEAD_END)] or HEAD_END in data:
                self._timer.cancel()
                self._timer = None
                self._guard._head_received(self)
            else:
                self._tail = (self._tail + data)[-(len(HEAD_END) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def close(self) -> None:
        """Close at once, unread and unsent data dropped; it no longer counts."""
        self._guard._forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
