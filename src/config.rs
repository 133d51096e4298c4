//! Options for `EventBus.open`, resolved over environment defaults. Options win over environment;
//! unknown option names and out-of-range values fail with INVALID_CONFIG naming the option.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{EventBusError, Result};
use crate::json_input::parse_object;

/// The embedded default store, used when neither `storeUrl` nor EVENT_STORE_URL is given.
pub const DEFAULT_STORE_URL: &str = "sqlite://./event-bus.db";

/// Environment variables the bus reads (names from the seed application).
pub const ENV_VARS: [&str; 5] = [
    "EVENT_BUS_ENABLED",
    "EVENT_STORE_URL",
    "WEBHOOK_RETRY_ATTEMPTS",
    "WEBHOOK_TIMEOUT",
    "SSE_HEARTBEAT_INTERVAL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub store_url: String,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub retention: RetentionConfig,
    pub enabled: bool,
    pub webhook: WebhookConfig,
    pub sse: SseConfig,
    pub batch: BatchConfig,
    pub validation: ValidationConfig,
    pub security: SecurityConfig,
    pub log_level: LogLevel,
}

/// How events committed by other instances reach this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Fallback read of the log when no doorbell rang (SQLite, or a lost notification).
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub pool_size: u32,
    pub acquire_timeout: Duration,
}

/// Background archiving: events older than `archive_after` move to the archive; archived events
/// older than `delete_archived_after` (counted from archiving) are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionConfig {
    pub archive_after: Option<Duration>,
    pub delete_archived_after: Option<Duration>,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Attempts after the first one.
    pub retry_attempts: u32,
    pub timeout_ms: u64,
    /// Requests in flight across all endpoints.
    pub concurrency: usize,
    /// Requests in flight to one endpoint, so a slow one cannot take every worker.
    pub per_endpoint_concurrency: usize,
    pub allow_private_networks: bool,
    pub allow_http: bool,
    /// Delay before retry n: `initial × factor^(n-1)`, capped at `max`, ±20% jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_factor: u32,
    /// Dead deliveries in a row that disable an endpoint.
    pub disable_after_failures: u32,
    /// How often workers look for due deliveries when nothing woke them.
    pub poll_interval: Duration,
    /// Whether this instance sends webhooks (instances that only publish may leave it to others).
    pub workers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    pub heartbeat_interval_ms: u64,
    /// Recent events kept in memory, so typical reconnects replay without the store.
    pub replay_buffer: usize,
    /// Events queued for one connection; a client that falls this far behind is dropped.
    pub client_buffer: usize,
    /// The `retry:` hint sent to clients, in milliseconds.
    pub retry_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    pub max_size: usize,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidationConfig {
    pub max_payload_bytes: usize,
    /// JSON Schema per event type, checked against each payload of that type.
    pub schemas: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
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
        }
    }
}

// The option tree as callers write it. Every level refuses unknown names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    store_url: Option<String>,
    store: Option<StoreOptionsInput>,
    delivery: Option<DeliveryOptions>,
    retention: Option<RetentionOptions>,
    enabled: Option<bool>,
    webhook: Option<WebhookOptions>,
    sse: Option<SseOptions>,
    batch: Option<BatchOptions>,
    validation: Option<ValidationOptions>,
    security: Option<SecurityOptions>,
    log_level: Option<LogLevel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeliveryOptions {
    poll_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoreOptionsInput {
    pool_size: Option<u32>,
    acquire_timeout_ms: Option<u64>,
}

/// A duration as milliseconds or as text such as "30d", "12h", "90s".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationInput {
    Millis(u64),
    Text(String),
}

