-- Why a response was slow: one row per bot turn with the latency breakdown that Pipecat's
-- UserBotLatencyObserver reported when the bot started speaking (LatencyRecorder writes it).
--
-- The measured wait runs from started_at (the user fell silent; for a greeting, the pipeline was
-- ready with a client) to bot_started_at (the bot started speaking). Pipecat names each part of it
-- (a "contribution"); the <stage>_ms columns sum them by Pipecat's key, other_ms sums the keys
-- this version does not know, so the stage columns always add up to total_ms. A stage that did not
-- happen is 0. slowest_stage / slowest_owner name the largest single part and who spent it (a
-- processor, or a "config: ..." setting). stages keeps every part as JSON, in order:
-- [{"stage", "label", "owner", "owner_kind", "offset_ms", "duration_ms"}], offset_ms from
-- started_at.
--
-- The same table, view, columns and meaning as on PostgreSQL
-- (migrations/postgres/0004_turn_latency.sql); ids and timestamps are text as in 0001.
--
-- The table and the view read nothing but this table, so migrations that recreate the call-log
-- views never have to drop them.

CREATE TABLE session_turn_latencies (
    session_id     TEXT NOT NULL CHECK (length(session_id) = 36),
    -- The bot turn the response produced: the audio's and the assistant transcript's turn_id.
    turn_id        TEXT NOT NULL CHECK (length(turn_id) = 36),
    measured_from  TEXT NOT NULL CHECK (measured_from IN ('user_silence', 'client_connected')),
    started_at     TEXT NOT NULL CHECK (
        started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
    ),
    bot_started_at TEXT NOT NULL CHECK (
        bot_started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
    ),
    total_ms       REAL NOT NULL CHECK (total_ms >= 0 AND total_ms < 1e999),
    -- From the user falling silent to the user turn being released; NULL if not observed.
    user_turn_ms   REAL CHECK (user_turn_ms >= 0 AND user_turn_ms < 1e999),
    endpointing_wait_ms        REAL NOT NULL DEFAULT 0 CHECK (endpointing_wait_ms >= 0 AND endpointing_wait_ms < 1e999),
    first_request_ms           REAL NOT NULL DEFAULT 0 CHECK (first_request_ms >= 0 AND first_request_ms < 1e999),
    transcription_ms           REAL NOT NULL DEFAULT 0 CHECK (transcription_ms >= 0 AND transcription_ms < 1e999),
    turn_detection_ms          REAL NOT NULL DEFAULT 0 CHECK (turn_detection_ms >= 0 AND turn_detection_ms < 1e999),
    llm_inference_ms           REAL NOT NULL DEFAULT 0 CHECK (llm_inference_ms >= 0 AND llm_inference_ms < 1e999),
    turn_completion_ms         REAL NOT NULL DEFAULT 0 CHECK (turn_completion_ms >= 0 AND turn_completion_ms < 1e999),
    waiting_for_user_ms        REAL NOT NULL DEFAULT 0 CHECK (waiting_for_user_ms >= 0 AND waiting_for_user_ms < 1e999),
    llm_tool_call_ms           REAL NOT NULL DEFAULT 0 CHECK (llm_tool_call_ms >= 0 AND llm_tool_call_ms < 1e999),
    function_handler_ms        REAL NOT NULL DEFAULT 0 CHECK (function_handler_ms >= 0 AND function_handler_ms < 1e999),
    awaiting_speakable_text_ms REAL NOT NULL DEFAULT 0 CHECK (awaiting_speakable_text_ms >= 0 AND awaiting_speakable_text_ms < 1e999),
    sentence_aggregation_ms    REAL NOT NULL DEFAULT 0 CHECK (sentence_aggregation_ms >= 0 AND sentence_aggregation_ms < 1e999),
    speech_synthesis_ms        REAL NOT NULL DEFAULT 0 CHECK (speech_synthesis_ms >= 0 AND speech_synthesis_ms < 1e999),
    output_transport_ms        REAL NOT NULL DEFAULT 0 CHECK (output_transport_ms >= 0 AND output_transport_ms < 1e999),
    pipeline_ms                REAL NOT NULL DEFAULT 0 CHECK (pipeline_ms >= 0 AND pipeline_ms < 1e999),
    other_ms                   REAL NOT NULL DEFAULT 0 CHECK (other_ms >= 0 AND other_ms < 1e999),
    slowest_stage  TEXT NOT NULL,
    slowest_owner  TEXT NOT NULL,
    stages         TEXT NOT NULL,
    -- One breakdown per bot turn: a retried or replayed write collides here and is ignored.
    PRIMARY KEY (session_id, turn_id),
    CONSTRAINT session_turn_latencies_bot_after_start CHECK (bot_started_at >= started_at)
);

CREATE INDEX session_turn_latencies_turn_idx ON session_turn_latencies (turn_id);

-- One row per bot turn that has a breakdown, in the columns above; sort by bot_started_at.
CREATE VIEW session_turn_latency AS
SELECT
    session_id,
    turn_id,
    measured_from,
    started_at,
    bot_started_at,
    total_ms,
    user_turn_ms,
    endpointing_wait_ms,
    first_request_ms,
    transcription_ms,
    turn_detection_ms,
    llm_inference_ms,
    turn_completion_ms,
    waiting_for_user_ms,
    llm_tool_call_ms,
    function_handler_ms,
    awaiting_speakable_text_ms,
    sentence_aggregation_ms,
    speech_synthesis_ms,
    output_transport_ms,
    pipeline_ms,
    other_ms,
    slowest_stage,
    slowest_owner,
    stages
FROM session_turn_latencies;
