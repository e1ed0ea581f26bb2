"""WAV files in a Google Cloud Storage bucket, uploaded create-only through the official client.

Needs the ``gcs`` extra (``google-cloud-storage``); without it, importing this module raises
:class:`~pipecat_audio_capture.errors.MissingExtraError`. Nothing else in the package imports this
module, so the package works without that library installed.
"""

import base64
import hashlib
import threading
import uuid
from typing import BinaryIO

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import MissingExtraError, StorageConfigError, StorageError
from pipecat_audio_capture.storage.objects import (
    CHECK_PAYLOAD,
    CHECK_PREFIX,
    CONTENT_TYPE,
    BucketStorage,
)

try:
    import google_crc32c
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.api_core.retry import Retry
    from google.auth import exceptions as auth_exceptions
    from google.cloud import storage
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
    from google.cloud.storage.retry import DEFAULT_RETRY
except ImportError as exc:
    raise MissingExtraError("gcs") from exc

_CLIENT_ERRORS = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    OSError,
    DataCorruption,
    InvalidResponse,
)
"""What the client raises for a failed call. ``GoogleAPIError`` covers both HTTP errors and the
``RetryError`` raised when the retry deadline passes. ``OSError`` covers ``requests`` errors."""


_TRANSIENT_ERRORS = (
    api_exceptions.RetryError,
    api_exceptions.TooManyRequests,
    api_exceptions.ServerError,
    auth_exceptions.TransportError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    DataCorruption,
)
"""Failures another attempt can cure: the client's own retry deadline passing (it retries only
transient errors), 429, 5xx (but 501), a lost connection or a timeout, and bytes damaged
in transit."""


