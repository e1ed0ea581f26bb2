"""Input audio heard outside a user turn, kept so that a turn can start before VAD confirmed it."""

from dataclasses import dataclass, field

from pipecat.frames.frames import AudioRawFrame

from pipecat_audio_capture.open_part import whole_samples
from pipecat_audio_capture.records import SAMPLE_WIDTH_BYTES

_SLACK_BYTES = 8192
"""Least input the pre-roll gathers past what a turn could use before it is trimmed (otherwise
twice ``preroll_s``): trimming walks the buffer, so it runs once per that much audio rather than
per frame."""

FRAME_OVERHEAD_BYTES = 64
"""What the pre-roll counts for holding a frame on top of its audio, so that a stream of empty
frames is trimmed too."""


@dataclass
class PrerollTake:
    """What a turn starting now takes from the pre-roll.

    Parameters:
        chunks: The audio, oldest first, whole samples only, at most ``preroll_s`` of it.
        nbytes: Bytes in ``chunks``.
        audio_format: Sample rate and channels of the audio (of the last audio taken if none).
        trimmed_bytes: Stray bytes cut off the frames looked at, or whole frames of an impossible
            format.
    """

    chunks: list[bytes]
    nbytes: int
    audio_format: tuple[int, int]
    trimmed_bytes: int


@dataclass
class _Tail:
    """The newest run of the pre-roll in one format, newest first, and what it says of the rest."""

    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    audio_format: tuple[int, int] | None = None
    frames: list[AudioRawFrame] = field(default_factory=list)
    held_bytes: int = 0
    trimmed_bytes: int = 0


class PrerollBuffer:
    """Input frames heard outside a user turn, newest last.

    Frames are checked (format, whole samples) and cut to ``preroll_s`` only when a turn takes
    them, so holding a frame costs an append; past a trim threshold the frames no turn could use
    are dropped, which bounds the memory.
    """

    def __init__(self, preroll_s: float, max_segment_s: float) -> None:
        """Initialize an empty pre-roll.

        Args:
            preroll_s: Audio a turn takes from before its start.
            max_segment_s: Longest segment; a pre-roll never holds more than one.
        """
        self._seconds = min(preroll_s, max_segment_s)
        self.frames: list[AudioRawFrame] = []
        self.held_bytes = 0
        self._trim_at = 0
        # A turn that starts with no pre-roll records in the format of the last one taken.
        self._last_format = (16000, 1)

    def add(self, frame: AudioRawFrame) -> None:
        """Hold an input frame heard outside a turn."""
        self.frames.append(frame)
        self.held_bytes += len(frame.audio) + FRAME_OVERHEAD_BYTES
        if self.held_bytes > self._trim_at:
            self._trim()

    def take(self) -> PrerollTake:
        """Give a starting turn its pre-roll, and empty the buffer."""
        tail = self._tail()
        self.frames = []
        self.held_bytes = 0
        self._trim_at = 0
        if tail.audio_format is not None:
            self._last_format = tail.audio_format
        chunks, total = tail.chunks, tail.nbytes
        chunks.reverse()
        excess = total - self._limit(*self._last_format)
        if excess > 0:
            chunks[0] = chunks[0][excess:]
            total -= excess
        return PrerollTake(chunks, total, self._last_format, tail.trimmed_bytes)

    def _limit(self, sample_rate: int, num_channels: int) -> int:
        return int(self._seconds * sample_rate) * SAMPLE_WIDTH_BYTES * num_channels

    def _tail(self) -> _Tail:
        """Return the newest input audio in one format, back until ``preroll_s`` is covered.

        A format change starts the pre-roll afresh; only whole samples are kept.
        """
        tail = _Tail()
        limit = 0
        for frame in reversed(self.frames):
            size = len(frame.audio)
            audio = whole_samples(frame)
            if audio:
                audio_format = (frame.sample_rate, frame.num_channels)
                if tail.audio_format is None:
                    tail.audio_format = audio_format
                    limit = self._limit(*audio_format)
                elif audio_format != tail.audio_format:
                    return tail
            if tail.audio_format is not None and tail.nbytes >= limit:
                return tail
            tail.trimmed_bytes += size - len(audio)
            if audio:
                tail.chunks.append(audio)
                tail.nbytes += len(audio)
                tail.frames.append(frame)
                tail.held_bytes += size + FRAME_OVERHEAD_BYTES
        return tail

    def _trim(self) -> None:
        tail = self._tail()
        tail.frames.reverse()
        self.frames = tail.frames
        self.held_bytes = tail.held_bytes
        limit = self._limit(*tail.audio_format) if tail.audio_format else 0
        self._trim_at = self.held_bytes + max(2 * limit, _SLACK_BYTES)
