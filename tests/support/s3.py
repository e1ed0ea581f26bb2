"""Test support for the S3 backend: moto's S3 server on loopback, and the fault proxy before it.

Load the fixtures in a test module with ``pytest_plugins = ["s3_support"]``:

- ``moto_s3`` (session): moto in server mode on a free 127.0.0.1 port, in a thread.
- ``s3_client``: a real boto3 client pointed at it, with test credentials.
- ``s3_bucket``: a new, empty bucket with versioning on, so that a second write to a key would
  show up as a second version.
- ``s3_env``: ``AWS_*`` variables set for one test (credentials, region, no metadata service),
  for code that builds its own client.
- ``s3_fault_proxy``: starts :class:`~gcs_support.FaultProxy` instances in front of the server
  and stops them after the test.

Nothing here opens a socket beyond 127.0.0.1.

PYTEST_DONT_REWRITE: the module holds no assertions, and test modules import names from it
before pytest loads it as a plugin.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
from gcs_support import LOOPBACK, Fault, FaultProxy
from moto.server import ThreadedMotoServer

from pipecat_audio_capture.storage.s3 import client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server.

    Parameters:
        url: Its base URL, ``http://127.0.0.1:<port>``.
        port: Its TCP port.
    """

    url: str
    port: int

    def client(self, endpoint: str | None = None, *, timeout_s: float = 10.0) -> S3Client:
        """Return a client for the server, or for ``endpoint`` (a proxy) in front of it.

        Built as the storage builds its own (no retries inside the client), with test keys.
        """
        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        url = endpoint or self.url
        config = client_config(endpoint_url=url, timeout_s=timeout_s)
        client: S3Client = session.client("s3", endpoint_url=url, config=config)
        return client


def new_bucket(client: S3Client, *, versioned: bool = True) -> str:
    """Create an empty bucket with a unique name and return the name."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def versions(client: S3Client, bucket: str) -> list[tuple[str, str]]:
    """Every version of every object in the bucket (keys and version ids), delete markers too."""
    listed = client.list_object_versions(Bucket=bucket)
    found = [(item["Key"], item["VersionId"]) for item in listed.get("Versions", [])]
    found += [(item["Key"], item["VersionId"]) for item in listed.get("DeleteMarkers", [])]
    return found


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server shared by the test session."""
    # The server logs every request at INFO; a test's output keeps only its warnings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(url=f"http://{host}:{port}", port=port)
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_s3: MotoS3) -> S3Client:
    """A client talking straight to the moto server."""
    return moto_s3.client()


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> str:
    """A new empty bucket with versioning on; every write leaves a version to count."""
    return new_bucket(s3_client)


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """Set test credentials and region for one test; return the server's URL.

    The instance metadata service is switched off so a missing credential fails at once.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_s3.url


@pytest.fixture
def s3_fault_proxy(moto_s3: MotoS3) -> Iterator[Callable[..., FaultProxy]]:
    """Return ``start(*faults, then=Fault.FORWARD)``, which runs a proxy in front of the server."""
    proxies: list[FaultProxy] = []

    def start(*faults: Fault, then: Fault = Fault.FORWARD) -> FaultProxy:
        proxy = FaultProxy((LOOPBACK, moto_s3.port), faults, then=then)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.close()
