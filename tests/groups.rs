//! Durable consumer groups on every backend: competing members, order per partition, retries,
//! dead letters, checkpoints that survive a restart, and takeover after a member's lease expires.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{event, TestStore};
use situs_event_bus::consumer_group::parse_subscribe_options;
use situs_event_bus::store::groups::DeadLetterStatus;
use situs_event_bus::{EventBus, HandlerFailure, Scope, SharedEvent, Sink, Subscription};

/// What every member of a test group handled, in the order handled: (member, position, project, seq).
type Log = Arc<Mutex<Vec<(&'static str, u64, String, u64)>>>;

/// A group member's handler: records, and fails events whose payload asks it to (`"fail": n` fails
/// the first n calls, `"fail": "always"` every call while `broken` is set). Stops at its first
/// failure, as group sinks must.
#[derive(Clone)]
struct Member {
    name: &'static str,
    log: Log,
    calls: Arc<Mutex<HashMap<u64, u32>>>,
    broken: Arc<AtomicBool>,
}

impl Member {
    fn new(name: &'static str, log: &Log) -> Member {
        Member {
            name,
            log: log.clone(),
            calls: Arc::default(),
            broken: Arc::new(AtomicBool::new(true)),
        }
    }

    fn calls(&self, position: u64) -> u32 {
        self.calls
            .lock()
            .expect("lock")
            .get(&position)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Sink for Member {
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        for e in events {
            let payload: serde_json::Value =
                serde_json::from_str(e.event.payload.get()).expect("payload");
            let call = {
                let mut calls = self.calls.lock().expect("lock");
                let n = calls.entry(e.position).or_default();
                *n += 1;
                *n
            };
            let fails = match &payload["fail"] {
                serde_json::Value::Number(n) => u64::from(call) <= n.as_u64().unwrap_or(0),
                serde_json::Value::String(s) if s == "always" => self.broken.load(Ordering::SeqCst),
                _ => false,
            };
            if fails {
                return vec![HandlerFailure {
                    position: e.position,
                    message: format!("refused call {call}"),
                }];
            }
            self.log.lock().expect("lock").push((
                self.name,
                e.position,
                e.event.project_id.clone().unwrap_or_default(),
                payload["seq"].as_u64().unwrap_or(0),
            ));
        }
        Vec::new()
    }
}

fn join(bus: &EventBus, group_options: &str, member: &Member) -> Subscription {
    let (filter, group) = parse_subscribe_options(group_options).expect("group options");
    bus.subscribe_group(
        &["order.*".to_string()],
        filter,
        group.expect("a group"),
        &Scope::default(),
        Arc::new(member.clone()),
    )
    .expect("joins the group")
}

async fn publish(bus: &EventBus, project: &str, seq: u64, extra: &str) -> u64 {
    let json = format!(
        r#"{{"type":"order.placed","projectId":"{project}","payload":{{"seq":{seq}{extra}}}}}"#
    );
    bus.publish(event(&json), &Scope::default())
        .await
        .expect("publishes")
        .position()
        .expect("stored")
}

/// Polls (bounded) until `done` holds; the check that follows asserts the outcome.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn handled(log: &Log) -> Vec<u64> {
    log.lock().expect("lock").iter().map(|r| r.1).collect()
}

/// Each event once across the group, and per project in publish order.
fn assert_once_in_order(log: &Log, expected: &[u64]) {
    let log = log.lock().expect("lock");
    let mut positions: Vec<u64> = log.iter().map(|r| r.1).collect();
    positions.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(positions, want, "every event handled exactly once");
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for (_, _, project, seq) in log.iter() {
        let last = last_seq.entry(project.as_str()).or_insert(0);
        assert!(*seq > *last, "project {project}: seq {seq} after {last}");
        *last = *seq;
    }
}

const FAST: &str = r#""leaseMs":600,"backoff":{"initialMs":1,"maxMs":5}"#;

async fn members_compete_and_keep_order_per_project(store: &TestStore) {
    let bus = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let log: Log = Arc::default();
    let (a, b) = (Member::new("a", &log), Member::new("b", &log));
    let options = format!(r#"{{"group":"billing","from":"beginning",{FAST}}}"#);
    join(&bus, &options, &a);
    join(&bus, &options, &b);
    let mut expected = Vec::new();
    let mut seq = 0;
    // Publish in rounds until the second member has taken its share (it joins while the first
    // holds every partition, and gets half on the first one's next renewal).
    for _round in 0..100 {
        seq += 1;
        for p in 0..8 {
            expected.push(publish(&bus, &format!("p{p}"), seq, "").await);
        }
        until(|| handled(&log).len() == expected.len()).await;
        let members: std::collections::HashSet<&str> =
            log.lock().expect("lock").iter().map(|r| r.0).collect();
        if members.len() == 2 && seq >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_once_in_order(&log, &expected);
    let members: std::collections::HashSet<&str> =
        log.lock().expect("lock").iter().map(|r| r.0).collect();
    assert_eq!(members.len(), 2, "both members handled events");
    bus.close().await;
}

async fn failures_are_retried_then_dead_lettered_and_can_be_retried(store: &TestStore) {
    let bus = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let log: Log = Arc::default();
    let m = Member::new("m", &log);
    join(
        &bus,
        &format!(r#"{{"group":"mail","from":"beginning","maxAttempts":3,{FAST}}}"#),
        &m,
    );
    let transient = publish(&bus, "p", 1, r#","fail":2"#).await;
    let poison = publish(&bus, "p", 2, r#","fail":"always""#).await;
    let after = publish(&bus, "p", 3, "").await;
    until(|| handled(&log).contains(&after)).await;
    assert_eq!(
        handled(&log),
        vec![transient, after],
        "in order; the poison event skipped"
    );
    assert_eq!(m.calls(transient), 3, "two failures, then success");
    assert_eq!(m.calls(poison), 3, "maxAttempts calls");
    let dead = bus
        .dead_letters(Some("mail"), None, 10)
        .await
        .expect("lists");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, poison);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].status, DeadLetterStatus::Dead);
    assert_eq!(dead[0].error, "refused call 3");
    let event: serde_json::Value = serde_json::from_str(&dead[0].to_json()).expect("json");
    assert_eq!(event["event"]["position"], poison);
    assert_eq!(bus.metrics().dead_lettered, 1);

    // Fixed: a retry delivers it once more and resolves it.
    m.broken.store(false, Ordering::SeqCst);
    bus.retry_dead_letter(dead[0].id).await.expect("marks");
    until(|| handled(&log).contains(&poison)).await;
    let mut resolved = Vec::new();
    for _ in 0..300 {
        resolved = bus
            .dead_letters(Some("mail"), Some(DeadLetterStatus::Resolved), 10)
            .await
            .expect("lists");
        if !resolved.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(resolved.len(), 1, "resolved after the retry");
    assert_eq!(resolved[0].attempts, 4);
    assert_eq!(m.calls(poison), 4);
    let err = bus.retry_dead_letter(9_999).await.expect_err("unknown id");
    assert_eq!(err.code(), "NOT_FOUND");
    bus.close().await;
}

/// The partition of `project`'s events in a group of `partitions` partitioned by projectId.
fn partition_of_project(project: &str, partitions: u32) -> u32 {
    let e = Arc::new(situs_event_bus::StoredEvent::new(
        event(&format!(
            r#"{{"type":"order.placed","projectId":"{project}","payload":{{}}}}"#
        )),
        1,
    ));
    situs_event_bus::consumer_group::partition_of(
        &e,
        situs_event_bus::consumer_group::PartitionKey::ProjectId,
        partitions,
    )
}

async fn a_retrying_partition_does_not_hold_back_the_others(store: &TestStore) {
    let bus = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let log: Log = Arc::default();
    let m = Member::new("m", &log);
    join(
        &bus,
        r#"{"group":"sms","from":"beginning","partitions":16,"maxAttempts":2,"backoff":{"initialMs":500,"maxMs":500}}"#,
        &m,
    );
    // Two projects in different partitions.
    let key = |project: &str| partition_of_project(project, 16);
    let other = (0..100)
        .map(|i| format!("other-{i}"))
        .find(|p| key(p) != key("slow"))
        .expect("a project in another partition");
    let flaky = publish(&bus, "slow", 1, r#","fail":1"#).await;
    let after_flaky = publish(&bus, "slow", 2, "").await;
    // The other partition's events arrive while the failed one waits for its retry.
    until(|| m.calls(flaky) == 1).await;
    let mut others = Vec::new();
    for seq in 1..=5 {
        others.push(publish(&bus, &other, seq, "").await);
    }
    until(|| handled(&log).contains(&after_flaky)).await;
    let order = handled(&log);
    let at = |p: u64| order.iter().position(|&x| x == p).expect("handled");
    assert!(
        others.iter().all(|&o| at(o) < at(flaky)),
        "the other partition went on while the failed event waited for its retry: {order:?}"
    );
    assert!(at(flaky) < at(after_flaky), "its own partition waited");
    assert_eq!(m.calls(flaky), 2);
    bus.close().await;
}

async fn a_restarted_group_resumes_from_its_checkpoint(store: &TestStore) {
    let log: Log = Arc::default();
    let first = store.open("{}").await;
    let m = Member::new("m", &log);
    let options = format!(r#"{{"group":"audit","from":"beginning",{FAST}}}"#);
    join(&first, &options, &m);
    let mut before = Vec::new();
    for seq in 1..=10 {
        before.push(publish(&first, "p", seq, "").await);
    }
    until(|| handled(&log).len() == 10).await;
    assert_eq!(handled(&log), before);
    first.close().await;

    // Published while no member runs; `from: beginning` no longer applies to the existing group.
    let second = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let mut after = Vec::new();
    for seq in 11..=15 {
        after.push(publish(&second, "p", seq, "").await);
    }
    join(&second, &options, &m);
    until(|| handled(&log).len() >= 15).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let all: Vec<u64> = before.iter().chain(after.iter()).copied().collect();
    assert_eq!(
        handled(&log),
        all,
        "each event once, none again after the restart"
    );
    second.close().await;
}

async fn members_in_two_instances_split_the_work(store: &TestStore) {
    let log: Log = Arc::default();
    let options = format!(r#"{{"group":"search","from":"beginning",{FAST}}}"#);
    let one = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let two = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    join(&one, &options, &Member::new("one", &log));
    join(&two, &options, &Member::new("two", &log));
    let mut expected = Vec::new();
    for seq in 1..=40 {
        for p in 0..8 {
            expected.push(publish(&one, &format!("p{p}"), seq, "").await);
        }
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    until(|| handled(&log).len() >= expected.len()).await;
    assert_once_in_order(&log, &expected);
    let per_member: HashMap<&str, usize> =
        log.lock()
            .expect("lock")
            .iter()
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r.0).or_default() += 1;
                m
            });
    assert_eq!(per_member.len(), 2, "both instances worked: {per_member:?}");
    one.close().await;
    two.close().await;
}

async fn a_silent_members_partitions_are_taken_over_after_its_lease(store: &TestStore) {
    let bus = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    // A member that claimed every partition and then died (never renews, never leaves).
    let ghost = situs_event_bus::store::open(&store.url, &Default::default())
        .await
        .expect("store");
    ghost
        .groups()
        .ensure_group("ledger", 4, 0)
        .await
        .expect("group");
    let held = ghost
        .groups()
        .claim("ledger", "ghost", Duration::from_millis(800), &[])
        .await
        .expect("claims");
    assert_eq!(held.len(), 4);
    let log: Log = Arc::default();
    join(
        &bus,
        &format!(r#"{{"group":"ledger",{FAST}}}"#),
        &Member::new("heir", &log),
    );
    let mut expected = Vec::new();
    for seq in 1..=20 {
        expected.push(publish(&bus, &format!("p{}", seq % 3), seq, "").await);
    }
    until(|| handled(&log).len() >= expected.len()).await;
    assert_once_in_order(&log, &expected);
    ghost.close().await;
    bus.close().await;
}

async fn an_event_published_from_an_app_transaction_reaches_the_group(store: &TestStore) {
    let bus = store.open(r#"{"delivery":{"pollIntervalMs":50}}"#).await;
    let log: Log = Arc::default();
    join(
        &bus,
        &format!(r#"{{"group":"outbox","from":"beginning",{FAST}}}"#),
        &Member::new("m", &log),
    );
    let pool = sqlx::PgPool::connect(&store.url).await.expect("app pool");
    let publish_sql = "SELECT event_bus_publish('order.placed', $1::jsonb, 'p')";
    let mut rolled_back = pool.begin().await.expect("begin");
    let never: i64 = sqlx::query_scalar(publish_sql)
        .bind(r#"{"seq":1}"#)
        .fetch_one(&mut *rolled_back)
        .await
        .expect("sql publish");
    rolled_back.rollback().await.expect("rollback");
    let mut committed = pool.begin().await.expect("begin");
    let once: i64 = sqlx::query_scalar(publish_sql)
        .bind(r#"{"seq":2}"#)
        .fetch_one(&mut *committed)
        .await
        .expect("sql publish");
    committed.commit().await.expect("commit");
    let after = publish(&bus, "p", 3, "").await;
    until(|| handled(&log).contains(&after)).await;
    assert_eq!(handled(&log), vec![once as u64, after]);
    assert!(!handled(&log).contains(&(never as u64)));
    pool.close().await;
    bus.close().await;
}

/// One project name per partition of a group of `partitions` (project `i` lands in partition `i`).
fn one_project_per_partition(partitions: u32) -> Vec<String> {
    (0..partitions)
        .map(|p| {
            (0..10_000)
                .map(|i| format!("proj-{i}"))
                .find(|name| partition_of_project(name, partitions) == p)
                .expect("a project in every partition")
        })
        .collect()
}

/// Who handled the events at `positions`, counted per member.
fn holders(log: &Log, positions: &[u64]) -> HashMap<&'static str, usize> {
    log.lock()
        .expect("lock")
        .iter()
        .filter(|r| positions.contains(&r.1))
        .fold(HashMap::new(), |mut m, r| {
            *m.entry(r.0).or_default() += 1;
            m
        })
}

/// Issue 12 #4: a member joining a group whose partitions another member holds gets its fair
/// share at once (the joiner rings, the holder gives back and rings, the joiner claims), not at
/// the holder's next lease renewal — 10 s here (leaseMs 30 000), far beyond the bound. The
/// hand-over handles no event twice: the giver checkpoints before it releases.
async fn a_joining_member_gets_its_fair_share_at_once(store: &TestStore) {
    const PARTITIONS: u32 = 8;
    let open = r#"{"delivery":{"pollIntervalMs":50}}"#;
    let first = store.open(open).await;
    // On a database the joiner is another instance; the memory store lives in one bus.
    let second = if store.url == "memory:" {
        None
    } else {
        Some(store.open(open).await)
    };
    let joiner_bus = second.as_ref().unwrap_or(&first);
    let log: Log = Arc::default();
    let options = format!(
        r#"{{"group":"fair","from":"beginning","partitions":{PARTITIONS},"leaseMs":30000}}"#
    );
    let projects = one_project_per_partition(PARTITIONS);
    let mut published = Vec::new();
    let mut seq = 0;
    // One event per partition; returns their positions once all are handled.
    let mut probe = async |published: &mut Vec<u64>| {
        seq += 1;
        let mut round = Vec::new();
        for project in &projects {
            round.push(publish(&first, project, seq, "").await);
        }
        published.extend(&round);
        until(|| handled(&log).len() >= published.len()).await;
        round
    };

    join(&first, &options, &Member::new("a", &log));
    let round = probe(&mut published).await;
    assert_eq!(
        holders(&log, &round),
        HashMap::from([("a", PARTITIONS as usize)]),
        "alone, a holds every partition"
    );

    let joined = std::time::Instant::now();
    join(joiner_bus, &options, &Member::new("b", &log));
    let fair = HashMap::from([("a", 4), ("b", 4)]);
    let mut seen = HashMap::new();
    // Generous for a noisy machine (the goal is 1 s), far below the 10 s renewal period.
    while joined.elapsed() < Duration::from_secs(2) {
        let round = probe(&mut published).await;
        seen = holders(&log, &round);
        if seen == fair {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen,
        fair,
        "{:?} after b joined, b holds its fair share",
        joined.elapsed()
    );

    // Work from now on is split: each partition's events go to one member, none twice.
    for _ in 0..5 {
        probe(&mut published).await;
    }
    assert_once_in_order(&log, &published);
    let late = &published[published.len() - 5 * PARTITIONS as usize..];
    assert_eq!(holders(&log, late), HashMap::from([("a", 20), ("b", 20)]));
    first.close().await;
    if let Some(second) = second {
        second.close().await;
    }
}

store_tests!(postgres in postgres_outbox: an_event_published_from_an_app_transaction_reaches_the_group);

conformance!(
    members_compete_and_keep_order_per_project,
    failures_are_retried_then_dead_lettered_and_can_be_retried,
    a_retrying_partition_does_not_hold_back_the_others,
    a_joining_member_gets_its_fair_share_at_once,
);
durable!(
    a_silent_members_partitions_are_taken_over_after_its_lease,
    a_restarted_group_resumes_from_its_checkpoint,
    members_in_two_instances_split_the_work,
);
