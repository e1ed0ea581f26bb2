"""Section 2a: WAV encoding against a plain memory copy, and the local writer's throughput."""

import argparse
import asyncio
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.child import print_result, run_child
from benchmarks.lag import LagProbe, percentile
from benchmarks.report import Section, table
from benchmarks.script import FRAME_S, pcm
from benchmarks.stats import Summary, interleaved, ratios, verdict
from pipecat_audio_capture import LocalAudioStorage, PendingAudioSegment, SessionAudioCapture
from pipecat_audio_capture.wav import encode_wav

SEGMENT_S = 5.0
"""Length of the segments written."""

_ENCODE_TARGET_S = 0.05

Encoder = Callable[[list[bytes], int, int], bytes]
"""Encodes (chunks, sample rate, PCM bytes in the chunks) as a mono WAV file."""


def segment_chunks(seconds: float, rate: int) -> list[bytes]:
    """The PCM of a segment as the processor hands it over: one buffer per 20 ms frame."""
    frame_bytes = round(rate * FRAME_S) * 2
    return [pcm(frame_bytes) for _ in range(round(seconds / FRAME_S))]


def pending_segment(session_id: str, chunks: list[bytes], rate: int) -> PendingAudioSegment:
    """A finished user segment with new ids, ready for ``SessionAudioCapture``."""
    return PendingAudioSegment(
        segment_id=str(uuid.uuid4()),
        session_id=session_id,
        turn_id=str(uuid.uuid4()),
        speaker="user",
        pcm=chunks,
        sample_rate=rate,
        num_channels=1,
        started_at=datetime.now(UTC),
    )


ENCODE_WAV = "encode_wav, PCM size given (as the writer calls it)"
ENCODE_WAV_COUNTING = "encode_wav, PCM size counted"
MEMORY_COPY = "b''.join of the chunks (memory copy)"
ENCODERS: dict[str, Encoder] = {
    ENCODE_WAV: lambda chunks, rate, nbytes: encode_wav(chunks, rate, 1, data_size=nbytes),
    ENCODE_WAV_COUNTING: lambda chunks, rate, _: encode_wav(chunks, rate, 1),
    MEMORY_COPY: lambda chunks, rate, _: b"".join(chunks),
}
ENCODING_CASES = ((SEGMENT_S, 16000), (SEGMENT_S, 24000), (60.0, 16000), (300.0, 16000))
"""(seconds, rate) of the segments encoded: 5 s of user and bot audio, a minute, and the
longest segment the processor makes by default (``max_segment_s`` = 300 s)."""

_LONG_S = 300.0
_THREADED_ENCODES = 20
_STALL_PROBE_S = 0.001


async def measure_encoding(reps: int) -> Section:
    """Time the encoders on each case, interleaved; then the loop stall of a long encode."""
    section = Section("2a. WAV encoding against a memory copy")
    section.add(
        "A mono segment as the processor hands it to the writer: a list of 20 ms chunks. The "
        "memory copy (`b''.join` of the chunks) is the physical limit: any encoder must copy "
        "the PCM into one buffer at least once. `encode_wav` joins a 44-byte header (the "
        "format's header is built once with numpy, then only its two size fields change) and "
        "the chunks in one copy. The writer passes the PCM size the processor counted as it "
        "gathered the chunks (`PendingAudioSegment.pcm_bytes`); counting it again walks every "
        "chunk, which for small chunks costs more than copying them, so both are shown. Per "
        f"segment, median (min-max) over {reps} interleaved repetitions of a "
        f"~{_ENCODE_TARGET_S * 1000:.0f} ms loop; page faults per call from `getrusage`."
    )
    rows = []
    for seconds, rate in ENCODING_CASES:
        chunks = segment_chunks(seconds, rate)
        times = await _encoding_times(chunks, rate, reps)
        nbytes = sum(map(len, chunks))
        case = f"{seconds:.0f} s at {rate // 1000} kHz ({nbytes / 2**20:.2f} MiB)"
        rows += _encoding_rows(case, times, chunks, rate)
        wav_vs_copy = ratios(times[ENCODE_WAV], times[MEMORY_COPY])
        section.headlines.append(
            f"encode_wav (PCM size given) ÷ memory copy, {case}: {wav_vs_copy.text()} — "
            f"{verdict(wav_vs_copy.median, 2)}"
        )
    section.add(
        table(
            ["segment", "encoder", "µs per segment", "MB/s", "÷ memory copy", "page faults"],
            rows,
        )
    )
    await _add_threaded(section, reps)
    return section


