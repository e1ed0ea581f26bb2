"""Turn a stored segment's ``audio_url`` into a URL a player can open, or open its local file.

``file://`` URLs are checked to exist (and to lie under a root, when one is given). ``gs://``
URLs become short-lived V4 signed HTTPS URLs, which needs the ``gcs`` extra; ``s3://`` URLs become
short-lived SigV4 presigned URLs, which needs the ``s3`` extra. Each cloud library is imported
only when a URL of its scheme is signed, so local playback needs neither.

A segment's local recording is found by its ids under the recordings folder
(:func:`open_segment_file`), not at the absolute path its URL was written with, so a recordings
folder that was copied or moved elsewhere still plays.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pipecat_audio_capture.errors import (
    InvalidIdError,
    StorageConfigError,
    StorageError,
    UnsafePathError,
)
from pipecat_audio_capture.safe_files import open_regular_under
from pipecat_audio_capture.storage.local import LocalAudioStorage

if TYPE_CHECKING:
    from google.cloud.storage import Client
    from mypy_boto3_s3 import S3Client

SIGNED_URL_EXPIRES_S = 900
"""Default lifetime of a signed URL: long enough to play a turn, short enough to be worthless
when leaked."""

MAX_SIGNED_URL_EXPIRES_S = 7 * 24 * 3600
"""The longest lifetime GCS and S3 accept for a V4 signature."""


def parse_gs_url(audio_url: str) -> tuple[str, str]:
    """Split ``gs://bucket/object/name`` into the bucket and the object name.

    Raises:
        StorageError: If the URL is not a ``gs://`` URL naming an object.
    """
    return _bucket_and_key(audio_url, "gs", "a gs://bucket/object")


def parse_s3_url(audio_url: str) -> tuple[str, str]:
    """Split ``s3://bucket/object/key`` into the bucket and the object key.

    Raises:
        StorageError: If the URL is not an ``s3://`` URL naming an object.
    """
    return _bucket_and_key(audio_url, "s3", "an s3://bucket/key")


def _bucket_and_key(audio_url: str, scheme: str, expected: str) -> tuple[str, str]:
    found, _, rest = audio_url.partition("://")
    bucket, _, key = rest.partition("/")
    if found != scheme or not bucket or not key:
        raise StorageError(f"not {expected} URL: {audio_url!r}")
    return bucket, key


def file_url_path(audio_url: str) -> Path:
    """Return the path a local ``file://`` URL names, as written (nothing is resolved).

    Raises:
        StorageError: If the URL is not a ``file://`` URL of this machine.
    """
    parts = urlsplit(audio_url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise StorageError(f"not a local file:// URL: {audio_url!r}")
    return Path(url2pathname(parts.path))


def open_local(audio_url: str, *, root: str | os.PathLike[str]) -> int:
    """Open the recording a ``file://`` URL names, only inside ``root`` and without a link.

    The one way the package reads a recording named by the index: see
    :func:`~pipecat_audio_capture.safe_files.open_regular_under`. Blocking: run it in a thread.

    Returns:
        A descriptor open for reading; the caller closes it.

    Raises:
        UnsafePathError: If the file is outside ``root``, reached through a link, not a regular
            file or has more than one link.
        StorageError: If the URL is not a local ``file://`` URL, or the file is missing or
            cannot be opened.
    """
    return _open_under(Path(root), file_url_path(audio_url))


def segment_file(
    audio_url: str, *, session_id: str, segment_id: str, root: str | os.PathLike[str]
) -> Path:
    """Return where a ``file://`` segment's recording is under ``root``: found by its ids.

    ``LocalAudioStorage`` writes ``{root}/{session_id}/{segment_id}.wav``. The URL must name
    that file (its last two parts are the ids); the folders before them are ignored, so the
    index's absolute paths need not match where the recordings are now. Nothing is opened.

    Raises:
        UnsafePathError: If an id is not a UUID (an id from a hostile row could hold ``..``),
            or the URL names another file than the segment's own.
        StorageError: If the URL is not a local ``file://`` URL.
    """
    path = file_url_path(audio_url)
    try:
        own = LocalAudioStorage(root).path_for(session_id, segment_id)
    except InvalidIdError as exc:
        raise UnsafePathError(
            f"segment {segment_id!r} of session {session_id!r}: an id is not a UUID; its "
            "audio is not opened"
        ) from exc
    if path.parts[-2:] != own.parts[-2:]:
        raise UnsafePathError(
            f"{path} is not the segment's own recording ({own.parent.name}/{own.name}); "
            "it is not opened"
        )
    return own


def open_segment_file(
    audio_url: str, *, session_id: str, segment_id: str, root: str | os.PathLike[str]
) -> int:
    """Open a ``file://`` segment's recording where its ids put it under ``root``.

    The file is :func:`segment_file`, opened as :func:`open_local` opens a file. Blocking: run
    it in a thread.

    Returns:
        A descriptor open for reading; the caller closes it.

    Raises:
        UnsafePathError: As :func:`segment_file` and :func:`open_local` do.
        StorageError: As :func:`open_local` does.
    """
    own = segment_file(audio_url, session_id=session_id, segment_id=segment_id, root=root)
    return _open_under(Path(root), own)


def _open_under(root: Path, path: Path) -> int:
    try:
        return open_regular_under(root, path)
    except FileNotFoundError as exc:
        raise StorageError(f"no recording at {path}") from exc
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc


def local_path(audio_url: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Return the existing file a ``file://`` URL names.

    Args:
        audio_url: A ``file://`` URL, as returned by ``LocalAudioStorage.store_segment``.
        root: When given, the file must lie inside this folder once symlinks are resolved, so a
            URL read from a database cannot point a player at any other file.

    Raises:
        StorageError: If the URL is not a local ``file://`` URL, lies outside ``root``, or
            names no file.
    """
    path = file_url_path(audio_url).resolve()
    if root is not None:
        base = Path(root).expanduser().resolve()
        if not path.is_relative_to(base):
            raise StorageError(f"{path} is outside the recordings folder {base}")
    if not path.is_file():
        raise StorageError(f"no recording at {path}")
    return path


