//! Helpers shared by the integration tests: a recording sink and event builders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use situs_event_bus::{Config, Event, EventBus, HandlerFailure, SharedEvent, Sink};

pub fn event(json: &str) -> Event {
    Event::from_json(json).expect("test event parses")
}

pub fn typed(event_type: &str, payload: serde_json::Value) -> Event {
    event(&serde_json::json!({ "type": event_type, "payload": payload }).to_string())
}

/// Subscribes `recorder` to `pattern` on the whole bus (no tenant scope, no filters).
pub fn subscribe(
    bus: &EventBus,
    pattern: &str,
    recorder: &Recorder,
) -> situs_event_bus::Subscription {
    bus.subscribe(
        &[pattern.to_string()],
        situs_event_bus::SubscriberFilter::default(),
        &situs_event_bus::Scope::default(),
        Arc::new(recorder.clone()),
    )
    .expect("subscribes")
}

/// Records what it receives; fails events whose payload has `"fail": true`; optionally slow.
#[derive(Default, Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<SharedEvent>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub delay: Option<Duration>,
}

impl Recorder {
    pub fn positions(&self) -> Vec<u64> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.position)
            .collect()
    }

    pub fn types(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.event.event_type.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Polls until `n` events arrived (deliveries are asynchronous); bounded, never timed as a check.
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..2000 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Sink for Recorder {
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        self.batches.lock().expect("lock").push(events.len());
        let mut failures = Vec::new();
        for e in events {
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            self.seen.lock().expect("lock").push(e.clone());
            // Parsed, not matched as text: events read back from PostgreSQL come as jsonb text.
            let payload: serde_json::Value =
                serde_json::from_str(e.event.payload.get()).unwrap_or_default();
            if payload["fail"] == serde_json::Value::Bool(true) {
                failures.push(HandlerFailure {
                    position: e.position,
                    message: "handler failed".into(),
                });
            }
        }
        failures
    }
}

/// A store for one test: memory, a fresh SQLite file, or a fresh PostgreSQL schema.
pub struct TestStore {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Nothing,
    File(std::path::PathBuf),
    Schema { admin_url: String, schema: String },
}

/// Where the PostgreSQL tests run; each test gets its own schema there.
pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Connects to the test database, failing loudly (never skipping) when it is not there.
pub async fn admin_pool() -> sqlx::PgPool {
    let url = test_database_url();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for these tests and is not reachable at {url}: {e}\n\
                 Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                 or point TEST_DATABASE_URL at a database you may create schemas in."
            )
        })
}

/// `url` with a PostgreSQL search_path, so everything the bus creates lands in `schema`.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={schema}")
}

impl TestStore {
    pub async fn memory() -> TestStore {
        TestStore {
            url: "memory:".into(),
            cleanup: Cleanup::Nothing,
        }
    }

    pub async fn sqlite() -> TestStore {
        let path = std::env::temp_dir().join(format!("{}.db", unique("situs_event_bus")));
        TestStore {
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::File(path),
        }
    }

    pub async fn postgres() -> TestStore {
        let schema = unique("eb_test");
        let pool = admin_pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .expect("create test schema");
        pool.close().await;
        let admin_url = test_database_url();
        TestStore {
            url: with_schema(&admin_url, &schema),
            cleanup: Cleanup::Schema { admin_url, schema },
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Schema { .. })
    }

    /// The PostgreSQL schema of this store (None for memory and SQLite).
    pub fn schema(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Schema { schema, .. } => Some(schema),
            _ => None,
        }
    }

    /// The options JSON with this store's URL added.
    pub fn options(&self, options: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(options).expect("options are JSON");
        value["storeUrl"] = serde_json::Value::String(self.url.clone());
        value.to_string()
    }

    pub async fn open(&self, options: &str) -> EventBus {
        let config =
            Config::resolve(&self.options(options), &HashMap::new()).expect("valid options");
        EventBus::open(config, None).await.expect("bus opens")
    }

    pub async fn cleanup(self) {
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&pool)
                            .await;
                    pool.close().await;
                }
            }
        }
    }
}

/// One `#[tokio::test]` per listed `async fn(&TestStore)`, on one backend, in module `$module`.
#[macro_export]
macro_rules! store_tests {
    ($backend:ident in $module:ident: $($name:ident),* $(,)?) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $crate::common::TestStore::$backend().await;
                super::$name(&store).await;
                store.cleanup().await;
            })*
        }
    };
}

/// Runs each listed test against the memory, SQLite and PostgreSQL stores.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $crate::store_tests!(memory in memory: $($name),*);
        $crate::store_tests!(sqlite in sqlite: $($name),*);
        $crate::store_tests!(postgres in postgres: $($name),*);
    };
}

/// For behaviour only durable stores have (several instances sharing one database).
#[macro_export]
macro_rules! durable {
    ($($name:ident),* $(,)?) => {
        $crate::store_tests!(sqlite in sqlite_shared: $($name),*);
        $crate::store_tests!(postgres in postgres_shared: $($name),*);
    };
}

/// A TCP proxy in front of PostgreSQL that a test can take down and bring back, to simulate an
/// outage without touching the server other tests use.
pub struct Outage {
    pub port: u16,
    target: String,
    state: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Outage {
    pub async fn start(target: &str) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let outage = Outage {
            port,
            target: target.to_string(),
            state: Arc::new(Mutex::new(None)),
        };
        outage.serve(listener);
        outage
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            // Dropping this task (on `down`) aborts the JoinSet: every proxied connection dies.
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.state.lock().expect("lock") = Some(task);
    }

    /// Closes the listener and every connection: clients see PostgreSQL as down.
    pub async fn down(&self) {
        let task = self.state.lock().expect("lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind proxy");
        self.serve(listener);
    }
}

/// A webhook endpoint for the store (`insert_endpoint`), matching `events`, scoped as given.
pub fn endpoint(
    events: &[&str],
    tenant: Option<&str>,
    project: Option<&str>,
) -> situs_event_bus::store::webhooks::NewEndpoint {
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let type_regex = situs_event_bus::pattern::Pattern::parse_all(&events)
        .expect("valid patterns")
        .iter()
        .map(situs_event_bus::pattern::Pattern::to_regex)
        .collect::<Vec<_>>()
        .join("|");
    let id = uuid::Uuid::now_v7();
    situs_event_bus::store::webhooks::NewEndpoint {
        id,
        url: format!("https://hooks.example.test/{id}"),
        events,
        type_regex,
        tenant_id: tenant.map(str::to_string),
        project_id: project.map(str::to_string),
        description: None,
        secret: format!("whsec_{}", id.simple()),
    }
}

/// Consumer group `group` on `pattern`, joined and left again: its partitions exist with their
/// checkpoints where the log was, and nothing handles what is published next (its lag grows).
pub async fn joined_and_left(bus: &EventBus, group: &str, pattern: &str) {
    let options = serde_json::json!({ "group": group }).to_string();
    let (filter, group_options) =
        situs_event_bus::consumer_group::parse_subscribe_options(&options).expect("options");
    let member = bus
        .subscribe_group(
            &[pattern.to_string()],
            filter,
            group_options.expect("a group"),
            &situs_event_bus::Scope::default(),
            Arc::new(Recorder::default()),
        )
        .expect("joins");
    // The member creates the group's partitions when it starts.
    for _ in 0..500 {
        let groups = bus
            .store()
            .groups()
            .lowest_checkpoints()
            .await
            .expect("read");
        if groups.iter().any(|(name, _)| name == group) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stopped before anything is published: it handles none of what follows.
    member.unsubscribe();
}
