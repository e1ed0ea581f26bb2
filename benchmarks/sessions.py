"""Section 3: concurrent calls in one process pinned to one core, audio paced in real time.

Each call is a real Pipecat pipeline run by its own ``WorkerRunner``, as each call of a bot
server would be: ``Pipeline([PassThrough()])`` without capture, and
``Pipeline([PassThrough(), AudioCaptureProcessor(SessionAudioCapture(...))])`` with it, the
capture writing WAV files to local disk and indexing them in one SQLite file shared by the
process (when the SQLite backend imports). The pass-through stands in for the rest of the bot,
so the difference between the two is everything that inserting the capture costs: a pipeline
hop, the processor's work, the writer, its worker threads and the disk. A real pipeline rather
than the processor alone, because Pipecat's per-frame machinery (queues and tasks per
processor) is what the processor's own cost adds to, and both share the event loop.

Every call follows its own scripted conversation (``benchmarks.script``), one step every
20 ms by ``asyncio.sleep`` to absolute deadlines, the calls' phases spread over the period.
Each configuration runs in a fresh process (``python -m benchmarks.sessions``), pinned with
``os.sched_setaffinity`` to one core (every thread of it); the parent reads the JSON it prints.
"""

import argparse
import asyncio
import gc
import importlib
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.workers.runner import WorkerRunner

from benchmarks.child import print_result, run_child
from benchmarks.lag import LagProbe, percentile
from benchmarks.report import Section, table
from benchmarks.script import FRAME_S, call_ticks
from benchmarks.stats import Summary
from benchmarks.subjects import PassThrough
from pipecat_audio_capture import (
    AudioCaptureProcessor,
    CompositeAudioStorage,
    LocalAudioStorage,
    SegmentStorage,
    SessionAudioCapture,
    TurnIds,
)

LAG_TARGET_MS = 10.0
"""The p99 event-loop lag a configuration must stay under."""

PROBE_PERIOD_S = 0.005
MODES = ("without capture", "with capture")
_WITHOUT, _WITH = MODES
_CALL_S = 600.0
_START_SPREAD_S = 0.5
_SATURATED = 0.9


@dataclass
class SessionRun:
    """What one child process measured.

    Parameters:
        sessions: Concurrent calls.
        capture: Whether each call recorded its turns.
        index: The metadata index used ("sqlite" or "none").
        wall_s: Length of the measured window.
        cpu_s: Process CPU time (all threads) in the window.
        lag_p50_ms: Median oversleep of the 5 ms probe in the window.
        lag_p99_ms: 99th percentile oversleep.
        lag_max_ms: Worst oversleep.
        full_gc_max_ms: Longest full (generation 2) garbage collection in the window, or 0.
        frames_late_ms: How far behind its schedule the slowest call was at the end.
        baseline_rss_kib: Resident memory before the calls were built.
        peak_rss_kib: Peak resident memory of the process (VmHWM).
        segments_stored: Segments written by the end (after draining).
        segments_lost: Segments dropped or failed.
    """

    sessions: int
    capture: bool
    index: str
    wall_s: float
    cpu_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    full_gc_max_ms: float
    frames_late_ms: float
    baseline_rss_kib: int
    peak_rss_kib: int
    segments_stored: int
    segments_lost: int

    @property
    def cpu_per_session(self) -> float:
        """Share of one core per call."""
        return self.cpu_s / self.wall_s / self.sessions

    @property
    def rss_per_session_kib(self) -> float:
        """Peak resident memory above the baseline, per call."""
        return (self.peak_rss_kib - self.baseline_rss_kib) / self.sessions


