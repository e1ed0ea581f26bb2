"""The user's side of a call: the pre-roll, and the open user turn."""

from collections.abc import Sequence

from pipecat.frames.frames import AudioRawFrame

from pipecat_audio_capture.open_part import FinishedPart, OpenPart, duration_s
from pipecat_audio_capture.preroll import PrerollBuffer
from pipecat_audio_capture.track_context import TrackContext

_NONE: tuple[FinishedPart, ...] = ()


class UserTrack:
    """Cuts the input audio into user turns.

    A turn starts with the pre-roll (the input audio heard just before it) and takes every input
    frame until it stops. Its parts never overlap the previous turn's, and follow each other
    without a gap.
    """

    def __init__(self, context: TrackContext, *, preroll_s: float) -> None:
        """Initialize the track.

        Args:
            context: The call's turns, clock, part limits and counters.
            preroll_s: Input audio a turn takes from before its start.
        """
        self._context = context
        self._turn_ids = context.turn_ids
        self._timeline = context.timeline
        self._limits = context.limits
        self._stats = context.stats
        self.preroll = PrerollBuffer(preroll_s, context.limits.max_s)
        self.part: OpenPart | None = None
        # Where the last user part ended (monotonic); a pre-roll never reaches back before it.
        self._last_end = float("-inf")

    def hear(self, frame: AudioRawFrame, audio: bytes) -> Sequence[FinishedPart]:
        """Input audio in the open turn (``audio``: its whole samples, not empty).

        Returns:
            The part a format change or the cap finished, if any.
        """
        part = self.part
        assert part is not None  # the processor sends audio here only during a turn
        if part.muted:
            self._stats.format_churn_ms += (
                duration_s(len(audio), frame.sample_rate, frame.num_channels) * 1000.0
            )
            return _NONE
        if part.takes(len(audio), frame.sample_rate, frame.num_channels):
            part.append(audio)
            return _NONE
        following = part.next_part(frame.sample_rate, frame.num_channels, part.play_end)
        if following is None:
            self._context.mute(part)
            return self.hear(frame, audio)
        self.part = following
        following.append(audio)
        return self._finish(part, interrupted=False)

    def start(self) -> None:
        """Open a turn (no effect while one is open) with the pre-roll as its beginning."""
        if self.part is not None:
            return
        now = self._timeline.now()
        taken = self.preroll.take()
        self._stats.trimmed_bytes += taken.trimmed_bytes
        sample_rate, num_channels = taken.audio_format
        preroll_s = duration_s(taken.nbytes, sample_rate, num_channels)
        # Audio that arrived in a burst holds more than the wall time it covers; clamping keeps
        # one speaker's segments from overlapping.
        start = max(now - preroll_s, self._last_end)
        self.part = OpenPart(
            turn_id=self._turn_ids.start_turn("user", at=now),
            speaker="user",
            sample_rate=sample_rate,
            num_channels=num_channels,
            started_at=self._timeline.wall(start),
            play_start=start,
            limits=self._limits,
            chunks=taken.chunks,
            nbytes=taken.nbytes,
        )

    def stop(self, *, interrupted: bool = False) -> Sequence[FinishedPart]:
        """Close the open turn; a stop with none open is counted."""
        part, self.part = self.part, None
        if part is None:
            if not interrupted:
                self._stats.stops_without_start += 1
            return _NONE
        self._turn_ids.end_turn(part.turn_id)
        return self._finish(part, interrupted=interrupted)

    def _finish(self, part: OpenPart, *, interrupted: bool) -> Sequence[FinishedPart]:
        if not part.nbytes:
            return _NONE
        self._last_end = part.play_end
        return (FinishedPart(part, interrupted=interrupted),)
