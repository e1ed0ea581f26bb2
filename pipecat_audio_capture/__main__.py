"""``python -m pipecat_audio_capture``: the ``pipecat-audio-capture`` command."""

import sys

from pipecat_audio_capture.cli import main

if __name__ == "__main__":
    sys.exit(main())
