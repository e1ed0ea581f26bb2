"""Exceptions raised by pipecat-audio-capture.

Every exception the package raises derives from :class:`AudioCaptureError`, so callers can
catch the package's failures with one clause and still tell them apart.
"""


class AudioCaptureError(Exception):
    """Root of every exception raised by this package."""


class InvalidIdError(AudioCaptureError, ValueError):
    """A session, segment or turn id is not a UUID.

    Ids reach file paths, object keys and SQL rows, so anything that is not a UUID is refused
    before it gets there.
    """


class StorageError(AudioCaptureError):
    """Writing or reading audio or metadata failed."""


class StorageConfigError(StorageError):
    """A storage backend is misconfigured or unreachable at startup."""


class MigrationError(StorageError):
    """Applying the database migrations failed."""
