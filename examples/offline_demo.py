"""Record a simulated voice-bot call offline, then print its call log.

The same as ``pipecat-audio-capture demo``. The wiring a bot author writes (TurnIds, storage,
SessionAudioCapture, AudioCaptureProcessor between TTS and output, TranscriptRecorder on the
aggregators) is in ``pipecat_audio_capture/demo/recorded_call.py``; the simulated call itself
(Silero VAD, Pipecat's aggregators, scripted STT/LLM/TTS, real-time playback) is in
``pipecat_audio_capture/demo/call.py``.

Run it with ``python examples/offline_demo.py [--out ./recordings] [--speed 1.0]``.
"""

import argparse
import asyncio
from pathlib import Path

from pipecat_audio_capture.cli.format import format_call_log
from pipecat_audio_capture.demo.recorded_call import record_demo_call


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("recordings"))
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()

    result = await record_demo_call(args.out, speed=args.speed)
    print()
    print(format_call_log(result.call_log, result.gaps))
    print(f"\nWAV files: {result.recordings.resolve() / result.session_id}")
    print(f"index:     {result.index_path.resolve()}")


if __name__ == "__main__":
    asyncio.run(main())
