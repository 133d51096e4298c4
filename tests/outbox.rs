//! The transactional outbox: `event_bus_publish(…)` (migrations/postgres/0002_publish_function.sql)
//! appends an event inside an application's own PostgreSQL transaction. Committed, it reaches
//! subscribers exactly like `bus.publish`; rolled back, it never existed.

mod common;

use common::{subscribe, typed, Recorder, TestStore};
use serde_json::{json, Value};
use situs_event_bus::store::postgres::APPEND_LOCK;
use situs_event_bus::{Event, EventBus, EventBusError, Published, Scope};
use sqlx::postgres::{PgDatabaseError, PgPool};
use uuid::Uuid;

/// The fallback poll effectively off: only a local commit or the NOTIFY doorbell moves a bus.
const NO_POLL: &str = r#"{"delivery":{"pollIntervalMs":3600000}}"#;

fn all() -> Scope {
    Scope::default()
}

/// The arguments of one `event_bus_publish` call; JSON arguments as JSON text.
#[derive(Debug, Clone, Default)]
struct Call {
    event_type: Option<String>,
    payload: Option<String>,
    project_id: Option<String>,
    tenant_id: Option<String>,
    user_id: Option<String>,
    metadata: Option<String>,
    id: Option<Uuid>,
}

fn call(event_type: &str, payload: Value) -> Call {
    Call {
        event_type: Some(event_type.into()),
        payload: Some(payload.to_string()),
        ..Call::default()
    }
}

impl Call {
    /// The same event as `bus.publish` takes it, when it can be expressed as one (its JSON
    /// arguments are JSON).
    fn as_event_json(&self) -> Option<String> {
        let mut event = serde_json::Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                event.insert(key.into(), v);
            }
        };
        let json = |text: &Option<String>| -> Option<Option<Value>> {
            match text {
                None => Some(None),
                Some(t) => serde_json::from_str(t).ok().map(Some),
            }
        };
        put("id", self.id.map(|id| Value::String(id.to_string())));
        put("type", self.event_type.clone().map(Value::String));
        put("payload", json(&self.payload)?);
        put("projectId", self.project_id.clone().map(Value::String));
        put("tenantId", self.tenant_id.clone().map(Value::String));
        put("userId", self.user_id.clone().map(Value::String));
        put("metadata", json(&self.metadata)?);
        Some(Value::Object(event).to_string())
    }
}

/// `SELECT event_bus_publish(…)` on `conn` (a pool, a connection or a transaction).
async fn sql_publish<'e, E: sqlx::PgExecutor<'e>>(conn: E, c: &Call) -> Result<u64, sqlx::Error> {
    let position: i64 =
        sqlx::query_scalar("SELECT event_bus_publish($1, $2::jsonb, $3, $4, $5, $6::jsonb, $7)")
            .bind(&c.event_type)
            .bind(&c.payload)
            .bind(&c.project_id)
            .bind(&c.tenant_id)
            .bind(&c.user_id)
            .bind(&c.metadata)
            .bind(c.id)
            .fetch_one(conn)
            .await?;
    Ok(position as u64)
}

/// SQLSTATE, message and column of a PostgreSQL error.
fn pg_error(err: &sqlx::Error) -> (String, String, Option<String>) {
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("not a database error: {err}"));
    let pg = db.downcast_ref::<PgDatabaseError>();
    (
        pg.code().to_string(),
        pg.message().to_string(),
        pg.column().map(str::to_string),
    )
}

