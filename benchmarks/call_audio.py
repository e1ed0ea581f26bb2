"""Section 5: memory and time to build a whole call's stereo recording, 10 and 60 minutes long.

A synthetic call is stored the way a bot stores it: one WAV per segment under a recordings
folder (``LocalAudioStorage``), indexed in SQLite. Every 12 s the user speaks 4 s (16 kHz) and
the bot answers 0.5 s later for 6.5 s (24 kHz); every fifth answer lasts 2 s and a user
barge-in overlaps its last second. A fresh process then builds ``call.wav`` from the index with
``write_session_call_audio``: once for its resident memory (Linux: the peak, ``VmHWM``, is reset
through ``/proc/self/clear_refs`` just before the build, so it is the build's own peak), and once
under ``tracemalloc`` for the Python heap's peak. The heap's peak grows with the number of
segments (their rows and placements, about 1 KiB each), not with the length of the audio.

``python -m benchmarks.call_audio`` runs this section alone and prints it.
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.child import print_result, run_child
from benchmarks.report import Section, table
from pipecat_audio_capture import (
    LocalAudioStorage,
    SQLiteAudioMetaStorage,
    write_session_call_audio,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import SegmentMetadata, Speaker
from pipecat_audio_capture.wav import HEADER_BYTES, encode_wav

CALL_MINUTES = (10, 60)
CYCLE_S = 12.0
USER_S, BOT_START_S, BOT_S = 4.0, 4.5, 6.5
BARGE_IN_EVERY = 5
RATES: dict[Speaker, int] = {"user": 16_000, "bot": 24_000}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
INDEX_NAME = "index.sqlite3"


def _tone(seconds: float, rate: int, freq_hz: float) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


async def store_call(folder: Path, minutes: int) -> str:
    """Write a synthetic call of ``minutes`` under ``folder``; return its session id."""
    files = LocalAudioStorage(folder / "recordings")
    session_id = new_id()
    turns: list[tuple[Speaker, float, float]] = []
    for cycle in range(round(minutes * 60 / CYCLE_S)):
        start = cycle * CYCLE_S
        turns.append(("user", start, USER_S))
        if cycle % BARGE_IN_EVERY == BARGE_IN_EVERY - 1:
            turns.append(("bot", start + BOT_START_S, 2.0))
            turns.append(("user", start + BOT_START_S + 1.0, 1.5))
        else:
            turns.append(("bot", start + BOT_START_S, BOT_S))
    audio = {
        (speaker, seconds): encode_wav([_tone(seconds, RATES[speaker], 300.0)], RATES[speaker], 1)
        for speaker, _, seconds in set(turns)
    }
    async with SQLiteAudioMetaStorage(folder / INDEX_NAME) as index:
        for speaker, start_s, seconds in turns:
            segment_id = new_id()
            wav = audio[(speaker, seconds)]
            url = await files.store_segment(session_id, segment_id, speaker, wav)
            started = T0 + timedelta(seconds=start_s)
            meta = SegmentMetadata(
                segment_id=segment_id,
                session_id=session_id,
                turn_id=new_id(),
                speaker=speaker,
                audio_url=url,
                sample_rate=RATES[speaker],
                num_channels=1,
                duration_ms=(len(wav) - HEADER_BYTES) / 2 / RATES[speaker] * 1000,
                byte_size=len(wav),
                interrupted=False,
                unplayed_ms=None,
                started_at=started,
                ended_at=started + timedelta(seconds=seconds),
            )
            await index.save_metadata(session_id, meta)
    return session_id


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the process's peak RSS to its current RSS (Linux 4.0+) and return it in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


async def _build(folder: Path, session_id: str, traced: bool) -> dict[str, float]:
    """The child's side: build ``call.wav`` once and measure it."""
    async with SQLiteAudioMetaStorage(folder / INDEX_NAME) as index:
        await index.run_migrations()
        rss_before = _reset_peak_rss()
        if traced:
            tracemalloc.start()
        start = time.perf_counter()
        report = await write_session_call_audio(
            index, session_id, folder / "call.wav", recordings=folder / "recordings"
        )
        elapsed = time.perf_counter() - start
        heap_peak = tracemalloc.get_traced_memory()[1] if traced else 0
        tracemalloc.stop()
    return {
        "segments": len(report.plan.placements),
        "issues": len(report.issues),
        "call_s": report.plan.duration_ms / 1000,
        "wav_bytes": report.plan.wav_bytes,
        "elapsed_s": elapsed,
        "rss_before_kib": rss_before,
        "rss_peak_kib": _status_kib("VmHWM"),
        "heap_peak_bytes": heap_peak,
    }


def measure(minutes_list: tuple[int, ...] = CALL_MINUTES) -> Section:
    """Build each call in fresh processes and report its memory and time."""
    section = Section("5. Whole-call stereo recording")
    section.add(__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0])
    rows = []
    for minutes in minutes_list:
        folder = Path(tempfile.mkdtemp(prefix="call-audio-bench-"))
        try:
            session_id = asyncio.run(store_call(folder, minutes))
            plain = run_child("benchmarks.call_audio", "--child", str(folder), session_id)
            traced = run_child(
                "benchmarks.call_audio", "--child", str(folder), session_id, "--traced"
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        growth_mib = (plain["rss_peak_kib"] - plain["rss_before_kib"]) / 1024
        heap_mib = traced["heap_peak_bytes"] / 2**20
        rows.append(
            [
                f"{plain['call_s'] / 60:.1f} min",
                int(plain["segments"]),
                int(plain["issues"]),
                f"{plain['wav_bytes'] / 2**20:.0f} MiB",
                f"{plain['rss_before_kib'] / 1024:.1f} MiB",
                f"{plain['rss_peak_kib'] / 1024:.1f} MiB",
                f"{growth_mib:.1f} MiB",
                f"{heap_mib:.2f} MiB",
                f"{plain['elapsed_s']:.1f} s",
            ]
        )
        section.headlines.append(
            f"whole-call WAV of a {minutes}-min call ({plain['wav_bytes'] / 2**20:.0f} MiB): "
            f"peak RSS +{growth_mib:.1f} MiB over the process before the build, Python heap peak "
            f"{heap_mib:.2f} MiB, built in {plain['elapsed_s']:.1f} s"
        )
    section.add(
        table(
            [
                "call",
                "segments",
                "issues",
                "call.wav",
                "RSS before",
                "peak RSS",
                "RSS growth",
                "heap peak (tracemalloc)",
                "build time",
            ],
            rows,
        )
    )
    return section


def main() -> None:
    """Run section 5 alone and print it, or (``--child``) build one call and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "SESSION_ID"))
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.child:
        folder, session_id = args.child
        print_result(asyncio.run(_build(Path(folder), session_id, args.traced)))
        return
    section = measure()
    print("\n".join(f"- {line}" for line in section.headlines), file=sys.stderr)
    print(section.markdown())


if __name__ == "__main__":
    main()
