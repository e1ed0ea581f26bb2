"""What both speakers' tracks share: the call's turns, its clock, the part limits, the counters."""

from dataclasses import dataclass

from pipecat_audio_capture.clock import Timeline
from pipecat_audio_capture.open_part import PartLimits
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
    """

    turn_ids: TurnIds
    timeline: Timeline
    limits: PartLimits
    stats: ProcessorStats
