"""Run every benchmark and write ``benchmarks/RESULTS.md``: ``python -m benchmarks.run``.

``make bench`` runs this with the project's virtual environment. ``--quick`` runs a shortened
version (a 2-minute call, fewer repetitions, two session counts) to check the harness; its
figures are not the ones to quote.
"""

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from benchmarks import (
    backends,
    big_index,
    call_audio,
    cli_startup,
    frame_cost,
    index_batching,
    machine,
    memory,
    s3_uploads,
    sessions,
    writer,
)
from benchmarks.report import Section

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of every section.

    Parameters:
        call_s: Length of the scripted call of section 1.
        direct_reps: Repetitions of section 1 with the processor alone.
        pipeline_reps: Repetitions of section 1 in a pipeline.
        encode_reps: Repetitions of the encoding loops.
        write_reps: Repetitions of the local-disk writer run.
        write_segments: Segments per writer run.
        index_reps: Repetitions of each metadata-index and upload run.
        index_rows: Rows per metadata-index run.
        batch_rows: Rows per run of the concurrent-calls index comparison (section 2g).
        uploads: Segments per upload run.
        sessions: How section 3 runs.
        call_minutes: Lengths of the calls section 5 builds a whole-call recording of.
        cli_reps: Runs of each command of section 6.
        big_index_calls: Calls in the index of section 7.
        big_index_reps: Repetitions of each request of section 7.
    """

    call_s: float
    direct_reps: int
    pipeline_reps: int
    encode_reps: int
    write_reps: int
    write_segments: int
    index_reps: int
    index_rows: int
    batch_rows: int
    uploads: int
    sessions: sessions.Plan
    call_minutes: tuple[int, ...]
    cli_reps: int
    big_index_calls: int
    big_index_reps: int


FULL = Config(
    call_s=600.0,
    direct_reps=7,
    pipeline_reps=4,
    encode_reps=7,
    write_reps=5,
    write_segments=200,
    index_reps=3,
    index_rows=300,
    batch_rows=2000,
    uploads=50,
    sessions=sessions.Plan(
        ladder=(10, 25, 50, 100), reps=3, seconds=8.0, warmup_s=2.0, search_steps=2
    ),
    call_minutes=call_audio.CALL_MINUTES,
    cli_reps=cli_startup.REPS,
    big_index_calls=100_000,
    big_index_reps=7,
)
QUICK = Config(
    call_s=120.0,
    direct_reps=3,
    pipeline_reps=2,
    encode_reps=3,
    write_reps=2,
    write_segments=50,
    index_reps=2,
    index_rows=100,
    batch_rows=400,
    uploads=20,
    sessions=sessions.Plan(ladder=(25, 50), reps=1, seconds=3.0, warmup_s=1.0, search_steps=1),
    call_minutes=(2,),
    cli_reps=3,
    big_index_calls=5_000,
    big_index_reps=3,
)


async def in_process_sections(config: Config) -> list[Section]:
    """Sections 1 and 2, which run in this process."""
    return [
        await _timed(
            "1. per-frame cost",
            frame_cost.measure(config.call_s, config.direct_reps, config.pipeline_reps),
        ),
        await _timed("2a. WAV encoding", writer.measure_encoding(config.encode_reps)),
        await _timed(
            "2b. local writer",
            writer.measure_local_writes(config.write_reps, config.write_segments),
        ),
        await _timed("2c. SQLite", backends.measure_sqlite(config.index_reps, config.index_rows)),
        await _timed(
            "2d. PostgreSQL", backends.measure_postgres(config.index_reps, config.index_rows)
        ),
        await _timed("2e. GCS", backends.measure_gcs(config.index_reps, config.uploads)),
        await _timed("2f. S3", s3_uploads.measure_s3(config.index_reps, config.uploads)),
        await _timed(
            "2g(i). SQLite, concurrent calls",
            index_batching.measure_sqlite(config.index_reps, config.batch_rows),
        ),
        await _timed(
            "2g(ii). PostgreSQL, concurrent calls",
            index_batching.measure_postgres(config.index_reps, config.batch_rows),
        ),
    ]


async def _timed(label: str, work: Awaitable[Section]) -> Section:
    """Await one section, printing its name and how long it took."""
    start = time.perf_counter()
    print(f"{label}...", flush=True)
    section = await work
    print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)
    return section


def results_markdown(
    command: str, load_at_start: str, sections: list[Section], elapsed_s: float
) -> str:
    """The whole ``RESULTS.md``."""
    headlines = "\n".join(f"- {line}" for section in sections for line in section.headlines)
    return "\n\n".join(
        [
            "# Benchmark results",
            "Produced by `make bench` (`python -m benchmarks.run`); regenerate it the same way. "
            "Timings on a shared machine are noisy: every comparison is measured side by side "
            "in the same run, variants interleaved (their order rotated between "
            "repetitions), and reported as median (min-max) over the repetitions; ratios are "
            "taken per repetition, then summarised. Nothing here is a pass/fail test.",
            machine.describe(command, load_at_start),
            f"Total time of the run: {elapsed_s / 60:.1f} min.",
            "## Headlines",
            headlines,
            *(section.markdown() for section in sections),
        ]
    )


def main() -> None:
    """Run the benchmarks and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run of the harness")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args()
    config = QUICK if args.quick else FULL
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    start = time.perf_counter()
    load_at_start = machine.load_average()
    found = asyncio.run(in_process_sections(config))
    print("3. sessions per core (one process per run)...", flush=True)
    section_3, session_runs = sessions.measure(config.sessions)
    print("4. memory...", flush=True)
    section_4 = asyncio.run(memory.measure(session_runs))
    print("5. whole-call recording...", flush=True)
    section_5 = call_audio.measure(config.call_minutes)
    print("6. command-line start-up...", flush=True)
    section_6 = asyncio.run(cli_startup.measure(config.cli_reps))
    command = " ".join(["python -m benchmarks.run", *sys.argv[1:]])
    print("7. a big index...", flush=True)
    section_7 = asyncio.run(big_index.measure(config.big_index_calls, config.big_index_reps))
    sections = [*found, section_3, section_4, section_5, section_6, section_7]
    text = results_markdown(command, load_at_start, sections, time.perf_counter() - start)
    args.output.write_text(text + "\n")
    print(f"wrote {args.output} in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
