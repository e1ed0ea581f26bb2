"""An event-loop lag probe: a task that sleeps a fixed time and records how late it wakes."""

import asyncio
import time


class LagProbe:
    """Sleeps ``period_s`` in a loop; each wake-up's delay past the deadline is one sample.

    Anything that holds the event loop (a slow callback, a worker thread holding the GIL, a
    starved CPU) shows up as oversleep.
    """

    def __init__(self, period_s: float) -> None:
        """Initialize the probe; :meth:`start` starts it.

        Args:
            period_s: How long each sleep asks for.
        """
        self._period_s = period_s
        self._task: asyncio.Task[None] | None = None
        self.lags_s: list[float] = []

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def restart_samples(self) -> None:
        """Forget the samples so far (e.g. those of a warm-up)."""
        self.lags_s = []

    async def stop(self) -> list[float]:
        """Stop sampling and return the oversleeps in seconds."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.lags_s

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self._period_s)
            self.lags_s.append(time.perf_counter() - start - self._period_s)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank; at least one value)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
