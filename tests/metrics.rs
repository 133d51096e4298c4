//! Metrics: each one moves by exactly what was done, the text parses as Prometheus text with a
//! parser other than ours, labels from user data stay capped, store figures refresh, and
//! `metrics.listen` serves them over HTTP. On every backend where the store is involved.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{endpoint, event, joined_and_left, subscribe, Recorder, TestStore};
use prometheus_parse::{Scrape, Value};
use situs_event_bus::{EventBus, Scope};

fn all() -> Scope {
    Scope::default()
}

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("Prometheus text parses")
}

/// The value of `metric` with exactly these labels (None when absent).
fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        })
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

/// Every labelled sample of `metric`: label value of `label` → value.
fn by_label(scrape: &Scrape, metric: &str, label: &str) -> HashMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter_map(|s| {
            let v = match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => return None,
            };
            Some((s.labels.get(label)?.to_string(), v))
        })
        .collect()
}

async fn publish(bus: &EventBus, json: &str) {
    bus.publish(event(json), &all()).await.expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_count_per_type_and_the_text_is_prometheus_text() {
    for store in [
        TestStore::memory().await,
        TestStore::sqlite().await,
        TestStore::postgres().await,
    ] {
        let bus = store.open("{}").await;
        for _ in 0..3 {
            publish(&bus, r#"{"type":"order.placed","payload":{}}"#).await;
        }
        for _ in 0..2 {
            publish(&bus, r#"{"type":"order.paid","payload":{}}"#).await;
        }
        let text = bus.metrics_text();
        let scrape = parse(&text);
        let published = by_label(&scrape, "situs_event_bus_events_published_total", "type");
        assert_eq!(published.get("order.placed"), Some(&3.0), "{}", store.url);
        assert_eq!(published.get("order.paid"), Some(&2.0));
        // One observation per publish, admitted → answered.
        assert_eq!(
            sample(
                &scrape,
                "situs_event_bus_publish_duration_seconds_count",
                &[]
            ),
            Some(5.0)
        );
        // The pool's connections, for the stores that have one (10 by default).
        let pool = |state| {
            sample(
                &scrape,
                "situs_event_bus_store_pool_connections",
                &[("state", state)],
            )
        };
        if store.url == "memory:" {
            assert_eq!(pool("idle"), None);
        } else {
            let (in_use, idle) = (pool("in_use").expect("in use"), pool("idle").expect("idle"));
            assert!(
                in_use + idle >= 1.0 && in_use + idle <= 10.0,
                "{in_use} + {idle}"
            );
        }
        let snapshot = bus.metrics();
        assert_eq!(snapshot.published, 5);
        assert_eq!(snapshot.publish_seconds.count, 5);
        assert!(snapshot.commit_events.sum >= 5.0);
        assert_eq!(
            sample(&scrape, "situs_event_bus_commits_total", &[]),
            Some(snapshot.batches as f64)
        );
        // Naming: one prefix; counters end in _total; units are base units.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("kind"));
            assert!(name.starts_with("situs_event_bus_"), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            assert!(
                !name.contains("_milliseconds") && !name.contains("_ms"),
                "{line}"
            );
        }
        bus.close().await;
        store.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_count_per_code() {
    let store = TestStore::memory().await;
    let bus = store.open("{}").await;
    let id = uuid::Uuid::now_v7();
    publish(
        &bus,
        &format!(r#"{{"id":"{id}","type":"a.b","payload":{{"n":1}}}}"#),
    )
    .await;
    let again = bus
        .publish(
            event(&format!(
                r#"{{"id":"{id}","type":"a.b","payload":{{"n":2}}}}"#
            )),
            &all(),
        )
        .await;
    assert_eq!(again.expect_err("other content").code(), "DUPLICATE_EVENT");
    let scoped = Scope::tenant("t1");
    let forbidden = bus
        .publish(
            event(r#"{"type":"a.b","tenantId":"t2","payload":{}}"#),
            &scoped,
        )
        .await;
    assert_eq!(forbidden.expect_err("other tenant").code(), "FORBIDDEN");
    let scrape = parse(&bus.metrics_text());
    let errors = by_label(&scrape, "situs_event_bus_publish_errors_total", "code");
    assert_eq!(errors.get("DUPLICATE_EVENT"), Some(&1.0));
    assert_eq!(errors.get("FORBIDDEN"), Some(&1.0));
    assert_eq!(bus.metrics().publish_errors, 2);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_counts_one_error_and_each_call_is_timed() {
    let store = TestStore::memory().await;
    let bus = store.open("{}").await;
    let recorder = Recorder::default();
    let _sub = subscribe(&bus, "job.*", &recorder);
    publish(&bus, r#"{"type":"job.ran","payload":{}}"#).await;
    publish(&bus, r#"{"type":"job.ran","payload":{"fail":true}}"#).await;
    publish(&bus, r#"{"type":"job.ran","payload":{}}"#).await;
    bus.deliveries_idle().await;
    let scrape = parse(&bus.metrics_text());
    let consumer = [("consumer", "job.*")];
    assert_eq!(
        sample(&scrape, "situs_event_bus_handler_errors_total", &consumer),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "situs_event_bus_handler_duration_seconds_count",
            &consumer
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "situs_event_bus_events_delivered_total",
            &[("sink", "subscriber")]
        ),
        Some(2.0)
    );
    let snapshot = bus.metrics();
    assert_eq!((snapshot.delivered, snapshot.handler_errors), (2, 1));
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_types_stay_within_the_label_cap() {
    let store = TestStore::memory().await;
    let bus = store.open("{}").await;
    for chunk in 0..20 {
        let events = (0..500)
            .map(|i| {
                event(&format!(
                    r#"{{"type":"t{}.x","payload":{{}}}}"#,
                    chunk * 500 + i
                ))
            })
            .collect();
        bus.publish_many(events, &all()).await.expect("publish");
    }
    let scrape = parse(&bus.metrics_text());
    let published = by_label(&scrape, "situs_event_bus_events_published_total", "type");
    let cap = situs_event_bus::metrics::TYPE_LABELS;
    assert_eq!(published.len(), cap + 1, "the cap and `other`");
    assert_eq!(published.get("other"), Some(&((10_000 - cap) as f64)));
    assert_eq!(published.values().sum::<f64>(), 10_000.0);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_outbox_and_group_lag_refresh_from_the_store() {
    for store in [
        TestStore::memory().await,
        TestStore::sqlite().await,
        TestStore::postgres().await,
    ] {
        let bus = store
            .open(
                r#"{"metrics":{"refreshIntervalMs":100},
                    "webhook":{"workers":false}}"#,
            )
            .await;
        bus.store()
            .webhooks()
            .insert_endpoint(&endpoint(&["hook.*"], None, None))
            .await
            .expect("register");
        // A group that joined and left: its checkpoint stays where it was.
        joined_and_left(&bus, "billing", "lag.*").await;
        for _ in 0..3 {
            publish(&bus, r#"{"type":"hook.fired","payload":{}}"#).await;
        }
        for _ in 0..4 {
            publish(&bus, r#"{"type":"lag.grew","payload":{}}"#).await;
        }
        let m = wait_until(&bus, |m| {
            m.webhook_pending == 3 && m.groups.iter().any(|g| g.events >= 7)
        })
        .await;
        assert_eq!(m.webhook_pending, 3, "{}", store.url);
        let billing = m.groups.iter().find(|g| g.group == "billing").expect("lag");
        // 3 hook events and 4 lag events past the checkpoint it left at.
        assert_eq!(billing.events, 7, "{}", store.url);
        assert!(billing.seconds >= 0.0);
        let scrape = parse(&bus.metrics_text());
        assert_eq!(
            sample(
                &scrape,
                "situs_event_bus_webhook_outbox_deliveries",
                &[("status", "pending")]
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &scrape,
                "situs_event_bus_group_lag_events",
                &[("group", "billing")]
            ),
            Some(7.0)
        );
        bus.close().await;
        store.cleanup().await;
    }
}

/// Polls the snapshot until `ready` (the refresh runs on its own interval); bounded.
async fn wait_until(
    bus: &EventBus,
    ready: impl Fn(&situs_event_bus::metrics::MetricsSnapshot) -> bool,
) -> situs_event_bus::metrics::MetricsSnapshot {
    for _ in 0..300 {
        let m = bus.metrics();
        if ready(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.metrics()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_the_text_over_http() {
    let store = TestStore::memory().await;
    let bus = store
        .open(r#"{"metrics":{"listen":{"host":"127.0.0.1","port":0,"path":"/metrics"}}}"#)
        .await;
    publish(&bus, r#"{"type":"served.one","payload":{}}"#).await;
    let url = bus.metrics_url().expect("listening");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    let response = reqwest::get(&url).await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let scrape = parse(&response.text().await.expect("body"));
    assert_eq!(
        sample(
            &scrape,
            "situs_event_bus_events_published_total",
            &[("type", "served.one")]
        ),
        Some(1.0)
    );
    let elsewhere = reqwest::get(url.replace("/metrics", "/other"))
        .await
        .expect("request");
    assert_eq!(elsewhere.status(), 404);
    bus.close().await;
    assert!(reqwest::get(&url).await.is_err(), "closed with the bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_off_totals_are_kept_and_histograms_are_not() {
    let store = TestStore::memory().await;
    let bus = store.open(r#"{"metrics":{"enabled":false}}"#).await;
    publish(&bus, r#"{"type":"quiet.one","payload":{}}"#).await;
    let m = bus.metrics();
    assert_eq!(m.published, 1);
    assert_eq!(m.publish_seconds.count, 0);
    let scrape = parse(&bus.metrics_text());
    assert!(by_label(&scrape, "situs_event_bus_events_published_total", "type").is_empty());
    bus.close().await;
}

/// Holds its first batch until released, so what follows queues behind it.
struct Gate(std::sync::Arc<tokio::sync::Notify>);

#[async_trait::async_trait]
impl situs_event_bus::Sink for Gate {
    async fn deliver(
        &self,
        _events: &[situs_event_bus::SharedEvent],
    ) -> Vec<situs_event_bus::HandlerFailure> {
        self.0.notified().await;
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_s_queue_is_counted_under_its_consumer_and_commits_by_size() {
    let store = TestStore::memory().await;
    let bus = store.open("{}").await;
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let _slow = bus
        .subscribe(
            &["slow.*".to_string()],
            situs_event_bus::SubscriberFilter::default(),
            &all(),
            std::sync::Arc::new(Gate(release.clone())),
        )
        .expect("subscribes");
    for _ in 0..5 {
        publish(&bus, r#"{"type":"slow.one","payload":{}}"#).await;
    }
    let events: Vec<_> = (0..4)
        .map(|_| event(r#"{"type":"fast.one","payload":{}}"#))
        .collect();
    bus.publish_many(events, &all()).await.expect("publish");
    let scrape = parse(&bus.metrics_text());
    // Five routed to it, none handled yet (the first is in hand, the rest queued).
    assert_eq!(
        sample(
            &scrape,
            "situs_event_bus_consumer_queue_depth",
            &[("consumer", "slow.*")]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(&scrape, "situs_event_bus_subscriber_queue_depth", &[]),
        Some(5.0)
    );
    // Six commits (five single publishes and one of four): 9 events in all.
    let m = bus.metrics();
    assert_eq!(m.commit_events.count, 6);
    assert_eq!(m.commit_events.sum, 9.0);
    for _ in 0..5 {
        release.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..200 {
        if bus.metrics().subscriber_queue == 0 {
            break;
        }
        release.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let scrape = parse(&bus.metrics_text());
    assert_eq!(
        sample(
            &scrape,
            "situs_event_bus_consumer_queue_depth",
            &[("consumer", "slow.*")]
        ),
        Some(0.0)
    );
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_find_the_pool_full_count_as_waits() {
    let store = TestStore::postgres().await;
    // Two connections: the LISTEN connection holds one for good, the reads share the other.
    let bus = store
        .open(r#"{"store":{"poolSize":2},"webhook":{"workers":false}}"#)
        .await;
    let before = bus.metrics().pool_waits.expect("a pool");
    let filter = || situs_event_bus::query::EventFilter::from_json("{}").expect("filter");
    let scope = all();
    let reads = (0..40).map(|_| bus.get_events(filter(), &scope));
    for page in futures_util::future::join_all(reads).await {
        page.expect("read");
    }
    let after = bus.metrics().pool_waits.expect("a pool");
    assert!(
        after > before,
        "40 concurrent reads on one free connection: {before} → {after}"
    );
    // The text shows the same count (or more: the bus's own reads go on in the background).
    let scrape = parse(&bus.metrics_text());
    let shown = sample(&scrape, "situs_event_bus_store_pool_waits_total", &[]).expect("counter");
    assert!(shown >= after as f64, "{shown} < {after}");
    bus.close().await;
    store.cleanup().await;
}
