-- Where each bot segment's cut and times come from, and the call log view that shows it.
--
-- playback: 'confirmed' when the segment holds what the output transport wrote (a PlaybackTap,
-- or the processor placed after transport.output()), 'estimated' when a real-time play-out clock
-- predicted it. NULL for user segments, and for rows indexed before this migration.
ALTER TABLE session_audio_segments
    ADD COLUMN playback TEXT,
    ADD CONSTRAINT session_audio_segments_playback_check
        CHECK (
            playback IS NULL OR (playback IN ('confirmed', 'estimated') AND speaker = 'bot')
        );

-- session_call_log gains playback as its last column; OR REPLACE keeps the views that read it
-- (session_summary, session_response_gaps) as they are.

-- One row per turn, in the order to sort by (occurred_at), with its audio and its transcript.
--
-- A turn is a turn_id of one speaker; audio speaker 'bot' pairs with transcript role
-- 'assistant'. A turn longer than the segment limit is stored as several segments sharing its
-- turn_id and folds into one row here: the first segment's segment_id and audio_url, summed
-- duration_ms, byte_size and unplayed_ms, audio_interrupted if any part was, and segment_count
-- parts (list them from session_audio_segments by turn_id). A segment without a turn_id is a
-- turn of its own. Turns with audio but no transcript, and the reverse, are kept: the columns of
-- the missing side are NULL (segment_count 0). playback is how the turn's bot audio was cut and
-- timed: 'confirmed' (what the output transport wrote) or 'estimated' (a play-out clock; any
-- estimated part makes the turn estimated); NULL for user turns and rows indexed before 0005.
--
-- It is a full outer join, written as a left join plus the transcripts that have no audio,
-- because PostgreSQL cannot push a session_id filter through FULL JOIN.
CREATE OR REPLACE VIEW session_call_log AS
WITH audio AS (
    SELECT
        session_id,
        turn_id,
        CASE speaker WHEN 'bot' THEN 'assistant' ELSE 'user' END AS role,
        (array_agg(segment_id ORDER BY started_at, id))[1] AS segment_id,
        (array_agg(audio_url ORDER BY started_at, id))[1] AS audio_url,
        count(*) AS segment_count,
        sum(duration_ms) AS duration_ms,
        sum(byte_size)::bigint AS byte_size,
        sum(unplayed_ms) AS unplayed_ms,
        bool_or(interrupted) AS interrupted,
        min(started_at) AS started_at,
        max(ended_at) AS ended_at,
        -- 'estimated' if any part was, so a turn is confirmed only when all of it is.
        max(playback) AS playback
    FROM session_audio_segments
    GROUP BY session_id, turn_id, COALESCE(turn_id, segment_id), speaker
)
SELECT
    a.session_id,
    a.turn_id,
    a.role,
    t.text,
    a.audio_url,
    a.segment_id,
    a.segment_count,
    a.duration_ms,
    a.byte_size,
    a.unplayed_ms,
    a.interrupted AS audio_interrupted,
    t.interrupted AS transcript_interrupted,
    -- The audio start is when the turn was heard; a transcript's time is the fallback.
    a.started_at AS occurred_at,
    a.started_at,
    a.ended_at,
    a.playback
FROM audio AS a
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
