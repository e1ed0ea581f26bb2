"""S3AudioStorage and S3 playback, with the real boto3 client against moto's S3 server."""

import asyncio
import os
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.exceptions import ClientError

from pipecat_audio_capture.errors import InvalidIdError, StorageConfigError, StorageError
from pipecat_audio_capture.playback import playable_url, presigned_s3_url
from pipecat_audio_capture.storage import s3 as s3_module
from pipecat_audio_capture.storage.base import (
    AudioStorage,
    SessionAudioCounter,
    SessionAudioDeleter,
)
from pipecat_audio_capture.storage.s3 import CHECK_PREFIX, S3AudioStorage
from pipecat_audio_capture.wav import encode_wav

from support.bucket import SEGMENT, SESSION, TURN, assert_logs_metadata_as_json, invalid_ids
from support.gcs import Fault, FaultProxy
from support.s3 import MotoS3, new_bucket, versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


ProxyFactory = Callable[..., FaultProxy]

WAV = encode_wav([os.urandom(6400)], 16000, 1)
OTHER_WAV = encode_wav([os.urandom(6400)], 16000, 1)


def faults(proxy: FaultProxy) -> list[tuple[str, Fault]]:
    return [(seen.method, seen.fault) for seen in proxy.seen]


def read(client: "S3Client", bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


# --- storing -------------------------------------------------------------------------------------


async def test_store_round_trip_keeps_bytes_type_and_metadata(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls/", client=s3_client)

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"s3://{s3_bucket}/calls/{SESSION}/{SEGMENT}.wav"
    stored = s3_client.get_object(Bucket=s3_bucket, Key=f"calls/{SESSION}/{SEGMENT}.wav")
    assert stored["Body"].read() == WAV
    assert stored["ContentType"] == "audio/wav"
    assert stored["Metadata"] == {"session_id": SESSION, "turn_id": TURN, "speaker": "user"}


async def test_store_without_turn_id_and_prefix_normalised(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, prefix="/tenant-a/calls", client=s3_client)

    url = await files.store_segment(SESSION, SEGMENT, "bot", WAV)

    assert files.prefix == "tenant-a/calls/"
    assert url == f"s3://{s3_bucket}/tenant-a/calls/{SESSION}/{SEGMENT}.wav"
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"tenant-a/calls/{SESSION}/{SEGMENT}.wav")
    assert head["Metadata"] == {"session_id": SESSION, "speaker": "bot"}


async def test_client_built_from_endpoint_url_and_environment_credentials(
    s3_env: str, s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, endpoint_url=s3_env)

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"s3://{s3_bucket}/{SESSION}/{SEGMENT}.wav"
    assert read(s3_client, s3_bucket, f"{SESSION}/{SEGMENT}.wav") == WAV


async def test_server_enforces_create_only_uploads(s3_client: "S3Client", s3_bucket: str) -> None:
    # The 412 path below is only meaningful if the server refuses the second conditional write.
    s3_client.put_object(Bucket=s3_bucket, Key="x.wav", Body=WAV, IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3_client.put_object(Bucket=s3_bucket, Key="x.wav", Body=OTHER_WAV, IfNoneMatch="*")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert len(versions(s3_client, s3_bucket)) == 1


async def test_second_store_of_same_bytes_returns_same_url_and_one_version(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)

    first = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)
    before = versions(s3_client, s3_bucket)
    second = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert second == first
    assert versions(s3_client, s3_bucket) == before
    assert len(before) == 1


async def test_store_of_different_bytes_for_same_id_raises(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)
    await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)
    shorter = encode_wav([os.urandom(3200)], 16000, 1)

    with pytest.raises(StorageError, match="different audio"):
        await files.store_segment(SESSION, SEGMENT, "user", shorter, turn_id=TURN)

    assert read(s3_client, s3_bucket, f"{SESSION}/{SEGMENT}.wav") == WAV
    assert len(versions(s3_client, s3_bucket)) == 1


