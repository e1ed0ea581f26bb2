-- One row per stored WAV file, and one row per turn's transcript.
-- Objects are created unqualified, so they land in the first schema of the search_path.

CREATE TABLE session_audio_segments (
    id           BIGSERIAL PRIMARY KEY,
    segment_id   UUID NOT NULL UNIQUE,
    session_id   UUID NOT NULL,
    -- Nullable because audio stored without turn tracking has no turn; such a segment is a
    -- turn of its own in session_call_log.
    turn_id      UUID,
    speaker      TEXT NOT NULL CHECK (speaker IN ('user', 'bot')),
    audio_url    TEXT NOT NULL CHECK (audio_url <> ''),
    format       TEXT NOT NULL DEFAULT 'wav',
    sample_rate  INTEGER NOT NULL CHECK (sample_rate > 0),
    num_channels SMALLINT NOT NULL CHECK (num_channels BETWEEN 1 AND 2),
    -- float8 sorts NaN above 'Infinity', so "< 'Infinity'" refuses both.
    duration_ms  FLOAT8 NOT NULL CHECK (duration_ms >= 0 AND duration_ms < 'Infinity'),
    byte_size    BIGINT NOT NULL CHECK (byte_size >= 0),
    interrupted  BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL means unknown (user turns, or a processor placed after the output transport).
    unplayed_ms  FLOAT8 CHECK (unplayed_ms >= 0 AND unplayed_ms < 'Infinity'),
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT session_audio_segments_ended_after_started CHECK (ended_at >= started_at)
);

CREATE INDEX session_audio_segments_session_started_idx
    ON session_audio_segments (session_id, started_at);
CREATE INDEX session_audio_segments_turn_idx ON session_audio_segments (turn_id);

CREATE TABLE session_transcripts (
    id          BIGSERIAL PRIMARY KEY,
    session_id  UUID NOT NULL,
    turn_id     UUID NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text        TEXT NOT NULL,
    interrupted BOOLEAN NOT NULL DEFAULT FALSE,
    occurred_at TIMESTAMPTZ NOT NULL,
    -- The key a retried or re-sent transcript collides on.
    CONSTRAINT session_transcripts_turn_key UNIQUE (session_id, turn_id, role)
);

CREATE INDEX session_transcripts_session_occurred_idx
    ON session_transcripts (session_id, occurred_at);
CREATE INDEX session_transcripts_turn_idx ON session_transcripts (turn_id);
