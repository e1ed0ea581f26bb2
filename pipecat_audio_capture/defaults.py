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

PROCESSOR_DIRECT_MODE = True
"""``AudioCaptureProcessor`` runs in Pipecat's direct mode: each frame is handled in the task of
the processor that pushed it, with no input queue and task of its own (no queue hop per frame).
It never pauses or holds a frame, which is all direct mode rules out."""

MAX_FORMAT_CHANGES_PER_TURN = 3
"""Format changes (sample rate or channel count) one turn may make; each starts a new segment of
the turn. From the next change on, the rest of the turn is counted and not recorded: a stream that
changes format every frame would otherwise flood the queue, the spool and the index with one
segment per frame."""

QUEUE_CAPACITY = 64
"""Segments waiting for the background writer before new ones go to the spool (or, without one,
are dropped and reported)."""

WRITE_TIMEOUT_S = 30.0
"""Longest one attempt at storing a segment's audio, its metadata or a transcript row may take
before it counts as failed (and is retried)."""

CLOSE_TIMEOUT_S = 30.0
"""Longest ``SessionAudioCapture.close()`` and ``TranscriptRecorder.close()`` take."""

CLOSE_SPOOL_SHARE = 0.25
"""Part of ``close()``'s timeout kept for spooling what storage has not taken by then: storing
gets the first 75 %, so a hung backend still leaves 7.5 s of the default 30 s for the spool,
whose local writes take milliseconds each."""

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

SQLITE_READ_CONNECTIONS = 4
"""Read-only connections ``SQLiteAudioMetaStorage`` reads through, side by side (WAL lets them
read while a write is under way); reads beyond this wait for one to be free."""

SQLITE_WAL_CHECKPOINT_PAGES = 10_000
"""Pages the write-ahead log of ``SQLiteAudioMetaStorage`` may hold before a commit copies them
into the database file (SQLite's own default is 1,000): about 40 MiB of log at 4 KiB pages."""

GCS_TIMEOUT_S = 10.0
"""Per-request timeout of ``GCSAudioStorage``: how long one HTTP request may wait to connect or
to read."""

GCS_RETRY_DEADLINE_S = 15.0
"""Time after which ``GCSAudioStorage`` stops retrying. The last attempt may start just before it
and run for ``GCS_TIMEOUT_S``, so a failing upload gives up after about 25 s, within
``WRITE_TIMEOUT_S``."""

S3_TIMEOUT_S = 10.0
"""Per-request timeout of ``S3AudioStorage``: how long one HTTP request may wait to connect or
to read."""

S3_RETRY_DEADLINE_S = 15.0
"""Time after which ``S3AudioStorage`` starts no further attempt at one call. The last attempt
may start just before it and run for ``S3_TIMEOUT_S``, so a failing upload gives up after about
25 s, within ``WRITE_TIMEOUT_S``."""

S3_INITIAL_BACKOFF_S = 0.1
"""Bound of the first wait between two attempts of one ``S3AudioStorage`` call (full jitter,
doubling up to ``S3_MAX_BACKOFF_S``)."""

S3_MAX_BACKOFF_S = 2.0
"""Largest wait between two attempts of one ``S3AudioStorage`` call."""

RETRY_ATTEMPTS = 4
"""Attempts at one audio upload or one index write (the first included) before the segment or
transcript goes to the spool."""

RETRY_INITIAL_BACKOFF_S = 0.5
"""Upper bound of the first wait between attempts; each later bound doubles. The wait itself is
drawn uniformly below the bound ("full jitter"), so many workers recovering from the same outage
do not retry in lockstep."""

RETRY_MAX_BACKOFF_S = 8.0
"""Largest bound of one wait between attempts."""

RETRY_DEADLINE_S = 60.0
"""No new attempt starts this long after the first attempt for a segment started. Together with
``WRITE_TIMEOUT_S`` per attempt, one segment spends at most about 90 s on a failing backend before
it is spooled, so the queue behind it keeps moving during an outage."""

SPOOL_MAX_BYTES = 1 << 30
"""Largest size of the spool folder (1 GiB, about 6 hours of 24 kHz mono audio). An entry that
would go past it is refused and the segment counts as lost, with reason ``"spool_full"``."""

SPILL_CAPACITY = 64
"""Segments that may wait in memory for the spool writer when the write queue is full. Memory is
bounded by ``QUEUE_CAPACITY + SPILL_CAPACITY`` segments of at most ``MAX_SEGMENT_S`` each."""

