"""Storing one segment: its audio, then its metadata, retried within one deadline.

The capture (a segment just recorded) and the spool's replay (a segment kept earlier) store a
segment the same way, through :func:`store_segment`.
"""

import asyncio

from pipecat_audio_capture.records import PendingAudioSegment, SegmentMetadata, metadata_for
from pipecat_audio_capture.retry import RetryPolicy, retrying
from pipecat_audio_capture.storage.base import SegmentStorage


async def store_segment(
    storage: SegmentStorage,
    session_id: str,
    segment: PendingAudioSegment,
    wav: bytes,
    *,
    policy: RetryPolicy,
    attempt_timeout_s: float,
    what: str = "segment",
) -> SegmentMetadata:
    """Store a segment's WAV bytes, then index them, and return the metadata written.

    Audio and metadata share one retry deadline: together they are one segment's write. Both
    steps are idempotent per ``segment_id``, so storing a segment again (a retry, a replay cut
    between the two steps) never duplicates a file or a row.

    Args:
        storage: Where the file and its metadata go.
        session_id: The call the segment is stored under (the capture's own id).
        segment: The segment; its ids, speaker and timing go into the metadata.
        wav: Its encoded WAV file.
        policy: Attempts, backoff and deadline of the whole write.
        attempt_timeout_s: Longest one attempt at either step may take.
        what: Names the segment in logs (``"spooled segment"`` for a replay).

    Raises:
        Exception: The last error of the step that gave up, as :func:`retrying` raises it.
    """
    started = asyncio.get_running_loop().time()
    url = await retrying(
        lambda: storage.store_segment(
            session_id, segment.segment_id, segment.speaker, wav, turn_id=segment.turn_id
        ),
        policy=policy,
        attempt_timeout_s=attempt_timeout_s,
        what=f"the audio of {what} {segment.segment_id}",
        started_at=started,
    )
    meta = metadata_for(segment, audio_url=url, byte_size=len(wav))
    await retrying(
        lambda: storage.save_metadata(session_id, meta),
        policy=policy,
        attempt_timeout_s=attempt_timeout_s,
        what=f"the metadata of {what} {segment.segment_id}",
        started_at=started,
    )
    return meta
