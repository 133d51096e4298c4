-- The metrics count the webhook outbox by status every refresh: a partial index over the rows that
-- are not delivered keeps that count off the (mostly delivered) rest of the table.
CREATE INDEX IF NOT EXISTS event_bus_webhook_deliveries_undelivered
    ON event_bus_webhook_deliveries (status) WHERE status IN ('pending', 'retrying', 'dead');
