-- Webhooks. Endpoints say which events they want (patterns, kept as given and as one anchored
-- regex matched in SQL) and their tenant/project scope. Deliveries are the outbox: one row per
-- committed event and matching enabled endpoint, written by a trigger in the same transaction as
-- the event (bus appends and event_bus_publish alike), so a crash can never lose a webhook.
CREATE TABLE IF NOT EXISTS event_bus_webhook_endpoints (
    id                    UUID        PRIMARY KEY,
    url                   TEXT        NOT NULL,
    events                TEXT[]      NOT NULL,
    type_regex            TEXT        NOT NULL,
    tenant_id             TEXT,
    project_id            TEXT,
    description           TEXT,
    secret                TEXT        NOT NULL,
    -- After a rotation the old secret also signs until previous_secret_until.
    previous_secret       TEXT,
    previous_secret_until TIMESTAMPTZ,
    enabled               BOOLEAN     NOT NULL DEFAULT true,
    disabled_reason       TEXT,
    -- Dead deliveries in a row; reset by any delivered one.
    consecutive_failures  INTEGER     NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS event_bus_webhook_deliveries (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     UUID        NOT NULL REFERENCES event_bus_webhook_endpoints (id) ON DELETE CASCADE,
    position        BIGINT      NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'retrying', 'delivered', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set while a worker sends it; an expired lease (a crashed worker) makes it due again.
    lease_until     TIMESTAMPTZ,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, position)
);
CREATE INDEX IF NOT EXISTS event_bus_webhook_deliveries_due
    ON event_bus_webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS event_bus_webhook_deliveries_endpoint_status
    ON event_bus_webhook_deliveries (endpoint_id, status, id);

CREATE TABLE IF NOT EXISTS event_bus_webhook_attempts (
    delivery_id   BIGINT      NOT NULL REFERENCES event_bus_webhook_deliveries (id) ON DELETE CASCADE,
    attempt       INTEGER     NOT NULL,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code   INTEGER,
    error         TEXT,
    latency_ms    INTEGER     NOT NULL,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- The outbox write: once per INSERT statement on the log, for all its rows.
CREATE OR REPLACE FUNCTION event_bus_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_bus_webhook_deliveries (endpoint_id, position)
    SELECT w.id, e.position
    FROM new_events e
    JOIN event_bus_webhook_endpoints w
      ON w.enabled
     AND e.type ~ w.type_regex
     AND (w.tenant_id IS NULL OR w.tenant_id = e.tenant_id)
     AND (w.project_id IS NULL OR w.project_id = e.project_id)
    ORDER BY e.position;
    RETURN NULL;
END;
$$;
ALTER FUNCTION event_bus_webhook_outbox() SET search_path FROM CURRENT;

DROP TRIGGER IF EXISTS event_bus_webhook_outbox ON event_bus_events;
CREATE TRIGGER event_bus_webhook_outbox
    AFTER INSERT ON event_bus_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_bus_webhook_outbox();