class Call:
    """One simulated call: a pipeline, its runner, and a feeder that paces the script."""

    def __init__(self, seed: int, storage: SegmentStorage | None) -> None:
        """Build the pipeline; with ``storage`` the call records its turns into it."""
        self.seed = seed
        self.capture: SessionAudioCapture | None = None
        processors: list[FrameProcessor] = [PassThrough()]
        if storage is not None:
            self.capture = SessionAudioCapture(str(uuid.uuid4()), storage)
            processors.append(AudioCaptureProcessor(self.capture, TurnIds()))
        self.worker = PipelineWorker(Pipeline(processors), cancel_on_idle_timeout=False)
        self.started = asyncio.Event()
        self.lateness_s = 0.0
        self._running: asyncio.Task[None] | None = None
        self._feeding: asyncio.Task[None] | None = None

        @self.worker.event_handler("on_pipeline_started")
        async def _on_started(_: PipelineWorker, __: Frame) -> None:
            self.started.set()

    async def start(self) -> None:
        """Start the call's runner; the pipeline starts in the background."""
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self._running = asyncio.get_running_loop().create_task(runner.run())

    def feed(self, start_at: float) -> None:
        """Start pushing the script, its first step at loop time ``start_at``."""
        self._feeding = asyncio.get_running_loop().create_task(self._feed(start_at))

    async def end(self) -> None:
        """Stop feeding, end the pipeline and drain the writer."""
        if self._feeding is not None:
            self._feeding.cancel()
            await asyncio.gather(self._feeding, return_exceptions=True)
        await self.worker.queue_frame(EndFrame())
        if self._running is not None:
            await self._running
        if self.capture is not None:
            await self.capture.close()

    async def _feed(self, start_at: float) -> None:
        loop = asyncio.get_running_loop()
        for tick in call_ticks(_CALL_S, seed=self.seed):
            delay = start_at + tick.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lateness_s = max(0.0, -delay)
            for frame, direction in tick.frames:
                await self.worker.queue_frame(frame, direction)
                if isinstance(frame, TTSAudioRawFrame):
                    # A TTS service receives its audio chunk by chunk: let the loop run between.
                    await asyncio.sleep(0)


async def run_calls(count: int, capture: bool, seconds: float, warmup_s: float) -> SessionRun:
    """Run ``count`` calls, measure ``seconds`` after ``warmup_s``, then end them all."""
    baseline = _proc_status_kib("VmRSS")
    with tempfile.TemporaryDirectory(prefix="audio-capture-bench-") as root:
        storage, index = await _storage(Path(root)) if capture else (None, None)
        calls = [Call(seed, storage) for seed in range(count)]
        probe = LagProbe(PROBE_PERIOD_S)
        probe.start()
        for call in calls:
            await call.start()
        await asyncio.gather(*(call.started.wait() for call in calls))
        loop = asyncio.get_running_loop()
        rng = random.Random(count)
        first_step = loop.time() + 0.1
        for call in calls:
            call.feed(first_step + rng.uniform(0, _START_SPREAD_S))
        await asyncio.sleep(warmup_s)
        probe.restart_samples()
        with FullCollections() as collections:
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        lags_ms = [lag * 1000 for lag in await probe.stop()]
        late_ms = max(call.lateness_s for call in calls) * 1000
        peak = _proc_status_kib("VmHWM")
        await asyncio.gather(*(call.end() for call in calls))
        if index is not None:
            await index.close()
    captures = [call.capture for call in calls if call.capture is not None]
    return SessionRun(
        sessions=count,
        capture=capture,
        index="sqlite" if index is not None else "none",
        wall_s=wall,
        cpu_s=cpu,
        lag_p50_ms=percentile(lags_ms, 0.5),
        lag_p99_ms=percentile(lags_ms, 0.99),
        lag_max_ms=max(lags_ms),
        full_gc_max_ms=max(collections.durations_ms, default=0.0),
        frames_late_ms=late_ms,
        baseline_rss_kib=baseline,
        peak_rss_kib=peak,
        segments_stored=sum(c.stats.stored for c in captures),
        segments_lost=sum(c.stats.dropped + c.stats.failed for c in captures),
    )


