"""The ``--recordings`` option of the commands that read local audio."""

import argparse
from pathlib import Path

RECORDINGS_HELP = "local recordings folder (default: the folder of a SQLite index)"
"""The ``--recordings`` help of every command, which all resolve it alike (see
:func:`pipecat_audio_capture.index_access.recordings_folder`)."""


def add_recordings_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--recordings DIR``, resolved by every command alike."""
    parser.add_argument("--recordings", metavar="DIR", type=Path, help=RECORDINGS_HELP)