def signed_url(
    audio_url: str, *, expires_s: int = SIGNED_URL_EXPIRES_S, client: Client | None = None
) -> str:
    """Return a V4 signed HTTPS URL that lets anyone holding it GET the object until it expires.

    The credentials of ``client`` sign the URL. A service-account key signs locally. Credentials
    without a key (Cloud Run, GKE Workload Identity, Compute Engine) sign through the IAM
    ``signBlob`` API as their own service account, which needs
    ``iam.serviceAccounts.signBlob`` on that account (role ``Service Account Token Creator``).
    That path makes HTTP calls, so call this from async code through ``asyncio.to_thread``.

    Args:
        audio_url: A ``gs://bucket/object`` URL, as returned by ``GCSAudioStorage``.
        expires_s: Lifetime of the URL in seconds, at most 7 days.
        client: The ``google.cloud.storage.Client`` whose credentials sign. When omitted, one
            is built from Application Default Credentials.

    Raises:
        StorageError: If the URL is not a ``gs://`` URL, or signing through IAM fails.
        StorageConfigError: If ``expires_s`` is out of range or the credentials cannot sign.
    """
    bucket, name = parse_gs_url(audio_url)
    if not 1 <= expires_s <= MAX_SIGNED_URL_EXPIRES_S:
        raise StorageConfigError(f"expires_s must be 1..{MAX_SIGNED_URL_EXPIRES_S}: {expires_s}")
    try:
        from google.auth import exceptions as auth_exceptions
        from google.cloud import storage
    except ImportError as exc:
        raise StorageConfigError(
            "signing gs:// URLs needs the gcs extra: pip install 'pipecat-audio-capture[gcs]'"
        ) from exc

    try:
        if client is None:
            client = storage.Client(project=None)
        blob = client.bucket(bucket).blob(name)
        return str(
            blob.generate_signed_url(
                version="v4",
                method="GET",
                expiration=datetime.timedelta(seconds=expires_s),
                **_keyless_signing(client),
            )
        )
    except auth_exceptions.DefaultCredentialsError as exc:
        raise StorageConfigError(f"no Google Cloud credentials to sign with: {exc}") from exc
    except auth_exceptions.GoogleAuthError as exc:
        raise StorageError(
            f"could not sign {audio_url}: refreshing the credentials or the IAM signBlob call "
            f"failed (signBlob needs iam.serviceAccounts.signBlob): {exc}"
        ) from exc


