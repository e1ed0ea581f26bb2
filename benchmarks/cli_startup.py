"""Start-up of the command line: ``pipecat-audio-capture sessions``, from exec to exit.

Run alone with ``python -m benchmarks.cli_startup``; ``make bench`` includes it.
"""

import asyncio
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.backends import segment_rows
from benchmarks.report import Section, table
from benchmarks.stats import Summary, interleaved
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

TARGET_S = 0.3
SESSIONS = 100
SEGMENTS_PER_SESSION = 10
REPS = 15
_SCRIPT = Path(sys.executable).with_name("pipecat-audio-capture")


def _variants(db: Path) -> dict[str, list[str]]:
    return {
        "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
        "pipecat-audio-capture sessions": [str(_SCRIPT), "sessions", "--db", str(db)],
        "pipecat-audio-capture sessions --json": [
            str(_SCRIPT),
            "sessions",
            "--json",
            "--db",
            str(db),
        ],
        # What every command loaded before the index commands stopped importing Pipecat.
        "python -c 'import pipecat_audio_capture.processor'": [
            sys.executable,
            "-c",
            "import pipecat_audio_capture.processor",
        ],
    }


async def _index(path: Path) -> None:
    async with SQLiteAudioMetaStorage(path) as index:
        for _ in range(SESSIONS):
            session_id = str(uuid.uuid4())
            for meta in segment_rows(session_id, SEGMENTS_PER_SESSION):
                await index.save_metadata(session_id, meta)


def _run(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; return its wall time and the CPU time (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall_s, cpu_s


async def measure(reps: int = REPS) -> Section:
    """Time each command from exec to exit, interleaved, ``reps`` times."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "index.sqlite3"
        await _index(db)
        variants = _variants(db)
        runs = await interleaved(
            list(variants), reps, lambda name: asyncio.to_thread(_run, variants[name])
        )
    wall = {name: Summary.of([run[0] for run in values]) for name, values in runs.items()}
    cpu = {name: Summary.of([run[1] for run in values]) for name, values in runs.items()}
    section = Section("6. Command-line start-up")
    section.add(
        f"One command from exec to exit, in a fresh process each time, on a SQLite index of "
        f"{SESSIONS} calls ({SEGMENTS_PER_SESSION} segments each): wall time, and the CPU time "
        f"(user + system) the process used, which other work on the shared machine inflates "
        f"less. Median (min-max) of {reps} runs, variants interleaved. The last row is the "
        "import the index commands no longer pay (Pipecat, through the processor)."
    )
    section.add(
        table(
            ["command", "wall, s", "CPU, s"],
            [[f"`{name}`", wall[name].text(3), cpu[name].text(3)] for name in variants],
        )
    )
    name = "pipecat-audio-capture sessions"
    verdict = "met" if wall[name].median < TARGET_S else "not met"
    section.headlines.append(
        f"`{name}` start to exit: {wall[name].text(3)} s wall, {cpu[name].text(3)} s CPU "
        f"— target < {TARGET_S} s: {verdict}"
    )
    return section


def main() -> None:
    """Print the section as Markdown."""
    print(asyncio.run(measure()).markdown())


if __name__ == "__main__":
    main()
