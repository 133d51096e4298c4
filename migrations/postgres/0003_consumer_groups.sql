-- Durable consumer groups. A group's events are split into partitions (by a key such as
-- project_id); each partition has a checkpoint (the last position the group finished) and at most
-- one member holding it under a lease. Times come from the database clock, shared by every instance.
CREATE TABLE IF NOT EXISTS event_bus_group_partitions (
    group_name  TEXT        NOT NULL,
    partition   INTEGER     NOT NULL,
    checkpoint  BIGINT      NOT NULL,
    owner       TEXT,
    lease_until TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, partition)
);

-- Live members, so each can compute its fair share of the partitions.
CREATE TABLE IF NOT EXISTS event_bus_group_members (
    group_name TEXT        NOT NULL,
    member     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_name, member)
);

-- Events a group gave up on after maxAttempts. `event` is the event as delivered (JSON text, kept
-- exactly); retrying sets status 'retrying' and a member of the group claims it under a lease.
CREATE TABLE IF NOT EXISTS event_bus_dead_letters (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name  TEXT        NOT NULL,
    position    BIGINT      NOT NULL,
    event       TEXT        NOT NULL,
    attempts    INTEGER     NOT NULL,
    error       TEXT        NOT NULL,
    status      TEXT        NOT NULL CHECK (status IN ('dead', 'retrying', 'resolved')),
    owner       TEXT,
    lease_until TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS event_bus_dead_letters_group_status ON event_bus_dead_letters (group_name, status, id);
