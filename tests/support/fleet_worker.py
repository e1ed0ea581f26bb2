"""One bot worker of the fleet test: several calls at once into one PostgreSQL and one S3 bucket.

Run by tests/test_fleet.py as ``python tests/support/fleet_worker.py SETTINGS_JSON``. It opens
the index (running the migrations, as every worker does at startup, racing the others), checks the
bucket, records ``calls`` calls concurrently through SessionAudioCapture and TranscriptRecorder,
closes them, and prints one JSON line: the ids it recorded and the counters of every call.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

# Run as a script, it sees only its own folder; the support package is one level up, in tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat_audio_capture import (
    CompositeAudioStorage,
    RetryPolicy,
    SessionAudioCapture,
    TranscriptRecorder,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
from pipecat_audio_capture.storage.s3 import S3AudioStorage
from pipecat_audio_capture.turn_ids import TurnIds

from support.reliability import T0, Conversation, Speech


async def one_call(
    storage: CompositeAudioStorage,
    index: PostgresAudioMetaStorage,
    settings: dict[str, Any],
    spool_dir: Path,
) -> dict[str, Any]:
    session_id = new_id()
    capture = SessionAudioCapture(session_id, storage, spool_dir=spool_dir, retry=RetryPolicy())
    recorder = TranscriptRecorder(
        session_id, TurnIds(), store=index, claim_wait_s=0.0, spool_dir=spool_dir
    )
    conversation = Conversation(recorder)
    speech = Speech(capture, pace_s=0.005)
    for turn in range(settings["turns"]):
        await speech.speak(1, speaker="user")
        await conversation.user_says(f"user turn {turn}", at=T0)
        await speech.speak(1, speaker="bot", rate=24000)
        await conversation.bot_says(f"bot turn {turn}", at=T0)
    stats = await capture.close(timeout_s=30)
    await recorder.close(timeout_s=30)
    return {
        "session_id": session_id,
        "segment_ids": [segment.segment_id for segment in speech.segments],
        "stored": stats.stored,
        "spooled": stats.spooled,
        "lost": len(stats.lost_segment_ids),
        "transcripts_stored": recorder.stored,
        "transcripts_spooled": recorder.spooled,
        "transcripts_failed": recorder.failed,
    }


async def main(settings: dict[str, Any]) -> None:
    index = await PostgresAudioMetaStorage.connect(settings["dsn"], max_size=4)
    try:
        files = S3AudioStorage(
            bucket=settings["bucket"], prefix=settings["prefix"], endpoint_url=settings["endpoint"]
        )
        await files.check()
        storage = CompositeAudioStorage(files=files, metadata=index)
        spool_dir = Path(settings["spool"])
        calls = await asyncio.gather(
            *(one_call(storage, index, settings, spool_dir) for _ in range(settings["calls"]))
        )
    finally:
        await index.close()
    print(json.dumps({"calls": calls}))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
