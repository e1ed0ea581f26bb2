"""GCSAudioStorage and the playback helpers, with the real client against fake-gcs-server."""

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import google.auth.credentials
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.api_core.exceptions import PreconditionFailed
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import _signing
from google.oauth2 import service_account

from pipecat_audio_capture.errors import InvalidIdError, StorageConfigError, StorageError
from pipecat_audio_capture.playback import local_path, playable_url, signed_url
from pipecat_audio_capture.storage.base import AudioStorage
from pipecat_audio_capture.storage.gcs import CHECK_PREFIX, GCSAudioStorage
from pipecat_audio_capture.wav import encode_wav

from support.bucket import SEGMENT, SESSION, TURN, assert_logs_metadata_as_json, invalid_ids
from support.gcs import FakeGCS, Fault, FaultProxy

ProxyFactory = Callable[..., FaultProxy]

WAV = encode_wav([os.urandom(6400)], 16000, 1)
OTHER_WAV = encode_wav([os.urandom(6400)], 16000, 1)
UPLOAD_TARGET = "/upload/storage/v1/b/"


def generations(client: storage.Client, bucket: str) -> list[tuple[str, int]]:
    """Every generation of every object in the bucket, live or not."""
    return [(blob.name, blob.generation) for blob in client.list_blobs(bucket, versions=True)]


def faults(proxy: FaultProxy) -> list[tuple[str, Fault]]:
    return [(seen.method, seen.fault) for seen in proxy.seen]


# --- storing -------------------------------------------------------------------------------------