class FullCollections:
    """Records how long each full (generation 2) garbage collection takes while active."""

    def __init__(self) -> None:
        """Nothing recorded yet."""
        self.durations_ms: list[float] = []
        self._started = 0.0

    def __enter__(self) -> "FullCollections":
        """Start recording."""
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop recording."""
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.durations_ms.append((time.perf_counter() - self._started) * 1000)


async def _storage(root: Path) -> tuple[SegmentStorage, Any]:
    """Local files, indexed in a shared SQLite file when that backend imports."""
    files = LocalAudioStorage(root / "recordings")
    try:
        sqlite_backend = importlib.import_module("pipecat_audio_capture.storage.sqlite")
    except ImportError:
        return files, None
    index = sqlite_backend.SQLiteAudioMetaStorage(root / "index.sqlite3")
    await index.run_migrations()
    return CompositeAudioStorage(files=files, metadata=index), index


def _proc_status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def pin_to_core(core: int) -> None:
    """Pin every thread of this process (and the threads it starts later) to ``core``."""
    for task in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(task), {core})


def main() -> None:
    """Child entry point: run one configuration and print its ``SessionRun`` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--capture", action="store_true")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--core", type=int, required=True)
    args = parser.parse_args()
    pin_to_core(args.core)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    run = asyncio.run(run_calls(args.sessions, args.capture, args.seconds, args.warmup))
    print_result(asdict(run))


# The parent side.


@dataclass(frozen=True)
class Plan:
    """How section 3 runs.

    Parameters:
        ladder: Session counts measured in every repetition.
        reps: Repetitions of the ladder.
        seconds: Measured window of each run.
        warmup_s: Time after the calls started before the window opens.
        search_steps: Single runs per mode bisecting for the largest N under the lag target.
    """

    ladder: tuple[int, ...]
    reps: int
    seconds: float
    warmup_s: float
    search_steps: int


def child_run(count: int, capture: bool, plan: Plan) -> SessionRun:
    """Run one configuration in a fresh process pinned to this machine's last usable core."""
    args = [
        *("--sessions", str(count), "--seconds", str(plan.seconds)),
        *("--warmup", str(plan.warmup_s), "--core", str(max(os.sched_getaffinity(0)))),
    ]
    if capture:
        args.append("--capture")
    return SessionRun(**run_child("benchmarks.sessions", *args))


def measure(plan: Plan) -> tuple[Section, dict[str, list[SessionRun]]]:
    """The ladder (modes interleaved, order rotated) and a bisection for the largest N.

    Returns:
        The section, and the ladder runs of each mode (for the memory section).
    """
    runs: dict[str, list[SessionRun]] = {mode: [] for mode in MODES}
    for rep in range(plan.reps):
        for count in plan.ladder:
            modes = MODES if (rep + count) % 2 == 0 else MODES[::-1]
            for mode in modes:
                runs[mode].append(child_run(count, mode == _WITH, plan))
    searches = {mode: _search(mode, runs[mode], plan) for mode in MODES}
    return _section(plan, runs, searches), runs


@dataclass(frozen=True)
class Search:
    """The largest N found under the lag target.

    Parameters:
        passing: The largest N whose p99 lag stayed under the target.
        failing: The smallest N seen above it, or None if every N passed.
        steps: The (N, p99 ms) of each bisection run.
    """

    passing: int | None
    failing: int | None
    steps: list[tuple[int, float]]