impl DurationInput {
    fn resolve(self, name: &str) -> Result<Duration> {
        match self {
            DurationInput::Millis(ms) => Ok(Duration::from_millis(ms)),
            DurationInput::Text(text) => humantime::parse_duration(&text).map_err(|e| {
                invalid(format!(
                    "{name} must be milliseconds or a duration like \"30d\", got {text:?}: {e}"
                ))
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetentionOptions {
    archive_after: Option<DurationInput>,
    delete_archived_after: Option<DurationInput>,
    interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebhookOptions {
    retry_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    concurrency: Option<usize>,
    per_endpoint_concurrency: Option<usize>,
    allow_private_networks: Option<bool>,
    allow_http: Option<bool>,
    backoff: Option<WebhookBackoffOptions>,
    disable_after_failures: Option<u32>,
    poll_interval_ms: Option<u64>,
    workers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebhookBackoffOptions {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    factor: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SseOptions {
    heartbeat_interval_ms: Option<u64>,
    replay_buffer_size: Option<usize>,
    client_buffer_size: Option<usize>,
    retry_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BatchOptions {
    max_size: Option<usize>,
    max_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ValidationOptions {
    max_payload_bytes: Option<usize>,
    schemas: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecurityOptions {
    require_tenant: Option<bool>,
}

fn invalid(msg: String) -> EventBusError {
    EventBusError::InvalidConfig(msg)
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: T,
    min: T,
    max: T,
    name: &str,
) -> Result<T> {
    if value < min || value > max {
        return Err(invalid(format!(
            "{name} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(value)
}

fn env_value<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn env_bool(env: &HashMap<String, String>, name: &str) -> Result<Option<bool>> {
    env_value(env, name)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(format!(
                "environment variable {name} must be true or false, got {v:?}"
            ))),
        })
        .transpose()
}

fn env_number<T: std::str::FromStr>(
    env: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>> {
    env_value(env, name)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                invalid(format!(
                    "environment variable {name} must be a whole number, got {v:?}"
                ))
            })
        })
        .transpose()
}

impl Config {
    /// Resolves JSON options (`{}` for none) over the given environment variables.
    pub fn resolve(options_json: &str, env: &HashMap<String, String>) -> Result<Config> {
        let options: Options = parse_object(options_json, "options", "option ").map_err(invalid)?;
        let d = Config::default();
        let webhook = options.webhook.unwrap_or_default();
        let sse = options.sse.unwrap_or_default();
        let webhook_backoff = webhook.backoff.as_ref();
        let webhook_backoff = WebhookBackoffOptions {
            initial_ms: webhook_backoff.and_then(|b| b.initial_ms),
            max_ms: webhook_backoff.and_then(|b| b.max_ms),
            factor: webhook_backoff.and_then(|b| b.factor),
        };
        let batch = options.batch.unwrap_or_default();
        let validation = options.validation.unwrap_or_default();
        let store = options.store.unwrap_or_default();
        let retention = options.retention.unwrap_or_default();
        let config = Config {
            delivery: DeliveryConfig {
                poll_interval: Duration::from_millis(in_range(
                    options
                        .delivery
                        .and_then(|d| d.poll_interval_ms)
                        .unwrap_or(d.delivery.poll_interval.as_millis() as u64),
                    10,
                    3_600_000,
                    "option delivery.pollIntervalMs",
                )?),
            },
            store: StoreConfig {
                pool_size: in_range(
                    store.pool_size.unwrap_or(d.store.pool_size),
                    1,
                    1000,
                    "option store.poolSize",
                )?,
                acquire_timeout: Duration::from_millis(in_range(
                    store
                        .acquire_timeout_ms
                        .unwrap_or(d.store.acquire_timeout.as_millis() as u64),
                    1,
                    600_000,
                    "option store.acquireTimeoutMs",
                )?),
            },
            retention: RetentionConfig {
                archive_after: retention
                    .archive_after
                    .map(|d| d.resolve("option retention.archiveAfter"))
                    .transpose()?,
                delete_archived_after: retention
                    .delete_archived_after
                    .map(|d| d.resolve("option retention.deleteArchivedAfter"))
                    .transpose()?,
                interval: Duration::from_millis(in_range(
                    retention
                        .interval_ms
                        .unwrap_or(d.retention.interval.as_millis() as u64),
                    10,
                    86_400_000,
                    "option retention.intervalMs",
                )?),
            },
            store_url: options
                .store_url
                .or_else(|| env_value(env, "EVENT_STORE_URL").map(str::to_string))
                .unwrap_or(d.store_url),
            enabled: match options.enabled {
                Some(v) => v,
                None => env_bool(env, "EVENT_BUS_ENABLED")?.unwrap_or(d.enabled),
            },
            webhook: WebhookConfig {
                retry_attempts: match webhook.retry_attempts {
                    Some(v) => in_range(v, 0, 20, "option webhook.retryAttempts")?,
                    None => match env_number(env, "WEBHOOK_RETRY_ATTEMPTS")? {
                        Some(v) => {
                            in_range(v, 0, 20, "environment variable WEBHOOK_RETRY_ATTEMPTS")?
                        }
                        None => d.webhook.retry_attempts,
                    },
                },
                timeout_ms: match webhook.timeout_ms {
                    Some(v) => in_range(v, 1, 600_000, "option webhook.timeoutMs")?,
                    None => match env_number(env, "WEBHOOK_TIMEOUT")? {
                        Some(v) => in_range(v, 1, 600_000, "environment variable WEBHOOK_TIMEOUT")?,
                        None => d.webhook.timeout_ms,
                    },
                },
                concurrency: in_range(
                    webhook.concurrency.unwrap_or(d.webhook.concurrency),
                    1,
                    4096,
                    "option webhook.concurrency",
                )?,
                per_endpoint_concurrency: in_range(
                    webhook
                        .per_endpoint_concurrency
                        .unwrap_or(d.webhook.per_endpoint_concurrency),
                    1,
                    1024,
                    "option webhook.perEndpointConcurrency",
                )?,
                allow_private_networks: webhook.allow_private_networks.unwrap_or(false),
                allow_http: webhook.allow_http.unwrap_or(false),
                backoff_initial: Duration::from_millis(in_range(
                    webhook_backoff
                        .initial_ms
                        .unwrap_or(d.webhook.backoff_initial.as_millis() as u64),
                    1,
                    86_400_000,
                    "option webhook.backoff.initialMs",
                )?),
                backoff_max: Duration::from_millis(in_range(
                    webhook_backoff
                        .max_ms
                        .unwrap_or(d.webhook.backoff_max.as_millis() as u64),
                    1,
                    86_400_000,
                    "option webhook.backoff.maxMs",
                )?),
                backoff_factor: in_range(
                    webhook_backoff.factor.unwrap_or(d.webhook.backoff_factor),
                    1,
                    100,
                    "option webhook.backoff.factor",
                )?,
                disable_after_failures: in_range(
                    webhook
                        .disable_after_failures
                        .unwrap_or(d.webhook.disable_after_failures),
                    1,
                    1_000_000,
                    "option webhook.disableAfterFailures",
                )?,
                poll_interval: Duration::from_millis(in_range(
                    webhook
                        .poll_interval_ms
                        .unwrap_or(d.webhook.poll_interval.as_millis() as u64),
                    10,
                    3_600_000,
                    "option webhook.pollIntervalMs",
                )?),
                workers: webhook.workers.unwrap_or(d.webhook.workers),
            },
            sse: SseConfig {
                replay_buffer: in_range(
                    sse.replay_buffer_size.unwrap_or(d.sse.replay_buffer),
                    0,
                    10_000_000,
                    "option sse.replayBufferSize",
                )?,
                client_buffer: in_range(
                    sse.client_buffer_size.unwrap_or(d.sse.client_buffer),
                    1,
                    1_000_000,
                    "option sse.clientBufferSize",
                )?,
                retry_ms: in_range(
                    sse.retry_ms.unwrap_or(d.sse.retry_ms),
                    0,
                    3_600_000,
                    "option sse.retryMs",
                )?,
                heartbeat_interval_ms: match sse.heartbeat_interval_ms {
                    Some(v) => in_range(v, 1, 3_600_000, "option sse.heartbeatIntervalMs")?,
                    None => match env_number(env, "SSE_HEARTBEAT_INTERVAL")? {
                        Some(v) => in_range(
                            v,
                            1,
                            3_600_000,
                            "environment variable SSE_HEARTBEAT_INTERVAL",
                        )?,
                        None => d.sse.heartbeat_interval_ms,
                    },
                },
            },
            batch: BatchConfig {
                max_size: in_range(
                    batch.max_size.unwrap_or(d.batch.max_size),
                    1,
                    100_000,
                    "option batch.maxSize",
                )?,
                max_delay_ms: in_range(
                    batch.max_delay_ms.unwrap_or(d.batch.max_delay_ms),
                    0,
                    10_000,
                    "option batch.maxDelayMs",
                )?,
            },
            validation: ValidationConfig {
                max_payload_bytes: in_range(
                    validation
                        .max_payload_bytes
                        .unwrap_or(d.validation.max_payload_bytes),
                    1,
                    64 * 1024 * 1024,
                    "option validation.maxPayloadBytes",
                )?,
                schemas: validation.schemas.unwrap_or_default(),
            },
            security: SecurityConfig {
                require_tenant: options
                    .security
                    .and_then(|s| s.require_tenant)
                    .unwrap_or(false),
            },
            log_level: options.log_level.unwrap_or(d.log_level),
        };
        Ok(config)
    }

    /// Resolves options over the process environment (for Rust callers; the JS wrapper passes
    /// its `process.env` explicitly, since native code does not see changes made in JS).
    pub fn from_process_env(options_json: &str) -> Result<Config> {
        let env = ENV_VARS
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
            .collect();
        Config::resolve(options_json, &env)
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
        ];
        for (json, vars, expected) in cases {
            let err = Config::resolve(json, &env(vars)).expect_err(json);
            assert_eq!(err.code(), "INVALID_CONFIG");
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }
}
