-- The outbox trigger (migration 4) cost every append statement ~35 µs even when no endpoint
-- exists. It now exists only while at least one endpoint does: registering the first endpoint
-- creates it and removing the last drops it, in the same transaction, under a lock on the
-- endpoints table that serialises registrations and removals across processes. Creating the
-- trigger waits for appends in flight, so every event committed after a registration commits
-- gets its deliveries, as before; rows inserted without the bus still get them too. Dropping
-- needs an ACCESS EXCLUSIVE lock on the log, which would stall every read and append queued
-- behind it while a long transaction holds the log; so it gives up after a moment and leaves the
-- trigger (harmless) for a later call. Workers call this too when they find endpoints but no
-- trigger (endpoints inserted by an older version of the bus or by hand).
CREATE OR REPLACE FUNCTION event_bus_sync_webhook_outbox() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    present boolean := EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgrelid = 'event_bus_events'::regclass AND tgname = 'event_bus_webhook_outbox');
BEGIN
    LOCK TABLE event_bus_webhook_endpoints IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM event_bus_webhook_endpoints) THEN
        IF NOT present THEN
            CREATE TRIGGER event_bus_webhook_outbox
                AFTER INSERT ON event_bus_events
                REFERENCING NEW TABLE AS new_events
                FOR EACH STATEMENT EXECUTE FUNCTION event_bus_webhook_outbox();
        END IF;
    ELSIF present THEN
        BEGIN
            PERFORM set_config('lock_timeout', '500ms', true);
            DROP TRIGGER event_bus_webhook_outbox ON event_bus_events;
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END IF;
END;
$$;
ALTER FUNCTION event_bus_sync_webhook_outbox() SET search_path FROM CURRENT;

SELECT event_bus_sync_webhook_outbox();
