//! Options for `EventBus.open`, resolved over environment defaults. Options win over environment;
//! unknown option names and out-of-range values fail with INVALID_CONFIG naming the option.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::Result;

mod observe;
mod resolve;

/// The embedded default store, used when neither `storeUrl` nor EVENT_STORE_URL is given.
pub(crate) const DEFAULT_STORE_URL: &str = "sqlite://./event-bus.db";

/// The most verbose records forwarded to the bus's logger (`logLevel`), least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Also failures the bus retries or contains (a handler that threw, a lost connection).
    Warn,
    /// Also the lifecycle: opened, closed, servers listening, groups joined (the default).
    Info,
    /// Also routine detail: rejected publishes, streams opened, partitions moving.
    Debug,
    /// Everything.
    Trace,
}

/// The resolved options of one bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `postgres://…`, `sqlite://path` or `memory:` (`storeUrl`, EVENT_STORE_URL).
    pub store_url: String,
    /// Connection pool (`store`).
    pub store: StoreConfig,
    /// Delivery across instances (`delivery`).
    pub delivery: DeliveryConfig,
    /// Background archiving (`retention`).
    pub retention: RetentionConfig,
    /// False: publishes are validated but neither stored nor delivered (EVENT_BUS_ENABLED).
    pub enabled: bool,
    /// Webhook delivery (`webhook`).
    pub webhook: WebhookConfig,
    /// Server-sent events (`sse`).
    pub sse: SseConfig,
    /// Group commit (`batch`).
    pub batch: BatchConfig,
    /// Built-in event checks (`validation`).
    pub validation: ValidationConfig,
    /// Tenant rules (`security`).
    pub security: SecurityConfig,
    /// What reaches the bus's logger (`logLevel`).
    pub log_level: LogLevel,
    /// Measuring and `/metrics` (`metrics`).
    pub metrics: MetricsConfig,
    /// When `health()` reports the bus unhealthy.
    pub health: HealthConfig,
    /// Where spans are exported (`otlp` feature).
    pub tracing: TracingConfig,
}

/// Where the bus's spans go besides the logger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TracingConfig {
    /// Export spans over OTLP/HTTP (needs the addon built with the `otlp` cargo feature).
    pub otlp: Option<OtlpConfig>,
}

/// An OTLP/HTTP (protobuf) trace exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The traces URL: the collector's base URL with `/v1/traces` appended, unless given.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// When `bus.health()` reports the bus unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// The store must answer a read within this.
    pub store_timeout: Duration,
    /// The LISTEN connection may be down this long (reconnects are normal) before it counts.
    pub listener_down: Duration,
    /// Webhook deliveries waiting (pending + retrying) above this count.
    pub max_webhook_backlog: u64,
    /// A consumer group this many positions behind the head, or whose oldest unhandled event is
    /// this old.
    pub max_group_lag_events: u64,
    /// The age limit of a group's oldest unhandled event.
    pub max_group_lag: Duration,
}

/// What the bus measures and where it serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Histograms and labelled counts on the publish and delivery paths (totals are always kept).
    pub enabled: bool,
    /// How often the store's figures (webhook outbox, group lag) are read.
    pub refresh_interval: Duration,
    /// Serve `/metrics` over HTTP from this process (for workers without a server of their own).
    pub listen: Option<MetricsListen>,
}

/// Where `/metrics` is served (`metrics.listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListen {
    /// Default 127.0.0.1.
    pub host: String,
    /// 0 (the default) picks a free port.
    pub port: u16,
    /// Default `/metrics`.
    pub path: String,
}

/// How events committed by other instances reach this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Fallback read of the log when no doorbell rang (SQLite, or a lost notification).
    pub poll_interval: Duration,
}

/// How a durable store connects (`store`); see [`crate::store::StoreOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Connections in the pool at most (`poolSize`).
    pub pool_size: u32,
    /// How long to wait for a connection (`acquireTimeoutMs`).
    pub acquire_timeout: Duration,
}

/// Background archiving: events older than `archive_after` move to the archive; archived events
/// older than `delete_archived_after` (counted from archiving) are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionConfig {
    /// None: events stay in the log.
    pub archive_after: Option<Duration>,
    /// None: archived events are kept.
    pub delete_archived_after: Option<Duration>,
    /// How often the retention pass runs.
    pub interval: Duration,
}

