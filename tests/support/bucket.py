"""What the GCS and S3 backend tests share: ids no backend may take, and the metadata log check."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from loguru import logger

from pipecat_audio_capture.records import SegmentMetadata

SESSION = str(uuid.uuid4())
SEGMENT = str(uuid.uuid4())
TURN = str(uuid.uuid4())

invalid_ids = pytest.mark.parametrize(
    ("session_id", "segment_id", "turn_id"),
    [
        ("../etc", SEGMENT, None),
        (SESSION, "x/../../y", None),
        ("{" + SESSION + "}", SEGMENT, None),
        (SESSION, SEGMENT, "not-a-turn"),
    ],
    ids=["session-path", "segment-path", "session-braces", "turn"],
)
"""Ids that must be refused before any request: path tricks, braces, a turn that is no UUID."""


async def assert_logs_metadata_as_json(files: Any, audio_url: str) -> None:
    """Check that ``files.save_metadata`` logs the segment's metadata as one JSON line at INFO."""
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    meta = SegmentMetadata(
        segment_id=SEGMENT,
        session_id=SESSION,
        turn_id=TURN,
        speaker="user",
        audio_url=audio_url,
        sample_rate=16000,
        num_channels=1,
        duration_ms=200.0,
        byte_size=1000,
        interrupted=False,
        unplayed_ms=None,
        started_at=started,
        ended_at=started,
    )
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level} {message}")
    try:
        await files.save_metadata(SESSION, meta)
    finally:
        logger.remove(sink)

    assert len(lines) == 1
    assert lines[0].startswith("INFO audio segment stored: {")
    assert f'"segment_id": "{SEGMENT}"' in lines[0]
