"""Section 4: memory per call, and a 30-minute user turn held within ``max_segment_s``.

The long turn goes straight through ``process_frame`` (unlinked, ``push_frame`` stubbed as in
section 1): 30 minutes of 20 ms microphone frames, each a fresh buffer, after one
``UserStartedSpeakingFrame``. The capture processor hands each full part to a collector that
keeps nothing, so what stays allocated is what the processor holds. ``tracemalloc`` reports the
Python heap in use after every simulated minute.
"""

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from pipecat.frames.frames import UserStartedSpeakingFrame
from pipecat.observers.turn_tracking_observer import TurnTrackingObserver
from pipecat.processors.audio.audio_buffer_processor import TurnAudioData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from benchmarks.report import Section, table
from benchmarks.script import FRAME_S, mic_frame
from benchmarks.sessions import MODES, SessionRun
from benchmarks.stats import Summary
from benchmarks.subjects import audio_buffer_processor, start_unlinked
from pipecat_audio_capture import AudioCaptureProcessor, PendingAudioSegment, TurnIds
from pipecat_audio_capture.ids import new_id

TURN_MINUTES = 30
SMALL_CAP_S = 10.0
"""The ``max_segment_s`` of the bounded run."""

_SAMPLE_MINUTES = (1, 2, 5, 10, 15, 20, 25, 30)


class DiscardingCollector:
    """An ``AudioCaptureCollector`` that counts segments and keeps none of them."""

    def __init__(self) -> None:
        """Nothing collected yet."""
        self._session_id = new_id()
        self.segments = 0
        self.largest_bytes = 0

    @property
    def session_id(self) -> str:
        """UUID of the call."""
        return self._session_id

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Count the segment and let it go."""
        self.segments += 1
        self.largest_bytes = max(self.largest_bytes, segment.byte_length)
        return True


@dataclass(frozen=True)
class TurnTrace:
    """Heap in use while one long turn streams through a processor.

    Parameters:
        label: What ran.
        mib_at_minute: Traced heap (MiB above the start) after each sampled minute.
        peak_mib: Traced peak (MiB above the start).
        note: What the processor handed out.
    """

    label: str
    mib_at_minute: dict[int, float]
    peak_mib: float
    note: str


async def long_turn(label: str, processor: FrameProcessor, note: Callable[[], str]) -> TurnTrace:
    """Stream a ``TURN_MINUTES`` user turn through ``processor`` and trace the heap."""
    await start_unlinked(processor, TurnTrackingObserver())
    await processor.process_frame(UserStartedSpeakingFrame(), FrameDirection.DOWNSTREAM)
    frames_per_minute = round(60 / FRAME_S)
    samples: dict[int, float] = {}
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for minute in range(1, TURN_MINUTES + 1):
        for _ in range(frames_per_minute):
            await processor.process_frame(mic_frame(), FrameDirection.DOWNSTREAM)
        if minute in _SAMPLE_MINUTES:
            samples[minute] = (tracemalloc.get_traced_memory()[0] - base) / 2**20
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    trace = TurnTrace(label, samples, peak, note())
    await processor.cleanup()
    return trace


async def measure(session_runs: dict[str, list[SessionRun]]) -> Section:
    """Per-call resident memory from section 3's runs, then the long-turn traces."""
    section = Section("4. Memory")
    section.add(_rss_block(session_runs, section))
    traces = [
        await _capture_turn(SMALL_CAP_S),
        await _capture_turn(None),
        await _audio_buffer_turn(),
    ]
    section.add(
        f"A {TURN_MINUTES}-minute user turn (16 kHz mono, 20 ms frames, each a new buffer) "
        "streamed through `process_frame`; Python heap in use (tracemalloc, MiB above the "
        "start) after each minute. The capture processor splits the turn every "
        "`max_segment_s` and hands each part to a collector that discards it, so its memory "
        "is bounded by the cap (cap times 32 KB/s of 16 kHz audio, plus the frame references); "
        "`AudioBufferProcessor` keeps the whole turn, resampled to 24 kHz, and the whole call."
    )
    headers = ["processor", *[f"{m} min" for m in _SAMPLE_MINUTES], "peak", "handed out"]
    rows = [
        (
            trace.label,
            *[f"{trace.mib_at_minute[m]:.2f}" for m in _SAMPLE_MINUTES],
            f"{trace.peak_mib:.2f}",
            trace.note,
        )
        for trace in traces
    ]
    section.add(table(headers, rows))
    small = traces[0]
    section.headlines.append(
        f"30-min user turn, max_segment_s={SMALL_CAP_S:.0f}: heap "
        f"{small.mib_at_minute[1]:.2f} MiB at 1 min, {small.mib_at_minute[TURN_MINUTES]:.2f} "
        f"MiB at 30 min (peak {small.peak_mib:.2f} MiB)"
    )
    return section


async def _capture_turn(cap_s: float | None) -> TurnTrace:
    """The long turn through the capture processor with cap ``cap_s`` (None: default)."""
    collector = DiscardingCollector()
    if cap_s is None:
        processor = AudioCaptureProcessor(collector, TurnIds())
        label = "AudioCaptureProcessor, default max_segment_s (300 s)"
    else:
        processor = AudioCaptureProcessor(collector, TurnIds(), max_segment_s=cap_s)
        label = f"AudioCaptureProcessor, max_segment_s={cap_s:.0f}"
    return await long_turn(
        label,
        processor,
        lambda: f"{collector.segments} parts, largest {collector.largest_bytes / 2**20:.2f} MiB",
    )


async def _audio_buffer_turn() -> TurnTrace:
    """The long turn through ``AudioBufferProcessor``."""
    turns: list[TurnAudioData] = []
    processor = audio_buffer_processor(turns)
    return await long_turn(
        "AudioBufferProcessor(enable_turn_audio=True)",
        processor,
        lambda: f"{len(turns)} turn recordings (the turn has not ended)",
    )


def _rss_block(session_runs: dict[str, list[SessionRun]], section: Section) -> str:
    """Peak resident memory per call, from section 3's runs; the smallest N as headline."""
    rows = []
    counts = sorted({run.sessions for run in session_runs[MODES[0]]})
    for count in counts:
        cells = [[r for r in session_runs[mode] if r.sessions == count] for mode in MODES]
        per_call = [Summary.of([r.rss_per_session_kib for r in cell]) for cell in cells]
        added = Summary.of(
            [
                (w.peak_rss_kib - o.peak_rss_kib) / count
                for o, w in zip(cells[0], cells[1], strict=True)
            ]
        )
        rows.append((count, per_call[0].text(0), per_call[1].text(0), added.text(0)))
        if count == counts[0]:
            section.headlines.append(
                f"peak RSS per call at N={count}: {per_call[0].text(0)} KiB without capture, "
                f"{per_call[1].text(0)} KiB with"
            )
    return (
        "Peak resident memory per call in section 3's runs: (VmHWM at the end of the window "
        "- VmRSS before the calls were built) / N, in KiB; with capture, segments wait in "
        "memory until written. Median (min-max) over the repetitions:\n\n"
        + table(
            ["N", f"{MODES[0]}, KiB/call", f"{MODES[1]}, KiB/call", "added by capture, KiB/call"],
            rows,
        )
    )
