"""Section 2f: WAV uploads through ``S3AudioStorage`` to moto's S3 server on loopback.

The server runs in a process of its own (``python -m moto.server``), as fake-gcs-server does for
section 2e, so it does not share the benchmark's interpreter lock. The section is skipped, with
the reason, when the ``s3`` extra or moto's server is not installed.
"""

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from benchmarks.backends import free_port, upload_section, upload_wav, wait_for
from benchmarks.report import Section, skipped
from benchmarks.writer import SEGMENT_S

TITLE = "2f. WAV uploads to an S3 emulator"
_LOOPBACK = "127.0.0.1"
_START_S = 20.0
_CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


async def measure_s3(reps: int, segments: int) -> Section:
    """Uploads per second through ``S3AudioStorage`` to moto's S3 server on loopback."""
    try:
        import boto3

        from pipecat_audio_capture.storage.s3 import S3AudioStorage, client_config
    except ImportError as exc:
        return skipped(TITLE, f"the s3 extra is not installed ({exc})")
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        return skipped(TITLE, f"moto's server is not installed ({exc})")
    with _moto_server() as url:
        # The storage's own client settings (timeouts, SigV4, path style), with bench keys.
        client: Any = boto3.session.Session(**_CREDENTIALS, region_name="us-east-1").client(
            "s3", endpoint_url=url, config=client_config(endpoint_url=url)
        )
        bucket = f"bench-{uuid.uuid4().hex[:16]}"
        client.create_bucket(Bucket=bucket)
        files = S3AudioStorage(bucket=bucket, client=client)
        size_kib = len(upload_wav()) // 1024
        return await upload_section(
            TITLE,
            f"{segments} WAV files of {SEGMENT_S:.0f} s at 16 kHz ({size_kib} KiB) uploaded "
            "create-only "
            "(`If-None-Match: *`, SHA-256 checksum) through `S3AudioStorage` with boto3, to "
            "moto's S3 server (in memory, its own process) on 127.0.0.1. Each upload runs in "
            "a worker thread; all at once means as many as the default thread pool runs "
            "together (boto3's connection pool holds 10).",
            "S3 emulator, one writer",
            files,
            reps,
            segments,
        )


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    """Run moto's server on a free loopback port; yield its URL."""
    port = free_port()
    url = f"http://{_LOOPBACK}:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", _LOOPBACK, "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{url}/moto-api/", "moto's server", _START_S)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _beside_gcs(reps: int, segments: int) -> None:
    """Print sections 2e and 2f, measured one after the other in this process."""
    from benchmarks.backends import measure_gcs

    for section in (await measure_gcs(reps, segments), await measure_s3(reps, segments)):
        print(section.markdown() + "\n")
        print("\n".join(f"- {line}" for line in section.headlines) + "\n")


if __name__ == "__main__":
    # `python -m benchmarks.s3_uploads`: the two upload sections alone, as `make bench` runs them.
    import asyncio

    from loguru import logger

    logger.remove()
    asyncio.run(_beside_gcs(reps=3, segments=50))
