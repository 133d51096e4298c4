-- The event log. `position` is assigned while the append lock (pg_advisory_xact_lock) is held, so
-- positions become visible in commit order and readers may safely read `position > last`.
CREATE TABLE IF NOT EXISTS event_bus_events (
    position    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID        NOT NULL,
    type        TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    project_id  TEXT,
    tenant_id   TEXT,
    user_id     TEXT,
    metadata    JSONB,
    CONSTRAINT event_bus_events_id_key UNIQUE (id)
);

-- One index per documented query: each filter, then position for ordered paging.
CREATE INDEX IF NOT EXISTS event_bus_events_type_position ON event_bus_events (type, position);
CREATE INDEX IF NOT EXISTS event_bus_events_project_position ON event_bus_events (project_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_tenant_position ON event_bus_events (tenant_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_user_position ON event_bus_events (user_id, position);
CREATE INDEX IF NOT EXISTS event_bus_events_timestamp ON event_bus_events ("timestamp");

-- Archived events keep their position and id; archiving moves rows here in bounded batches.
CREATE TABLE IF NOT EXISTS event_bus_events_archive (
    position    BIGINT      PRIMARY KEY,
    id          UUID        NOT NULL UNIQUE,
    type        TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    project_id  TEXT,
    tenant_id   TEXT,
    user_id     TEXT,
    metadata    JSONB,
    archived_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS event_bus_events_archive_timestamp ON event_bus_events_archive ("timestamp");
CREATE INDEX IF NOT EXISTS event_bus_events_archive_archived_at ON event_bus_events_archive (archived_at);
