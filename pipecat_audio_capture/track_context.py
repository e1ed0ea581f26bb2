"""What both speakers' tracks share: the call's turns, its clock, the part limits, the counters."""

from collections.abc import Callable
from dataclasses import dataclass

from pipecat_audio_capture.clock import Timeline
from pipecat_audio_capture.open_part import OpenPart, PartLimits
from pipecat_audio_capture.processor_stats import ProcessorStats
from pipecat_audio_capture.turn_ids import TurnIds


@dataclass(frozen=True)
class TrackContext:
    """The call-wide objects a track works with.

    Parameters:
        turn_ids: Where turns are opened and closed.
        timeline: The clock, and how its readings become timestamps.
        limits: Size and format-change limits of a part.
        stats: Counters to update.
        report: Takes a reason and a description of audio that will not be recorded; the
            processor logs it and emits ``on_audio_not_recorded``.
    """

    turn_ids: TurnIds
    timeline: Timeline
    limits: PartLimits
    stats: ProcessorStats
    report: Callable[[str, str], None]

    def mute(self, part: OpenPart) -> None:
        """Stop recording the rest of ``part``'s turn: it changed format once too often."""
        part.muted = True
        self.report(
            "format_churn",
            f"{part.speaker} turn {part.turn_id} changed format more than "
            f"{self.limits.max_format_changes} times: the rest of it is counted, not recorded",
        )