/// Webhook delivery (`webhook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Attempts after the first one.
    pub retry_attempts: u32,
    /// Per request, in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight across all endpoints.
    pub concurrency: usize,
    /// Requests in flight to one endpoint, so a slow one cannot take every worker.
    pub per_endpoint_concurrency: usize,
    /// Allow endpoints that resolve to loopback, private or link-local addresses (off: SSRF guard).
    pub allow_private_networks: bool,
    /// Allow `http://` endpoint URLs (off: `https://` only).
    pub allow_http: bool,
    /// Delay before retry n: `initial × factor^(n-1)`, capped at `max`, ±20% jitter.
    pub backoff_initial: Duration,
    /// The cap on a retry's delay.
    pub backoff_max: Duration,
    /// Each retry's delay is this many times the previous one.
    pub backoff_factor: u32,
    /// Dead deliveries in a row that disable an endpoint.
    pub disable_after_failures: u32,
    /// How often workers look for due deliveries when nothing woke them.
    pub poll_interval: Duration,
    /// Whether this instance sends webhooks (instances that only publish may leave it to others).
    pub workers: bool,
}

/// Server-sent events (`sse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    /// A comment line is sent after this long without an event, so proxies keep the stream open.
    pub heartbeat_interval_ms: u64,
    /// Recent events kept in memory, so typical reconnects replay without the store.
    pub replay_buffer: usize,
    /// Events queued for one connection; a client that falls this far behind is dropped.
    pub client_buffer: usize,
    /// The `retry:` hint sent to clients, in milliseconds.
    pub retry_ms: u64,
}

/// Group commit (`batch`): publishes waiting together are written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Events per commit at most.
    pub max_size: usize,
    /// Longest the writer waits for more publishes to join a commit (0: none beyond those on
    /// their way).
    pub max_delay_ms: u64,
}

/// The built-in checks on each event (`validation`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationConfig {
    /// The limit on the payload's JSON text, and on the metadata's.
    pub max_payload_bytes: usize,
    /// JSON Schema per event type, checked against each payload of that type.
    pub schemas: BTreeMap<String, Value>,
}

/// Tenant rules (`security`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Refuse events without a tenantId (FORBIDDEN).
    pub require_tenant: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store_url: DEFAULT_STORE_URL.into(),
            store: StoreConfig {
                pool_size: 10,
                acquire_timeout: Duration::from_secs(5),
            },
            delivery: DeliveryConfig {
                poll_interval: Duration::from_millis(500),
            },
            retention: RetentionConfig {
                archive_after: None,
                delete_archived_after: None,
                interval: Duration::from_secs(60),
            },
            enabled: true,
            webhook: WebhookConfig {
                retry_attempts: 3,
                timeout_ms: 5000,
                concurrency: 64,
                per_endpoint_concurrency: 8,
                allow_private_networks: false,
                allow_http: false,
                backoff_initial: Duration::from_secs(5),
                backoff_max: Duration::from_secs(3600),
                backoff_factor: 6,
                disable_after_failures: 50,
                poll_interval: Duration::from_millis(1000),
                workers: true,
            },
            health: HealthConfig {
                store_timeout: Duration::from_secs(1),
                listener_down: Duration::from_secs(30),
                max_webhook_backlog: 10_000,
                max_group_lag_events: 100_000,
                max_group_lag: Duration::from_secs(600),
            },
            metrics: MetricsConfig {
                enabled: true,
                refresh_interval: Duration::from_secs(5),
                listen: None,
            },
            sse: SseConfig {
                heartbeat_interval_ms: 30_000,
                replay_buffer: 10_000,
                client_buffer: 1024,
                retry_ms: 3000,
            },
            batch: BatchConfig {
                max_size: 1000,
                max_delay_ms: 0,
            },
            validation: ValidationConfig {
                max_payload_bytes: 1024 * 1024,
                schemas: BTreeMap::new(),
            },
            security: SecurityConfig {
                require_tenant: false,
            },
            log_level: LogLevel::Info,
            tracing: TracingConfig::default(),
        }
    }
}

