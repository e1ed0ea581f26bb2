"""A fleet: four worker processes recording calls at once into one PostgreSQL and one S3 bucket.

Each worker (tests/support/fleet_worker.py) migrates the same empty schema at startup, racing the
others, then records several calls concurrently. Afterwards every segment and transcript row must
be in the index exactly once, and every segment's object in the bucket exactly once (one version).
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pipecat_audio_capture.migrations import MIGRATIONS_TABLE, load_migrations

from support.index import fresh_pg_schema
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3, new_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


WORKERS = 4
CALLS_PER_WORKER = 3
TURNS_PER_CALL = 3
"""Each turn is a user and a bot segment and a user and a bot transcript row."""

WORKER_TIMEOUT_S = 90
PREFIX = "fleet/"
WORKER = Path(__file__).resolve().parent / "support" / "fleet_worker.py"


async def run_worker(settings: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        json.dumps(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), WORKER_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def object_versions(client: "S3Client", bucket: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Versions", [])]
        assert not page.get("DeleteMarkers")
    return keys


async def test_four_workers_store_every_segment_and_transcript_exactly_once(
    moto_s3: MotoS3, s3_client: "S3Client", tmp_path: Path
) -> None:
    bucket = new_bucket(s3_client)
    async with fresh_pg_schema() as schema:
        base = {
            "dsn": schema.dsn,
            "endpoint": moto_s3.url,
            "bucket": bucket,
            "prefix": PREFIX,
            "calls": CALLS_PER_WORKER,
            "turns": TURNS_PER_CALL,
        }
        results = await asyncio.gather(
            *(
                run_worker({**base, "spool": str(tmp_path / f"spool-{worker}")})
                for worker in range(WORKERS)
            )
        )
        with psycopg.connect(schema.dsn) as conn:
            segments = conn.execute(
                "SELECT segment_id::text, session_id::text, audio_url FROM session_audio_segments"
            ).fetchall()
            transcripts = conn.execute(
                "SELECT session_id::text, role, count(*) FROM session_transcripts "
                "GROUP BY session_id, role"
            ).fetchall()
            applied = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY 1").fetchall()

    calls = [call for result in results for call in result["calls"]]
    assert len(calls) == WORKERS * CALLS_PER_WORKER
    segments_per_call = 2 * TURNS_PER_CALL
    for call in calls:
        assert (call["stored"], call["spooled"], call["lost"]) == (segments_per_call, 0, 0)
        assert (call["transcripts_stored"], call["transcripts_spooled"]) == (segments_per_call, 0)
        assert call["transcripts_failed"] == 0
    expected = {
        segment_id: call["session_id"] for call in calls for segment_id in call["segment_ids"]
    }
    assert len(expected) == WORKERS * CALLS_PER_WORKER * segments_per_call

    # Every segment row once, pointing at its own object; every object once, in one version.
    assert sorted(row[0] for row in segments) == sorted(expected)
    for segment_id, session_id, audio_url in segments:
        assert session_id == expected[segment_id]
        assert audio_url == f"s3://{bucket}/{PREFIX}{session_id}/{segment_id}.wav"
    keys = object_versions(s3_client, bucket)
    assert sorted(keys) == sorted(f"{PREFIX}{expected[s]}/{s}.wav" for s in expected)

    # Every transcript row once: a user and a bot row per turn of each call.
    assert sorted(transcripts) == sorted(
        (call["session_id"], role, TURNS_PER_CALL)
        for call in calls
        for role in ("assistant", "user")
    )
    # The racing migration runs left the schema complete, each migration applied by one of them.
    assert [row[0] for row in applied] == [m.version for m in load_migrations("postgres")]
