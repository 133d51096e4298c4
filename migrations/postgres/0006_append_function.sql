-- event_bus_append: the bus's own group commit when callers chose the ids, in one statement (one
-- round trip) instead of BEGIN, lock, INSERT, SELECT, COMMIT. Called by src/store/postgres.rs
-- only; applications publish from SQL with event_bus_publish (migration 2).
--
-- It takes the append lock (APPEND_LOCK, passed as p_lock) before drawing any position, so
-- positions stay in commit order, then inserts the rows in array order and rings the doorbell
-- (NOTIFY p_channel, p_token; delivered only at commit).
--
-- When one of the ids is already stored, or appears twice in the arrays, it inserts nothing,
-- sends nothing and returns no rows: the bus then runs its transactional path, which compares
-- the content in Rust exactly as before (an idempotent retry is answered with the stored event,
-- other content refuses that request whole and the rest of the batch commits). Holding the lock,
-- no other appender can store one of these ids before this statement commits, so the check
-- cannot go stale.
CREATE OR REPLACE FUNCTION event_bus_append(
    p_ids      uuid[],
    p_types    text[],
    p_payloads text[],
    p_stamps   timestamptz[],
    p_projects text[],
    p_tenants  text[],
    p_users    text[],
    p_metas    text[],
    p_lock     bigint,
    p_channel  text,
    p_token    text
) RETURNS TABLE (appended_id uuid, appended_position bigint)
LANGUAGE plpgsql
VOLATILE
-- Resolve event_bus_events in the schema this migration ran in, whatever the caller's search_path.
SET search_path FROM CURRENT
-- The id lookup below must probe the unique index: PL/pgSQL caches its plan, often while the table
-- is still empty (a sequential scan then), and keeps it as the log grows.
SET enable_seqscan = off
AS $function$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF EXISTS (SELECT 1 FROM event_bus_events e WHERE e.id = ANY (p_ids))
       OR (cardinality(p_ids) > 1
           AND cardinality(p_ids) > (SELECT count(DISTINCT u) FROM unnest(p_ids) AS u)) THEN
        RETURN;
    END IF;
    -- A plain INSERT: the check above makes ON CONFLICT's speculative insertion unnecessary.
    RETURN QUERY
        INSERT INTO event_bus_events AS e
               (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
        SELECT t.id, t.type, t.payload::jsonb, t.ts, t.project_id, t.tenant_id, t.user_id, t.metadata::jsonb
        FROM UNNEST(p_ids, p_types, p_payloads, p_stamps, p_projects, p_tenants, p_users, p_metas)
             WITH ORDINALITY AS t(id, type, payload, ts, project_id, tenant_id, user_id, metadata, ord)
        ORDER BY t.ord
        RETURNING e.id, e."position";
    PERFORM pg_notify(p_channel, p_token);
END
$function$;