async fn stored_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM event_bus_events")
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn all_positions(bus: &EventBus) -> Vec<u64> {
    let filter = situs_event_bus::query::EventFilter::from_json(r#"{"limit":1000}"#).expect("f");
    let page = bus.get_events(filter, &all()).await.expect("read");
    page.events.iter().map(|e| e.position).collect()
}

fn position(p: &Published) -> u64 {
    p.position().expect("stored")
}

fn json_of(raw: &serde_json::value::RawValue) -> Value {
    serde_json::from_str(raw.get()).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_sql_publish_is_delivered_once_in_order() {
    let store = TestStore::postgres().await;
    let bus = store.open(NO_POLL).await;
    let seen = Recorder::default();
    subscribe(&bus, "**", &seen);
    let before = bus
        .publish(typed("order.created", json!({"n": 1})), &all())
        .await
        .expect("before");
    seen.wait_for(1).await;

    let pool = PgPool::connect(&store.url).await.expect("connect");
    sqlx::query("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        .execute(&pool)
        .await
        .expect("app table");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders VALUES (42, 12.5)")
        .execute(&mut *tx)
        .await
        .expect("app write");
    let placed = Call {
        project_id: Some("p1".into()),
        tenant_id: Some("t1".into()),
        user_id: Some("u1".into()),
        metadata: Some(r#"{"traceId":"abc"}"#.into()),
        ..call(
            "order.placed",
            json!({"orderId": 42, "lines": [1, "two", null]}),
        )
    };
    let sql_position = sql_publish(&mut *tx, &placed).await.expect("publish");
    tx.commit().await.expect("commit");
    // The poll is off and nothing else was published: only the doorbell can bring it.
    seen.wait_for(2).await;
    assert_eq!(seen.positions(), vec![position(&before), sql_position]);

    let after = bus
        .publish(typed("order.shipped", json!({"n": 3})), &all())
        .await
        .expect("after");
    seen.wait_for(3).await;
    assert_eq!(
        seen.positions(),
        vec![position(&before), sql_position, position(&after)],
        "in position order, between the bus's own events"
    );
    assert!(position(&before) < sql_position && sql_position < position(&after));

    let delivered = seen.seen.lock().expect("lock")[1].clone();
    let e = &delivered.event;
    assert_eq!(e.event_type, "order.placed");
    assert_eq!(
        json_of(&e.payload),
        json!({"orderId": 42, "lines": [1, "two", null]})
    );
    assert_eq!(e.project_id.as_deref(), Some("p1"));
    assert_eq!(e.tenant_id.as_deref(), Some("t1"));
    assert_eq!(e.user_id.as_deref(), Some("u1"));
    assert_eq!(
        e.metadata.as_deref().map(json_of),
        Some(json!({"traceId": "abc"}))
    );
    // A UUIDv7 whose 48-bit millisecond prefix is the event's timestamp (millisecond precision).
    assert_eq!(e.id.get_version_num(), 7);
    assert_eq!(e.id.as_bytes()[8] >> 6, 0b10, "RFC 9562 variant");
    let id_millis = u64::from_str_radix(&e.id.simple().to_string()[..12], 16).expect("hex");
    assert_eq!(id_millis as i64, e.timestamp.timestamp_millis());
    assert_eq!(e.timestamp.timestamp_subsec_nanos() % 1_000_000, 0);
    // The stored event reads back the same, and the app's row committed with it.
    let stored: Vec<_> = all_positions(&bus).await;
    assert_eq!(
        stored,
        vec![position(&before), sql_position, position(&after)]
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("orders");
    assert_eq!(orders, 1);

    // Closing drains deliveries: nothing arrived twice.
    bus.close().await;
    assert_eq!(seen.count(), 3, "each event delivered exactly once");
    pool.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_sql_publish_is_never_stored_or_delivered() {
    let store = TestStore::postgres().await;
    let bus = store.open(NO_POLL).await;
    let seen = Recorder::default();
    subscribe(&bus, "**", &seen);
    let before = bus
        .publish(typed("a.before", json!(1)), &all())
        .await
        .expect("before");

    let pool = PgPool::connect(&store.url).await.expect("connect");
    let lost = Call {
        id: Some(Uuid::now_v7()),
        ..call("a.rolled_back", json!("never"))
    };
    let mut tx = pool.begin().await.expect("begin");
    let lost_position = sql_publish(&mut *tx, &lost).await.expect("publish");
    tx.rollback().await.expect("rollback");

    // A savepoint rolled back inside a transaction that commits: only the later call survives.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SAVEPOINT nested")
        .execute(&mut *tx)
        .await
        .expect("savepoint");
    sql_publish(&mut *tx, &call("a.rolled_back", json!("nested")))
        .await
        .expect("publish in savepoint");
    sqlx::query("ROLLBACK TO SAVEPOINT nested")
        .execute(&mut *tx)
        .await
        .expect("rollback to savepoint");
    let kept = sql_publish(&mut *tx, &call("a.kept", json!("sql")))
        .await
        .expect("publish");
    tx.commit().await.expect("commit");

    // The rolled-back positions are gaps; a later local commit still reaches the subscriber.
    let after = bus
        .publish(typed("a.after", json!(2)), &all())
        .await
        .expect("after");
    assert!(position(&after) > kept && kept > lost_position);
    seen.wait_for(3).await;
    bus.close().await;
    assert_eq!(
        seen.positions(),
        vec![position(&before), kept, position(&after)]
    );
    assert_eq!(seen.types(), vec!["a.before", "a.kept", "a.after"]);

    let lost_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM event_bus_events WHERE id = $1")
        .bind(lost.id)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(lost_rows, 0, "not stored");
    let rolled_back: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_bus_events WHERE type = 'a.rolled_back'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(rolled_back, 0);
    assert_eq!(stored_count(&pool).await, 3);
    pool.close().await;
    store.cleanup().await;
}

/// Backends of `application_name` waiting for the append lock.
async fn lock_waiters(admin: &PgPool, application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
           AND NOT l.granted AND a.application_name = $2",
    )
    .bind(APPEND_LOCK as u32 as i64)
    .bind(application_name)
    .fetch_one(admin)
    .await
    .expect("pg_locks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_publishes_wait_for_an_open_app_transaction_and_arrive_in_commit_order() {
    let store = TestStore::postgres().await;
    let app = format!("eb_outbox_{}", Uuid::now_v7().simple());
    let config = situs_event_bus::Config::resolve(
        &json!({
            "storeUrl": format!("{}&application_name={app}", store.url),
            "delivery": {"pollIntervalMs": 3_600_000},
        })
        .to_string(),
        &Default::default(),
    )
    .expect("config");
    let bus = EventBus::open(config, None).await.expect("open");
    let seen = Recorder::default();
    subscribe(&bus, "**", &seen);

    let pool = PgPool::connect(&store.url).await.expect("connect");
    let mut tx = pool.begin().await.expect("begin");
    let first = sql_publish(&mut *tx, &call("app.first", json!(1)))
        .await
        .expect("first");

    // The app transaction now holds the append lock: bus publishes queue behind it.
    let publishers: Vec<_> = (0..3)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.publish(typed("bus.queued", json!(i)), &Scope::default())
                    .await
                    .expect("queued publish")
                    .position()
                    .unwrap_or(0)
            })
        })
        .collect();
    let admin = common::admin_pool().await;
    let mut waiting = 0;
    for _ in 0..2000 {
        waiting = lock_waiters(&admin, &app).await;
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(waiting, 1, "the bus's writer waits for the append lock");
    assert!(
        publishers.iter().all(|p| !p.is_finished()),
        "no publish resolves while the app transaction is open"
    );
    assert_eq!(seen.count(), 0);

    let second = sql_publish(&mut *tx, &call("app.second", json!(2)))
        .await
        .expect("second");
    tx.commit().await.expect("commit");
    let mut queued = Vec::new();
    for p in publishers {
        queued.push(p.await.expect("publisher"));
    }
    queued.sort_unstable();
    assert!(
        queued[0] > second && second > first,
        "positions follow commit order"
    );

    let mut expected = vec![first, second];
    expected.extend(&queued);
    seen.wait_for(expected.len()).await;
    bus.close().await;
    assert_eq!(seen.positions(), expected);
    assert_eq!(
        seen.types(),
        vec![
            "app.first",
            "app.second",
            "bus.queued",
            "bus.queued",
            "bus.queued"
        ]
    );
    admin.close().await;
    pool.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_sql_publishes_raise_like_bus_publish_and_store_nothing() {
    let store = TestStore::postgres().await;
    let bus = store.open("{}").await;
    let pool = PgPool::connect(&store.url).await.expect("connect");
    let long = |c: &str, n: usize| c.repeat(n);
    const INVALID: &str = "22023";
    const TOO_LARGE: &str = "54000";
    let cases: Vec<(Call, &str, &str, &str)> = vec![
        (call("Project.created", json!(1)), INVALID, "type", "INVALID_EVENT: type must match"),
        (call("project", json!(1)), INVALID, "type", "INVALID_EVENT: type must match"),
        (call("project..created", json!(1)), INVALID, "type", "INVALID_EVENT: type must match"),
        (call("project.9x", json!(1)), INVALID, "type", "INVALID_EVENT: type must match"),
        (call("projet.créé", json!(1)), INVALID, "type", "INVALID_EVENT: type must match"),
        (call(&format!("a.{}", long("b", 199)), json!(1)), INVALID, "type", "(at most 200 characters)"),
        (Call { event_type: None, ..call("a.b", json!(1)) }, INVALID, "type", "INVALID_EVENT: type is required"),
        (Call { payload: None, ..call("a.b", json!(1)) }, INVALID, "payload", "INVALID_EVENT: payload is required"),
        (Call { project_id: Some(String::new()), ..call("a.b", json!(1)) }, INVALID, "project_id", "INVALID_EVENT: projectId must be a non-empty string"),
        (Call { tenant_id: Some(long("x", 201)), ..call("a.b", json!(1)) }, INVALID, "tenant_id", "INVALID_EVENT: tenantId must be at most 200 characters, got 201"),
        (Call { user_id: Some(long("é", 201)), ..call("a.b", json!(1)) }, INVALID, "user_id", "INVALID_EVENT: userId must be at most 200 characters, got 201"),
        (Call { metadata: Some("[1]".into()), ..call("a.b", json!(1)) }, INVALID, "metadata", "INVALID_EVENT: metadata must be an object"),
        (Call { metadata: Some(r#""text""#.into()), ..call("a.b", json!(1)) }, INVALID, "metadata", "INVALID_EVENT: metadata must be an object"),
        (Call { metadata: Some("5".into()), ..call("a.b", json!(1)) }, INVALID, "metadata", "INVALID_EVENT: metadata must be an object"),
        // A JSON string's jsonb text is its JSON text: 1,048,575 characters + 2 quotes.
        (call("a.b", json!(long("x", 1_048_575))), TOO_LARGE, "payload", "PAYLOAD_TOO_LARGE: payload is 1048577 bytes, over the limit of 1048576 (validation.maxPayloadBytes)"),
        (Call { metadata: Some(json!({"k": long("x", 1_048_576)}).to_string()), ..call("a.b", json!(1)) }, TOO_LARGE, "metadata", "PAYLOAD_TOO_LARGE: metadata is"),
    ];
    for (c, sqlstate, column, message) in &cases {
        let err = sql_publish(&pool, c).await.expect_err("refused");
        let (code, text, col) = pg_error(&err);
        let shown = format!("{c:?}").chars().take(120).collect::<String>();
        assert_eq!(&code, sqlstate, "{shown}: {text}");
        assert_eq!(col.as_deref(), Some(*column), "{shown}: {text}");
        assert!(text.contains(message), "{shown}: {text}");

        // bus.publish refuses the same event with the same code and message (metadata size
        // aside: the bus counts the caller's JSON text, SQL the jsonb's text, a byte apart).
        let json = c.as_event_json().expect("expressible as an event");
        let bus_err: EventBusError = match Event::from_json(&json) {
            Err(e) => e,
            Ok(event) => bus.publish(event, &all()).await.expect_err("bus refuses"),
        };
        if !message.starts_with("PAYLOAD_TOO_LARGE: metadata") {
            assert_eq!(
                text,
                format!("{}: {bus_err}", bus_err.code()),
                "{shown}: same message as bus.publish"
            );
        } else {
            assert_eq!(bus_err.code(), "PAYLOAD_TOO_LARGE");
        }
    }
    // Not JSON at all: the jsonb parameter refuses it before the function runs.
    let err = sql_publish(
        &pool,
        &Call {
            payload: Some("{not json".into()),
            ..call("a.b", json!(1))
        },
    )
    .await
    .expect_err("not JSON");
    assert_eq!(pg_error(&err).0, "22P02");
    assert_eq!(
        stored_count(&pool).await,
        0,
        "a refused call stores nothing"
    );

    // Inside an app transaction the error aborts it: nothing of it is stored either.
    let mut tx = pool.begin().await.expect("begin");
    sql_publish(&mut *tx, &call("a.fine", json!(1)))
        .await
        .expect("valid");
    sql_publish(&mut *tx, &call("Bad", json!(1)))
        .await
        .expect_err("invalid");
    tx.rollback().await.expect("rollback");
    assert_eq!(stored_count(&pool).await, 0);

    // The limits themselves are allowed, as by bus.publish.
    let at_limits = [
        Call {
            user_id: Some(long("é", 200)),
            project_id: Some(long("p", 200)),
            ..call(&format!("a.{}", long("b", 198)), json!(null))
        },
        call("a.b", json!(long("x", 1_048_574))),
        Call {
            metadata: Some("null".into()),
            ..call("a.b_c.d9", json!({}))
        },
    ];
    for c in &at_limits {
        sql_publish(&pool, c).await.expect("at the limits");
    }
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT metadata::text FROM event_bus_events ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("read");
    assert_eq!(stored, vec![None, None, None], "JSON null metadata = none");
    bus.close().await;
    pool.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_id_is_idempotent_across_sql_and_bus_publish() {
    let store = TestStore::postgres().await;
    let bus = store.open("{}").await;
    let seen = Recorder::default();
    subscribe(&bus, "**", &seen);
    let pool = PgPool::connect(&store.url).await.expect("connect");

    let id = Uuid::now_v7();
    let original = Call {
        id: Some(id),
        tenant_id: Some("t1".into()),
        metadata: Some(r#"{"m":1}"#.into()),
        ..call("invoice.paid", json!({"x": 1, "y": [1, 2]}))
    };
    let first = sql_publish(&pool, &original).await.expect("first");
    // The same event again, keys in another order: a safe retry, nothing new stored.
    let retry = Call {
        payload: Some(r#"{"y":[1,2],"x":1}"#.into()),
        ..original.clone()
    };
    assert_eq!(sql_publish(&pool, &retry).await.expect("retry"), first);
    let mut tx = pool.begin().await.expect("begin");
    assert_eq!(
        sql_publish(&mut *tx, &original).await.expect("in a tx"),
        first
    );
    tx.commit().await.expect("commit");
    // …and bus.publish of the same id and content resolves with the stored event.
    let via_bus = bus
        .publish(
            Event::from_json(&original.as_event_json().expect("event")).expect("event"),
            &all(),
        )
        .await
        .expect("bus retry");
    assert_eq!(position(&via_bus), first);

    // Different content under the same id is refused, by SQL and by the bus.
    let different = [
        Call {
            payload: Some(r#"{"x":2,"y":[1,2]}"#.into()),
            ..original.clone()
        },
        Call {
            tenant_id: Some("t2".into()),
            ..original.clone()
        },
        Call {
            metadata: None,
            ..original.clone()
        },
        Call {
            event_type: Some("invoice.voided".into()),
            ..original.clone()
        },
    ];
    for c in &different {
        let err = sql_publish(&pool, c).await.expect_err("duplicate");
        let (code, text, column) = pg_error(&err);
        assert_eq!(code, "23505", "{text}");
        assert_eq!(
            text,
            format!("DUPLICATE_EVENT: id {id} already exists with different content")
        );
        assert_eq!(column.as_deref(), Some("id"));
        let constraint = err
            .as_database_error()
            .and_then(|e| e.constraint())
            .map(str::to_string);
        assert_eq!(constraint.as_deref(), Some("event_bus_events_id_key"));
    }
    let err = bus
        .publish(
            Event::from_json(&different[0].as_event_json().expect("event")).expect("event"),
            &all(),
        )
        .await
        .expect_err("bus duplicate");
    assert_eq!(err.code(), "DUPLICATE_EVENT");

    // An id the bus stored first is recognised by the SQL function too.
    let from_bus = bus
        .publish(
            Event::from_json(&format!(
                r#"{{"id":"{}","type":"invoice.sent","payload":{{"to":"a@b"}},"projectId":"p1"}}"#,
                Uuid::now_v7()
            ))
            .expect("event"),
            &all(),
        )
        .await
        .expect("bus");
    let same = Call {
        id: Some(from_bus.event().id),
        project_id: Some("p1".into()),
        ..call("invoice.sent", json!({"to": "a@b"}))
    };
    assert_eq!(
        sql_publish(&pool, &same).await.expect("same"),
        position(&from_bus)
    );
    let other = Call {
        project_id: None,
        ..same.clone()
    };
    assert_eq!(
        pg_error(&sql_publish(&pool, &other).await.expect_err("dup")).0,
        "23505"
    );

    assert_eq!(stored_count(&pool).await, 2);
    seen.wait_for(2).await;
    bus.close().await;
    assert_eq!(
        seen.positions(),
        vec![first, position(&from_bus)],
        "each id delivered once"
    );
    pool.close().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_gets_the_sql_event_through_the_doorbell_whatever_the_callers_search_path() {
    let store = TestStore::postgres().await;
    let schema = store.schema().expect("postgres").to_string();
    let (a, b) = (store.open(NO_POLL).await, store.open(NO_POLL).await);
    let (seen_a, seen_b) = (Recorder::default(), Recorder::default());
    subscribe(&a, "**", &seen_a);
    subscribe(&b, "order.*", &seen_b);

    // The application's connection uses its own search_path (here: the default, public) and calls
    // the function by its schema-qualified name; the event lands in the bus's schema.
    let app = common::admin_pool().await;
    let mut tx = app.begin().await.expect("begin");
    let sql = format!(
        r#"SELECT "{schema}".event_bus_publish('order.placed', $1::jsonb, p_tenant_id => 'acme')"#
    );
    let position: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(r#"{"orderId": 7}"#)
        .fetch_one(&mut *tx)
        .await
        .expect("publish");
    let search_path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&mut *tx)
        .await
        .expect("search_path");
    assert!(!search_path.contains(&schema), "{search_path}");
    tx.commit().await.expect("commit");

    seen_a.wait_for(1).await;
    seen_b.wait_for(1).await;
    assert_eq!(seen_a.positions(), vec![position as u64], "instance A");
    assert_eq!(seen_b.positions(), vec![position as u64], "instance B");
    let delivered = seen_b.seen.lock().expect("lock")[0].clone();
    assert_eq!(delivered.event.tenant_id.as_deref(), Some("acme"));
    assert_eq!(json_of(&delivered.event.payload), json!({"orderId": 7}));
    assert_eq!(all_positions(&a).await, vec![position as u64]);
    a.close().await;
    b.close().await;
    app.close().await;
    store.cleanup().await;
}

/// SQL publishers (some rolling back) and the bus publish at once: every subscriber gets exactly
/// the committed events, once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sql_and_bus_publishes_arrive_once_in_position_order() {
    let store = TestStore::postgres().await;
    let bus = store.open("{}").await;
    let other = store.open(NO_POLL).await;
    let (seen, seen_other) = (Recorder::default(), Recorder::default());
    subscribe(&bus, "**", &seen);
    subscribe(&other, "**", &seen_other);
    let pool = PgPool::connect(&store.url).await.expect("connect");

    let sql_publisher = |who: &'static str| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..15 {
                let mut tx = pool.begin().await.expect("begin");
                let p = sql_publish(&mut *tx, &call("sql.event", json!({"who": who, "i": i})))
                    .await
                    .expect("publish");
                if i % 3 == 0 {
                    tx.rollback().await.expect("rollback");
                } else {
                    tx.commit().await.expect("commit");
                    committed.push(p);
                }
            }
            committed
        })
    };
    let bus_publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20 {
                let e = bus
                    .publish(typed("bus.event", json!(i)), &Scope::default())
                    .await
                    .expect("publish");
                acked.push(e.position().unwrap_or(0));
            }
            acked
        })
    };
    let tasks = [sql_publisher("x"), sql_publisher("y"), bus_publisher];
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("publisher"));
    }
    acked.sort_unstable();
    assert_eq!(acked.len(), 40);
    seen.wait_for(acked.len()).await;
    seen_other.wait_for(acked.len()).await;
    bus.close().await;
    other.close().await;
    assert_eq!(seen.positions(), acked, "the publishing instance");
    assert_eq!(seen_other.positions(), acked, "another instance");
    pool.close().await;
    store.cleanup().await;
}
