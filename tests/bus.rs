//! The bus end to end in Rust, without Node, against every store (memory, SQLite, PostgreSQL):
//! ordering, idempotency, atomicity, middleware order, tenant scoping, disabled mode, close,
//! unsubscribe and queries. One behaviour contract, one suite.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{event, subscribe, typed, Recorder, TestStore};
use serde_json::json;
use situs_event_bus::consumer_group::parse_subscribe_options;
use situs_event_bus::query::EventFilter;
use situs_event_bus::{Event, EventBusError, Middleware, Published, Scope, SubscriberFilter};

fn all() -> Scope {
    Scope::default()
}

async fn concurrent_publishers_are_seen_in_position_order_exactly_once(store: &TestStore) {
    let bus = store.open("{}").await;
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    for r in &recorders {
        subscribe(&bus, "**", r);
    }
    let publishers = 16;
    let per_publisher = 200;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..per_publisher {
                let e = typed("order.placed", json!({ "publisher": p, "seq": i }));
                let published = bus.publish(e, &Scope::default()).await.expect("publish");
                positions.push(published.position().expect("stored"));
            }
            positions
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        let positions = t.await.expect("task");
        // Each publisher's own awaited publishes get increasing positions.
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        acknowledged.extend(positions);
    }
    let total = publishers * per_publisher;
    assert_eq!(acknowledged.iter().collect::<HashSet<_>>().len(), total);
    bus.close().await;
    for r in &recorders {
        let seen = r.positions();
        assert_eq!(seen.len(), total, "every event once");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing positions"
        );
        let mut acked = acknowledged.clone();
        acked.sort_unstable();
        assert_eq!(seen, acked, "exactly the acknowledged events, none missed");
    }
    // Per publisher, events arrive in the order they were published.
    let seen = recorders[0].seen.lock().expect("lock").clone();
    for p in 0..publishers {
        let seqs: Vec<i64> = seen
            .iter()
            .filter_map(|e| {
                let v: serde_json::Value = serde_json::from_str(e.event.payload.get()).ok()?;
                (v["publisher"] == p).then(|| v["seq"].as_i64()).flatten()
            })
            .collect();
        assert_eq!(seqs, (0..per_publisher as i64).collect::<Vec<_>>());
    }
    assert!(
        bus.metrics().batches < total as u64,
        "concurrent publishes share group commits"
    );
}

async fn republishing_an_id_is_idempotent_and_different_content_is_refused(store: &TestStore) {
    let bus = store.open("{}").await;
    let recorder = Recorder::default();
    subscribe(&bus, "**", &recorder);
    let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let first = bus
        .publish(
            event(&format!(
                r#"{{"id":"{id}","type":"a.b","payload":{{"x":1,"y":2}}}}"#
            )),
            &all(),
        )
        .await
        .expect("first");
    let again = bus
        .publish(
            event(&format!(
                r#"{{"id":"{id}","type":"a.b","payload":{{"y":2,"x":1}}}}"#
            )),
            &all(),
        )
        .await
        .expect("identical retry");
    assert_eq!(first.position(), again.position());
    assert_eq!(
        first.event().timestamp,
        again.event().timestamp,
        "the stored event is returned"
    );
    let err = bus
        .publish(
            event(&format!(
                r#"{{"id":"{id}","type":"a.b","payload":{{"x":2}}}}"#
            )),
            &all(),
        )
        .await
        .expect_err("different content");
    assert_eq!(err.code(), "DUPLICATE_EVENT");
    assert!(err.to_string().contains(id), "{err}");
    bus.close().await;
    assert_eq!(recorder.count(), 1, "a retry delivers nothing");
    let m = bus.metrics();
    assert_eq!((m.published, m.duplicates), (1, 1));
}