def _search(mode: str, ladder_runs: list[SessionRun], plan: Plan) -> Search:
    """Bisect between the ladder's last passing and first failing N with single runs."""
    medians = {
        count: Summary.of([r.lag_p99_ms for r in ladder_runs if r.sessions == count]).median
        for count in plan.ladder
    }
    passing = max((n for n, p99 in medians.items() if p99 < LAG_TARGET_MS), default=None)
    failing = min(
        (n for n, p99 in medians.items() if p99 >= LAG_TARGET_MS and n > (passing or 0)),
        default=None,
    )
    steps: list[tuple[int, float]] = []
    for _ in range(plan.search_steps):
        if passing is None or failing is None or failing - passing <= 1:
            break
        middle = (passing + failing) // 2
        p99 = child_run(middle, mode == _WITH, plan).lag_p99_ms
        steps.append((middle, p99))
        if p99 < LAG_TARGET_MS:
            passing = middle
        else:
            failing = middle
    return Search(passing, failing, steps)


def _section(plan: Plan, runs: dict[str, list[SessionRun]], searches: dict[str, Search]) -> Section:
    """The ladder table, the CPU comparison and the largest N."""
    section = Section("3. Sessions per core")
    index = runs[_WITH][0].index if runs[_WITH] else "none"
    section.add(
        "N concurrent calls in one process pinned to one core, each a `PipelineWorker` under "
        "its own `WorkerRunner`: `Pipeline([PassThrough()])` without capture, "
        "`Pipeline([PassThrough(), AudioCaptureProcessor(SessionAudioCapture(...))])` with it "
        f"(WAV files to local disk; metadata index: {index}, one file shared by the process). "
        "The pass-through stands in for the rest of the bot, so the difference is all that "
        "inserting the capture costs: a pipeline hop, the processor, the writer task, its "
        "worker threads and the disk. Each call plays its own scripted conversation (a step "
        f"every 20 ms by `asyncio.sleep` to absolute deadlines, phases spread). {frame_rate_note()}"
    )
    section.add(
        f"Each run: the calls start, {plan.warmup_s:.0f} s of warm-up, then a "
        f"{plan.seconds:.0f} s window in which a probe task sleeps "
        f"{PROBE_PERIOD_S * 1000:.0f} ms in a loop and records its oversleep (the event-loop "
        "lag), and process CPU time (all threads) is taken. CPU per call = CPU time / window "
        f"/ N, in % of one core. Median (min-max) over {plan.reps} runs per cell, the "
        'configurations interleaved. "Behind" is how late the slowest call\'s feeder was on '
        'its 20 ms schedule at the end of the window. "Full GC" is the longest generation-2 '
        "garbage collection in the window (0 if none ran): a pause of the whole event loop "
        "that shows up as the worst oversleep. Other work on the shared machine (see the "
        "load average above) can take the pinned core: single runs have outliers, notably "
        "in the worst oversleep, so read the medians."
    )
    rows = []
    for count in plan.ladder:
        for mode in MODES:
            cell = [r for r in runs[mode] if r.sessions == count]
            rows.append(_ladder_row(count, mode, cell))
    section.add(
        table(
            [
                "N",
                "mode",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "full GC ms",
                "CPU per call, % core",
                "behind, ms",
                "segments stored (lost)",
            ],
            rows,
        )
    )
    _add_cpu_comparison(section, plan, runs)
    lines = []
    for mode, search in searches.items():
        found = _search_text(search)
        steps = ", ".join(f"N={n}: p99 {p99:.1f} ms" for n, p99 in search.steps) or "none"
        lines.append(f"- {mode}: {found} (bisection runs: {steps})")
        section.headlines.append(f"max N with p99 lag < {LAG_TARGET_MS:.0f} ms, {mode}: {found}")
    section.add(
        f"Largest N with p99 lag under {LAG_TARGET_MS:.0f} ms on one core (ladder medians, "
        "then single runs bisecting between the last passing and the first failing N):\n\n"
        + "\n".join(lines)
    )
    return section


