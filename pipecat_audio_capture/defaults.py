"""Every default of the package, in one place.

Constructors take these as keyword arguments; the values here are what they get when the caller
says nothing.
"""

PREROLL_S = 1.0
"""Input audio kept from before ``UserStartedSpeakingFrame``: VAD confirms speech only after
``start_secs`` (0.2 s by default), and Pipecat's own ``AudioBufferProcessor`` keeps 1 s."""

MAX_SEGMENT_S = 300.0
"""A turn longer than this is split into several segments sharing one ``turn_id``; it bounds the
memory one open turn can hold (300 s of 24 kHz mono is 14 MB)."""

QUEUE_CAPACITY = 64
"""Segments waiting for the background writer before new ones are dropped (and reported)."""

WRITE_TIMEOUT_S = 30.0
"""Longest one segment may take to encode and store before it counts as failed."""

CLOSE_TIMEOUT_S = 30.0
"""Longest ``SessionAudioCapture.close()`` waits for the queue to drain."""

TURN_MATCH_TOLERANCE_S = 1.0
"""How far apart a transcript's turn start and an audio turn's start may be and still pair."""

TURN_HISTORY = 256
"""Turns per speaker that ``TurnIds`` remembers for late transcripts."""

TURN_CLAIM_WAIT_S = 2.0
"""How long a transcript waits for its audio turn to appear before it gets an id of its own."""

PG_CONNECT_TIMEOUT_S = 5.0
"""Longest ``PostgresAudioMetaStorage.connect`` waits for the server before giving up."""

MIGRATION_LOCK_TIMEOUT_S = 60.0
"""Longest ``PostgresAudioMetaStorage.run_migrations`` waits for another worker's run."""

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
"""Connections of a pool opened by ``PostgresAudioMetaStorage.connect``: one call writes a few rows
a minute, so a worker rarely needs more than one at a time."""

SQLITE_BUSY_TIMEOUT_S = 5.0
"""Longest a SQLite statement waits for another process that holds the write lock."""

GCS_TIMEOUT_S = 10.0
"""Per-request timeout of ``GCSAudioStorage``: how long one HTTP request may wait to connect or
to read."""

GCS_RETRY_DEADLINE_S = 15.0
"""Time after which ``GCSAudioStorage`` stops retrying. The last attempt may start just before it
and run for ``GCS_TIMEOUT_S``, so a failing upload gives up after about 25 s, within
``WRITE_TIMEOUT_S``."""

CLI_DB = "recordings/index.sqlite3"
"""The SQLite index the command-line tool reads when given neither ``--db`` nor ``--dsn`` nor an
environment variable: where the offline demo writes."""
