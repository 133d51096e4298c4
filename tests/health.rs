//! `bus.health()`: unhealthy with a reason while PostgreSQL is unreachable (a TCP proxy between
//! the bus and the server is taken down), healthy again once it is back, without reopening; and
//! the webhook backlog and group lag limits on every backend.

mod common;

use std::time::Duration;

use common::{endpoint, event, joined_and_left, test_database_url, Outage, TestStore};
use serde_json::json;
use situs_event_bus::health::HealthReport;
use situs_event_bus::{EventBus, Scope};

/// Polls `bus.health()` until `wanted`; bounded (the bus reconnects on its own schedule).
async fn until(bus: &EventBus, wanted: impl Fn(&HealthReport) -> bool) -> HealthReport {
    let mut report = bus.health().await;
    for _ in 0..150 {
        if wanted(&report) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = bus.health().await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_reach_is_unhealthy_with_a_reason_and_healthy_again_once_back() {
    let store = TestStore::postgres().await;
    let proxy = Outage::start("127.0.0.1:5432").await;
    let url = store
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        url,
        store.url,
        "TEST_DATABASE_URL must point at 127.0.0.1:5432 for this test ({})",
        test_database_url()
    );
    let config = situs_event_bus::Config::resolve(
        &json!({
            "storeUrl": url,
            "store": {"acquireTimeoutMs": 500, "poolSize": 2},
            "health": {"storeTimeoutMs": 700, "listenerDownMs": 300}
        })
        .to_string(),
        &Default::default(),
    )
    .expect("config");
    let bus = EventBus::open(config, None)
        .await
        .expect("opens through the proxy");
    let report = bus.health().await;
    assert!(report.healthy, "{report:?}");

    proxy.down().await;
    let report = until(&bus, |r| !r.checks.store.ok && !r.checks.listener.ok).await;
    assert!(!report.healthy);
    let store_reason = report.checks.store.reason.clone().expect("why");
    assert!(
        store_reason.contains("unreachable") || store_reason.contains("did not answer"),
        "{store_reason}"
    );
    let listener_reason = report.checks.listener.reason.clone().expect("why");
    assert!(
        listener_reason.contains("LISTEN connection has been down"),
        "{listener_reason}"
    );

    proxy.up().await;
    let report = until(&bus, |r| r.healthy).await;
    assert!(
        report.healthy,
        "healthy again without reopening: {report:?}"
    );
    // And the bus works again.
    bus.publish(
        event(r#"{"type":"back.again","payload":{}}"#),
        &Scope::default(),
    )
    .await
    .expect("publishes after the outage");
    bus.close().await;
    proxy.down().await;
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_backlog_and_a_lagging_group_past_their_limits_are_unhealthy() {
    for store in [
        TestStore::memory().await,
        TestStore::sqlite().await,
        TestStore::postgres().await,
    ] {
        let bus = store
            .open(
                r#"{"health":{"maxWebhookBacklog":2,"maxGroupLagEvents":3},
                    "webhook":{"workers":false}}"#,
            )
            .await;
        assert!(bus.health().await.healthy, "{}", store.url);
        bus.store()
            .webhooks()
            .insert_endpoint(&endpoint(&["hook.*"], None, None))
            .await
            .expect("register");
        joined_and_left(&bus, "billing", "lag.*").await;
        assert!(bus.health().await.healthy, "{}", store.url);
        for _ in 0..3 {
            bus.publish(
                event(r#"{"type":"hook.fired","payload":{}}"#),
                &Scope::default(),
            )
            .await
            .expect("publish");
        }
        let report = bus.health().await;
        assert!(!report.healthy, "{}", store.url);
        assert!(report.checks.store.ok && report.checks.listener.ok);
        assert_eq!(
            report.checks.webhook_workers.reason.as_deref(),
            Some("3 webhook deliveries are waiting (more than 2)")
        );
        // Three positions behind: at the limit, not past it.
        assert!(report.checks.consumer_groups.ok, "{report:?}");
        bus.publish(
            event(r#"{"type":"lag.grew","payload":{}}"#),
            &Scope::default(),
        )
        .await
        .expect("publish");
        let report = bus.health().await;
        assert_eq!(
            report.checks.consumer_groups.reason.as_deref(),
            Some("billing is 4 events behind")
        );
        bus.close().await;
        store.cleanup().await;
    }
}
