//! Durable-store behaviour: commit-ordered reading, idempotency across processes, migrations,
//! outages, archiving and the indexes behind each documented query.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{admin_pool, subscribe, test_database_url, typed, Outage, Recorder, TestStore};
use serde_json::json;
use situs_event_bus::query::EventFilter;
use situs_event_bus::store::postgres::APPEND_LOCK;
use situs_event_bus::{Event, EventBus, Scope};

fn all() -> Scope {
    Scope::default()
}

fn filter(json: &str) -> EventFilter {
    EventFilter::from_json(json).expect("filter")
}

/// Everything after `after`, following cursors.
async fn read_after(bus: &EventBus, after: u64) -> Vec<u64> {
    let page = bus
        .get_events(
            filter(&format!(r#"{{"afterPosition":{after},"limit":1000}}"#)),
            &all(),
        )
        .await
        .expect("read");
    page.events.iter().map(|e| e.position).collect()
}

async fn idempotent_across_instances(store: &TestStore) {
    let a = store.open("{}").await;
    let b = store.open("{}").await;
    let id = uuid::Uuid::now_v7();
    let json = format!(r#"{{"id":"{id}","type":"order.placed","payload":{{"n":1}}}}"#);
    let scope = all();
    let (x, y) = tokio::join!(
        a.publish(Event::from_json(&json).expect("event"), &scope),
        b.publish(Event::from_json(&json).expect("event"), &scope)
    );
    let (x, y) = (x.expect("a"), y.expect("b"));
    assert_eq!(
        x.position(),
        y.position(),
        "one stored event, both publishers get it"
    );
    let other = format!(r#"{{"id":"{id}","type":"order.placed","payload":{{"n":2}}}}"#);
    let err = b
        .publish(Event::from_json(&other).expect("event"), &all())
        .await
        .expect_err("different content");
    assert_eq!(err.code(), "DUPLICATE_EVENT");
    assert_eq!(read_after(&a, 0).await.len(), 1);
    let published = a.metrics().published + b.metrics().published;
    assert_eq!(published, 1, "stored once");
    a.close().await;
    b.close().await;
}

async fn concurrent_opens_of_a_fresh_database_both_migrate(store: &TestStore) {
    let (a, b) = tokio::join!(store.open("{}"), store.open("{}"));
    a.publish(typed("a.b", json!(1)), &all())
        .await
        .expect("a works");
    b.publish(typed("a.b", json!(2)), &all())
        .await
        .expect("b works");
    assert_eq!(read_after(&b, 0).await.len(), 2);
    a.close().await;
    b.close().await;
}

async fn archive_moves_in_batches_and_stays_queryable(store: &TestStore) {
    let bus = store.open("{}").await;
    let total = 2500;
    for chunk in 0..5 {
        let events = (0..total / 5)
            .map(|i| typed("audit.logged", json!(chunk * 1000 + i)))
            .collect();
        bus.publish_many(events, &all()).await.expect("seed");
    }
    let keep = bus
        .publish(typed("audit.kept", json!("recent")), &all())
        .await
        .expect("recent");
    let cutoff = keep.event().timestamp;
    // Two archivers at once: every event moves exactly once.
    let (x, y) = tokio::join!(bus.archive(cutoff), bus.archive(cutoff));
    let moved = x.expect("archive") + y.expect("archive");
    let live = read_after(&bus, 0).await;
    let older = live
        .iter()
        .filter(|&&p| p != keep.position().unwrap_or(0))
        .count() as u64;
    assert_eq!(
        moved + older,
        total as u64,
        "archived or still live, never both or neither"
    );
    assert_eq!(
        bus.archive(cutoff).await.expect("re-run"),
        older,
        "a re-run finishes the job"
    );
    assert_eq!(
        bus.archive(cutoff).await.expect("re-run"),
        0,
        "and then has nothing left"
    );
    assert_eq!(
        read_after(&bus, 0).await,
        vec![keep.position().unwrap_or(0)]
    );

    let mut archived = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let json = match &cursor {
            Some(c) => format!(r#"{{"includeArchived":true,"limit":1000,"cursor":"{c}"}}"#),
            None => r#"{"includeArchived":true,"limit":1000}"#.to_string(),
        };
        let page = bus
            .get_events(filter(&json), &all())
            .await
            .expect("archived query");
        archived.extend(page.events.iter().map(|e| e.position));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(archived.len(), total + 1);
    assert!(
        archived.windows(2).all(|w| w[0] < w[1]),
        "archived events keep their positions and order"
    );
    let typed_archived = bus
        .get_events(
            filter(r#"{"includeArchived":true,"types":["audit.*"],"order":"desc","limit":3}"#),
            &all(),
        )
        .await;
    assert_eq!(typed_archived.expect("typed").events.len(), 3);
    bus.close().await;
}

async fn archive_at_most_moves_the_oldest_up_to_the_limit(store: &TestStore) {
    let bus = store.open("{}").await;
    let before = read_after(&bus, 0).await;
    let seeded = bus
        .publish_many(
            (0..2500).map(|i| typed("audit.logged", json!(i))).collect(),
            &all(),
        )
        .await
        .expect("seed");
    let keep = bus
        .publish(typed("audit.kept", json!("recent")), &all())
        .await
        .expect("recent");
    let cutoff = keep.event().timestamp;
    let older = before.len() as u64 + seeded.len() as u64;
    // Steps of 1,200 (more than one internal batch of 1,000): full steps, then the rest.
    let mut steps = Vec::new();
    loop {
        let moved = bus.archive_at_most(cutoff, 1200).await.expect("step");
        steps.push(moved);
        if moved < 1200 {
            break;
        }
    }
    assert_eq!(
        steps.iter().sum::<u64>(),
        older,
        "every older event, once: {steps:?}"
    );
    assert!(
        steps[..steps.len() - 1].iter().all(|&n| n == 1200),
        "{steps:?}"
    );
    assert_eq!(
        read_after(&bus, 0).await,
        vec![keep.position().unwrap_or(0)]
    );
    bus.close().await;
}

async fn retention_archives_and_purges_in_the_background(store: &TestStore) {
    let bus = store
        .open(r#"{"retention":{"archiveAfter":0,"deleteArchivedAfter":"1ms","intervalMs":20}}"#)
        .await;
    bus.publish_many((0..50).map(|i| typed("a.b", json!(i))).collect(), &all())
        .await
        .expect("seed");
    let mut everything = 50;
    for _ in 0..500 {
        everything = bus
            .get_events(filter(r#"{"includeArchived":true,"limit":1000}"#), &all())
            .await
            .expect("read")
            .events
            .len();
        if everything == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(everything, 0, "archived, then deleted from the archive");
    bus.close().await;
}

async fn cursor_paging_is_stable_under_concurrent_inserts(store: &TestStore) {
    let bus = store.open("{}").await;
    bus.publish_many((0..300).map(|i| typed("a.b", json!(i))).collect(), &all())
        .await
        .expect("seed");
    let writer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                bus.publish_many(
                    (0..10).map(|j| typed("a.c", json!(i * 10 + j))).collect(),
                    &Scope::default(),
                )
                .await
                .expect("concurrent insert");
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let json = match &cursor {
            Some(c) => format!(r#"{{"limit":25,"cursor":"{c}"}}"#),
            None => r#"{"limit":25}"#.to_string(),
        };
        let page = bus.get_events(filter(&json), &all()).await.expect("page");
        seen.extend(page.events.iter().map(|e| e.position));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    writer.await.expect("writer");
    assert!(seen.len() >= 300);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "no duplicates, no reordering across pages"
    );
    let all_positions = read_after(&bus, 0).await;
    assert_eq!(
        &all_positions[..seen.len()],
        &seen[..],
        "the pages are a prefix of the log: nothing skipped"
    );
    bus.close().await;
}

async fn instances_see_each_others_events_in_order_once(store: &TestStore) {
    let options = r#"{"delivery":{"pollIntervalMs":50}}"#;
    let (a, b) = (store.open(options).await, store.open(options).await);
    let (seen_a, seen_b) = (Recorder::default(), Recorder::default());
    for (bus, recorder) in [(&a, &seen_a), (&b, &seen_b)] {
        subscribe(bus, "**", recorder);
    }
    let publish = |bus: EventBus, who: &'static str| {
        tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..30 {
                let e = bus
                    .publish(
                        typed("a.b", json!({ "who": who, "i": i })),
                        &Scope::default(),
                    )
                    .await
                    .expect("publish");
                positions.push(e.position().unwrap_or(0));
            }
            positions
        })
    };
    // Two publishers per instance, so group commits of one instance interleave with the other's.
    let tasks = [
        publish(a.clone(), "a1"),
        publish(a.clone(), "a2"),
        publish(b.clone(), "b1"),
        publish(b.clone(), "b2"),
    ];
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("publisher"));
    }
    acked.sort_unstable();
    seen_a.wait_for(120).await;
    seen_b.wait_for(120).await;
    assert_eq!(
        seen_a.positions(),
        acked,
        "instance A sees both instances' events once, in order"
    );
    assert_eq!(seen_b.positions(), acked, "instance B too");
    a.close().await;
    b.close().await;
}

durable!(
    instances_see_each_others_events_in_order_once,
    idempotent_across_instances,
    concurrent_opens_of_a_fresh_database_both_migrate
);

conformance!(
    archive_moves_in_batches_and_stays_queryable,
    archive_at_most_moves_the_oldest_up_to_the_limit,
    retention_archives_and_purges_in_the_background,
    cursor_paging_is_stable_under_concurrent_inserts,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reader_never_misses_a_late_commit() {
    let store = TestStore::postgres().await;
    let writer = store.open("{}").await;
    let reader = store.open("{}").await;
    let first = writer
        .publish(typed("a.b", json!("before")), &all())
        .await
        .expect("first");
    let last_seen = first.position().unwrap_or(0);

    // Another process's transaction takes the append lock, inserts and stays open.
    let pool = sqlx::PgPool::connect(&store.url).await.expect("connect");
    let (slow, slow_position) = slow_append(&pool).await;

    // Later publishes queue behind it instead of committing ahead of it with higher positions.
    let later = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..5 {
                let e = writer
                    .publish(typed("a.later", json!(i)), &Scope::default())
                    .await
                    .expect("later");
                positions.push(e.position().unwrap_or(0));
            }
            positions
        })
    };
    // A reader polling `position > last` meanwhile sees nothing that would make it skip.
    for _ in 0..5 {
        assert_eq!(read_after(&reader, last_seen).await, Vec::<u64>::new());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slow.commit().await.expect("commit");
    let later = later.await.expect("later publishes");

    let mut seen = Vec::new();
    let mut after = last_seen;
    while seen.len() < 6 {
        let batch = read_after(&reader, after).await;
        if let Some(&last) = batch.last() {
            after = last;
        }
        seen.extend(batch);
    }
    let mut expected = vec![slow_position as u64];
    expected.extend(later);
    assert_eq!(seen, expected, "every event once, in commit order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
    pool.close().await;
    writer.close().await;
    reader.close().await;
    store.cleanup().await;
}

fn with_id(id: uuid::Uuid, payload: serde_json::Value) -> Event {
    Event::from_json(&json!({ "id": id, "type": "order.placed", "payload": payload }).to_string())
        .expect("event")
}

/// Caller-chosen ids go through `event_bus_append` in one statement: they still queue behind the
/// append lock (commit order), repeats and stored ids are answered as idempotent retries, and a
/// request that reuses an id with other content is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_caller_ids_keep_commit_order_and_idempotency() {
    let store = TestStore::postgres().await;
    let bus = store.open("{}").await;
    let pool = sqlx::PgPool::connect(&store.url).await.expect("connect");
    let (slow, slow_position) = slow_append(&pool).await;
    let first = uuid::Uuid::now_v7();
    let queued = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish(with_id(first, json!(1)), &all()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!queued.is_finished(), "waits for the append lock");
    slow.commit().await.expect("commit");
    let queued = queued.await.expect("join").expect("publish");
    assert!(queued.position().unwrap_or(0) > slow_position as u64);

    // The same id and content again, alone and repeated in a batch: the stored event.
    let again = bus
        .publish(with_id(first, json!(1)), &all())
        .await
        .expect("retry");
    assert_eq!(again.position(), queued.position());
    let fresh = uuid::Uuid::now_v7();
    let batch = bus
        .publish_many(
            vec![
                with_id(fresh, json!(2)),
                with_id(fresh, json!(2)),
                with_id(first, json!(1)),
            ],
            &all(),
        )
        .await
        .expect("batch");
    assert_eq!(batch[0].position(), batch[1].position());
    assert_eq!(batch[2].position(), queued.position());

    // Other content under a stored id refuses the whole request.
    let unused = uuid::Uuid::now_v7();
    let err = bus
        .publish_many(
            vec![with_id(unused, json!(3)), with_id(first, json!("other"))],
            &all(),
        )
        .await
        .expect_err("different content");
    assert_eq!(err.code(), "DUPLICATE_EVENT");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM event_bus_events WHERE id = $1")
        .bind(unused)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing of a refused request is stored");
    assert_eq!(read_after(&bus, 0).await.len(), 3);
    pool.close().await;
    bus.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_then_recovers_without_reopening() {
    let store = TestStore::postgres().await;
    let proxy = Outage::start("127.0.0.1:5432").await;
    let base = test_database_url();
    let url = store
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        url, store.url,
        "TEST_DATABASE_URL must point at 127.0.0.1:5432 for this test ({base})"
    );
    let config = situs_event_bus::Config::resolve(
        &json!({"storeUrl": url, "store": {"acquireTimeoutMs": 1000, "poolSize": 4}}).to_string(),
        &Default::default(),
    )
    .expect("config");
    let bus = EventBus::open(config, None)
        .await
        .expect("open through proxy");
    let recorder = Recorder::default();
    subscribe(&bus, "**", &recorder);

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push(
            bus.publish(typed("a.b", json!(i)), &all())
                .await
                .expect("up")
                .event()
                .id,
        );
    }
    proxy.down().await;
    let started = std::time::Instant::now();
    let err = bus
        .publish(typed("a.b", json!("down")), &all())
        .await
        .expect_err("down");
    assert_eq!(err.code(), "STORE_UNAVAILABLE", "{err}");
    // Bounded by the acquire timeout (1 s) plus connect attempts, never a hang; generous bound.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed within the acquire timeout"
    );
    proxy.up().await;
    let mut back = None;
    for _ in 0..50 {
        if let Ok(e) = bus.publish(typed("a.b", json!("back")), &all()).await {
            back = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged.push(
        back.expect("publishes succeed again without reopening")
            .event()
            .id,
    );

    let stored: HashSet<_> = bus
        .get_events(filter(r#"{"limit":1000}"#), &all())
        .await
        .expect("read")
        .events
        .iter()
        .map(|e| e.event.id)
        .collect();
    assert!(
        acknowledged.iter().all(|id| stored.contains(id)),
        "every acknowledged event is stored"
    );
    assert!(
        !stored.iter().any(|id| !acknowledged.contains(id)),
        "nothing unacknowledged was stored"
    );
    bus.close().await;
    assert_eq!(recorder.count(), acknowledged.len());
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_terminated_backends_mid_stream_lose_no_acknowledged_event() {
    let store = TestStore::postgres().await;
    let app = format!("eb_kill_{}", uuid::Uuid::now_v7().simple());
    let url = format!("{}&application_name={app}", store.url);
    let config = situs_event_bus::Config::resolve(
        &json!({ "storeUrl": url }).to_string(),
        &Default::default(),
    )
    .expect("config");
    let bus = EventBus::open(config, None).await.expect("open");
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0);
            for i in 0..600 {
                match bus.publish(typed("a.b", json!(i)), &Scope::default()).await {
                    Ok(e) => acked.push(e.event().id),
                    Err(e) => {
                        assert_eq!(e.code(), "STORE_UNAVAILABLE", "{e}");
                        failed += 1;
                    }
                }
            }
            (acked, failed)
        })
    };
    let admin = admin_pool().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .execute(&admin)
        .await
        .expect("terminate");
    }
    let (acked, failed) = publisher.await.expect("publisher");
    let stored: HashSet<_> = {
        let mut ids = HashSet::new();
        let mut after = 0;
        loop {
            let page = bus
                .get_events(
                    filter(&format!(r#"{{"afterPosition":{after},"limit":1000}}"#)),
                    &all(),
                )
                .await
                .expect("read");
            let Some(last) = page.events.last() else {
                break;
            };
            after = last.position;
            ids.extend(page.events.iter().map(|e| e.event.id));
        }
        ids
    };
    assert!(acked.len() + failed == 600);
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "no acknowledged event is missing"
    );
    admin.close().await;
    bus.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_addon_is_refused() {
    for store in [TestStore::sqlite().await, TestStore::postgres().await] {
        let bus = store.open("{}").await;
        bus.close().await;
        // A later addon recorded a migration this one does not know.
        if store.is_postgres() {
            let pool = sqlx::PgPool::connect(&store.url).await.expect("connect");
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (9999, 'from the future', true, '\\x00'::bytea, 0)",
            )
            .execute(&pool)
            .await
            .expect("future migration");
            pool.close().await;
        } else {
            let pool = sqlx::SqlitePool::connect(&store.url)
                .await
                .expect("connect");
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (9999, 'from the future', 1, x'00', 0)",
            )
            .execute(&pool)
            .await
            .expect("future migration");
            pool.close().await;
        }
        let config = situs_event_bus::Config::resolve(&store.options("{}"), &Default::default())
            .expect("config");
        let err = EventBus::open(config, None).await.err().expect("refused");
        assert_eq!(err.code(), "INVALID_CONFIG");
        assert!(err.to_string().contains("newer than this version"), "{err}");
        store.cleanup().await;
    }
}

/// Each documented query is served by its index: EXPLAIN on 20k analysed rows (500 distinct values
/// per filter column, timestamps spread over 20k seconds), in the shape the store queries them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_documented_queries_use_their_indexes() {
    let store = TestStore::postgres().await;
    store.open("{}").await.close().await;
    let pool = sqlx::PgPool::connect(&store.url).await.expect("connect");
    sqlx::query(
        r#"INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id)
           SELECT gen_random_uuid(), 'kind.t' || (g % 500), to_jsonb(g), now() - make_interval(secs => g),
                  'p' || (g % 500), 't' || (g % 500), 'u' || (g % 500)
           FROM generate_series(1, 20000) AS g"#,
    )
    .execute(&pool)
    .await
    .expect("seed");
    sqlx::query("ANALYZE event_bus_events")
        .execute(&pool)
        .await
        .expect("analyze");
    let cases = [
        ("type = ANY('{kind.t7}')", "event_bus_events_type_position"),
        ("project_id = 'p7'", "event_bus_events_project_position"),
        ("tenant_id = 't7'", "event_bus_events_tenant_position"),
        ("user_id = 'u7'", "event_bus_events_user_position"),
        (
            r#""timestamp" >= now() - interval '30 seconds'"#,
            "event_bus_events_timestamp",
        ),
    ];
    let mut shown = String::new();
    for (predicate, index) in cases {
        let sql = format!(
            "EXPLAIN SELECT * FROM event_bus_events WHERE position > 0 AND {predicate} ORDER BY position ASC LIMIT 101"
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .expect("explain");
        let plan = plan.join("\n");
        assert!(
            plan.contains(index),
            "{predicate} should use {index}:\n{plan}"
        );
        shown.push_str(&format!("-- {predicate}\n{plan}\n\n"));
    }
    println!("{shown}");
    pool.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_store_urls_are_invalid_config() {
    let config =
        situs_event_bus::Config::resolve(r#"{"storeUrl":"mysql://x"}"#, &Default::default())
            .expect("config");
    let err = EventBus::open(config, None).await.err().expect("refused");
    assert_eq!(err.code(), "INVALID_CONFIG");
}

/// Opens a bus on `url` with a long acquire timeout; the error and how long it took.
async fn open_error(url: &str) -> (situs_event_bus::EventBusError, Duration) {
    let config = situs_event_bus::Config::resolve(
        &json!({"storeUrl": url, "store": {"acquireTimeoutMs": 10_000}}).to_string(),
        &Default::default(),
    )
    .expect("config");
    let started = std::time::Instant::now();
    let err = EventBus::open(config, None).await.err().expect("refused");
    (err, started.elapsed())
}

/// No server internals (PostgreSQL's source line), no Rust syntax, no password.
fn assert_clean(message: &str) {
    for leak in ["at line", ".c:", "Error {", "Some(", "s3cret"] {
        assert!(!message.contains(leak), "{leak:?} in {message:?}");
    }
}

/// Issue 12 #5: a refused connection is named as such, at once, not after the acquire timeout
/// as "pool timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_open_on_a_refused_port_fails_at_once_naming_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // The listener is dropped: nothing listens on `port` now.
    let (err, took) =
        open_error(&format!("postgres://postgres:s3cret@127.0.0.1:{port}/test")).await;
    let message = err.to_string();
    assert_eq!(err.code(), "STORE_UNAVAILABLE", "{message}");
    assert_eq!(
        message,
        format!("cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused")
    );
    assert_clean(&message);
    // acquireTimeoutMs is 10 s: half of it is far more than a refusal takes, and less than a wait.
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
}

/// Issue 12 #5: a role or database that does not exist is a configuration error, named the way
/// PostgreSQL names it, without its source line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_open_with_a_missing_role_or_database_is_invalid_config() {
    let base = url::Url::parse(&test_database_url()).expect("TEST_DATABASE_URL");
    let at = format!(
        "{}:{}",
        base.host_str().expect("host"),
        base.port().unwrap_or(5432)
    );
    let mut no_role = base.clone();
    no_role.set_username("no_such_role_eb").expect("user");
    no_role.set_password(Some("s3cret")).expect("password");
    let mut no_database = base.clone();
    no_database.set_path("/no_such_database_eb");
    for (url, cause) in [
        (no_role, r#"role "no_such_role_eb" does not exist"#),
        (
            no_database,
            r#"database "no_such_database_eb" does not exist"#,
        ),
    ] {
        let (err, took) = open_error(url.as_str()).await;
        let message = err.to_string();
        assert_eq!(err.code(), "INVALID_CONFIG", "{message}");
        assert_eq!(
            message,
            format!("cannot connect to PostgreSQL at {at}: {cause}")
        );
        assert_clean(&message);
        assert!(took < Duration::from_secs(5), "refused after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_round_trip_exactly() {
    for store in [TestStore::sqlite().await, TestStore::postgres().await] {
        let bus = store.open("{}").await;
        let e = bus
            .publish(typed("a.b", json!({"k": [1, "two", null]})), &all())
            .await
            .expect("publish");
        let page = bus.get_events(filter("{}"), &all()).await.expect("read");
        let stored = &page.events[0].event;
        assert_eq!(stored.timestamp, e.event().timestamp);
        assert_eq!(stored.id, e.event().id);
        let payload: serde_json::Value = serde_json::from_str(stored.payload.get()).expect("json");
        assert_eq!(payload, json!({"k": [1, "two", null]}));
        bus.close().await;
        store.cleanup().await;
    }
}

/// With the poll effectively off, only the NOTIFY doorbell can bring another instance's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_doorbell_delivers_other_instances_events() {
    let store = TestStore::postgres().await;
    let options = r#"{"delivery":{"pollIntervalMs":3600000}}"#;
    let (a, b) = (store.open(options).await, store.open(options).await);
    let seen = Recorder::default();
    subscribe(&b, "**", &seen);
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(
            a.publish(typed("a.b", json!(i)), &all())
                .await
                .expect("publish")
                .position()
                .unwrap_or(0),
        );
    }
    let batch = a
        .publish_many((0..5).map(|i| typed("a.c", json!(i))).collect(), &all())
        .await
        .expect("many");
    acked.extend(batch.iter().filter_map(|p| p.position()));
    seen.wait_for(15).await;
    assert_eq!(seen.positions(), acked);
    a.close().await;
    b.close().await;
    store.cleanup().await;
}

/// Another process's transaction that takes the append lock, inserts one event and stays open:
/// returns it (commit or drop it to let the queue go) and the position it drew.
async fn slow_append(pool: &sqlx::PgPool) -> (sqlx::Transaction<'static, sqlx::Postgres>, i64) {
    let mut slow = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .execute(&mut *slow)
        .await
        .expect("lock");
    let position: i64 = sqlx::query_scalar(
        r#"INSERT INTO event_bus_events (id, type, payload, "timestamp") VALUES ($1, 'a.slow', '1', now()) RETURNING position"#,
    )
    .bind(uuid::Uuid::now_v7())
    .fetch_one(&mut *slow)
    .await
    .expect("insert");
    (slow, position)
}
