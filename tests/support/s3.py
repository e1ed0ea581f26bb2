"""Test support for the S3 backend: moto's S3 server on loopback, and the fault proxy before it.

The fixtures built on it are in conftest.py:

- ``moto_s3`` (session): moto in server mode on a free 127.0.0.1 port, in a thread.
- ``s3_client``: a real boto3 client pointed at it, with test credentials.
- ``s3_bucket``: a new, empty bucket with versioning on, so that a second write to a key would
  show up as a second version.
- ``s3_env``: ``AWS_*`` variables set for one test (credentials, region, no metadata service),
  for code that builds its own client.
- ``s3_fault_proxy``: starts :class:`~support.gcs.FaultProxy` instances in front of the server
  and stops them after the test.

Nothing here opens a socket beyond 127.0.0.1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

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
