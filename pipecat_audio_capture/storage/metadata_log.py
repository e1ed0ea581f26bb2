"""An index backend without a database: each segment's metadata as one JSON log line."""

import json

from loguru import logger

from pipecat_audio_capture.records import SegmentMetadata


class MetadataLog:
    """Logs each stored segment's metadata as one JSON line at INFO (``audio segment stored:``).

    An index backend of its own, for recordings that need no database:
    ``CompositeAudioStorage(files=LocalAudioStorage(root), metadata=MetadataLog())``. The file
    backends inherit it, so one used alone as a capture's storage (without a composite) still
    records each segment's metadata somewhere: in the log, as before.
    """

    async def save_metadata(self, session_id: str, meta: SegmentMetadata) -> None:
        """Log the segment's metadata as one JSON line at INFO."""
        logger.info(f"audio segment stored: {json.dumps(meta.to_json_dict(), sort_keys=True)}")