impl Config {
    /// Resolves JSON options (`{}` for none) over the given environment variables.
    pub fn resolve(options_json: &str, env: &HashMap<String, String>) -> Result<Config> {
        resolve::resolve(options_json, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_come_from_the_seed() {
        let c = Config::resolve("{}", &HashMap::new()).expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(
            (
                c.webhook.retry_attempts,
                c.webhook.timeout_ms,
                c.sse.heartbeat_interval_ms
            ),
            (3, 5000, 30000)
        );
    }

    #[test]
    fn environment_fills_in_and_options_win() {
        let e = env(&[
            ("EVENT_BUS_ENABLED", "false"),
            ("WEBHOOK_RETRY_ATTEMPTS", "5"),
            ("WEBHOOK_TIMEOUT", "1000"),
            ("SSE_HEARTBEAT_INTERVAL", "15000"),
        ]);
        let c = Config::resolve("{}", &e).expect("env");
        assert!(!c.enabled);
        assert_eq!(
            (
                c.webhook.retry_attempts,
                c.webhook.timeout_ms,
                c.sse.heartbeat_interval_ms
            ),
            (5, 1000, 15000)
        );
        let c = Config::resolve(r#"{"enabled":true,"webhook":{"retryAttempts":1}}"#, &e)
            .expect("options");
        assert!(c.enabled);
        assert_eq!(c.webhook.retry_attempts, 1);
        assert_eq!(c.webhook.timeout_ms, 1000);
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn the_otlp_endpoint_gets_the_traces_path() {
        let resolve = |endpoint: &str| {
            let json = format!(r#"{{"tracing":{{"otlp":{{"endpoint":"{endpoint}"}}}}}}"#);
            let otlp = Config::resolve(&json, &HashMap::new())
                .expect("otlp")
                .tracing
                .otlp
                .expect("set");
            (otlp.endpoint, otlp.service_name)
        };
        let traces = "http://127.0.0.1:4318/v1/traces".to_string();
        assert_eq!(resolve("http://127.0.0.1:4318").0, traces);
        assert_eq!(resolve("http://127.0.0.1:4318/").0, traces);
        assert_eq!(
            resolve("http://127.0.0.1:4318/v1/traces").1,
            "situs-event-bus"
        );
    }

    #[test]
    fn bad_options_and_environment_name_the_setting() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (r#"{"bogus":1}"#, &[], "unknown field `bogus`"),
            (
                r#"{"batch":{"maxsize":1}}"#,
                &[],
                "option batch.maxsize: unknown field `maxsize`",
            ),
            (r#"{"enabled":"yes"}"#, &[], "option enabled: invalid type"),
            (
                r#"{"batch":{"maxSize":0}}"#,
                &[],
                "option batch.maxSize must be between 1 and 100000, got 0",
            ),
            (
                r#"{"webhook":{"timeoutMs":-5}}"#,
                &[],
                "option webhook.timeoutMs: invalid value",
            ),
            (
                r#"{"logLevel":"loud"}"#,
                &[],
                "option logLevel: unknown variant `loud`",
            ),
            (
                "{}",
                &[("EVENT_BUS_ENABLED", "maybe")],
                "EVENT_BUS_ENABLED must be true or false",
            ),
            (
                "{}",
                &[("WEBHOOK_TIMEOUT", "5s")],
                "WEBHOOK_TIMEOUT must be a whole number",
            ),
            (
                "{}",
                &[("WEBHOOK_RETRY_ATTEMPTS", "99")],
                "WEBHOOK_RETRY_ATTEMPTS must be between 0 and 20",
            ),
            ("[]", &[], "options must be an object"),
            (
                r#"{"retention":{"archiveAfter":"soon"}}"#,
                &[],
                "retention.archiveAfter must be milliseconds or a duration",
            ),
            (
                r#"{"store":{"poolSize":0}}"#,
                &[],
                "option store.poolSize must be between 1 and 1000",
            ),
            (
                r#"{"tracing":{"otlp":{}}}"#,
                &[],
                "option tracing.otlp: missing field `endpoint`",
            ),
            (
                r#"{"tracing":{"otlp":{"endpoint":"http://x","bogus":1}}}"#,
                &[],
                "option tracing.otlp.bogus: unknown field `bogus`",
            ),
            #[cfg(not(feature = "otlp"))]
            (
                r#"{"tracing":{"otlp":{"endpoint":"http://127.0.0.1:4318"}}}"#,
                &[],
                "built without OTLP export",
            ),
            #[cfg(feature = "otlp")]
            (
                r#"{"tracing":{"otlp":{"endpoint":"ftp://127.0.0.1"}}}"#,
                &[],
                "tracing.otlp.endpoint must be an http or https URL",
            ),
        ];
        for (json, vars, expected) in cases {
            let err = Config::resolve(json, &env(vars)).expect_err(json);
            assert_eq!(err.code(), "INVALID_CONFIG");
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }
}