class GCSAudioStorage(BucketStorage):
    """Stores each segment as ``gs://{bucket}/{prefix}{session_id}/{segment_id}.wav``.

    Uploads are create-only (``if_generation_match=0``): an object is never overwritten, so
    retrying a write cannot add a second version or replace the audio. If an upload is refused
    because the object already exists, for example when a retry follows an attempt whose reply
    was lost, the stored object's size and checksum are compared with the bytes. The write counts
    as done when they match. It raises :class:`StorageError` when they differ.

    Every client call runs in a worker thread with an explicit timeout. Uploads are retried on
    transient errors (429, 5xx, dropped connections, timeouts) until ``retry_deadline_s``.
    Metadata is logged as JSON at INFO. Pair this class with a database backend through
    :class:`~pipecat_audio_capture.CompositeAudioStorage` to index it.

    Required permissions on the bucket: ``storage.objects.create`` and ``storage.objects.get``.
    :meth:`check` also tries ``storage.objects.delete`` to remove its probe object, but does not
    require it. :meth:`delete_session` (retention) needs ``storage.objects.list`` and
    ``storage.objects.delete``; :meth:`download_segment` (export) only ``storage.objects.get``.
    A download is checked against the object's stored crc32c, and a retry resumes where the
    bytes stopped.
    """

    scheme = "gs"
    service = "GCS"

    object_name = BucketStorage.object_key
    """GCS calls a key an object name."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        client: storage.Client | None = None,
        project: str | None = None,
        timeout_s: float = defaults.GCS_TIMEOUT_S,
        retry_deadline_s: float = defaults.GCS_RETRY_DEADLINE_S,
    ) -> None:
        """Initialize the storage. Makes no network call. Call :meth:`check` at startup.

        Args:
            bucket: Name of an existing bucket (not a URL).
            prefix: Folder for the recordings inside the bucket. A trailing ``/`` is added
                when missing.
            client: A ready ``google.cloud.storage.Client``. When omitted, one is built on first
                use from Application Default Credentials (or ``STORAGE_EMULATOR_HOST``).
            project: Project for the client built when ``client`` is omitted. Object uploads do
                not need one.
            timeout_s: Timeout of each HTTP request, in seconds.
            retry_deadline_s: How long the client keeps retrying transient failures, in seconds.

        Raises:
            StorageConfigError: If an option is invalid.
        """
        super().__init__(bucket, prefix)
        if client is not None and project is not None:
            raise StorageConfigError("pass either client or project, not both")
        if timeout_s <= 0 or retry_deadline_s <= 0:
            raise StorageConfigError("timeout_s and retry_deadline_s must be positive")
        self._client = client
        self._project = project
        self._timeout_s = timeout_s
        # Passed to every call instead of the library's per-method defaults, which changed for
        # uploads between releases (2.x: a conditional policy keyed on if_generation_match;
        # 3.x: DEFAULT_RETRY, which would retry even non-idempotent uploads). Ours are
        # create-only, so a retry can never write a second version and is always safe. The
        # deadline bounds how long one segment can take.
        self._retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline_s)
        self._client_lock = threading.Lock()

    def _get_client(self) -> storage.Client:
        # Finding default credentials can query the metadata server, so the client is built in
        # a worker thread, once, and not in __init__ on the event loop.
        with self._client_lock:
            if self._client is None:
                self._client = default_client(self._project)
            return self._client

    def _download(self, name: str, target: BinaryIO) -> int:
        url = self.url_for(name)
        blob = self._get_client().bucket(self._bucket_name).blob(name)
        start = target.tell()
        try:
            blob.download_to_file(
                target, timeout=self._timeout_s, retry=self._retry, checksum="crc32c"
            )
        except api_exceptions.NotFound as exc:
            raise StorageError(f"no object at {url}", transient=False) from exc
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not download {url}: {exc}", transient=_is_transient(exc)
            ) from exc
        return target.tell() - start

    def _upload(self, name: str, data: bytes, metadata: dict[str, str]) -> None:
        blob = self._get_client().bucket(self._bucket_name).blob(name)
        blob.metadata = metadata
        try:
            blob.upload_from_string(
                data,
                content_type=CONTENT_TYPE,
                if_generation_match=0,
                timeout=self._timeout_s,
                retry=self._retry,
            )
        except api_exceptions.PreconditionFailed:
            self._confirm_stored(name, data)
            return
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not upload {self.url_for(name)}: {exc}", transient=_is_transient(exc)
            ) from exc
        logger.debug(f"uploaded {self.url_for(name)} (generation {blob.generation})")

    def _confirm_stored(self, name: str, data: bytes) -> None:
        url = self.url_for(name)
        try:
            stored = (
                self._get_client()
                .bucket(self._bucket_name)
                .get_blob(name, timeout=self._timeout_s, retry=self._retry)
            )
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"{url} already exists and could not be read back: {exc}",
                transient=_is_transient(exc),
            ) from exc
        if stored is None:
            raise StorageError(f"{url} was refused as existing but is gone")
        mismatch = _content_mismatch(stored, data)
        if mismatch is not None:
            raise StorageError(
                f"{url} already holds different audio for the same segment id: {mismatch}",
                transient=False,
            )
        logger.info(f"{url} was already stored with the same bytes (a retried upload)")

    def _generations(self, folder: str) -> list[storage.Blob]:
        """List every generation of every object under ``folder``."""
        client = self._get_client()
        bucket = client.bucket(self._bucket_name)
        try:
            return list(
                client.list_blobs(
                    bucket, prefix=folder, versions=True, timeout=self._timeout_s, retry=self._retry
                )
            )
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not list {self.url_for(folder)}: {exc}", transient=_is_transient(exc)
            ) from exc

    def _count_folder(self, folder: str) -> int:
        return len(self._generations(folder))

    def _delete_folder(self, folder: str) -> int:
        bucket = self._get_client().bucket(self._bucket_name)
        removed = 0
        try:
            for blob in self._generations(folder):
                try:
                    bucket.delete_blob(
                        blob.name,
                        generation=blob.generation,
                        timeout=self._timeout_s,
                        retry=self._retry,
                    )
                except api_exceptions.NotFound:
                    continue
                removed += 1
        except _CLIENT_ERRORS as exc:
            raise StorageError(
                f"could not delete {self.url_for(folder)}: {exc}", transient=_is_transient(exc)
            ) from exc
        return removed

    def _check(self) -> None:
        client = self._get_client()
        probe = client.bucket(self._bucket_name).blob(f"{self._prefix}{CHECK_PREFIX}{uuid.uuid4()}")
        url = self.url_for(probe.name)
        try:
            probe.upload_from_string(
                CHECK_PAYLOAD,
                content_type="text/plain",
                if_generation_match=0,
                timeout=self._timeout_s,
                retry=self._retry,
            )
        except _CLIENT_ERRORS as exc:
            reason = _explain(exc, "storage.objects.create")
            raise StorageConfigError(f"cannot write to gs://{self._bucket_name}: {reason}") from exc
        try:
            probe.reload(timeout=self._timeout_s, retry=self._retry)
        except _CLIENT_ERRORS as exc:
            # Without objects.get a retried upload that already landed cannot be confirmed.
            reason = _explain(exc, "storage.objects.get")
            raise StorageConfigError(f"cannot read back {url}: {reason}") from exc
        try:
            # After reload() the blob carries its generation, which delete() targets: the probe
            # leaves no noncurrent version behind in a versioned bucket.
            probe.delete(timeout=self._timeout_s, retry=self._retry)
        except _CLIENT_ERRORS as exc:
            logger.warning(f"startup check left its probe {url} in place: {exc}")


def default_client(project: str | None = None) -> storage.Client:
    """Build a client from Application Default Credentials (or ``STORAGE_EMULATOR_HOST``).

    Blocking (it may ask the metadata server): call it from a worker thread.

    Raises:
        StorageConfigError: If no credentials can be found.
    """
    try:
        return storage.Client(project=project)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise StorageConfigError(
            "no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS, run "
            "`gcloud auth application-default login`, or run on Google Cloud with a service "
            f"account (from Python, you may also pass client=): {exc}"
        ) from exc


def _explain(exc: BaseException, permission: str) -> str:
    if isinstance(exc, api_exceptions.NotFound):
        return "the bucket does not exist"
    if isinstance(exc, api_exceptions.Forbidden):
        return f"the credentials lack {permission} on the bucket ({exc.message})"
    if isinstance(exc, api_exceptions.Unauthorized | auth_exceptions.GoogleAuthError):
        return f"the credentials were rejected ({exc})"
    return f"the storage service did not answer in time or failed ({exc})"


def _content_mismatch(stored: storage.Blob, data: bytes) -> str | None:
    """Return how the stored object differs from ``data``, or None when it holds the same bytes."""
    if stored.size != len(data):
        return f"{stored.size} bytes stored, {len(data)} to store"
    # GCS reports crc32c for every object but md5 only for non-composite ones.
    if stored.crc32c is not None:
        crc32c = _b64(google_crc32c.value(data).to_bytes(4, "big"))
        return None if stored.crc32c == crc32c else "crc32c differs"
    if stored.md5_hash is not None:
        md5 = _b64(hashlib.md5(data, usedforsecurity=False).digest())
        return None if stored.md5_hash == md5 else "md5 differs"
    return "the stored object reports no checksum to compare"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _is_transient(exc: BaseException) -> bool:
    """Whether a retry can cure the failure (:data:`_TRANSIENT_ERRORS`)."""
    return isinstance(exc, _TRANSIENT_ERRORS) and not isinstance(
        exc, api_exceptions.MethodNotImplemented
    )