def _ladder_row(count: int, mode: str, cell: list[SessionRun]) -> tuple[object, ...]:
    """One (N, mode) cell of the ladder table."""
    return (
        count,
        mode,
        Summary.of([r.lag_p50_ms for r in cell]).text(2),
        Summary.of([r.lag_p99_ms for r in cell]).text(1),
        Summary.of([r.lag_max_ms for r in cell]).text(1),
        Summary.of([r.full_gc_max_ms for r in cell]).text(1),
        Summary.of([r.cpu_per_session * 100 for r in cell]).text(3),
        Summary.of([r.frames_late_ms for r in cell]).text(0),
        f"{sum(r.segments_stored for r in cell)} ({sum(r.segments_lost for r in cell)})"
        if cell[0].capture
        else "",
    )


def _add_cpu_comparison(section: Section, plan: Plan, runs: dict[str, list[SessionRun]]) -> None:
    """CPU per call with capture against without, per N; the last N not overloaded as headline."""
    rows = []
    headline = "CPU per call: every N overloaded the core"
    for count in plan.ladder:
        without = [r for r in runs[_WITHOUT] if r.sessions == count]
        with_ = [r for r in runs[_WITH] if r.sessions == count]
        pairs = list(zip(with_, without, strict=True))
        ratio = Summary.of([w.cpu_per_session / o.cpu_per_session for w, o in pairs])
        extra = Summary.of([(w.cpu_per_session - o.cpu_per_session) * 1000 for w, o in pairs])
        busy, overloaded = _load(without, with_)
        note = "overloaded: CPU per call is capped" if overloaded else ""
        rows.append((count, ratio.text(2), extra.text(3), f"{busy * 100:.0f} %", note))
        if not overloaded:
            headline = _cpu_headline(count, without, with_, ratio)
    section.add(
        "CPU per call with capture against without, per repetition (the two runs of a "
        "repetition are adjacent). Overloaded: in either mode the median run kept the core "
        "90 % busy, or had a call's feeder 20 ms behind (other work can take the pinned "
        'core). "Busiest" is the higher of the two modes\' median CPU share:\n\n'
        + table(
            ["N", "with ÷ without", "added CPU, ms per second of call", "busiest", ""],
            rows,
        )
    )
    section.headlines.append(headline)


def _load(*cells: list[SessionRun]) -> tuple[float, bool]:
    """The higher median CPU share of the modes, and whether either was overloaded.

    Overloaded: the median run kept the core 90 % busy or had a call a frame (20 ms) behind
    its schedule; other work on the machine can take the pinned core, so the process may fall
    behind before its own CPU share reaches 90 %.
    """
    busy = max(Summary.of([r.cpu_s / r.wall_s for r in cell]).median for cell in cells)
    late_ms = max(Summary.of([r.frames_late_ms for r in cell]).median for cell in cells)
    return busy, busy >= _SATURATED or late_ms >= FRAME_S * 1000


def _cpu_headline(
    count: int, without: list[SessionRun], with_: list[SessionRun], ratio: Summary
) -> str:
    """CPU per call in both modes at ``count`` calls, and the calls a busy core would run."""
    plain = Summary.of([r.cpu_per_session * 100 for r in without]).median
    captured = Summary.of([r.cpu_per_session * 100 for r in with_]).median
    return (
        f"CPU per call at N={count}: {plain:.2f} % of a core without capture, "
        f"{captured:.2f} % with (with ÷ without {ratio.text(2)}; a fully busy core would run "
        f"{100 / plain:.0f} and {100 / captured:.0f} calls)"
    )


def _search_text(search: Search) -> str:
    """The largest N found, in words."""
    if search.passing is None:
        return f"below {search.failing} (the smallest N tried failed)"
    if search.failing is None:
        return f"at least {search.passing} (every N tried passed)"
    return f"{search.passing} (N={search.failing} failed)"


def frame_rate_note() -> str:
    """How many frames a call pushes per second, for reading CPU per call."""
    ticks = list(call_ticks(60.0, seed=0))
    frames = sum(len(tick.frames) for tick in ticks) / (len(ticks) * FRAME_S)
    return f"A scripted call pushes about {frames:.0f} frames per second."


if __name__ == "__main__":
    main()
