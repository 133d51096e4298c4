//! How `EventBus.open` options become a [`Config`]: the option tree as callers write it (every
//! level refuses unknown names), read over the environment and checked one section at a time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::observe::{HealthOptions, MetricsOptions, TracingOptions};
use super::{
    BatchConfig, Config, DeliveryConfig, HealthConfig, LogLevel, MetricsConfig, RetentionConfig,
    SecurityConfig, SseConfig, StoreConfig, TracingConfig, ValidationConfig, WebhookConfig,
};
use crate::error::{EventBusError, Result};
use crate::json_input::parse_object;

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
    metrics: Option<MetricsOptions>,
    health: Option<HealthOptions>,
    tracing: Option<TracingOptions>,
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

pub(super) fn invalid(msg: String) -> EventBusError {
    EventBusError::InvalidConfig(msg)
}

/// The environment variables the options are resolved over.
#[derive(Clone, Copy)]
pub(super) struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A variable's value; blank counts as unset.
    fn value(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.value(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(invalid(format!(
                    "environment variable {name} must be true or false, got {v:?}"
                ))),
            })
            .transpose()
    }

    fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.value(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    invalid(format!(
                        "environment variable {name} must be a whole number, got {v:?}"
                    ))
                })
            })
            .transpose()
    }
}

