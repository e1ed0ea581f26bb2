-- Reading one call, or the newest calls, stays fast however many calls the index holds.
--
-- 1. session_call_log is recreated without its window function: SQLite cannot push a
--    "WHERE session_id = ?" into a window-function subquery, so every read of one call
--    recomputed the log of all calls. The first segment of a turn is now picked by an
--    aggregate (same answer: earliest started_at, then the lowest id). session_response_gaps
--    reads it, so it is recreated unchanged.
-- 2. session_summaries holds one row per call, kept up to date by triggers on both tables:
--    every write recomputes its call's row from session_call_log (a read of that call only).
--    session_summary now reads that table, so the newest calls come from an index instead of
--    an aggregate over every call. Same columns and values as the view it replaces.
-- 3. A batch writes many rows of one call: the package's batch transaction first lists its
--    calls in session_summary_deferred, whose calls the insert triggers skip, then refreshes
--    each listed call once and empties the list before it commits (storage/sqlite.py). Any
--    other write (a delete, a purge, raw SQL) refreshes its call row by row, so the table is
--    exact whoever writes.

DROP VIEW session_response_gaps;
DROP VIEW session_summary;
DROP VIEW session_call_log;

CREATE VIEW session_call_log AS
WITH audio AS (
    SELECT
        session_id,
        turn_id,
        CASE speaker WHEN 'bot' THEN 'assistant' ELSE 'user' END AS role,
        -- The first segment: the smallest (started_at, id). started_at is fixed-width text, so
        -- the smallest concatenation is the first segment, and its id is what follows.
        CAST(substr(min(started_at || printf('%020d', id)), 28) AS INTEGER) AS first_id,
        count(*) AS segment_count,
        sum(duration_ms) AS duration_ms,
        sum(byte_size) AS byte_size,
        sum(unplayed_ms) AS unplayed_ms,
        max(interrupted) AS interrupted,
        min(started_at) AS started_at,
        max(ended_at) AS ended_at
    FROM session_audio_segments
    GROUP BY session_id, turn_id, COALESCE(turn_id, segment_id), speaker
)
SELECT
    a.session_id,
    a.turn_id,
    a.role,
    t.text,
    f.audio_url,
    f.segment_id,
    a.segment_count,
    a.duration_ms,
    a.byte_size,
    a.unplayed_ms,
    a.interrupted AS audio_interrupted,
    t.interrupted AS transcript_interrupted,
    -- The audio start is when the turn was heard; a transcript's time is the fallback.
    a.started_at AS occurred_at,
    a.started_at,
    a.ended_at
FROM audio AS a
JOIN session_audio_segments AS f ON f.id = a.first_id
LEFT JOIN session_transcripts AS t
    ON t.session_id = a.session_id AND t.turn_id = a.turn_id AND t.role = a.role
UNION ALL
SELECT
    t.session_id,
    t.turn_id,
    t.role,
    t.text,
    NULL,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    t.interrupted,
    t.occurred_at,
    NULL,
    NULL
FROM session_transcripts AS t
WHERE NOT EXISTS (
    SELECT 1
    FROM session_audio_segments AS s
    WHERE s.session_id = t.session_id
        AND s.turn_id = t.turn_id
        AND s.speaker = CASE t.role WHEN 'assistant' THEN 'bot' ELSE 'user' END
);

-- As in 0002 (gap_ms in integers, exact to the microsecond).
CREATE VIEW session_response_gaps AS
WITH spoken AS (
    SELECT
        session_id,
        turn_id,
        role,
        occurred_at,
        ended_at,
        lead(role) OVER turns AS next_role,
        lead(turn_id) OVER turns AS next_turn_id,
        lead(occurred_at) OVER turns AS next_occurred_at
    FROM session_call_log
    WINDOW turns AS (PARTITION BY session_id ORDER BY occurred_at, role DESC, turn_id)
)
SELECT
    session_id,
    turn_id AS user_turn_id,
    occurred_at AS user_started_at,
    ended_at AS user_ended_at,
    CASE WHEN next_role = 'assistant' THEN next_turn_id END AS bot_turn_id,
    CASE WHEN next_role = 'assistant' THEN next_occurred_at END AS bot_started_at,
    CASE WHEN next_role = 'assistant' THEN (
        (CAST(strftime('%s', substr(next_occurred_at, 1, 19)) AS INTEGER)
            - CAST(strftime('%s', substr(ended_at, 1, 19)) AS INTEGER)) * 1000000
        + CAST(substr(next_occurred_at, 21, 6) AS INTEGER)
        - CAST(substr(ended_at, 21, 6) AS INTEGER)
    ) / 1000.0 END AS gap_ms
