-- One row per stored WAV file, and one row per turn's transcript.
-- UUIDs are canonical lower-case text. Timestamps are UTC text in one fixed format,
-- YYYY-MM-DDTHH:MM:SS.ffffffZ, so comparing the text orders them in time and the views can
-- do arithmetic on them; the CHECKs refuse any other spelling.

CREATE TABLE session_audio_segments (
    id           INTEGER PRIMARY KEY,
    segment_id   TEXT NOT NULL UNIQUE CHECK (length(segment_id) = 36),
    session_id   TEXT NOT NULL CHECK (length(session_id) = 36),
    -- Nullable because audio stored without turn tracking has no turn; such a segment is a
    -- turn of its own in session_call_log.
    turn_id      TEXT CHECK (length(turn_id) = 36),
    speaker      TEXT NOT NULL CHECK (speaker IN ('user', 'bot')),
    audio_url    TEXT NOT NULL CHECK (audio_url <> ''),
    format       TEXT NOT NULL DEFAULT 'wav',
    sample_rate  INTEGER NOT NULL CHECK (sample_rate > 0),
    num_channels INTEGER NOT NULL CHECK (num_channels BETWEEN 1 AND 2),
    -- 1e999 is infinity; SQLite stores NaN as NULL, which NOT NULL refuses.
    duration_ms  REAL NOT NULL CHECK (duration_ms >= 0 AND duration_ms < 1e999),
    byte_size    INTEGER NOT NULL CHECK (byte_size >= 0),
    interrupted  INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
    -- NULL means unknown (user turns, or a processor placed after the output transport).
    unplayed_ms  REAL CHECK (unplayed_ms >= 0 AND unplayed_ms < 1e999),
    started_at   TEXT NOT NULL CHECK (
        started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
    ),
    ended_at     TEXT NOT NULL CHECK (
        ended_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
    ),
    CONSTRAINT session_audio_segments_ended_after_started CHECK (ended_at >= started_at)
);

CREATE INDEX session_audio_segments_session_started_idx
    ON session_audio_segments (session_id, started_at);
CREATE INDEX session_audio_segments_turn_idx ON session_audio_segments (turn_id);

CREATE TABLE session_transcripts (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL CHECK (length(session_id) = 36),
    turn_id     TEXT NOT NULL CHECK (length(turn_id) = 36),
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text        TEXT NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
    occurred_at TEXT NOT NULL CHECK (
        occurred_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
    ),
    -- The key a retried or re-sent transcript collides on.
    CONSTRAINT session_transcripts_turn_key UNIQUE (session_id, turn_id, role)
);

CREATE INDEX session_transcripts_session_occurred_idx
    ON session_transcripts (session_id, occurred_at);
CREATE INDEX session_transcripts_turn_idx ON session_transcripts (turn_id);