async def test_same_size_different_bytes_is_caught_by_checksum(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)
    await files.store_segment(SESSION, SEGMENT, "user", WAV)
    assert len(OTHER_WAV) == len(WAV)

    with pytest.raises(StorageError, match="sha256 differs"):
        await files.store_segment(SESSION, SEGMENT, "user", OTHER_WAV)


async def test_object_without_sha256_is_confirmed_by_its_md5_etag(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    # Written by a client that sent no SHA-256 (an older worker, another tool): the plain ETag
    # of a one-part upload is the MD5, which still tells same bytes from others.
    s3_client.put_object(Bucket=s3_bucket, Key=f"{SESSION}/{SEGMENT}.wav", Body=WAV)
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)

    assert await files.store_segment(SESSION, SEGMENT, "user", WAV) == (
        f"s3://{s3_bucket}/{SESSION}/{SEGMENT}.wav"
    )
    with pytest.raises(StorageError, match="md5 differs"):
        await files.store_segment(SESSION, SEGMENT, "user", OTHER_WAV)


@invalid_ids
async def test_invalid_ids_are_refused_before_any_request(
    s3_fault_proxy: ProxyFactory,
    moto_s3: MotoS3,
    session_id: str,
    segment_id: str,
    turn_id: str | None,
) -> None:
    proxy = s3_fault_proxy()
    files = S3AudioStorage(bucket="any-bucket", client=moto_s3.client(proxy.url))

    with pytest.raises(InvalidIdError):
        await files.store_segment(session_id, segment_id, "user", WAV, turn_id=turn_id)

    assert proxy.seen == []


async def test_deletion_refuses_an_invalid_session_id_before_any_request(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3
) -> None:
    proxy = s3_fault_proxy()
    files = S3AudioStorage(bucket="any-bucket", client=moto_s3.client(proxy.url))

    with pytest.raises(InvalidIdError):
        await files.delete_session("../other-tenant")
    with pytest.raises(InvalidIdError):
        await files.count_session("")

    assert proxy.seen == []


async def test_save_metadata_logs_json_at_info(s3_client: "S3Client") -> None:
    files = S3AudioStorage(bucket="any-bucket", client=s3_client)

    await assert_logs_metadata_as_json(files, f"s3://any-bucket/{SESSION}/{SEGMENT}.wav")


def test_follows_the_storage_protocols(s3_client: "S3Client") -> None:
    files = S3AudioStorage(bucket="any-bucket", client=s3_client)
    assert isinstance(files, AudioStorage)
    assert isinstance(files, SessionAudioDeleter)
    assert isinstance(files, SessionAudioCounter)


