"""The call review plays s3:// audio: a redirect to a presigned URL of moto's S3 server."""

import asyncio
import http.client
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipecat_audio_capture import CompositeAudioStorage, SessionAudioCapture
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.storage.s3 import S3AudioStorage
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.web.app import create_app
from pipecat_audio_capture.web.security import CONTENT_SECURITY_POLICY

from support.browser import running_review
from support.reliability import pending_segment
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


async def record_to_s3(db: Path, files: S3AudioStorage) -> str:
    """Record one user segment of a new call into the bucket and the index; return its id."""
    segment = pending_segment(new_id())
    async with SQLiteAudioMetaStorage(db) as index:
        storage = CompositeAudioStorage(files=files, metadata=index)
        capture = SessionAudioCapture(segment.session_id, storage)
        assert capture.record_segment(segment)
        assert (await capture.close()).stored == 1
    return segment.segment_id


def stored_wav(client: "S3Client", location: str) -> bytes:
    """The bytes of the object a path-style presigned URL names."""
    bucket, key = urlsplit(location).path.lstrip("/").split("/", 1)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


async def test_s3_audio_redirects_to_a_presigned_url_the_page_may_load(
    moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> None:
    db = tmp_path / "index.sqlite3"
    segment_id = await record_to_s3(db, S3AudioStorage(bucket=s3_bucket, client=s3_client))
    async with SQLiteAudioMetaStorage(db) as index:
        app = create_app(index, recordings=None, s3_client=s3_client, media_origins=(moto_s3.url,))
        async with TestClient(TestServer(app)) as client:
            response = await client.get(f"/audio/{segment_id}", allow_redirects=False)

            assert response.status == 302
            location = response.headers["Location"]
            assert location.startswith(f"{moto_s3.url}/{s3_bucket}/")
            assert dict(parse_qsl(urlsplit(location).query))["X-Amz-Expires"] == "900"
            policy = response.headers["Content-Security-Policy"]
            assert "media-src 'self' https://storage.googleapis.com" in policy
            assert f"https://*.amazonaws.com {moto_s3.url};" in policy
    played, body = fetch(location)
    assert played.status == 200
    assert body == stored_wav(s3_client, location)


def test_the_default_policy_lets_the_player_load_gcs_and_aws_signed_urls() -> None:
    assert (
        "media-src 'self' https://storage.googleapis.com https://*.amazonaws.com;"
        in CONTENT_SECURITY_POLICY
    )


def fetch(url: str, *, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    """Send one request without following a redirect (or any proxy of the environment)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


@pytest.fixture
def s3_review(
    moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """A ``serve --s3-endpoint-url`` process on an index whose one segment is in the bucket.

    Yields the server's URL and the segment id.
    """
    db = tmp_path / "index.sqlite3"
    files = S3AudioStorage(
        bucket=s3_bucket, prefix=f"review-{uuid.uuid4().hex[:6]}", client=s3_client
    )
    segment_id = asyncio.run(record_to_s3(db, files))
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    args = ("--db", str(db), "--s3-endpoint-url", moto_s3.url)
    with running_review(tmp_path, *args, env=env) as server:
        yield server.url, segment_id


def test_serve_with_an_s3_endpoint_plays_s3_audio(
    s3_review: tuple[str, str], moto_s3: MotoS3, s3_client: "S3Client"
) -> None:
    url, segment_id = s3_review

    response, _ = fetch(f"{url}audio/{segment_id}")

    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(f"{moto_s3.url}/")
    assert moto_s3.url in response.headers["Content-Security-Policy"]
    played, body = fetch(location)
    assert played.status == 200
    assert body == stored_wav(s3_client, location)
