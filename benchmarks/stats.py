"""Repeated, interleaved measurements and their summaries (median and spread)."""

import gc
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements.

    Parameters:
        median: The median.
        low: The smallest value.
        high: The largest value.
        runs: How many values.
    """

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        """Summarise ``values`` (at least one)."""
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``median (min-max)`` with ``digits`` decimals, the range written with an en dash."""
        return (
            f"{self.median:.{digits}f}{unit} "
            f"({self.low:.{digits}f}\N{EN DASH}{self.high:.{digits}f})"
        )


async def interleaved(
    names: Sequence[str], reps: int, measure: Callable[[str], Awaitable[T]]
) -> dict[str, list[T]]:
    """Measure every variant once per repetition, rotating their order across repetitions.

    A garbage collection runs before each measurement, so no run pays for another's garbage.

    Returns:
        The measurements of each variant, in repetition order.
    """
    results: dict[str, list[T]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in [*names[shift:], *names[:shift]]:
            gc.collect()
            results[name].append(await measure(name))
    return results


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Summary of the per-repetition ratios of two variants measured side by side."""
    return Summary.of([n / d for n, d in zip(numerators, denominators, strict=True)])


def verdict(value: float, target: float) -> str:
    """Whether a median meets an upper-bound target, in words."""
    return f"target ≤ {target:g}: {'met' if value <= target else 'not met'}"