async def _encoding_times(chunks: list[bytes], rate: int, reps: int) -> dict[str, list[float]]:
    """Microseconds per segment of every encoder, interleaved."""
    return await interleaved(list(ENCODERS), reps, lambda name: _time_encoder(name, chunks, rate))


async def _time_encoder(name: str, chunks: list[bytes], rate: int) -> float:
    """Microseconds per segment of one encoder, over a ~50 ms loop."""
    encoder = ENCODERS[name]
    nbytes = sum(map(len, chunks))
    loops = _loops_for(lambda: encoder(chunks, rate, nbytes))
    start = time.perf_counter()
    for _ in range(loops):
        encoder(chunks, rate, nbytes)
    return (time.perf_counter() - start) / loops * 1e6


def _loops_for(call: Callable[[], object]) -> int:
    """How many calls make a loop of about ``_ENCODE_TARGET_S``."""
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    return max(10, round(_ENCODE_TARGET_S / once))


def _page_faults(encoder: Encoder, chunks: list[bytes], rate: int) -> float:
    """Minor page faults per call of ``encoder``."""
    nbytes = sum(map(len, chunks))
    encoder(chunks, rate, nbytes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        encoder(chunks, rate, nbytes)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10


def _encoding_rows(
    case: str, times: dict[str, list[float]], chunks: list[bytes], rate: int
) -> list[tuple[str, ...]]:
    """Table rows of one segment size."""
    nbytes = sum(map(len, chunks))
    memcpy = times[MEMORY_COPY]
    return [
        (
            case,
            name,
            Summary.of(values).text(1),
            Summary.of([nbytes / us for us in values]).text(0),
            ratios(values, memcpy).text(2),
            f"{_page_faults(ENCODERS[name], chunks, rate):.0f}",
        )
        for name, values in times.items()
    ]


@dataclass(frozen=True)
class ThreadedEncode:
    """A fresh process encoding long segments in a worker thread, as the writer does.

    Parameters:
        ms_per_encode: Wall time per segment.
        faults_per_encode: Minor page faults of the process per segment.
        stall_max_ms: Worst oversleep of the loop's probe.
        stall_p99_ms: 99th percentile oversleep.
    """

    ms_per_encode: float
    faults_per_encode: float
    stall_max_ms: float
    stall_p99_ms: float


async def _add_threaded(section: Section, reps: int) -> None:
    """The fresh-process table: encoding in a worker thread, loop stalls; and its headline."""
    names = [ENCODE_WAV, MEMORY_COPY]
    runs = await interleaved(names, reps, _threaded_in_child)
    package, reference = (
        Summary.of([r.ms_per_encode for r in runs[name]]).text(1) for name in names
    )
    section.headlines.append(
        f"one {_LONG_S:.0f} s segment encoded in the writer's worker thread, fresh process: "
        f"encode_wav {package} ms, memory copy {reference} ms"
    )
    rows = [
        (
            name,
            Summary.of([r.ms_per_encode for r in results]).text(2),
            Summary.of([r.faults_per_encode for r in results]).text(0),
            Summary.of([r.stall_max_ms for r in results]).text(1),
            Summary.of([r.stall_p99_ms for r in results]).text(1),
        )
        for name, results in runs.items()
    ]
    section.add(
        f"The same in a fresh process, as `SessionAudioCapture` encodes: {_THREADED_ENCODES} "
        f"segments of {_LONG_S:.0f} s at 16 kHz one after another through "
        "`asyncio.to_thread`, while a probe on the event loop sleeps "
        f"{_STALL_PROBE_S * 1000:.0f} ms in a loop (one process per run). Copying bytes holds "
        "the GIL, so the loop waits for each copy, its page faults included (a fresh "
        "process's allocator serves a new 9 MiB buffer from fresh pages).\n\n"
        + table(
            [
                "encoder",
                "ms per segment",
                "page faults per segment",
                "worst loop stall, ms",
                "p99 loop stall, ms",
            ],
            rows,
        )
    )


async def _threaded_in_child(name: str) -> ThreadedEncode:
    """One ``ThreadedEncode`` measured in a new process."""
    result = await asyncio.to_thread(run_child, "benchmarks.writer", "--threaded", name)
    return ThreadedEncode(**result)


async def threaded_encode(encoder: Encoder) -> ThreadedEncode:
    """Encode long segments in worker threads while probing the event loop."""
    chunks = segment_chunks(_LONG_S, 16000)
    probe = LagProbe(_STALL_PROBE_S)
    probe.start()
    await asyncio.sleep(0.01)
    probe.restart_samples()
    nbytes = sum(map(len, chunks))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(_THREADED_ENCODES):
        await asyncio.to_thread(encoder, chunks, 16000, nbytes)
    elapsed = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    lags_ms = [lag * 1000 for lag in await probe.stop()]
    return ThreadedEncode(
        ms_per_encode=elapsed / _THREADED_ENCODES * 1000,
        faults_per_encode=faults / _THREADED_ENCODES,
        stall_max_ms=max(lags_ms),
        stall_p99_ms=percentile(lags_ms, 0.99),
    )


async def measure_local_writes(reps: int, segments: int) -> Section:
    """``SessionAudioCapture`` + ``LocalAudioStorage`` against the bare atomic write."""
    section = Section("2b. Writer throughput to local disk")
    section.add(
        f"{segments} segments of {SEGMENT_S:.0f} s at 16 kHz recorded at once into a "
        "`SessionAudioCapture(capacity=segments)` over `LocalAudioStorage` in a temporary "
        "folder, timed from the first `record_segment` until `close()` returns (each segment "
        "is encoded in a worker thread, written under a temporary name, fsynced, renamed, and "
        "its folder fsynced). The reference writes the same WAV bytes in a plain loop with the "
        "least that contract needs (write a temporary file, fsync, rename, fsync the folder): "
        "the disk's cost, without the queue, worker threads, encoding or the package's checks."
    )
    chunks = segment_chunks(SEGMENT_S, 16000)
    wav = encode_wav(chunks, 16000, 1)
    with tempfile.TemporaryDirectory(prefix="audio-capture-bench-") as root:
        names = ["SessionAudioCapture + LocalAudioStorage", "bare durable write (reference)"]
        workers = {
            names[0]: lambda: _capture_run(Path(root), chunks, segments),
            names[1]: lambda: _bare_run(Path(root), wav, segments),
        }
        times = await interleaved(names, reps, lambda name: workers[name]())
    rows = [
        (
            name,
            Summary.of([segments / s for s in values]).text(0),
            Summary.of([segments * len(wav) / s / 1e6 for s in values]).text(1),
            Summary.of([s / segments * 1000 for s in values]).text(2),
        )
        for name, values in times.items()
    ]
    section.add(table(["writer", "segments/s", "MB/s (WAV)", "ms per segment"], rows))
    writer = Summary.of([segments / s for s in times[names[0]]])
    speed = Summary.of([segments * len(wav) / s / 1e6 for s in times[names[0]]])
    section.headlines.append(
        f"local writer: {writer.text(0, ' segments/s')}, {speed.text(1, ' MB/s')} "
        f"({SEGMENT_S:.0f} s segments, fsynced)"
    )
    return section


async def _capture_run(root: Path, chunks: list[bytes], segments: int) -> float:
    """Seconds for ``SessionAudioCapture`` to store ``segments`` segments."""
    session_id = str(uuid.uuid4())
    capture = SessionAudioCapture(session_id, LocalAudioStorage(root), capacity=segments)
    start = time.perf_counter()
    for _ in range(segments):
        capture.record_segment(pending_segment(session_id, chunks, 16000))
    stats = await capture.close()
    elapsed = time.perf_counter() - start
    if stats.stored != segments:
        raise RuntimeError(f"the writer stored {stats.stored} of {segments} segments")
    return elapsed


async def _bare_run(root: Path, wav: bytes, segments: int) -> float:
    """Seconds for ``durable_write`` of ``segments`` files."""
    folder = root / str(uuid.uuid4())
    folder.mkdir()
    start = time.perf_counter()
    for _ in range(segments):
        durable_write(folder / f"{uuid.uuid4()}.wav", wav)
    return time.perf_counter() - start


def durable_write(path: Path, data: bytes) -> None:
    """The least an atomic, durable write does: temporary file, fsync, rename, folder fsync."""
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def main() -> None:
    """Child entry point: ``--threaded NAME`` prints a ``ThreadedEncode`` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threaded", choices=list(ENCODERS), required=True)
    args = parser.parse_args()
    print_result(asdict(asyncio.run(threaded_encode(ENCODERS[args.threaded]))))


if __name__ == "__main__":
    main()