@pytest.mark.parametrize(
    "options",
    [
        {"bucket": "s3://my-recordings"},
        {"bucket": ""},
        {"bucket": "b", "endpoint_url": "http://127.0.0.1:1", "client": object()},
        {"bucket": "b", "region_name": "eu-west-1", "client": object()},
        {"bucket": "b", "timeout_s": 0},
        {"bucket": "b", "retry_deadline_s": -1},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(StorageConfigError):
        S3AudioStorage(**options)


# --- faults --------------------------------------------------------------------------------------


async def test_upload_recovers_from_503s(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    proxy = s3_fault_proxy(Fault.UNAVAILABLE, Fault.UNAVAILABLE)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"s3://{s3_bucket}/{SESSION}/{SEGMENT}.wav"
    assert faults(proxy) == [
        ("PUT", Fault.UNAVAILABLE),
        ("PUT", Fault.UNAVAILABLE),
        ("PUT", Fault.FORWARD),
    ]
    assert len(versions(s3_client, s3_bucket)) == 1
    assert read(s3_client, s3_bucket, f"{SESSION}/{SEGMENT}.wav") == WAV


async def test_upload_recovers_from_429_throttling(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    proxy = s3_fault_proxy(Fault.TOO_MANY_REQUESTS)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    await files.store_segment(SESSION, SEGMENT, "user", WAV)

    assert faults(proxy) == [("PUT", Fault.TOO_MANY_REQUESTS), ("PUT", Fault.FORWARD)]
    assert len(versions(s3_client, s3_bucket)) == 1


async def test_upload_recovers_from_dropped_connections(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    proxy = s3_fault_proxy(Fault.DROP, Fault.DROP)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert faults(proxy) == [("PUT", Fault.DROP), ("PUT", Fault.DROP), ("PUT", Fault.FORWARD)]
    assert len(versions(s3_client, s3_bucket)) == 1


async def test_retry_after_lost_response_is_confirmed_by_checksum(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    # The first upload lands but its reply is lost; the retry gets 412 and the stored object
    # is checked against the bytes instead of being written again.
    proxy = s3_fault_proxy(Fault.LOSE_RESPONSE)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"s3://{s3_bucket}/{SESSION}/{SEGMENT}.wav"
    assert faults(proxy) == [
        ("PUT", Fault.LOSE_RESPONSE),
        ("PUT", Fault.FORWARD),
        ("HEAD", Fault.FORWARD),
    ]
    assert len(versions(s3_client, s3_bucket)) == 1


async def test_forbidden_upload_is_not_retried(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    proxy = s3_fault_proxy(then=Fault.FORBIDDEN)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    with pytest.raises(StorageError, match="could not upload"):
        await files.store_segment(SESSION, SEGMENT, "user", WAV)

    assert faults(proxy) == [("PUT", Fault.FORBIDDEN)]
    assert versions(s3_client, s3_bucket) == []


async def test_hanging_server_fails_after_the_timeout_instead_of_hanging(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3
) -> None:
    proxy = s3_fault_proxy(then=Fault.HANG)
    files = S3AudioStorage(
        bucket="any-bucket", client=moto_s3.client(proxy.url, timeout_s=0.3), retry_deadline_s=2.0
    )

    started = time.monotonic()
    with pytest.raises(StorageError, match="could not upload") as raised:
        await asyncio.wait_for(files.store_segment(SESSION, SEGMENT, "user", WAV), timeout=15)
    elapsed = time.monotonic() - started

    assert "timeout" in str(raised.value).lower()
    assert elapsed < 5
    assert len(proxy.seen) >= 2
    assert {seen.fault for seen in proxy.seen} == {Fault.HANG}


# --- startup check -------------------------------------------------------------------------------


async def test_check_passes_and_removes_its_probe_version(
    s3_env: str, s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls/", endpoint_url=s3_env)

    await files.check()

    assert versions(s3_client, s3_bucket) == []


async def test_check_reports_missing_bucket(s3_client: "S3Client") -> None:
    files = S3AudioStorage(bucket=f"missing-{uuid.uuid4().hex[:12]}", client=s3_client)

    with pytest.raises(StorageConfigError, match="does not exist"):
        await files.check()


async def test_check_reports_missing_credentials(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    files = S3AudioStorage(bucket="my-recordings", endpoint_url=s3_env)

    with pytest.raises(StorageConfigError, match="no AWS credentials"):
        await files.check()


@pytest.mark.parametrize(
    ("script", "permission"),
    [
        ((Fault.FORBIDDEN,), "s3:PutObject"),
        ((Fault.FORWARD, Fault.FORBIDDEN), "s3:GetObject"),
    ],
)
async def test_check_reports_forbidden_access(
    s3_fault_proxy: ProxyFactory,
    moto_s3: MotoS3,
    s3_bucket: str,
    script: tuple[Fault, ...],
    permission: str,
) -> None:
    proxy = s3_fault_proxy(*script)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    with pytest.raises(StorageConfigError, match=f"lack {permission}"):
        await files.check()


async def test_check_tolerates_forbidden_probe_delete(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    proxy = s3_fault_proxy(Fault.FORWARD, Fault.FORWARD, Fault.FORBIDDEN)
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls", client=moto_s3.client(proxy.url))

    await files.check()

    assert faults(proxy) == [
        ("PUT", Fault.FORWARD),
        ("HEAD", Fault.FORWARD),
        ("DELETE", Fault.FORBIDDEN),
    ]
    [(key, _)] = versions(s3_client, s3_bucket)
    assert key.startswith(f"calls/{CHECK_PREFIX}")


async def test_check_against_hanging_server_fails_in_time(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3
) -> None:
    proxy = s3_fault_proxy(then=Fault.HANG)
    files = S3AudioStorage(
        bucket="any-bucket", client=moto_s3.client(proxy.url, timeout_s=0.3), retry_deadline_s=0.5
    )

    with pytest.raises(StorageConfigError, match="did not answer"):
        await asyncio.wait_for(files.check(), timeout=15)


# --- deletion ------------------------------------------------------------------------------------


async def test_delete_session_removes_every_version_and_delete_marker(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls", client=s3_client)
    other_session = str(uuid.uuid4())
    key = f"calls/{SESSION}/{SEGMENT}.wav"
    await files.store_segment(SESSION, SEGMENT, "user", WAV)
    await files.store_segment(SESSION, str(uuid.uuid4()), "bot", WAV)
    await files.store_segment(other_session, SEGMENT, "user", WAV)
    # Someone overwrote and then deleted one object by key: a noncurrent version, an old one
    # and a delete marker remain, none of which a plain delete would remove.
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=OTHER_WAV)
    s3_client.delete_object(Bucket=s3_bucket, Key=key)
    assert len(versions(s3_client, s3_bucket)) == 5

    assert await files.count_session(SESSION) == 3
    assert await files.delete_session(SESSION) == 3

    remaining = versions(s3_client, s3_bucket)
    assert [name for name, _ in remaining] == [f"calls/{other_session}/{SEGMENT}.wav"]
    assert await files.count_session(SESSION) == 0
    assert await files.delete_session(SESSION) == 0


async def test_delete_session_in_an_unversioned_bucket(s3_client: "S3Client") -> None:
    bucket = new_bucket(s3_client, versioned=False)
    files = S3AudioStorage(bucket=bucket, client=s3_client)
    for _ in range(3):
        await files.store_segment(SESSION, str(uuid.uuid4()), "user", WAV)

    assert await files.count_session(SESSION) == 3
    assert await files.delete_session(SESSION) == 3
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


async def test_delete_of_more_than_one_batch(
    s3_client: "S3Client", s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 takes 1,000 keys per request; a batch of 2 shows the same splitting on 5 objects.
    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 2)
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)
    for index in range(5):
        s3_client.put_object(Bucket=s3_bucket, Key=f"{SESSION}/{index}.wav", Body=b"x")

    assert await files.delete_session(SESSION) == 5
    assert versions(s3_client, s3_bucket) == []


async def test_delete_survives_a_503_while_listing(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client", s3_bucket: str
) -> None:
    await S3AudioStorage(bucket=s3_bucket, client=s3_client).store_segment(
        SESSION, SEGMENT, "user", WAV
    )
    proxy = s3_fault_proxy(Fault.UNAVAILABLE)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    assert await files.delete_session(SESSION) == 1

    assert [method for method, _ in faults(proxy)] == ["GET", "GET", "POST"]
    assert versions(s3_client, s3_bucket) == []


async def test_a_store_without_the_versions_api_is_listed_and_deleted_by_key(
    s3_fault_proxy: ProxyFactory, moto_s3: MotoS3, s3_client: "S3Client"
) -> None:
    bucket = new_bucket(s3_client, versioned=False)
    writer = S3AudioStorage(bucket=bucket, client=s3_client)
    for _ in range(2):
        await writer.store_segment(SESSION, str(uuid.uuid4()), "user", WAV)
    # The versions listing is refused at once (no retry), the plain listing answers.
    proxy = s3_fault_proxy(Fault.NOT_IMPLEMENTED, Fault.FORWARD, Fault.NOT_IMPLEMENTED)
    files = S3AudioStorage(bucket=bucket, client=moto_s3.client(proxy.url))

    assert await files.count_session(SESSION) == 2
    assert await files.delete_session(SESSION) == 2

    assert faults(proxy) == [
        ("GET", Fault.NOT_IMPLEMENTED),
        ("GET", Fault.FORWARD),
        ("GET", Fault.NOT_IMPLEMENTED),
        ("GET", Fault.FORWARD),
        ("POST", Fault.FORWARD),
    ]
    assert "versions" in proxy.seen[0].target
    assert "list-type=2" in proxy.seen[1].target
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# --- download (export) ------------------------------------------------------------------------


async def test_download_writes_the_stored_bytes(
    s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, prefix="calls", client=s3_client)
    await files.store_segment(SESSION, SEGMENT, "user", WAV)

    with (tmp_path / "out.wav").open("w+b") as target:
        target.write(b"header")
        assert await files.download_segment(SESSION, SEGMENT, target) == len(WAV)

    assert (tmp_path / "out.wav").read_bytes() == b"header" + WAV


async def test_download_of_a_missing_object_says_so(
    s3_client: "S3Client", s3_bucket: str, tmp_path: Path
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)

    with (
        (tmp_path / "out.wav").open("w+b") as target,
        pytest.raises(StorageError, match="no object"),
    ):
        await files.download_segment(SESSION, SEGMENT, target)


async def test_download_retried_after_a_dropped_connection_holds_the_bytes_once(
    s3_fault_proxy: ProxyFactory,
    moto_s3: MotoS3,
    s3_client: "S3Client",
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    await S3AudioStorage(bucket=s3_bucket, client=s3_client).store_segment(
        SESSION, SEGMENT, "user", WAV
    )
    proxy = s3_fault_proxy(Fault.DROP, Fault.UNAVAILABLE)
    files = S3AudioStorage(bucket=s3_bucket, client=moto_s3.client(proxy.url))

    with (tmp_path / "out.wav").open("w+b") as target:
        assert await files.download_segment(SESSION, SEGMENT, target) == len(WAV)

    assert faults(proxy) == [
        ("GET", Fault.DROP),
        ("GET", Fault.UNAVAILABLE),
        ("GET", Fault.FORWARD),
    ]
    assert (tmp_path / "out.wav").read_bytes() == WAV


# --- playback ------------------------------------------------------------------------------------


async def test_presigned_url_plays_the_object_and_expires_as_asked(
    s3_client: "S3Client", s3_bucket: str
) -> None:
    files = S3AudioStorage(bucket=s3_bucket, client=s3_client)
    audio_url = await files.store_segment(SESSION, SEGMENT, "user", WAV)

    url = presigned_s3_url(audio_url, expires_s=120, client=s3_client)

    params = dict(parse_qsl(urlsplit(url).query))
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Expires"] == "120"
    assert urlsplit(url).path == f"/{s3_bucket}/{SESSION}/{SEGMENT}.wav"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        assert response.read() == WAV


def test_presigned_url_expiry_is_bounded(s3_client: "S3Client") -> None:
    audio_url = f"s3://my-recordings/{SESSION}/{SEGMENT}.wav"
    with pytest.raises(StorageConfigError):
        presigned_s3_url(audio_url, expires_s=8 * 24 * 3600, client=s3_client)
    with pytest.raises(StorageConfigError):
        presigned_s3_url(audio_url, expires_s=0, client=s3_client)


@pytest.mark.parametrize("url", ["s3://bucket-only", "s3:///no-bucket.wav", "gs://b/k.wav"])
def test_presigned_url_refuses_non_s3_urls(url: str, s3_client: "S3Client") -> None:
    with pytest.raises(StorageError, match="not an s3://"):
        presigned_s3_url(url, client=s3_client)


def test_playable_url_signs_s3_urls_with_the_default_client(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env)

    url = playable_url(f"s3://my-recordings/{SESSION}/{SEGMENT}.wav", expires_s=60)

    assert url.startswith(f"{s3_env}/my-recordings/{SESSION}/{SEGMENT}.wav?")
    assert dict(parse_qsl(urlsplit(url).query))["X-Amz-Expires"] == "60"
