-- event_bus_publish: append an event from SQL inside the caller's own transaction (a transactional
-- outbox). The event exists only if that transaction commits; once committed, every bus on this
-- schema delivers it exactly as if `bus.publish` had been called.
--
--   SELECT event_bus_publish('order.placed', '{"orderId": 42}'::jsonb, p_tenant_id => 'acme');
--
-- It appends the way the bus does: it takes the append lock (pg_advisory_xact_lock(0x5e17ba5e),
-- APPEND_LOCK in src/store/postgres.rs) before drawing a position, and rings the schema's doorbell
-- (NOTIFY on 'event_bus:<schema>', delivered only at commit; the payload 'sql' is no bus's token,
-- so every bus, including one in the calling process, wakes and reads the log).
--
-- The lock is held until the caller's transaction ends, so every other publish on the database
-- waits for it: call this as the last statement before COMMIT.
--
-- Rules checked here, as `bus.publish` checks them with default options: type grammar and length,
-- payload present (SQL NULL is refused; pass 'null'::jsonb for a JSON null), projectId / tenantId /
-- userId non-empty and at most 200 characters, metadata a JSON object (JSON null = none), payload
-- and metadata each at most 1 MiB (1048576 bytes, the default validation.maxPayloadBytes, counted on
-- the jsonb's text form). Not checked here (they live in a bus's options or in JavaScript):
-- validation.schemas, security.requireTenant, a non-default validation.maxPayloadBytes, tenant-scoped
-- handles and `bus.use` middleware.
--
-- Errors: SQLSTATE 22023 (invalid_parameter_value) for INVALID_EVENT, 54000
-- (program_limit_exceeded) for PAYLOAD_TOO_LARGE, 23505 (unique_violation, constraint
-- event_bus_events_id_key) for DUPLICATE_EVENT. The message starts with that bus error code and
-- names the field, as bus.publish's would; the error's column field names the table column.
--
-- p_id: NULL generates a UUIDv7. An id that is already stored with the same content (type,
-- payload, ids and metadata compared as JSON; timestamp ignored) returns the stored position and
-- stores nothing (a safe retry, as with bus.publish); with different content it fails with
-- DUPLICATE_EVENT.
CREATE OR REPLACE FUNCTION event_bus_publish(
    p_type       text,
    p_payload    jsonb,
    p_project_id text  DEFAULT NULL,
    p_tenant_id  text  DEFAULT NULL,
    p_user_id    text  DEFAULT NULL,
    p_metadata   jsonb DEFAULT NULL,
    p_id         uuid  DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
-- Resolve event_bus_events in the schema this migration ran in, whatever the caller's search_path.
SET search_path FROM CURRENT
AS $function$
DECLARE
    type_grammar   CONSTANT text := '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$';
    max_type_chars CONSTANT int  := 200;
    max_id_chars   CONSTANT int  := 200;
    max_json_bytes CONSTANT int  := 1048576;
    -- Millisecond precision, as JavaScript's Date and the bus keep it.
    v_now      timestamptz := date_trunc('milliseconds', clock_timestamp());
    v_id       uuid  := p_id;
    v_metadata jsonb := p_metadata;
    v_field    record;
    v_size     int;
    v_uuid     bytea;
    v_position bigint;
    v_stored   event_bus_events%ROWTYPE;
    v_schema   text;
BEGIN
    -- Structure (as bus.publish parses an event).
    IF p_type IS NULL THEN
        RAISE EXCEPTION 'INVALID_EVENT: type is required'
            USING ERRCODE = '22023', COLUMN = 'type', TABLE = 'event_bus_events';
    END IF;
    IF p_payload IS NULL THEN
        RAISE EXCEPTION 'INVALID_EVENT: payload is required'
            USING ERRCODE = '22023', COLUMN = 'payload', TABLE = 'event_bus_events',
                  HINT = 'Pass ''null''::jsonb for a JSON null payload.';
    END IF;
    IF jsonb_typeof(v_metadata) = 'null' THEN
        v_metadata := NULL;
    ELSIF jsonb_typeof(v_metadata) <> 'object' THEN
        RAISE EXCEPTION 'INVALID_EVENT: metadata must be an object'
            USING ERRCODE = '22023', COLUMN = 'metadata', TABLE = 'event_bus_events';
    END IF;

    -- Rules (as the validation middleware checks them, default options).
    IF octet_length(p_type) > max_type_chars OR p_type !~ type_grammar THEN
        RAISE EXCEPTION 'INVALID_EVENT: type must match % (at most % characters), got %',
                type_grammar, max_type_chars, to_json(left(p_type, max_type_chars))
            USING ERRCODE = '22023', COLUMN = 'type', TABLE = 'event_bus_events';
    END IF;
    FOR v_field IN
        SELECT * FROM (VALUES ('projectId', 'project_id', p_project_id),
                              ('tenantId', 'tenant_id', p_tenant_id),
                              ('userId', 'user_id', p_user_id)) AS f(name, col, value)
        WHERE f.value IS NOT NULL
    LOOP
        IF v_field.value = '' THEN
            RAISE EXCEPTION 'INVALID_EVENT: % must be a non-empty string', v_field.name
                USING ERRCODE = '22023', COLUMN = v_field.col, TABLE = 'event_bus_events';
        END IF;
        IF char_length(v_field.value) > max_id_chars THEN
            RAISE EXCEPTION 'INVALID_EVENT: % must be at most % characters, got %',
                    v_field.name, max_id_chars, char_length(v_field.value)
                USING ERRCODE = '22023', COLUMN = v_field.col, TABLE = 'event_bus_events';
        END IF;
    END LOOP;
    v_size := octet_length(p_payload::text);
    IF v_size > max_json_bytes THEN
        RAISE EXCEPTION 'PAYLOAD_TOO_LARGE: payload is % bytes, over the limit of % (validation.maxPayloadBytes)',
                v_size, max_json_bytes
            USING ERRCODE = '54000', COLUMN = 'payload', TABLE = 'event_bus_events';
    END IF;
    v_size := octet_length(v_metadata::text);
    IF v_size > max_json_bytes THEN
        RAISE EXCEPTION 'PAYLOAD_TOO_LARGE: metadata is % bytes, over the limit of % (validation.maxPayloadBytes)',
                v_size, max_json_bytes
            USING ERRCODE = '54000', COLUMN = 'metadata', TABLE = 'event_bus_events';
    END IF;

    IF v_id IS NULL THEN
        -- UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, the rest random.
        v_uuid := uuid_send(gen_random_uuid());
        v_uuid := overlay(v_uuid PLACING substring(int8send((extract(epoch FROM v_now) * 1000)::bigint) FROM 3 FOR 6)
                          FROM 1 FOR 6);
        v_uuid := set_byte(v_uuid, 6, (get_byte(v_uuid, 6) & 15) | 112);
        v_uuid := set_byte(v_uuid, 8, (get_byte(v_uuid, 8) & 63) | 128);
        v_id := encode(v_uuid, 'hex')::uuid;
    END IF;

    -- The append lock, before a position is drawn; held until the caller's transaction ends, so
    -- positions become visible in commit order (1578613342 = 0x5e17ba5e).
    PERFORM pg_advisory_xact_lock(1578613342);

    INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
    VALUES (v_id, p_type, p_payload, v_now, p_project_id, p_tenant_id, p_user_id, v_metadata)
    ON CONFLICT (id) DO NOTHING
    RETURNING position INTO v_position;

    IF v_position IS NULL THEN
        -- The id is stored already: a retry of the same event, or a different event.
        SELECT * INTO v_stored FROM event_bus_events WHERE id = v_id;
        IF FOUND
           AND v_stored.type = p_type
           AND v_stored.payload = p_payload
           AND v_stored.project_id IS NOT DISTINCT FROM p_project_id
           AND v_stored.tenant_id IS NOT DISTINCT FROM p_tenant_id
           AND v_stored.user_id IS NOT DISTINCT FROM p_user_id
           AND v_stored.metadata IS NOT DISTINCT FROM v_metadata THEN
            RETURN v_stored.position;
        END IF;
        RAISE EXCEPTION 'DUPLICATE_EVENT: id % already exists with different content', v_id
            USING ERRCODE = '23505', COLUMN = 'id', TABLE = 'event_bus_events',
                  CONSTRAINT = 'event_bus_events_id_key';
    END IF;

    -- The doorbell of the schema the event went to; NOTIFY is sent only if the transaction commits.
    SELECT n.nspname INTO v_schema
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = 'event_bus_events'::regclass;
    PERFORM pg_notify('event_bus:' || v_schema, 'sql');
    RETURN v_position;
END
$function$;

COMMENT ON FUNCTION event_bus_publish(text, jsonb, text, text, text, jsonb, uuid) IS
'Appends an event inside the calling transaction (transactional outbox) and returns its position; '
'delivered by every @situs/event-bus instance on this schema once the transaction commits. Holds '
'the append lock until the transaction ends: call it last, just before COMMIT. See the README.';
