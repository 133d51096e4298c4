-- The event log. SQLite serialises writers, so positions are assigned in commit order.
CREATE TABLE IF NOT EXISTS event_bus_events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    timestamp   TEXT NOT NULL, -- RFC 3339, UTC, milliseconds: sorts as text
    project_id  TEXT,
    tenant_id   TEXT,
    user_id     TEXT,
    metadata    TEXT
);

CREATE INDEX IF NOT EXISTS event_bus_events_type_position ON event_bus_events (type, position);
CREATE INDEX IF NOT EXISTS event_bus_events_project_position ON event_bus_events (project_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_tenant_position ON event_bus_events (tenant_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_user_position ON event_bus_events (user_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_timestamp ON event_bus_events (timestamp);

CREATE TABLE IF NOT EXISTS event_bus_events_archive (
    position    INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    project_id  TEXT,
    tenant_id   TEXT,
    user_id     TEXT,
    metadata    TEXT,
    archived_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_bus_events_archive_timestamp ON event_bus_events_archive (timestamp);
CREATE INDEX IF NOT EXISTS event_bus_events_archive_archived_at ON event_bus_events_archive (archived_at);
