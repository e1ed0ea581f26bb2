"""What the benchmarks ran on."""

import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.report import table


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> str:
    """Total RAM from ``/proc/meminfo``."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def package_version(name: str) -> str:
    """An installed distribution's version, or "not installed"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The 1-minute load average: other work on the machine competes with the benchmarks."""
    return f"{os.getloadavg()[0]:.2f}"


def describe(command: str, load_at_start: str) -> str:
    """A Markdown table of the machine, the software, the command and the load around it."""
    rows = [
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))})"),
        ("RAM", memory_gib()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_version()} ({sys.implementation.name})"),
        ("pipecat-ai", package_version("pipecat-ai")),
        ("numpy", package_version("numpy")),
        ("pipecat-audio-capture", package_version("pipecat-audio-capture")),
        ("command", f"`{command}`"),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("load average (1 min) at start, end", f"{load_at_start}, {load_average()}"),
    ]
    return table(["", ""], rows)
