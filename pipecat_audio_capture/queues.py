"""Waiting on the writers' queues and tasks within a deadline."""

import asyncio
from typing import Any


async def joined(queue: "asyncio.Queue[Any]", timeout_s: float) -> bool:
    """Wait until every item of ``queue`` is done; False if ``timeout_s`` passed first.

    A timeout of zero or less still reports a queue that is already done as joined.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await queue.join()
    except TimeoutError:
        return False
    return True


async def stopped(task: "asyncio.Task[None]") -> None:
    """Cancel ``task`` and wait until it has finished."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def settled(tasks: "set[asyncio.Task[None]]", deadline: float) -> None:
    """Wait for ``tasks`` until the event loop's clock reaches ``deadline``.

    Those still running then go on in the background.
    """
    if tasks:
        loop = asyncio.get_running_loop()
        await asyncio.wait(set(tasks), timeout=max(deadline - loop.time(), 0.0))