async fn publish_many_is_atomic_and_names_the_bad_index(store: &TestStore) {
    let bus = store.open("{}").await;
    let recorder = Recorder::default();
    subscribe(&bus, "**", &recorder);
    let existing = bus
        .publish(typed("a.b", json!(1)), &all())
        .await
        .expect("seed");
    let id = existing.event().id;

    let bad_type = vec![
        typed("a.b", json!(1)),
        typed("a.c", json!(2)),
        typed("Bad", json!(3)),
    ];
    let err = bus
        .publish_many(bad_type, &all())
        .await
        .expect_err("invalid type");
    assert_eq!(err.code(), "INVALID_EVENT");
    assert!(
        err.to_string().starts_with("events[2].type must match"),
        "{err}"
    );

    // A duplicate detected by the store also fails the whole request.
    let dup = vec![
        typed("a.b", json!(4)),
        event(&format!(r#"{{"id":"{id}","type":"a.b","payload":99}}"#)),
    ];
    let err = bus.publish_many(dup, &all()).await.expect_err("duplicate");
    assert_eq!(err.code(), "DUPLICATE_EVENT");
    assert!(err.to_string().starts_with("events[1]: "), "{err}");

    let page = bus
        .get_events(EventFilter::default(), &all())
        .await
        .expect("query");
    assert_eq!(
        page.events.len(),
        1,
        "nothing of the failed batches was stored"
    );

    let ok = bus
        .publish_many(vec![typed("a.b", json!(5)), typed("a.c", json!(6))], &all())
        .await
        .expect("ok");
    let positions: Vec<u64> = ok.iter().filter_map(Published::position).collect();
    let first = existing.position().unwrap_or(0);
    // Increasing after the first event; a refused batch may leave a gap (PostgreSQL sequences).
    assert!(positions.len() == 2 && positions[0] > first && positions[1] > positions[0]);
    bus.close().await;
    assert_eq!(
        recorder.positions(),
        vec![first, positions[0], positions[1]]
    );
}

/// Appends its name to the payload (an array) so the order of middleware is visible.
struct Tag(&'static str, Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Middleware for Tag {
    fn name(&self) -> &str {
        self.0
    }

    async fn process(&self, mut e: Event, _scope: &Scope) -> situs_event_bus::Result<Event> {
        self.1.lock().expect("lock").push(self.0.to_string());
        let mut payload: Vec<String> = serde_json::from_str(e.payload.get()).unwrap_or_default();
        payload.push(self.0.to_string());
        e.payload = serde_json::value::to_raw_value(&payload).expect("raw");
        if self.0 == "reject" {
            return Err(EventBusError::Rejected("no thanks".into()));
        }
        if self.0 == "retype" {
            e.event_type = "Not Valid".into();
        }
        Ok(e)
    }
}

async fn middleware_runs_after_builtins_in_registration_order_and_is_rechecked(store: &TestStore) {
    let bus = store.open("{}").await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let first = bus
        .use_middleware(Arc::new(Tag("first", calls.clone())))
        .expect("use");
    bus.use_middleware(Arc::new(Tag("second", calls.clone())))
        .expect("use");

    let e = bus
        .publish(typed("a.b", json!([])), &all())
        .await
        .expect("publish");
    assert_eq!(e.event().payload.get(), r#"["first","second"]"#);

    // Built-in validation runs first: an invalid event never reaches user middleware.
    calls.lock().expect("lock").clear();
    let err = bus
        .publish(typed("Invalid", json!([])), &all())
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), "INVALID_EVENT");
    assert!(calls.lock().expect("lock").is_empty());

    // What middleware returns is validated again.
    let retype = bus
        .use_middleware(Arc::new(Tag("retype", calls.clone())))
        .expect("use");
    let err = bus
        .publish(typed("a.b", json!([])), &all())
        .await
        .expect_err("re-validated");
    assert_eq!(err.code(), "INVALID_EVENT");
    assert!(bus.remove_middleware(retype));

    bus.use_middleware(Arc::new(Tag("reject", calls.clone())))
        .expect("use");
    let err = bus
        .publish(typed("a.b", json!([])), &all())
        .await
        .expect_err("rejected");
    assert_eq!(err, EventBusError::Rejected("no thanks".into()));

    assert!(bus.remove_middleware(first));
    assert!(!bus.remove_middleware(first));
    let page = bus
        .get_events(EventFilter::default(), &all())
        .await
        .expect("query");
    assert_eq!(page.events.len(), 1, "rejected publishes store nothing");
    bus.close().await;
}

async fn tenant_scope_stamps_refuses_and_filters(store: &TestStore) {
    let bus = store.open(r#"{"security":{"requireTenant":true}}"#).await;
    let acme = Scope::tenant("acme");
    let err = bus
        .publish(typed("a.b", json!(1)), &all())
        .await
        .expect_err("tenant required");
    assert_eq!(err.code(), "FORBIDDEN");

    let stamped = bus
        .publish(typed("a.b", json!(1)), &acme)
        .await
        .expect("stamped");
    assert_eq!(stamped.event().tenant_id.as_deref(), Some("acme"));
    bus.publish(
        event(r#"{"type":"a.b","payload":2,"tenantId":"globex"}"#),
        &all(),
    )
    .await
    .expect("other tenant");
    let err = bus
        .publish(
            event(r#"{"type":"a.b","payload":3,"tenantId":"globex"}"#),
            &acme,
        )
        .await
        .expect_err("foreign tenant");
    assert_eq!(err.code(), "FORBIDDEN");

    let recorder = Recorder::default();
    bus.subscribe(
        &["**".into()],
        SubscriberFilter::default(),
        &acme,
        Arc::new(recorder.clone()),
    )
    .expect("scoped");
    let foreign = SubscriberFilter {
        tenant_id: Some("globex".into()),
        ..Default::default()
    };
    let err = bus
        .subscribe(
            &["**".into()],
            foreign,
            &acme,
            Arc::new(Recorder::default()),
        )
        .err()
        .expect("refused");
    assert_eq!(err.code(), "FORBIDDEN");
    bus.publish(
        event(r#"{"type":"a.b","payload":4,"tenantId":"globex"}"#),
        &all(),
    )
    .await
    .expect("globex");
    bus.publish(typed("a.c", json!(5)), &acme)
        .await
        .expect("acme");

    let page = bus
        .get_events(EventFilter::default(), &acme)
        .await
        .expect("scoped query");
    assert!(page
        .events
        .iter()
        .all(|e| e.event.tenant_id.as_deref() == Some("acme")));
    assert_eq!(page.events.len(), 2);
    let err = bus
        .get_events(
            EventFilter {
                tenant_id: Some("globex".into()),
                ..Default::default()
            },
            &acme,
        )
        .await
        .err()
        .expect("foreign query");
    assert_eq!(err.code(), "FORBIDDEN");
    bus.close().await;
    assert_eq!(recorder.types(), vec!["a.c"]);
}

async fn disabled_bus_validates_but_stores_and_delivers_nothing(store: &TestStore) {
    let bus = store.open(r#"{"enabled":false}"#).await;
    let recorder = Recorder::default();
    subscribe(&bus, "**", &recorder);
    let e = bus
        .publish(typed("a.b", json!(1)), &all())
        .await
        .expect("accepted");
    assert!(matches!(e, Published::NotStored(_)));
    assert_eq!(e.position(), None);
    assert!(e.json().contains(r#""position":null"#));
    assert_eq!(
        bus.publish(typed("Bad", json!(1)), &all())
            .await
            .expect_err("validated")
            .code(),
        "INVALID_EVENT"
    );
    assert!(bus
        .get_events(EventFilter::default(), &all())
        .await
        .expect("query")
        .events
        .is_empty());
    bus.close().await;
    assert_eq!(recorder.count(), 0);
}

async fn patterns_filters_and_failing_handlers(store: &TestStore) {
    let bus = store.open("{}").await;
    let projects = Recorder::default();
    let p1 = Recorder::default();
    let failing = Recorder::default();
    subscribe(&bus, "project.*", &projects);
    bus.subscribe(
        &["project.**".into(), "user.created".into()],
        SubscriberFilter {
            project_id: Some("p1".into()),
            ..Default::default()
        },
        &all(),
        Arc::new(p1.clone()),
    )
    .expect("filtered");
    subscribe(&bus, "**", &failing);
    for json in [
        r#"{"type":"project.created","payload":1,"projectId":"p1"}"#,
        r#"{"type":"project.created","payload":{"fail":true},"projectId":"p2"}"#,
        r#"{"type":"project.status.changed","payload":3,"projectId":"p1"}"#,
        r#"{"type":"user.created","payload":4,"projectId":"p1"}"#,
        r#"{"type":"user.deleted","payload":5,"projectId":"p1"}"#,
    ] {
        bus.publish(event(json), &all()).await.expect("publish");
    }
    let err = bus
        .subscribe(
            &["a..b".into()],
            SubscriberFilter::default(),
            &all(),
            Arc::new(Recorder::default()),
        )
        .err()
        .expect("invalid pattern");
    assert_eq!(err.code(), "INVALID_EVENT");
    bus.close().await;
    assert_eq!(projects.positions(), vec![1, 2]);
    assert_eq!(p1.positions(), vec![1, 3, 4]);
    assert_eq!(
        failing.positions(),
        vec![1, 2, 3, 4, 5],
        "a failing handler does not stop delivery"
    );
    assert_eq!(
        bus.metrics().handler_errors,
        2,
        "both subscribers of the failing event counted it"
    );
}

async fn unsubscribe_stops_delivery_and_close_drains_then_refuses(store: &TestStore) {
    let bus = store.open("{}").await;
    let kept = Recorder {
        delay: Some(std::time::Duration::from_millis(2)),
        ..Default::default()
    };
    let dropped = Recorder::default();
    subscribe(&bus, "**", &kept);
    let sub = subscribe(&bus, "**", &dropped);
    bus.publish(typed("a.b", json!(1)), &all())
        .await
        .expect("publish");
    dropped.wait_for(1).await;
    sub.unsubscribe();
    assert!(!sub.is_active());
    for i in 0..50 {
        bus.publish(typed("a.b", json!(i)), &all())
            .await
            .expect("publish");
    }
    // close waits for the slow subscriber's queue, so everything acknowledged was delivered.
    bus.close().await;
    assert_eq!(kept.count(), 51);
    assert_eq!(dropped.count(), 1);
    assert!(
        kept.batches.lock().expect("lock").iter().any(|&n| n > 1),
        "deliveries are batched"
    );
    assert!(bus.is_closed());
    assert_eq!(
        bus.publish(typed("a.b", json!(1)), &all())
            .await
            .expect_err("closed")
            .code(),
        "CLOSED"
    );
    let err = bus
        .get_events(EventFilter::default(), &all())
        .await
        .err()
        .expect("closed");
    assert_eq!(err.code(), "CLOSED");
    bus.close().await; // idempotent
}

async fn queries_filter_page_and_order(store: &TestStore) {
    let bus = store.open("{}").await;
    for i in 0..25 {
        let project = if i % 2 == 0 { "even" } else { "odd" };
        let t = if i % 5 == 0 {
            "user.created"
        } else {
            "project.updated"
        };
        bus.publish(
            event(&format!(
                r#"{{"type":"{t}","payload":{i},"projectId":"{project}","userId":"u{}"}}"#,
                i % 3
            )),
            &all(),
        )
        .await
        .expect("publish");
    }
    let q = |json: &str| EventFilter::from_json(json).expect("filter");
    let page = bus
        .get_events(q(r#"{"projectId":"even","limit":5}"#), &all())
        .await
        .expect("page 1");
    assert_eq!(
        page.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9]
    );
    let cursor = page.next_cursor.expect("more");
    let page = bus
        .get_events(
            q(&format!(
                r#"{{"projectId":"even","limit":5,"cursor":"{cursor}"}}"#
            )),
            &all(),
        )
        .await
        .expect("page 2");
    assert_eq!(page.events.first().map(|e| e.position), Some(11));
    let mut all_even = 10;
    let mut cursor = page.next_cursor;
    while let Some(c) = cursor {
        let p = bus
            .get_events(
                q(&format!(
                    r#"{{"projectId":"even","limit":5,"cursor":"{c}"}}"#
                )),
                &all(),
            )
            .await
            .expect("page");
        all_even += p.events.len();
        cursor = p.next_cursor;
    }
    assert_eq!(all_even, 13);

    let users = bus
        .get_events(q(r#"{"types":["user.*"],"order":"desc"}"#), &all())
        .await
        .expect("desc");
    assert_eq!(
        users.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![21, 16, 11, 6, 1]
    );
    let after = bus
        .get_events(q(r#"{"afterPosition":20,"userId":"u0"}"#), &all())
        .await
        .expect("after");
    assert_eq!(
        after.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![22, 25]
    );
    assert!(after.next_cursor.is_none());
    let future = bus
        .get_events(q(r#"{"since":"2999-01-01T00:00:00Z"}"#), &all())
        .await
        .expect("since");
    assert!(future.events.is_empty());
    let past = bus
        .get_events(q(r#"{"until":"2000-01-01T00:00:00Z"}"#), &all())
        .await
        .expect("until");
    assert!(past.events.is_empty());
    bus.close().await;
}

async fn replay_from_the_log_joins_the_live_stream_without_gap_or_duplicate(store: &TestStore) {
    let bus = store.open("{}").await;
    let mut acked = Vec::new();
    for i in 0..40 {
        acked.push(
            bus.publish(typed("a.b", json!(i)), &all())
                .await
                .expect("seed")
                .position()
                .unwrap_or(0),
        );
    }
    // Publishing goes on while the replaying subscriber starts.
    let writer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..40 {
                let e = bus
                    .publish(typed("a.c", json!(i)), &Scope::default())
                    .await
                    .expect("live");
                positions.push(e.position().unwrap_or(0));
            }
            positions
        })
    };
    let from_beginning = Recorder::default();
    let from_tenth = Recorder::default();
    let only_c = Recorder::default();
    let sub = |from: serde_json::Value, pattern: &str, r: &Recorder| {
        let (filter, _) =
            parse_subscribe_options(&json!({ "from": from }).to_string()).expect("options");
        bus.subscribe(&[pattern.to_string()], filter, &all(), Arc::new(r.clone()))
            .expect("subscribe");
    };
    sub(json!("beginning"), "**", &from_beginning);
    sub(json!(acked[9]), "**", &from_tenth);
    sub(json!("beginning"), "a.c", &only_c);
    let live = writer.await.expect("writer");
    acked.extend(live.iter().copied());
    bus.close().await;
    assert_eq!(
        from_beginning.positions(),
        acked,
        "every event once, in order, across the seam"
    );
    assert_eq!(
        from_tenth.positions(),
        acked[10..].to_vec(),
        "a position means after it"
    );
    assert_eq!(only_c.positions(), live, "replay honours the pattern");
    let err = parse_subscribe_options(r#"{"from":"yesterday"}"#).expect_err("bad from");
    assert_eq!(err.code(), "INVALID_EVENT");
}

async fn a_live_subscriber_never_sees_events_published_before_it_subscribed(store: &TestStore) {
    let bus = store.open("{}").await;
    let mut recorders = Vec::new();
    for i in 0..30 {
        let before = bus
            .publish(typed("a.b", json!(i)), &all())
            .await
            .expect("publish");
        let r = Recorder::default();
        subscribe(&bus, "**", &r);
        recorders.push((before.position().unwrap_or(0), r));
    }
    bus.close().await;
    for (before, r) in recorders {
        assert!(
            r.positions().iter().all(|&p| p > before),
            "saw an event from before subscribing"
        );
    }
}

async fn publish_then_answers_every_publish_once_also_those_queued_at_close(store: &TestStore) {
    type Answers = Arc<Mutex<Vec<(usize, Result<Published, EventBusError>)>>>;
    let bus = store.open("{}").await;
    let answers: Answers = Arc::default();
    let publish = |n: usize, first: usize| {
        let (bus, answers) = (bus.clone(), answers.clone());
        async move {
            for i in first..first + n {
                let answers = answers.clone();
                // The last of the first round is refused by validation, before the writer.
                let e = typed(if i == 39 { "Bad" } else { "a.b" }, json!({ "i": i }));
                let admitted = bus.admit().expect("open");
                // Returns once queued: the answer comes from the writer after the commit.
                admitted
                    .publish_then(e, &all(), move |r| {
                        answers.lock().expect("lock").push((i, r))
                    })
                    .await;
            }
        }
    };
    let answered = || answers.lock().expect("lock").len();
    publish(40, 0).await;
    for _ in 0..1000 {
        if answered() == 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(answered(), 40);
    let stored = bus
        .get_events(EventFilter::default(), &all())
        .await
        .expect("query");
    assert_eq!(stored.events.len(), 39, "the refused event was not stored");
    // Queued, not yet answered: close() stores and answers them before it returns.
    publish(20, 40).await;
    bus.close().await;
    let mut answers = std::mem::take(&mut *answers.lock().expect("lock"));
    assert_eq!(answers.len(), 60, "close answered every queued publish");
    answers.sort_by_key(|(i, _)| *i);
    let refused = answers.remove(39).1.expect_err("refused");
    assert_eq!(refused.code(), "INVALID_EVENT");
    let positions: Vec<u64> = answers
        .iter()
        .map(|(_, r)| r.as_ref().expect("stored").position().expect("position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "queue order");
}

async fn a_panicking_answer_does_not_stop_the_writer(store: &TestStore) {
    let bus = store.open("{}").await;
    let admitted = bus.admit().expect("open");
    admitted
        .publish_then(typed("a.b", json!(1)), &all(), |_| {
            panic!("the caller's answer fails")
        })
        .await;
    let after = bus
        .publish(typed("a.c", json!(2)), &all())
        .await
        .expect("the writer still runs");
    let stored = bus
        .get_events(EventFilter::default(), &all())
        .await
        .expect("query");
    assert_eq!(
        stored
            .events
            .iter()
            .map(|e| e.event.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["a.b", "a.c"]
    );
    assert!(after.position() > Some(stored.events[0].position));
    bus.close().await;
}

conformance!(
    a_panicking_answer_does_not_stop_the_writer,
    publish_then_answers_every_publish_once_also_those_queued_at_close,
    a_live_subscriber_never_sees_events_published_before_it_subscribed,
    replay_from_the_log_joins_the_live_stream_without_gap_or_duplicate,
    concurrent_publishers_are_seen_in_position_order_exactly_once,
    republishing_an_id_is_idempotent_and_different_content_is_refused,
    publish_many_is_atomic_and_names_the_bad_index,
    middleware_runs_after_builtins_in_registration_order_and_is_rechecked,
    tenant_scope_stamps_refuses_and_filters,
    disabled_bus_validates_but_stores_and_delivers_nothing,
    patterns_filters_and_failing_handlers,
    unsubscribe_stops_delivery_and_close_drains_then_refuses,
    queries_filter_page_and_order,
);
