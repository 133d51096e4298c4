-- Webhooks (see migrations/postgres/0004_webhooks.sql). `events` is a JSON array of the patterns;
-- times are RFC 3339 text, except next_attempt_at and lease_until: Unix milliseconds.
CREATE TABLE IF NOT EXISTS event_bus_webhook_endpoints (
    id                    TEXT    PRIMARY KEY,
    url                   TEXT    NOT NULL,
    events                TEXT    NOT NULL,
    type_regex            TEXT    NOT NULL,
    tenant_id             TEXT,
    project_id            TEXT,
    description           TEXT,
    secret                TEXT    NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS event_bus_webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id     TEXT    NOT NULL REFERENCES event_bus_webhook_endpoints (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'retrying', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (endpoint_id, position)
);
CREATE INDEX IF NOT EXISTS event_bus_webhook_deliveries_due
    ON event_bus_webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS event_bus_webhook_deliveries_endpoint_status
    ON event_bus_webhook_deliveries (endpoint_id, status, id);

CREATE TABLE IF NOT EXISTS event_bus_webhook_attempts (
    delivery_id   INTEGER NOT NULL REFERENCES event_bus_webhook_deliveries (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    at            TEXT    NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    latency_ms    INTEGER NOT NULL,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- The outbox write, in the appending transaction (REGEXP is registered on every bus connection).
CREATE TRIGGER IF NOT EXISTS event_bus_webhook_outbox AFTER INSERT ON event_bus_events
BEGIN
    INSERT INTO event_bus_webhook_deliveries (endpoint_id, position, next_attempt_at, created_at, updated_at)
    SELECT w.id, NEW.position, CAST(unixepoch('subsec') * 1000 AS INTEGER),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM event_bus_webhook_endpoints w
    WHERE w.enabled
      AND NEW.type REGEXP w.type_regex
      AND (w.tenant_id IS NULL OR w.tenant_id = NEW.tenant_id)
      AND (w.project_id IS NULL OR w.project_id = NEW.project_id);
END;
