"""Exceptions raised by pipecat-audio-capture.

Every exception the package raises on purpose derives from :class:`AudioCaptureError`, so callers
can catch the package's failures with one clause and still tell them apart
(``tests/test_exception_root.py`` checks every ``raise`` of the package). Where callers expect a
built-in class, the package's class subclasses it too: a refused argument is a ``ValueError``, a
missing extra an ``ImportError``, a simulated call that overran a ``TimeoutError``, an unknown
name of the package an ``AttributeError``. Other modules define narrow subclasses of their own
(``CommandError`` of the command line, ``ArgumentValueError`` of its option parsers).

Raised on purpose but not failures of the package, so not from the root: the HTTP responses the
review page raises as aiohttp expects, the command line's ``SystemExit``, and botocore's
``IncompleteReadError`` for a short S3 download, raised inside the client call so that the S3
backend wraps it in a transient :class:`StorageError` like botocore's own.
"""


class AudioCaptureError(Exception):
    """Root of every exception raised by this package."""


class InvalidArgumentError(AudioCaptureError, ValueError):
    """An argument is out of range, inconsistent with another, or not one of its allowed values.

    Raised by constructors and functions before they do anything (a negative ``preroll_s``, a
    ``RetryPolicy`` with no attempts, a ``limit`` below 0). It is a ``ValueError``, as callers
    of earlier versions caught.
    """


class UnknownAttributeError(AudioCaptureError, AttributeError):
    """The package has no public name of that spelling.

    Python requires a module's ``__getattr__`` to raise ``AttributeError`` (``hasattr`` and
    ``from ... import`` rely on it), so this is one.
    """


class WavFileError(AudioCaptureError, ValueError):
    """Bytes that are not a WAV file as this package writes it.

    The package reads back only its own files: a 44-byte canonical header, 16-bit PCM, a format
    within :mod:`~pipecat_audio_capture.limits` (or the one the reader expects), and as many bytes
    of samples as the header announces.
    """


class FolderGoneError(AudioCaptureError, FileNotFoundError):
    """A folder the package created or was about to read is no longer there.

    Another process removed it in between (a retention run, a replay). It is a
    ``FileNotFoundError``, so the callers that treat a missing file as such go on doing so.
    """


class SimulatedCallTimeoutError(AudioCaptureError, TimeoutError):
    """The demo's simulated call did not end within its time limit; it was cancelled."""


class InvalidIdError(AudioCaptureError, ValueError):
    """A session, segment or turn id is not a UUID.

    Ids reach file paths, object keys and SQL rows, so anything that is not a UUID is refused
    before it gets there.
    """


class AudioFormatError(AudioCaptureError, ValueError):
    """Audio whose format or size the package does not record.

    Its sample rate or channel count is outside :mod:`~pipecat_audio_capture.limits`, or its
    size cannot be a WAV file's: the WAV header cannot hold it, and the index and the spool would
    refuse it. The segment counts as failed.
    """


class StorageError(AudioCaptureError):
    """Writing or reading audio or metadata failed.

    :attr:`transient` says whether another attempt can succeed; only transient failures are
    retried (:func:`~pipecat_audio_capture.retry.is_transient`). Each backend classifies what
    its client raised: timeouts, lost connections, 429, 5xx, a busy database are transient; a
    refused row, a file that already holds different audio, a missing bucket are not. A
    ``StorageError`` raised without ``transient`` counts as an outage (transient), so a backend
    that does not classify its failures keeps its retries; the subclasses below that describe
    failures which repeat identically default to ``False``.
    """

    transient: bool = True
    """Default of :attr:`transient` for this class."""

    def __init__(self, *args: object, transient: bool | None = None) -> None:
        """Initialize the error.

        Args:
            *args: The message, as for ``Exception``.
            transient: Whether another attempt can succeed; the class's default when omitted.
        """
        super().__init__(*args)
        if transient is not None:
            self.transient = transient


class StorageConfigError(StorageError):
    """A storage backend is misconfigured or unreachable at startup."""

    transient = False


class MigrationError(StorageError):
    """Applying the database migrations failed."""

    transient = False


class WriteTimeoutError(StorageError):
    """One attempt at writing audio, metadata or a transcript took longer than its timeout."""


class SpoolError(StorageError):
    """Writing to, reading from or cleaning the local spool failed."""


class SpoolFullError(SpoolError):
    """The spool is at ``spool_max_bytes``: the entry was refused and its segment counts as lost.

    Older entries are never evicted to make room: they hold recordings that were already
    promised to be kept.
    """


class SpoolEntryGoneError(SpoolError):
    """A spool entry was removed between listing and reading it.

    Another replay stored it, or a deletion removed it. Not a failure of the entry.
    """


class SpoolEntryError(SpoolError):
    """A file in the spool is not an entry this package wrote.

    It is corrupt, truncated, renamed, or a symlink. It is left in place, untouched, and
    reported.
    """


class UnsafePathError(StorageError):
    """A folder or file on the way to a recording leads outside its root.

    It is a symlink or otherwise escapes; nothing is read, written or deleted through it.
    """

    transient = False


class CallAudioError(AudioCaptureError):
    """A call's stereo recording cannot be built.

    The call has no usable segment, its rows belong to several calls, the requested format is
    unsupported, or it would not fit a WAV file. A single unreadable segment is not this error:
    it is reported and left silent.
    """


class MissingExtraError(AudioCaptureError, ImportError):
    """A module needs an optional dependency (an extra) that is not installed.

    The message ends with the command that installs it. It is an ``ImportError`` too, so code
    that probes for optional modules keeps working.
    """

    def __init__(self, extra: str) -> None:
        """Initialize the error.

        Args:
            extra: The extra to install, e.g. ``"gcs"``.
        """
        self.extra = extra
        self.install_command = f"pip install 'pipecat-audio-capture[{extra}]'"
        super().__init__(f"this needs the {extra} extra, install it with: {self.install_command}")