def presigned_s3_url(
    audio_url: str, *, expires_s: int = SIGNED_URL_EXPIRES_S, client: S3Client | None = None
) -> str:
    """Return a SigV4 presigned HTTPS URL to GET the object until it expires.

    Anyone holding the URL can fetch the object.

    The client's credentials sign, locally (no request is sent). Temporary credentials (a role
    of an instance, a task or a pod) end the URL's life when they expire, whatever
    ``expires_s`` says.

    Args:
        audio_url: An ``s3://bucket/key`` URL, as returned by ``S3AudioStorage``.
        expires_s: Lifetime of the URL in seconds, at most 7 days.
        client: The boto3 S3 client whose credentials and endpoint sign. When omitted, one is
            built from boto3's usual configuration (``AWS_*`` variables, ``~/.aws``, a role;
            ``AWS_ENDPOINT_URL_S3`` for an S3-compatible store).

    Raises:
        StorageError: If the URL is not an ``s3://`` URL, or signing fails.
        StorageConfigError: If ``expires_s`` is out of range, the ``s3`` extra is missing, or
            no credentials can be found.
    """
    bucket, key = parse_s3_url(audio_url)
    if not 1 <= expires_s <= MAX_SIGNED_URL_EXPIRES_S:
        raise StorageConfigError(f"expires_s must be 1..{MAX_SIGNED_URL_EXPIRES_S}: {expires_s}")
    try:
        from botocore.exceptions import BotoCoreError, NoCredentialsError

        from pipecat_audio_capture.storage.s3 import make_client
    except ImportError as exc:
        raise StorageConfigError(
            "signing s3:// URLs needs the s3 extra: pip install 'pipecat-audio-capture[s3]'"
        ) from exc
    try:
        signer = client if client is not None else make_client()
        return str(
            signer.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
            )
        )
    except NoCredentialsError as exc:
        raise StorageConfigError(f"no AWS credentials to sign with: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"could not sign {audio_url}: {exc}") from exc


def playable_url(
    audio_url: str,
    *,
    root: str | os.PathLike[str] | None = None,
    expires_s: int = SIGNED_URL_EXPIRES_S,
    client: Client | None = None,
    s3_client: S3Client | None = None,
) -> str:
    """Return a URL a player can open for a stored segment, whichever backend stored it.

    A ``file://`` URL comes back normalised after :func:`local_path` checks it. A ``gs://`` URL
    comes back signed by :func:`signed_url` (with ``client``), an ``s3://`` URL presigned by
    :func:`presigned_s3_url` (with ``s3_client``).

    Raises:
        StorageError: For an unknown scheme, or as :func:`local_path`, :func:`signed_url` or
            :func:`presigned_s3_url` do.
        StorageConfigError: As :func:`signed_url` or :func:`presigned_s3_url` do.
    """
    scheme = urlsplit(audio_url).scheme
    if scheme == "file":
        return local_path(audio_url, root=root).as_uri()
    if scheme == "gs":
        return signed_url(audio_url, expires_s=expires_s, client=client)
    if scheme == "s3":
        return presigned_s3_url(audio_url, expires_s=expires_s, client=s3_client)
    raise StorageError(f"cannot play {scheme or 'scheme-less'} URL {audio_url!r}")


def _keyless_signing(client: Client) -> dict[str, Any]:
    """Return the extra ``generate_signed_url`` arguments the client's credentials need."""
    from google.auth.credentials import Signing
    from google.auth.transport.requests import Request

    # The library has no public accessor; generate_signed_url reads this same attribute.
    credentials = client._credentials
    if isinstance(credentials, Signing):
        return {}
    email = getattr(credentials, "service_account_email", None)
    if email is None:
        raise StorageConfigError(
            f"{type(credentials).__name__} credentials cannot sign URLs: use a service-account "
            "key, or run as a service account allowed to call IAM signBlob on itself"
        )
    if not credentials.valid:
        # Compute Engine credentials learn their account's e-mail along with the token.
        credentials.refresh(Request())
        email = credentials.service_account_email
    return {"service_account_email": email, "access_token": credentials.token}
