-- Durable consumer groups (see migrations/postgres/0003_consumer_groups.sql). Times are Unix
-- milliseconds from the writing process's clock: SQLite is shared only by processes on one machine.
CREATE TABLE IF NOT EXISTS event_bus_group_partitions (
    group_name  TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    checkpoint  INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER,
    PRIMARY KEY (group_name, partition)
);

CREATE TABLE IF NOT EXISTS event_bus_group_members (
    group_name TEXT    NOT NULL,
    member     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (group_name, member)
);

CREATE TABLE IF NOT EXISTS event_bus_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name  TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('dead', 'retrying', 'resolved')),
    owner       TEXT,
    lease_until INTEGER,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS event_bus_dead_letters_group_status ON event_bus_dead_letters (group_name, status, id);
