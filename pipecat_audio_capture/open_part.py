"""Audio gathered for one part of one speaking turn, and the rules every part follows."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipecat.frames.frames import AudioRawFrame

from pipecat_audio_capture.records import SAMPLE_WIDTH_BYTES, Playback, Speaker


def whole_samples(frame: AudioRawFrame) -> bytes:
    """The frame's audio cut to whole sample frames; none if its format is impossible."""
    audio = frame.audio
    if frame.num_channels == 1 and not len(audio) & 1 and frame.sample_rate > 0:
        return audio
    if frame.sample_rate <= 0 or frame.num_channels <= 0:
        return b""
    extra = len(audio) % (SAMPLE_WIDTH_BYTES * frame.num_channels)
    return audio[:-extra] if extra else audio


def duration_s(nbytes: int, sample_rate: int, num_channels: int) -> float:
    """Seconds that ``nbytes`` of 16-bit PCM of this format last."""
    return nbytes / (sample_rate * SAMPLE_WIDTH_BYTES * num_channels)


@dataclass(frozen=True)
class PartLimits:
    """How far one part may grow, and how often one turn may change format.

    Parameters:
        max_s: Longest part; a longer turn continues in a new part.
        max_format_changes: Format changes one turn may make, each starting a new part; past
            them the rest of the turn is not recorded.
    """

    max_s: float
    max_format_changes: int


@dataclass
class OpenPart:
    """Audio gathered for one part of one turn, kept as references to the frames' bytes.

    Bot parts also keep when each chunk is due to play (``starts``): TTS audio can arrive with
    pauses between chunks, and a barge-in must be cut at the chunk that was playing.

    Parameters:
        turn_id: UUID of the turn.
        speaker: Who speaks.
        sample_rate: Sample rate of every chunk.
        num_channels: Channels of every chunk.
        started_at: When the first sample was played or heard (UTC).
        play_start: The same moment on the monotonic clock.
        limits: Size and format-change limits.
        context_id: TTS context of a bot turn, if the TTS service sets one.
        format_changes: Format changes the turn made before this part.
        muted: The turn changed format once too often: the rest of it is not recorded.
        played_until: Monotonic time the output transport finished writing the last chunk, when
            that is known (confirmed playback).
    """

    turn_id: str
    speaker: Speaker
    sample_rate: int
    num_channels: int
    started_at: datetime
    play_start: float
    limits: PartLimits
    context_id: str | None = None
    format_changes: int = 0
    muted: bool = False
    played_until: float | None = None
    chunks: list[bytes] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    nbytes: int = 0
    frame_bytes: int = field(init=False)
    byte_rate: int = field(init=False)
    max_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        """Derive the sizes of the part's format and its cap."""
        self.frame_bytes = SAMPLE_WIDTH_BYTES * self.num_channels
        self.byte_rate = self.sample_rate * self.frame_bytes
        samples = int(self.limits.max_s * self.sample_rate)
        self.max_bytes = max(self.frame_bytes, samples * self.frame_bytes)

    @property
    def duration_s(self) -> float:
        """Seconds of audio the part holds."""
        return self.nbytes / self.byte_rate

    @property
    def play_end(self) -> float:
        """When the part's last chunk ends playing (monotonic clock)."""
        if self.starts:
            return self.starts[-1] + len(self.chunks[-1]) / self.byte_rate
        return self.play_start + self.duration_s

    def takes(self, size: int, sample_rate: int, num_channels: int) -> bool:
        """Whether ``size`` bytes of audio of this format go on this part.

        They do when the format is the same and there is room under the cap (an empty part takes
        any size).
        """
        return (
            sample_rate == self.sample_rate
            and num_channels == self.num_channels
            and (not self.nbytes or self.nbytes + size <= self.max_bytes)
        )

    def append(self, chunk: bytes, start: float | None = None) -> None:
        """Add a chunk (and, for bot parts, when it is due to play)."""
        self.chunks.append(chunk)
        self.nbytes += len(chunk)
        if start is not None:
            self.starts.append(start)

    def next_part(
        self, sample_rate: int, num_channels: int, play_start: float
    ) -> "OpenPart | None":
        """The part the turn goes on in, starting at ``play_start`` in the given format.

        Returns:
            The new part, or None when the format changes once more than the limits allow: the
            caller mutes the turn instead.
        """
        # An empty part (a turn that started without pre-roll) has not really had a format.
        changed = self.nbytes > 0 and (
            sample_rate != self.sample_rate or num_channels != self.num_channels
        )
        if changed and self.format_changes >= self.limits.max_format_changes:
            return None
        return OpenPart(
            turn_id=self.turn_id,
            speaker=self.speaker,
            sample_rate=sample_rate,
            num_channels=num_channels,
            started_at=self.started_at + timedelta(seconds=play_start - self.play_start),
            play_start=play_start,
            limits=self.limits,
            context_id=self.context_id,
            format_changes=self.format_changes + changed,
        )

    def shift(self, delay_s: float) -> None:
        """Move the part later on the play-out clock."""
        self.play_start += delay_s
        self.started_at += timedelta(seconds=delay_s)
        self.starts = [start + delay_s for start in self.starts]

    def played_bytes(self, now: float) -> int:
        """Bytes of the part that had started playing by ``now`` (whole sample frames)."""
        played = 0
        for chunk, start in zip(self.chunks, self.starts, strict=True):
            if start >= now:
                break
            elapsed = int((now - start) * self.sample_rate) * self.frame_bytes
            played += min(len(chunk), elapsed)
        return played

    def truncate(self, keep_bytes: int) -> None:
        """Keep only the first ``keep_bytes`` bytes (a whole number of sample frames)."""
        kept: list[bytes] = []
        total = 0
        for chunk in self.chunks:
            if total + len(chunk) >= keep_bytes:
                kept.append(chunk[: keep_bytes - total])
                total = keep_bytes
                break
            kept.append(chunk)
            total += len(chunk)
        self.chunks = kept
        self.starts = self.starts[: len(kept)]
        self.nbytes = total


@dataclass
class FinishedPart:
    """A part a track is done with, and how it ended.

    Parameters:
        part: The audio and its times.
        interrupted: Whether the turn was cut short.
        unplayed_ms: Bot audio cut before it played (None: unknown, or a user part).
        playback: Where a bot part's cut and times come from (None for a user part).
    """

    part: OpenPart
    interrupted: bool
    unplayed_ms: float | None = None
    playback: Playback | None = None
