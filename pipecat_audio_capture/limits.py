"""The audio formats every layer accepts, in one place.

The WAV header and the spool reader accept exactly these ranges, and the index's CHECK
constraints accept them all. The processor enforces them once, on the frame: audio outside them
is counted and not recorded, so nothing downstream ever meets a format it would refuse.
"""

MIN_SAMPLE_RATE = 8_000
"""Lowest sample rate recorded: telephony's narrowband rate; no speech service sends less."""

MAX_SAMPLE_RATE = 192_000
"""Highest sample rate recorded: studio rates; far above what a voice pipeline carries, far
below what would overflow the WAV header's 32-bit byte rate."""

MAX_CHANNELS = 2
"""Mono or stereo, as the index's ``num_channels`` column allows."""


def format_supported(sample_rate: int, num_channels: int) -> bool:
    """Tell whether audio of this format can be recorded by every layer.

    Args:
        sample_rate: Sample rate in Hz.
        num_channels: Number of interleaved channels.

    Returns:
        True when the rate and channel count are within the package's limits.
    """
    return MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE and 1 <= num_channels <= MAX_CHANNELS