TEMP_FILE_MIN_AGE_S = 60.0
"""Age from which ``recover()`` removes a leftover temporary file. A local write keeps its temporary
file for well under a second, so one older than this belongs to a process that died; a younger one
may belong to another process sharing the folder and is left alone."""

REPLAY_ATTEMPTS = 2
"""Attempts per spool entry and step during a replay, which runs when the backends are expected to
be back: a blip is retried, an outage leaves the entry for the next replay."""

CLI_DB = "recordings/index.sqlite3"
"""The SQLite index the command-line tool reads when given neither ``--db`` nor ``--dsn`` nor an
environment variable: where the offline demo writes."""

SERVE_HOST = "127.0.0.1"
"""Address ``pipecat-audio-capture serve`` listens on: loopback, so only this machine can connect.
Any other address needs an access token."""

SERVE_PORT = 8765
"""Port ``pipecat-audio-capture serve`` listens on."""

SERVE_PAGE_SIZE = 50
"""Calls per page of the call review's session list (the ``sessions`` command lists as many)."""

SERVE_COOKIE_MAX_AGE_S = 12 * 3600
"""How long the cookie the call review sets (after ``?token=``) lets a browser in: a working day
of review; then the link with the token is needed again."""

SERVE_AUDIO_CHUNK_BYTES = 256 * 1024
"""Bytes of a WAV file the call review reads (in a worker thread) and sends at a time."""

CALL_AUDIO_BLOCK_S = 1.0
"""Seconds of audio a whole-call recording reads, resamples and writes per step: the build holds
about this much per channel, whatever the call's length."""
SERVE_MAX_TURNS = 1000
"""Most turns one call's page shows (a note says when there are more): the page's size and the
work to draw it stay bounded whatever one call holds."""

SERVE_CALL_AUDIO_CACHE_CALLS = 4
"""Whole-call recordings (``/sessions/ID/call.wav``) the call review keeps built in its private
cache folder; building one more removes the least recently played."""

SERVE_CALL_AUDIO_MAX_BYTES = 1 << 30
"""Largest whole-call recording the call review builds (1 GiB: over 1.5 hours of 48 kHz stereo);
a larger call is not played whole (its turns still play one by one, and ``export`` writes it)."""

SERVE_MAX_TURN_PARTS = 20
"""Most players one turn of a call's page lists for the parts its audio is split into; the whole
call (``call.wav``) plays every part."""

SERVE_READ_CONNECTIONS = 4
"""Index connections the call review reads through side by side, so one slow read does not hold
up the other requests."""

SERVE_MAX_CONNECTIONS = 256
"""Most client connections the call review keeps open. At the cap, a new connection closes the
oldest one that has not yet sent a complete request head; with none to close, it is refused.
Lowered to half the process's open-file limit when that is smaller."""

SERVE_HEADER_TIMEOUT_S = 10.0
"""Longest a new connection may take to send a complete request head before it is closed."""

SERVE_IDLE_TIMEOUT_S = 15.0
"""Longest a kept-alive connection may wait idle for its next request before it is closed."""

SERVE_LOG_BURST = 5
"""Log lines one kind of message may write per :data:`SERVE_LOG_WINDOW_S` in the call review
(a request error, a refused connection...); the rest are counted and summed up in one line."""

SERVE_LOG_WINDOW_S = 60.0
"""The period :data:`SERVE_LOG_BURST` counts over."""

INDEX_BATCH_MAX_ROWS = 200
"""Most rows one index batch writes: a full batch starts at once. 200 covers a worker with a
hundred calls, each with a segment row and a transcript row waiting."""

INDEX_BATCH_MAX_DELAY_S = 0.05
"""Longest a row waits for rows of other calls to share its batch. It waits only while a writer
that sent rows within ``INDEX_BATCH_WRITER_IDLE_S`` has none waiting, so a lone writer (one
call, a replay) is never delayed."""

INDEX_BATCH_WRITER_IDLE_S = 10.0
"""How long after its last row a writer (a call's capture or transcript recorder) is still
expected to send more, and so worth a batch waiting for."""

INDEX_BATCH_TIMEOUT_S = 30.0
"""Longest one batch (or one row of a split batch) may take; its rows then fail and their
calls retry them or spool them."""
