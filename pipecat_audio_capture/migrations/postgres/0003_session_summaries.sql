-- Listing the newest calls stays fast however many calls the index holds (see
-- migrations/sqlite/0003_session_summaries.sql for the SQLite side).
--
-- session_summaries holds one row per call, kept up to date by triggers on both tables: every
-- transaction recomputes each call it wrote, once, from session_call_log (whose "WHERE session_id = ..."
-- reaches the base tables' indexes, so this reads that call only). session_summary now reads
-- that table, so the newest calls come from an index instead of an aggregate over every call.
-- Same columns, types and values as the view it replaces.

CREATE TABLE session_summaries (
    session_id    UUID PRIMARY KEY,
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ NOT NULL,
    turns         BIGINT NOT NULL,
    segments      BIGINT NOT NULL,
    user_talk_ms  FLOAT8 NOT NULL,
    bot_talk_ms   FLOAT8 NOT NULL,
    interruptions BIGINT NOT NULL,
    bytes         BIGINT NOT NULL
);

-- The list's order, newest first, read straight from the index.
CREATE INDEX session_summaries_newest_idx ON session_summaries (started_at DESC, session_id);

-- Recomputes the rows of the given calls, and removes those of calls with no rows left, in
-- two statements whatever the number of calls. Its queries see what committed before they
-- run (a volatile function takes a new snapshot per query), and it resolves names in the
-- schema it was created in, whatever the writer's search_path. Planning these queries
-- (through the whole session_call_log view) cost more than running them on a batch's calls,
-- so they are planned once per connection: PL/pgSQL keeps its plans where a SQL function
-- plans again at every invocation, and generic ones, since the "session_id = call" index
-- lookups need no parameter values (a custom plan is made again for every array).
CREATE FUNCTION session_summary_refresh(calls UUID[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    DELETE FROM session_summaries WHERE session_id = ANY (calls);
    INSERT INTO session_summaries (
        session_id, started_at, ended_at, turns, segments, user_talk_ms, bot_talk_ms,
        interruptions, bytes
    )
    SELECT listed.call, summary.*
    FROM unnest(calls) AS listed (call)
    -- LATERAL reads each call with "session_id = call", which reaches both sides of
    -- session_call_log's join through the indexes ("= ANY" would scan one of them whole).
    CROSS JOIN LATERAL (
        SELECT
            min(occurred_at),
            max(COALESCE(ended_at, occurred_at)),
            count(*),
            sum(segment_count)::bigint,
            COALESCE(sum(duration_ms) FILTER (WHERE role = 'user'), 0),
            COALESCE(sum(duration_ms) FILTER (WHERE role = 'assistant'), 0),
            count(*) FILTER (WHERE audio_interrupted OR transcript_interrupted),
            COALESCE(sum(byte_size), 0)::bigint
        FROM session_call_log
        WHERE session_id = listed.call
        HAVING count(*) > 0
    ) AS summary;
END;
$$;

-- A batch writes many rows of one call in one transaction, so the row triggers only list the
-- call in session_summary_dirty (once per transaction: a second insert of the same call finds
-- the row), and a deferred trigger on that list refreshes the listed calls at commit, then
-- empties it. Every write path (batches, deletes, purges, raw SQL) is covered, and a second
-- transaction listing the same call waits for the first to commit, so it recomputes after the
-- first one's rows are visible. The trigger functions keep generic plans too: they run once per
-- row or per transaction, and their lookups by key need no parameter values either.
CREATE TABLE session_summary_dirty (session_id UUID PRIMARY KEY);

CREATE FUNCTION session_summary_mark_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO session_summary_dirty (session_id) VALUES (OLD.session_id)
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.session_id <> OLD.session_id) THEN
        INSERT INTO session_summary_dirty (session_id) VALUES (NEW.session_id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

-- Refreshes every call this transaction listed (the first of the deferred firings does the
-- work; the others find the list empty). The locks are taken in call order so
-- two transactions listing the same calls cannot deadlock on them.
CREATE FUNCTION session_summary_dirty_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    calls UUID[];
BEGIN
    SELECT array_agg(session_id ORDER BY session_id) INTO calls FROM session_summary_dirty;
    IF calls IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('session_summaries:' || listed::text, 0))
    FROM unnest(calls) AS listed
    ORDER BY listed;
    DELETE FROM session_summary_dirty WHERE session_id = ANY (calls);
    PERFORM session_summary_refresh(calls);
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER session_summary_dirty_refresh
AFTER INSERT ON session_summary_dirty
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION session_summary_dirty_trigger();

CREATE TRIGGER session_audio_segments_summary
AFTER INSERT OR UPDATE OR DELETE ON session_audio_segments
FOR EACH ROW EXECUTE FUNCTION session_summary_mark_trigger();

CREATE TRIGGER session_transcripts_summary
AFTER INSERT OR UPDATE OR DELETE ON session_transcripts
FOR EACH ROW EXECUTE FUNCTION session_summary_mark_trigger();

-- The calls already indexed.
SELECT session_summary_refresh(array_agg(session_id))
FROM (
    SELECT session_id FROM session_audio_segments
    UNION
    SELECT session_id FROM session_transcripts
) AS calls;

DROP VIEW session_summary;

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