async def test_store_round_trip_keeps_bytes_type_and_metadata(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls/", client=gcs_client)

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"gs://{bucket_name}/calls/{SESSION}/{SEGMENT}.wav"
    blob = gcs_client.bucket(bucket_name).get_blob(f"calls/{SESSION}/{SEGMENT}.wav")
    assert blob.download_as_bytes() == WAV
    assert blob.content_type == "audio/wav"
    assert blob.metadata == {"session_id": SESSION, "turn_id": TURN, "speaker": "user"}


async def test_store_without_turn_id_and_prefix_normalised(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, prefix="/tenant-a/calls", client=gcs_client)

    url = await files.store_segment(SESSION, SEGMENT, "bot", WAV)

    assert files.prefix == "tenant-a/calls/"
    assert url == f"gs://{bucket_name}/tenant-a/calls/{SESSION}/{SEGMENT}.wav"
    blob = gcs_client.bucket(bucket_name).get_blob(f"tenant-a/calls/{SESSION}/{SEGMENT}.wav")
    assert blob.metadata == {"session_id": SESSION, "speaker": "bot"}


async def test_client_built_from_emulator_env(
    emulator_env: str, gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name)

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"gs://{bucket_name}/{SESSION}/{SEGMENT}.wav"
    assert (
        gcs_client.bucket(bucket_name).blob(f"{SESSION}/{SEGMENT}.wav").download_as_bytes() == WAV
    )


async def test_fake_server_enforces_create_only_uploads(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    # The precondition path below is only meaningful if the emulator refuses the second write.
    blob = gcs_client.bucket(bucket_name).blob("x.wav")
    blob.upload_from_string(WAV, if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        gcs_client.bucket(bucket_name).blob("x.wav").upload_from_string(
            OTHER_WAV, if_generation_match=0
        )


async def test_second_store_of_same_bytes_returns_same_url_and_one_generation(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, client=gcs_client)

    first = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)
    before = generations(gcs_client, bucket_name)
    second = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert second == first
    assert generations(gcs_client, bucket_name) == before
    assert len(before) == 1


async def test_store_of_different_bytes_for_same_id_raises(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, client=gcs_client)
    await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    with pytest.raises(StorageError, match="different audio"):
        await files.store_segment(SESSION, SEGMENT, "user", OTHER_WAV, turn_id=TURN)

    blob = gcs_client.bucket(bucket_name).blob(f"{SESSION}/{SEGMENT}.wav")
    assert blob.download_as_bytes() == WAV
    assert len(generations(gcs_client, bucket_name)) == 1


async def test_same_size_different_bytes_is_caught_by_checksum(
    gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, client=gcs_client)
    await files.store_segment(SESSION, SEGMENT, "user", WAV)
    assert len(OTHER_WAV) == len(WAV)

    with pytest.raises(StorageError, match="crc32c differs"):
        await files.store_segment(SESSION, SEGMENT, "user", OTHER_WAV)


@invalid_ids
async def test_invalid_ids_are_refused_before_any_request(
    fault_proxy: ProxyFactory,
    fake_gcs: FakeGCS,
    session_id: str,
    segment_id: str,
    turn_id: str | None,
) -> None:
    proxy = fault_proxy()
    files = GCSAudioStorage(bucket="any-bucket", client=fake_gcs.client(proxy.url))

    with pytest.raises(InvalidIdError):
        await files.store_segment(session_id, segment_id, "user", WAV, turn_id=turn_id)

    assert proxy.seen == []


async def test_save_metadata_logs_json_at_info(gcs_client: storage.Client) -> None:
    files = GCSAudioStorage(bucket="any-bucket", client=gcs_client)

    await assert_logs_metadata_as_json(files, f"gs://any-bucket/{SESSION}/{SEGMENT}.wav")


def test_follows_the_audio_storage_protocol(gcs_client: storage.Client) -> None:
    assert isinstance(GCSAudioStorage(bucket="b", client=gcs_client), AudioStorage)


@pytest.mark.parametrize(
    "options",
    [
        {"bucket": "gs://my-recordings"},
        {"bucket": ""},
        {"bucket": "b", "project": "p", "client": object()},
        {"bucket": "b", "timeout_s": 0},
        {"bucket": "b", "retry_deadline_s": -1},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(StorageConfigError):
        GCSAudioStorage(**options)


# --- faults --------------------------------------------------------------------------------------


async def test_upload_recovers_from_503s_through_client_retry(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS, gcs_client: storage.Client, bucket_name: str
) -> None:
    proxy = fault_proxy(Fault.UNAVAILABLE, Fault.UNAVAILABLE)
    files = GCSAudioStorage(bucket=bucket_name, client=fake_gcs.client(proxy.url))

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"gs://{bucket_name}/{SESSION}/{SEGMENT}.wav"
    assert faults(proxy) == [
        ("POST", Fault.UNAVAILABLE),
        ("POST", Fault.UNAVAILABLE),
        ("POST", Fault.FORWARD),
    ]
    assert all(seen.target.startswith(UPLOAD_TARGET) for seen in proxy.seen)
    assert all("ifGenerationMatch=0" in seen.target for seen in proxy.seen)
    assert len(generations(gcs_client, bucket_name)) == 1
    assert (
        gcs_client.bucket(bucket_name).blob(f"{SESSION}/{SEGMENT}.wav").download_as_bytes() == WAV
    )


async def test_upload_recovers_from_dropped_connections(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS, gcs_client: storage.Client, bucket_name: str
) -> None:
    proxy = fault_proxy(Fault.DROP, Fault.DROP)
    files = GCSAudioStorage(bucket=bucket_name, client=fake_gcs.client(proxy.url))

    await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert faults(proxy) == [("POST", Fault.DROP), ("POST", Fault.DROP), ("POST", Fault.FORWARD)]
    assert len(generations(gcs_client, bucket_name)) == 1


async def test_retry_after_lost_response_is_confirmed_by_checksum(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS, gcs_client: storage.Client, bucket_name: str
) -> None:
    # The first upload lands but its reply is lost; the retry gets 412 and the stored object
    # is checked against the bytes instead of being written again.
    proxy = fault_proxy(Fault.LOSE_RESPONSE)
    files = GCSAudioStorage(bucket=bucket_name, client=fake_gcs.client(proxy.url))

    url = await files.store_segment(SESSION, SEGMENT, "user", WAV, turn_id=TURN)

    assert url == f"gs://{bucket_name}/{SESSION}/{SEGMENT}.wav"
    assert faults(proxy) == [
        ("POST", Fault.LOSE_RESPONSE),
        ("POST", Fault.FORWARD),
        ("GET", Fault.FORWARD),
    ]
    assert len(generations(gcs_client, bucket_name)) == 1


async def test_hanging_server_fails_after_the_timeout_instead_of_hanging(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS
) -> None:
    proxy = fault_proxy(then=Fault.HANG)
    files = GCSAudioStorage(
        bucket="any-bucket",
        client=fake_gcs.client(proxy.url),
        timeout_s=0.3,
        retry_deadline_s=1.0,
    )

    started = time.monotonic()
    with pytest.raises(StorageError, match="could not upload") as raised:
        await asyncio.wait_for(files.store_segment(SESSION, SEGMENT, "user", WAV), timeout=15)
    elapsed = time.monotonic() - started

    assert "timed out" in str(raised.value)
    assert elapsed < 5
    assert proxy.seen
    assert {seen.fault for seen in proxy.seen} == {Fault.HANG}


# --- startup check -------------------------------------------------------------------------------


async def test_check_passes_and_removes_its_probe(
    emulator_env: str, gcs_client: storage.Client, bucket_name: str
) -> None:
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls/")

    await files.check()

    assert generations(gcs_client, bucket_name) == []


async def test_check_reports_missing_bucket(gcs_client: storage.Client) -> None:
    files = GCSAudioStorage(bucket=f"missing-{uuid.uuid4().hex[:12]}", client=gcs_client)

    with pytest.raises(StorageConfigError, match="does not exist"):
        await files.check()


async def test_check_reports_missing_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    files = GCSAudioStorage(bucket="my-recordings")

    with pytest.raises(StorageConfigError, match="no Google Cloud credentials") as raised:
        await files.check()

    assert isinstance(raised.value.__cause__, auth_exceptions.DefaultCredentialsError)


@pytest.mark.parametrize(
    ("script", "permission"),
    [
        ((Fault.FORBIDDEN,), "storage.objects.create"),
        ((Fault.FORWARD, Fault.FORBIDDEN), "storage.objects.get"),
    ],
)
async def test_check_reports_forbidden_access(
    fault_proxy: ProxyFactory,
    fake_gcs: FakeGCS,
    bucket_name: str,
    script: tuple[Fault, ...],
    permission: str,
) -> None:
    proxy = fault_proxy(*script)
    files = GCSAudioStorage(bucket=bucket_name, client=fake_gcs.client(proxy.url))

    with pytest.raises(StorageConfigError, match=f"lack {permission}"):
        await files.check()


async def test_check_tolerates_forbidden_probe_delete(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS, gcs_client: storage.Client, bucket_name: str
) -> None:
    proxy = fault_proxy(Fault.FORWARD, Fault.FORWARD, Fault.FORBIDDEN)
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls", client=fake_gcs.client(proxy.url))

    await files.check()

    assert faults(proxy) == [
        ("POST", Fault.FORWARD),
        ("GET", Fault.FORWARD),
        ("DELETE", Fault.FORBIDDEN),
    ]
    [(name, _)] = generations(gcs_client, bucket_name)
    assert name.startswith(f"calls/{CHECK_PREFIX}")


async def test_check_against_hanging_server_fails_in_time(
    fault_proxy: ProxyFactory, fake_gcs: FakeGCS
) -> None:
    proxy = fault_proxy(then=Fault.HANG)
    files = GCSAudioStorage(
        bucket="any-bucket", client=fake_gcs.client(proxy.url), timeout_s=0.3, retry_deadline_s=0.5
    )

    with pytest.raises(StorageConfigError, match="did not answer"):
        await asyncio.wait_for(files.check(), timeout=15)


# --- playback ------------------------------------------------------------------------------------

SIGNER_EMAIL = "recordings-signer@test-project.iam.gserviceaccount.com"
OBJECT_URL = f"gs://my-recordings/calls/{SESSION}/{SEGMENT}.wav"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signing_client(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> storage.Client:
    """A client with a locally generated service-account key, as a key file would give."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    credentials = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": SIGNER_EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
    return storage.Client(project="test-project", credentials=credentials)


def assert_signed_v4(url: str, private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Rebuild the V4 string-to-sign from the URL, check the signature, return the parameters."""
    parts = urlsplit(url)
    query, _, signature = parts.query.partition("&X-Goog-Signature=")
    params = dict(parse_qsl(query))
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    canonical_request = "\n".join(
        ["GET", parts.path, query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            params["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    private_key.public_key().verify(
        bytes.fromhex(signature), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return params


def test_signed_url_is_a_v4_signature_by_the_service_account(
    signing_client: storage.Client, private_key: rsa.RSAPrivateKey
) -> None:
    url = signed_url(OBJECT_URL, client=signing_client)

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "storage.googleapis.com")
    assert parts.path == f"/my-recordings/calls/{SESSION}/{SEGMENT}.wav"
    params = assert_signed_v4(url, private_key)
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Credential"].startswith(f"{SIGNER_EMAIL}/")
    assert params["X-Goog-SignedHeaders"] == "host"


def test_signed_url_expiry_is_configurable_and_bounded(signing_client: storage.Client) -> None:
    url = signed_url(OBJECT_URL, expires_s=60, client=signing_client)
    assert dict(parse_qsl(urlsplit(url).query))["X-Goog-Expires"] == "60"

    with pytest.raises(StorageConfigError):
        signed_url(OBJECT_URL, expires_s=8 * 24 * 3600, client=signing_client)
    with pytest.raises(StorageConfigError):
        signed_url(OBJECT_URL, expires_s=0, client=signing_client)


class KeylessCredentials(google.auth.credentials.Credentials):
    """Like Cloud Run's credentials: a token and the account's e-mail, but no private key."""

    def __init__(self) -> None:
        super().__init__()
        self.service_account_email = SIGNER_EMAIL
        self.refreshes = 0

    def refresh(self, request: object) -> None:
        self.token = "access-token"
        self.refreshes += 1


def test_keyless_credentials_sign_through_iam_sign_blob(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The IAM signBlob call leaves loopback, so it is replaced by local signing with the key
    # IAM would hold; what is tested is that the account's e-mail and fresh token reach it.
    calls: list[tuple[str, str]] = []

    def sign_blob(message: str, access_token: str, email: str, *args: Any) -> str:
        calls.append((access_token, email))
        signature = private_key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(_signing, "_sign_message", sign_blob)
    credentials = KeylessCredentials()
    client = storage.Client(project="test-project", credentials=credentials)

    url = signed_url(OBJECT_URL, client=client)

    assert calls == [("access-token", SIGNER_EMAIL)]
    assert credentials.refreshes == 1
    assert assert_signed_v4(url, private_key)["X-Goog-Credential"].startswith(f"{SIGNER_EMAIL}/")


def test_signed_url_needs_credentials_that_can_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = storage.Client(project="test-project", credentials=AnonymousCredentials())

    with pytest.raises(StorageConfigError, match="cannot sign"):
        signed_url(OBJECT_URL, client=client)


@pytest.mark.parametrize("url", ["gs://bucket-only", "gs:///no-bucket.wav", "s3://b/k.wav"])
def test_signed_url_refuses_non_gs_urls(url: str, signing_client: storage.Client) -> None:
    with pytest.raises(StorageError, match="not a gs://"):
        signed_url(url, client=signing_client)


@pytest.fixture
def recordings(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "recordings"
    (root / SESSION).mkdir(parents=True)
    (root / SESSION / f"{SEGMENT}.wav").write_bytes(WAV)
    yield root


def test_playable_url_checks_local_files_under_root(recordings: Path, tmp_path: Path) -> None:
    wav = recordings / SESSION / f"{SEGMENT}.wav"

    assert playable_url(wav.as_uri(), root=recordings) == wav.resolve().as_uri()
    assert local_path(wav.as_uri(), root=recordings) == wav.resolve()

    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(WAV)
    with pytest.raises(StorageError, match="outside"):
        playable_url(outside.as_uri(), root=recordings)
    escape = recordings / SESSION / "escape.wav"
    escape.symlink_to(outside)
    with pytest.raises(StorageError, match="outside"):
        playable_url(escape.as_uri(), root=recordings)
    with pytest.raises(StorageError, match="no recording"):
        playable_url((recordings / SESSION / "gone.wav").as_uri(), root=recordings)


def test_playable_url_dispatches_on_scheme(
    signing_client: storage.Client, private_key: rsa.RSAPrivateKey
) -> None:
    url = playable_url(OBJECT_URL, expires_s=120, client=signing_client)
    assert assert_signed_v4(url, private_key)["X-Goog-Expires"] == "120"

    with pytest.raises(StorageError, match="cannot play"):
        playable_url("https://example.com/a.wav")


def test_package_imports_without_google_cloud_storage(recordings: Path) -> None:
    wav = recordings / SESSION / f"{SEGMENT}.wav"
    script = f"""
import sys
sys.modules["google.cloud.storage"] = None
import pipecat_audio_capture
import pipecat_audio_capture.storage
from pipecat_audio_capture.playback import playable_url
assert playable_url({wav.as_uri()!r}) == {wav.resolve().as_uri()!r}
try:
    import pipecat_audio_capture.storage.gcs
except ImportError:
    pass
else:
    raise AssertionError("the gcs module imported without google-cloud-storage")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