/// One numeric setting: option `name`, else environment variable `var` (for the settings that
/// have one), else `default`; checked against `range`, and the error names where the value came
/// from, so a caller knows which of the two to fix.
pub(super) fn setting<T: FromStr + PartialOrd + Display + Copy>(
    option: Option<T>,
    var: Option<(Env, &str)>,
    default: T,
    range: RangeInclusive<T>,
    name: &str,
) -> Result<T> {
    let (value, source) = match (option, var) {
        (Some(v), _) => (v, format!("option {name}")),
        (None, Some((env, var))) => match env.number(var)? {
            Some(v) => (v, format!("environment variable {var}")),
            None => return Ok(default),
        },
        (None, None) => (default, format!("option {name}")),
    };
    if !range.contains(&value) {
        return Err(invalid(format!(
            "{source} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )));
    }
    Ok(value)
}

/// [`setting`] in milliseconds, for settings without an environment variable.
pub(super) fn millis(
    option: Option<u64>,
    default: Duration,
    range: RangeInclusive<u64>,
    name: &str,
) -> Result<Duration> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    setting(option, None, default, range, name).map(Duration::from_millis)
}

impl DeliveryConfig {
    fn resolve(input: DeliveryOptions, d: &DeliveryConfig) -> Result<DeliveryConfig> {
        Ok(DeliveryConfig {
            poll_interval: millis(
                input.poll_interval_ms,
                d.poll_interval,
                10..=3_600_000,
                "delivery.pollIntervalMs",
            )?,
        })
    }
}

impl StoreConfig {
    fn resolve(input: StoreOptionsInput, d: &StoreConfig) -> Result<StoreConfig> {
        Ok(StoreConfig {
            pool_size: setting(
                input.pool_size,
                None,
                d.pool_size,
                1..=1000,
                "store.poolSize",
            )?,
            acquire_timeout: millis(
                input.acquire_timeout_ms,
                d.acquire_timeout,
                1..=600_000,
                "store.acquireTimeoutMs",
            )?,
        })
    }
}

impl RetentionConfig {
    fn resolve(input: RetentionOptions, d: &RetentionConfig) -> Result<RetentionConfig> {
        Ok(RetentionConfig {
            archive_after: input
                .archive_after
                .map(|d| d.resolve("option retention.archiveAfter"))
                .transpose()?,
            delete_archived_after: input
                .delete_archived_after
                .map(|d| d.resolve("option retention.deleteArchivedAfter"))
                .transpose()?,
            interval: millis(
                input.interval_ms,
                d.interval,
                10..=86_400_000,
                "retention.intervalMs",
            )?,
        })
    }
}

impl WebhookConfig {
    fn resolve(input: WebhookOptions, env: Env, d: &WebhookConfig) -> Result<WebhookConfig> {
        let backoff = input.backoff.unwrap_or_default();
        Ok(WebhookConfig {
            retry_attempts: setting(
                input.retry_attempts,
                Some((env, "WEBHOOK_RETRY_ATTEMPTS")),
                d.retry_attempts,
                0..=20,
                "webhook.retryAttempts",
            )?,
            timeout_ms: setting(
                input.timeout_ms,
                Some((env, "WEBHOOK_TIMEOUT")),
                d.timeout_ms,
                1..=600_000,
                "webhook.timeoutMs",
            )?,
            concurrency: setting(
                input.concurrency,
                None,
                d.concurrency,
                1..=4096,
                "webhook.concurrency",
            )?,
            per_endpoint_concurrency: setting(
                input.per_endpoint_concurrency,
                None,
                d.per_endpoint_concurrency,
                1..=1024,
                "webhook.perEndpointConcurrency",
            )?,
            allow_private_networks: input.allow_private_networks.unwrap_or(false),
            allow_http: input.allow_http.unwrap_or(false),
            backoff_initial: millis(
                backoff.initial_ms,
                d.backoff_initial,
                1..=86_400_000,
                "webhook.backoff.initialMs",
            )?,
            backoff_max: millis(
                backoff.max_ms,
                d.backoff_max,
                1..=86_400_000,
                "webhook.backoff.maxMs",
            )?,
            backoff_factor: setting(
                backoff.factor,
                None,
                d.backoff_factor,
                1..=100,
                "webhook.backoff.factor",
            )?,
            disable_after_failures: setting(
                input.disable_after_failures,
                None,
                d.disable_after_failures,
                1..=1_000_000,
                "webhook.disableAfterFailures",
            )?,
            poll_interval: millis(
                input.poll_interval_ms,
                d.poll_interval,
                10..=3_600_000,
                "webhook.pollIntervalMs",
            )?,
            workers: input.workers.unwrap_or(d.workers),
        })
    }
}

impl SseConfig {
    fn resolve(input: SseOptions, env: Env, d: &SseConfig) -> Result<SseConfig> {
        Ok(SseConfig {
            replay_buffer: setting(
                input.replay_buffer_size,
                None,
                d.replay_buffer,
                0..=10_000_000,
                "sse.replayBufferSize",
            )?,
            client_buffer: setting(
                input.client_buffer_size,
                None,
                d.client_buffer,
                1..=1_000_000,
                "sse.clientBufferSize",
            )?,
            retry_ms: setting(
                input.retry_ms,
                None,
                d.retry_ms,
                0..=3_600_000,
                "sse.retryMs",
            )?,
            heartbeat_interval_ms: setting(
                input.heartbeat_interval_ms,
                Some((env, "SSE_HEARTBEAT_INTERVAL")),
                d.heartbeat_interval_ms,
                1..=3_600_000,
                "sse.heartbeatIntervalMs",
            )?,
        })
    }
}

impl BatchConfig {
    fn resolve(input: BatchOptions, d: &BatchConfig) -> Result<BatchConfig> {
        Ok(BatchConfig {
            max_size: setting(
                input.max_size,
                None,
                d.max_size,
                1..=100_000,
                "batch.maxSize",
            )?,
            max_delay_ms: setting(
                input.max_delay_ms,
                None,
                d.max_delay_ms,
                0..=10_000,
                "batch.maxDelayMs",
            )?,
        })
    }
}

impl ValidationConfig {
    fn resolve(input: ValidationOptions, d: &ValidationConfig) -> Result<ValidationConfig> {
        Ok(ValidationConfig {
            max_payload_bytes: setting(
                input.max_payload_bytes,
                None,
                d.max_payload_bytes,
                1..=64 * 1024 * 1024,
                "validation.maxPayloadBytes",
            )?,
            schemas: input.schemas.unwrap_or_default(),
        })
    }
}

/// [`Config::resolve`]: parses the option tree, then resolves it section by section.
pub(super) fn resolve(options_json: &str, env: &HashMap<String, String>) -> Result<Config> {
    let options: Options = parse_object(options_json, "options", "option ").map_err(invalid)?;
    let env = Env(env);
    let d = Config::default();
    // Sections resolve in this order so that, of several bad settings, the same one is
    // reported as before.
    let delivery = DeliveryConfig::resolve(options.delivery.unwrap_or_default(), &d.delivery)?;
    let store = StoreConfig::resolve(options.store.unwrap_or_default(), &d.store)?;
    let retention = RetentionConfig::resolve(options.retention.unwrap_or_default(), &d.retention)?;
    let store_url = options
        .store_url
        .or_else(|| env.value("EVENT_STORE_URL").map(str::to_string))
        .unwrap_or(d.store_url);
    let enabled = match options.enabled {
        Some(v) => v,
        None => env.bool("EVENT_BUS_ENABLED")?.unwrap_or(d.enabled),
    };
    let webhook = WebhookConfig::resolve(options.webhook.unwrap_or_default(), env, &d.webhook)?;
    let sse = SseConfig::resolve(options.sse.unwrap_or_default(), env, &d.sse)?;
    let batch = BatchConfig::resolve(options.batch.unwrap_or_default(), &d.batch)?;
    let metrics = MetricsConfig::resolve(options.metrics.unwrap_or_default(), &d.metrics)?;
    let health = HealthConfig::resolve(options.health.unwrap_or_default(), &d.health)?;
    let tracing = TracingConfig::resolve(options.tracing.unwrap_or_default())?;
    let validation =
        ValidationConfig::resolve(options.validation.unwrap_or_default(), &d.validation)?;
    Ok(Config {
        store_url,
        store,
        delivery,
        retention,
        enabled,
        webhook,
        sse,
        batch,
        validation,
        security: SecurityConfig {
            require_tenant: options
                .security
                .and_then(|s| s.require_tenant)
                .unwrap_or(false),
        },
        log_level: options.log_level.unwrap_or(d.log_level),
        metrics,
        health,
        tracing,
    })
}