FROM spoken
WHERE role = 'user';

CREATE TABLE session_summaries (
    session_id    TEXT PRIMARY KEY,
    started_at    TEXT NOT NULL,
    ended_at      TEXT NOT NULL,
    turns         INTEGER NOT NULL,
    segments      INTEGER NOT NULL,
    user_talk_ms  REAL NOT NULL,
    bot_talk_ms   REAL NOT NULL,
    interruptions INTEGER NOT NULL,
    bytes         INTEGER NOT NULL
);

-- The list's order, newest first, read straight from the index.
CREATE INDEX session_summaries_newest_idx ON session_summaries (started_at DESC, session_id);

-- Inserting a session_id here recomputes that call's row (or removes it when the call has no
-- rows left): one statement list that every trigger below calls, as a procedure would.
CREATE VIEW session_summary_refresh AS SELECT NULL AS session_id;

CREATE TRIGGER session_summary_refresh_call INSTEAD OF INSERT ON session_summary_refresh
BEGIN
    DELETE FROM session_summaries WHERE session_id = NEW.session_id;
    INSERT INTO session_summaries (
        session_id, started_at, ended_at, turns, segments, user_talk_ms, bot_talk_ms,
        interruptions, bytes
    )
    SELECT
        session_id,
        min(occurred_at),
        max(COALESCE(ended_at, occurred_at)),
        count(*),
        sum(segment_count),
        COALESCE(sum(CASE WHEN role = 'user' THEN duration_ms END), 0.0),
        COALESCE(sum(CASE WHEN role = 'assistant' THEN duration_ms END), 0.0),
        sum(CASE WHEN audio_interrupted OR transcript_interrupted THEN 1 ELSE 0 END),
        COALESCE(sum(byte_size), 0)
    FROM session_call_log
    WHERE session_id = NEW.session_id
    GROUP BY session_id;
END;

-- Calls whose refresh the current transaction does once at its end; empty between transactions.
CREATE TABLE session_summary_deferred (session_id TEXT PRIMARY KEY) WITHOUT ROWID;

CREATE TRIGGER session_audio_segments_summary_insert AFTER INSERT ON session_audio_segments
WHEN NOT EXISTS (SELECT 1 FROM session_summary_deferred WHERE session_id = NEW.session_id)
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (NEW.session_id);
END;

CREATE TRIGGER session_audio_segments_summary_update AFTER UPDATE ON session_audio_segments
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (OLD.session_id);
    INSERT INTO session_summary_refresh (session_id)
    SELECT NEW.session_id WHERE NEW.session_id <> OLD.session_id;
END;

CREATE TRIGGER session_audio_segments_summary_delete AFTER DELETE ON session_audio_segments
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (OLD.session_id);
END;

CREATE TRIGGER session_transcripts_summary_insert AFTER INSERT ON session_transcripts
WHEN NOT EXISTS (SELECT 1 FROM session_summary_deferred WHERE session_id = NEW.session_id)
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (NEW.session_id);
END;

CREATE TRIGGER session_transcripts_summary_update AFTER UPDATE ON session_transcripts
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (OLD.session_id);
    INSERT INTO session_summary_refresh (session_id)
    SELECT NEW.session_id WHERE NEW.session_id <> OLD.session_id;
END;

CREATE TRIGGER session_transcripts_summary_delete AFTER DELETE ON session_transcripts
BEGIN
    INSERT INTO session_summary_refresh (session_id) VALUES (OLD.session_id);
END;

-- The calls already indexed.
INSERT INTO session_summary_refresh (session_id)
SELECT session_id FROM session_audio_segments
UNION
SELECT session_id FROM session_transcripts;

CREATE VIEW session_summary AS
SELECT
    session_id,
    started_at,
    ended_at,
    turns,
    segments,
    user_talk_ms,
    bot_talk_ms,
    interruptions,
    bytes
FROM session_summaries;
