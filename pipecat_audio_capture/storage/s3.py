"""WAV files in an S3 bucket (or an S3-compatible store), uploaded create-only through boto3.

Needs the ``s3`` extra (``boto3``); without it, importing this module raises
:class:`~pipecat_audio_capture.errors.MissingExtraError`. Nothing else in the package imports this
module at import time, so the package works without that library installed.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import MissingExtraError, StorageConfigError, StorageError
from pipecat_audio_capture.retry import RetryPolicy
from pipecat_audio_capture.storage.objects import (
    CHECK_PAYLOAD,
    CHECK_PREFIX,
    CONTENT_TYPE,
    BucketStorage,
)

try:
    import boto3
    from botocore import exceptions as boto_exceptions
    from botocore.config import Config
except ImportError as exc:
    raise MissingExtraError("s3") from exc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

_DELETE_BATCH = 1000
"""Most keys one ``DeleteObjects`` request may name."""

_DOWNLOAD_CHUNK_BYTES = 1 << 20

_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        # A concurrent conditional write to the same key is in flight: AWS asks for a retry.
        "ConditionalRequestConflict",
    }
)
"""Error codes a retry can cure, besides any 429 or 5xx status."""

_NOT_IMPLEMENTED = 501
"""A 5xx that no retry cures: the store lacks the API called."""

_REJECTED_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)

_CLIENT_ERRORS = (boto_exceptions.BotoCoreError, boto_exceptions.ClientError, OSError)
"""What a boto3 call raises when it fails: ``ClientError`` for an answer with an error status,
``BotoCoreError`` for everything the client itself detects (no connection, a timeout)."""

_BROKEN_TRANSFERS = (
    boto_exceptions.HTTPClientError,
    boto_exceptions.ConnectionError,
    boto_exceptions.IncompleteReadError,
    boto_exceptions.ResponseStreamingError,
    boto_exceptions.FlexibleChecksumError,
)
"""Failures of the connection or of the bytes in transit (a timeout, a reset, a body cut short or
not matching its checksum), which another attempt can cure."""

_NO_CREDENTIALS = (
    boto_exceptions.NoCredentialsError,
    boto_exceptions.PartialCredentialsError,
    boto_exceptions.CredentialRetrievalError,
)


def client_config(
    *, endpoint_url: str | None = None, timeout_s: float = defaults.S3_TIMEOUT_S
) -> Config:
    """Return the botocore settings of the clients the package builds.

    SigV4, ``timeout_s`` to connect and to read, no retries inside the client (the storage
    retries on its own allowlist and deadline, around every call), and path-style addresses for
    a store at its own endpoint: a presigned URL then stays on the endpoint's origin, and no
    DNS name per bucket is needed (MinIO).

    Args:
        endpoint_url: An S3-compatible endpoint, or None for AWS.
        timeout_s: Timeout to connect and to read, in seconds.
    """
    return Config(
        signature_version="s3v4",
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    timeout_s: float = defaults.S3_TIMEOUT_S,
) -> S3Client:
    """Build the S3 client the package uses, with :func:`client_config`'s settings.

    Credentials and, when ``endpoint_url`` is None, the endpoint come from boto3's usual
    sources (``AWS_*`` variables, ``~/.aws``, an instance or task role; ``AWS_ENDPOINT_URL_S3``).
    Blocking (it may read files or ask the instance metadata service): call it from a worker
    thread in async code.

    Args:
        endpoint_url: An S3-compatible endpoint (MinIO, R2, Wasabi), or None for AWS.
        region_name: The bucket's region; None takes boto3's default.
        timeout_s: Timeout to connect and to read, in seconds.
    """
    config = client_config(endpoint_url=endpoint_url, timeout_s=timeout_s)
    # A session per client: boto3's default session is not safe to share between threads.
    session = boto3.session.Session()
    client: S3Client = session.client(
        "s3", endpoint_url=endpoint_url, region_name=region_name, config=config
    )
    return client


class S3AudioStorage(BucketStorage):
    """Stores each segment as ``s3://{bucket}/{prefix}{session_id}/{segment_id}.wav``.

    Uploads are create-only (``If-None-Match: *``): an object is never overwritten, so retrying
    a write cannot add a second version or replace the audio. If an upload is refused because
    the object already exists (412), for example when a retry follows an attempt whose reply
    was lost, the stored object's size and SHA-256 checksum are compared with the bytes. The
    write counts as done when they match. It raises :class:`StorageError` when they differ.

    Every client call runs in a worker thread with an explicit timeout, and is retried on
    transient failures (timeouts, dropped connections, 429, 5xx, ``SlowDown``) until
    ``retry_deadline_s``. Metadata is logged as JSON at INFO. Pair this class with a database
    backend through :class:`~pipecat_audio_capture.CompositeAudioStorage` to index it.

    Required permissions on the bucket: ``s3:PutObject`` and ``s3:GetObject``. :meth:`check`
    also tries ``s3:DeleteObject`` (``s3:DeleteObjectVersion`` in a versioned bucket) to remove
    its probe, but does not require it. :meth:`delete_session` (retention) needs
    ``s3:ListBucket``, ``s3:ListBucketVersions``, ``s3:DeleteObject`` and
    ``s3:DeleteObjectVersion``; :meth:`download_segment` (export) only ``s3:GetObject``.
    Deleting a session removes every version and delete marker (markers are not counted); a
    store without the versions API (some S3-compatible ones) is listed and deleted by key. A
    download is checked by botocore against the SHA-256 stored with the object as it streams,
    and its size against the object's.
    """

    scheme = "s3"
    service = "S3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        timeout_s: float = defaults.S3_TIMEOUT_S,
        retry_deadline_s: float = defaults.S3_RETRY_DEADLINE_S,
    ) -> None:
        """Initialize the storage. Makes no network call. Call :meth:`check` at startup.

        Args:
            bucket: Name of an existing bucket (not a URL).
            prefix: Folder for the recordings inside the bucket. A trailing ``/`` is added
                when missing.
            client: A ready boto3 S3 client. When omitted, one is built on first use by
                :func:`make_client`.
            endpoint_url: Endpoint of an S3-compatible store for the client built when
                ``client`` is omitted (``http://127.0.0.1:9000`` for MinIO).
            region_name: Region for the client built when ``client`` is omitted.
            timeout_s: Timeout of each HTTP request of the built client, in seconds.
            retry_deadline_s: Time after which no further attempt of one call starts, in seconds.

        Raises:
            StorageConfigError: If an option is invalid.
        """
        super().__init__(bucket, prefix)
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise StorageConfigError("pass either client or endpoint_url/region_name, not both")
        if timeout_s <= 0 or retry_deadline_s <= 0:
            raise StorageConfigError("timeout_s and retry_deadline_s must be positive")
        self._client = client
        self._endpoint_url = endpoint_url
        self._region_name = region_name
        self._timeout_s = timeout_s
        # Only the backoff and the deadline apply: every call is retried until the deadline.
        self._retry = RetryPolicy(
            initial_backoff_s=defaults.S3_INITIAL_BACKOFF_S,
            max_backoff_s=defaults.S3_MAX_BACKOFF_S,
            deadline_s=retry_deadline_s,
        )
        self._client_lock = threading.Lock()

    def _get_client(self) -> S3Client:
        # Building a client reads configuration files, so it happens in a worker thread, once.
        with self._client_lock:
            if self._client is None:
                self._client = make_client(
                    endpoint_url=self._endpoint_url,
                    region_name=self._region_name,
                    timeout_s=self._timeout_s,
                )
            return self._client

    def _call(self, what: str, call: Callable[[S3Client], T]) -> T:
        """Run one client call, retrying transient failures until the retry deadline.

        Raises:
            StorageConfigError: If no credentials can be found (never retried).
            Exception: The last attempt's client error, unchanged.
        """
        client = self._get_client()
        deadline = time.monotonic() + self._retry.deadline_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return call(client)
            except _NO_CREDENTIALS as exc:
                raise StorageConfigError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
                    f"AWS_PROFILE, run with an instance or task role, or pass client=: {exc}"
                ) from exc
            except _CLIENT_ERRORS as exc:
                wait_s = self._retry.backoff_s(attempt)
                if not _is_transient(exc) or time.monotonic() + wait_s >= deadline:
                    raise
                logger.debug(f"{what}: attempt {attempt} failed ({exc}); retrying")
                time.sleep(wait_s)

    def _download(self, key: str, target: BinaryIO) -> int:
        url = self.url_for(key)
        start = target.tell()

        def attempt(client: S3Client) -> int:
            # A retry starts the file over: nothing of a broken attempt stays before it.
            target.seek(start)
            target.truncate()
            answer = client.get_object(Bucket=self._bucket_name, Key=key, ChecksumMode="ENABLED")
            written = 0
            for chunk in answer["Body"].iter_chunks(_DOWNLOAD_CHUNK_BYTES):
                target.write(chunk)
                written += len(chunk)
            if written != answer["ContentLength"]:
                raise boto_exceptions.IncompleteReadError(
                    actual_bytes=written, expected_bytes=answer["ContentLength"]
                )
            return written

        try:
            return self._call(f"download {url}", attempt)
        except _CLIENT_ERRORS as exc:
            if _status(exc) == 404:
                raise StorageError(f"no object at {url}", transient=False) from exc
            raise StorageError(
                f"could not download {url}: {exc}", transient=_is_transient(exc)
            ) from exc

    def _upload(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        url = self.url_for(key)
        try:
            self._call(
                f"upload {url}",
                lambda client: client.put_object(
                    Bucket=self._bucket_name,
                    Key=key,
                    Body=data,
                    ContentType=CONTENT_TYPE,
                    Metadata=metadata,
                    IfNoneMatch="*",
                    ChecksumAlgorithm="SHA256",
                ),
            )
        except _CLIENT_ERRORS as exc:
            if _status(exc) != 412:
                raise StorageError(
                    f"could not upload {url}: {exc}", transient=_is_transient(exc)
                ) from exc
            self._confirm_stored(key, data)
            return
        logger.debug(f"uploaded {url}")

    def _confirm_stored(self, key: str, data: bytes) -> None:
        url = self.url_for(key)
        try:
            stored = self._call(
                f"read back {url}",
                lambda client: client.head_object(
                    Bucket=self._bucket_name, Key=key, ChecksumMode="ENABLED"
                ),
            )
        except _CLIENT_ERRORS as exc:
            if _status(exc) == 404:
                raise StorageError(f"{url} was refused as existing but is gone") from exc
            raise StorageError(
                f"{url} already exists and could not be read back: {exc}",
                transient=_is_transient(exc),
            ) from exc
        mismatch = _content_mismatch(dict(stored), data)
        if mismatch is not None:
            raise StorageError(
                f"{url} already holds different audio for the same segment id: {mismatch}",
                transient=False,
            )
        logger.info(f"{url} was already stored with the same bytes (a retried upload)")

    def _versions(self, folder: str) -> list[_Version]:
        """List every version and delete marker under ``folder``, or every key without versions.

        Raises:
            StorageError: If listing fails.
        """
        bucket = self._bucket_name
        try:
            return self._call(f"list {folder}", lambda c: list(_list_versions(c, bucket, folder)))
        except _CLIENT_ERRORS as exc:
            lacks_api = _status(exc) == _NOT_IMPLEMENTED or _code(exc) == "NotImplemented"
            if not lacks_api:
                raise StorageError(
                    f"could not list {self.url_for(folder)}: {exc}", transient=_is_transient(exc)
                ) from exc
            logger.info(f"{self.url_for(folder)}: no versions API, listing keys ({exc})")
        try:
            return self._call(f"list {folder}", lambda c: list(_list_keys(c, bucket, folder)))
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not list {self.url_for(folder)}: {exc}", transient=_is_transient(exc)
            ) from exc

    def _count_folder(self, folder: str) -> int:
        return sum(1 for version in self._versions(folder) if version.holds_data)

    def _delete_folder(self, folder: str) -> int:
        versions = self._versions(folder)
        removed = 0
        for start in range(0, len(versions), _DELETE_BATCH):
            batch = versions[start : start + _DELETE_BATCH]
            removed += self._delete_batch(folder, batch)
        return removed

    def _delete_batch(self, folder: str, batch: list[_Version]) -> int:
        """Delete one batch of versions; return how many of those holding data went.

        Raises:
            StorageError: If the request fails or any version could not be deleted.
        """
        objects: list[Any] = [version.identifier() for version in batch]
        try:
            answer = self._call(
                f"delete under {folder}",
                lambda client: client.delete_objects(
                    Bucket=self._bucket_name, Delete={"Objects": objects, "Quiet": True}
                ),
            )
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not delete {self.url_for(folder)}: {exc}", transient=_is_transient(exc)
            ) from exc
        failed = {
            (error.get("Key"), error.get("VersionId"))
            for error in answer.get("Errors", [])
            if error.get("Code") not in ("NoSuchKey", "NoSuchVersion")
        }
        if failed:
            raise StorageError(
                f"could not delete {len(failed)} objects under {self.url_for(folder)}: "
                f"{answer['Errors'][0].get('Code')}: {answer['Errors'][0].get('Message')}"
            )
        return sum(1 for version in batch if version.holds_data)

    def _check(self) -> None:
        key = f"{self._prefix}{CHECK_PREFIX}{uuid.uuid4()}"
        url = self.url_for(key)
        bucket = self._bucket_name
        try:
            written = self._call(
                f"write {url}",
                lambda client: client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=CHECK_PAYLOAD,
                    ContentType="text/plain",
                    IfNoneMatch="*",
                    ChecksumAlgorithm="SHA256",
                ),
            )
        except _CLIENT_ERRORS as exc:
            reason = _explain(exc, "s3:PutObject")
            raise StorageConfigError(f"cannot write to s3://{bucket}: {reason}") from exc
        try:
            self._call(f"read {url}", lambda client: client.head_object(Bucket=bucket, Key=key))
        except _CLIENT_ERRORS as exc:
            # Without s3:GetObject a retried upload that already landed cannot be confirmed.
            raise StorageConfigError(
                f"cannot read back {url}: {_explain(exc, 's3:GetObject')}"
            ) from exc
        version: dict[str, Any] = {"Key": key}
        if written.get("VersionId"):
            version["VersionId"] = written["VersionId"]
        try:
            self._call(
                f"delete {url}", lambda client: client.delete_object(Bucket=bucket, **version)
            )
        except _CLIENT_ERRORS as exc:
            logger.warning(f"startup check left its probe {url} in place: {exc}")


@dataclass(frozen=True)
class _Version:
    """One listed object version, delete marker, or (without the versions API) key.

    Parameters:
        key: The object key.
        version_id: The version, or None to name the key alone.
        holds_data: False for a delete marker.
    """

    key: str
    version_id: str | None
    holds_data: bool

    def identifier(self) -> dict[str, str]:
        """Return the ``ObjectIdentifier`` that deletes exactly this version."""
        if self.version_id is None:
            return {"Key": self.key}
        return {"Key": self.key, "VersionId": self.version_id}


def _list_versions(client: S3Client, bucket: str, folder: str) -> Iterator[_Version]:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=folder)
    for page in pages:
        for item in page.get("Versions", []):
            yield _Version(item["Key"], item.get("VersionId"), True)
        for marker in page.get("DeleteMarkers", []):
            yield _Version(marker["Key"], marker.get("VersionId"), False)


def _list_keys(client: S3Client, bucket: str, folder: str) -> Iterator[_Version]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for item in page.get("Contents", []):
            yield _Version(item["Key"], None, True)


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, boto_exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def _code(exc: BaseException) -> str | None:
    if isinstance(exc, boto_exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _is_transient(exc: BaseException) -> bool:
    """Whether a retry can cure the failure: timeouts, lost connections, 429, 5xx, SlowDown."""
    if isinstance(exc, _BROKEN_TRANSFERS):
        return True
    status = _status(exc)
    if status == _NOT_IMPLEMENTED:
        return False
    server_error = status is not None and status >= 500
    return status == 429 or server_error or _code(exc) in _TRANSIENT_CODES


def _explain(exc: BaseException, permission: str) -> str:
    code, status = _code(exc), _status(exc)
    if code == "NoSuchBucket":
        return "the bucket does not exist"
    if code in _REJECTED_CREDENTIALS:
        return f"the credentials were rejected ({exc})"
    if status == 403:
        return f"the credentials lack {permission} on the bucket ({code})"
    return f"the storage service did not answer in time or failed ({exc})"


def _content_mismatch(stored: dict[str, Any], data: bytes) -> str | None:
    """Return how the stored object differs from ``data``, or None when it holds the same bytes."""
    size = stored.get("ContentLength")
    if size != len(data):
        return f"{size} bytes stored, {len(data)} to store"
    sha256 = stored.get("ChecksumSHA256")
    if sha256 is not None:
        expected = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        return None if sha256 == expected else "sha256 differs"
    # A store that keeps no additional checksum still reports the MD5 as the ETag of an object
    # uploaded in one part without KMS encryption: 32 hex digits.
    etag = str(stored.get("ETag", "")).strip('"')
    if len(etag) == 32 and all(char in "0123456789abcdef" for char in etag.lower()):
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return None if etag.lower() == md5 else "md5 differs"
    return "the stored object reports no checksum to compare"
