"""Render the recordings the simulated call plays, with espeak-ng and SoX (a maintainer tool,
kept out of the package).

The WAVs in ``assets/`` are committed, so this only runs when a line of the script changes::

    apt-get install -y espeak-ng sox
    python scripts/render_demo_assets.py        # from the repository root

The committed set was made with Debian 12's espeak-ng 1.51 and SoX 14.4.2; rendering is
deterministic, so re-running it reproduces the files byte for byte. Each recording has its
leading and trailing silence trimmed (the simulated microphone and the pauses between sentences
supply the silence) and its peak normalised to -3 dBFS, which keeps it well above the volume floor
of Pipecat's VAD. Bot sentences end with 250 ms of silence so consecutive sentences do not run
into each other. Recordings no longer used by the default script are removed.
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from loguru import logger

from pipecat_audio_capture.demo.script import (
    BOT_SAMPLE_RATE,
    DEFAULT_SCRIPT,
    USER_SAMPLE_RATE,
    CallScript,
    asset_name,
)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "pipecat_audio_capture" / "demo" / "assets"

USER_VOICE = "en-us+f3"
BOT_VOICE = "en-gb+m3"
WORDS_PER_MINUTE = 165
BOT_SENTENCE_GAP_S = 0.25

# SoX `silence` trims from the start only; reversing twice trims the end as well.
_TRIM = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"]


def render_line(text: str, *, voice: str, sample_rate: int, gap_s: float, out: Path) -> None:
    """Speak ``text`` with espeak-ng and store it as 16-bit mono PCM WAV.

    Args:
        text: What to say.
        voice: The espeak-ng voice (language plus variant).
        sample_rate: Sample rate of the stored file.
        gap_s: Silence appended after the speech.
        out: Where to write the WAV.
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text],
            check=True,
        )
        # -D: no dither, whose random noise would make every rendering differ.
        command = ["sox", "-D", str(raw), "-r", str(sample_rate), "-c", "1", "-b", "16", str(out)]
        command += [*_TRIM, "gain", "-n", "-3"]
        if gap_s:
            command += ["pad", "0", str(gap_s)]
        subprocess.run(command, check=True)


def render_script(script: CallScript, out_dir: Path) -> set[Path]:
    """Render every line of ``script`` into ``out_dir``.

    Args:
        script: The call whose lines to render.
        out_dir: The directory to write into.

    Returns:
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    for user_line in script.user_lines:
        out = out_dir / asset_name("user", user_line.text)
        render_line(
            user_line.text, voice=USER_VOICE, sample_rate=USER_SAMPLE_RATE, gap_s=0, out=out
        )
        written.add(out)
    for bot_line in script.bot_lines:
        for sentence in bot_line.sentences:
            out = out_dir / asset_name("bot", sentence)
            render_line(
                sentence,
                voice=BOT_VOICE,
                sample_rate=BOT_SAMPLE_RATE,
                gap_s=BOT_SENTENCE_GAP_S,
                out=out,
            )
            written.add(out)
    return written


def main() -> None:
    """Render the default script's recordings and remove the ones it no longer uses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="directory to write into")
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install -y espeak-ng sox)")
    written = render_script(DEFAULT_SCRIPT, args.out)
    for stale in set(args.out.glob("*.wav")) - written:
        stale.unlink()
        logger.info(f"removed {stale.name}")
    total = sum(path.stat().st_size for path in written)
    logger.info(f"{len(written)} recordings, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
