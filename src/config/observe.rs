//! The observability sections of the options — `metrics`, `health`, `tracing` — as callers
//! write them, and how each resolves (split from `resolve.rs`, which keeps the option tree).

use serde::Deserialize;

use super::resolve::{invalid, millis, setting};
use super::{HealthConfig, MetricsConfig, MetricsListen, OtlpConfig, TracingConfig};
use crate::error::Result;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TracingOptions {
    pub(super) otlp: Option<OtlpOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct OtlpOptions {
    pub(super) endpoint: String,
    pub(super) service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HealthOptions {
    pub(super) store_timeout_ms: Option<u64>,
    pub(super) listener_down_ms: Option<u64>,
    pub(super) max_webhook_backlog: Option<u64>,
    pub(super) max_group_lag_events: Option<u64>,
    pub(super) max_group_lag_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MetricsOptions {
    pub(super) enabled: Option<bool>,
    pub(super) refresh_interval_ms: Option<u64>,
    pub(super) listen: Option<MetricsListenOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MetricsListenOptions {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) path: Option<String>,
}

impl HealthConfig {
    pub(super) fn resolve(input: HealthOptions, d: &HealthConfig) -> Result<HealthConfig> {
        Ok(HealthConfig {
            store_timeout: millis(
                input.store_timeout_ms,
                d.store_timeout,
                1..=600_000,
                "health.storeTimeoutMs",
            )?,
            listener_down: millis(
                input.listener_down_ms,
                d.listener_down,
                0..=86_400_000,
                "health.listenerDownMs",
            )?,
            max_webhook_backlog: setting(
                input.max_webhook_backlog,
                None,
                d.max_webhook_backlog,
                0..=u64::MAX,
                "health.maxWebhookBacklog",
            )?,
            max_group_lag_events: setting(
                input.max_group_lag_events,
                None,
                d.max_group_lag_events,
                0..=u64::MAX,
                "health.maxGroupLagEvents",
            )?,
            max_group_lag: millis(
                input.max_group_lag_ms,
                d.max_group_lag,
                0..=u64::MAX,
                "health.maxGroupLagMs",
            )?,
        })
    }
}

impl MetricsConfig {
    pub(super) fn resolve(input: MetricsOptions, d: &MetricsConfig) -> Result<MetricsConfig> {
        let listen = match input.listen {
            None => None,
            Some(l) => {
                let path = l.path.unwrap_or_else(|| "/metrics".to_string());
                if !path.starts_with('/') {
                    return Err(invalid(format!(
                        "metrics.listen.path must start with \"/\", got {path:?}"
                    )));
                }
                Some(MetricsListen {
                    host: l.host.unwrap_or_else(|| "127.0.0.1".to_string()),
                    // 0 picks a free port (see the bus's metricsAddress).
                    port: l.port.unwrap_or(0),
                    path,
                })
            }
        };
        Ok(MetricsConfig {
            enabled: input.enabled.unwrap_or(d.enabled),
            refresh_interval: millis(
                input.refresh_interval_ms,
                d.refresh_interval,
                100..=3_600_000,
                "metrics.refreshIntervalMs",
            )?,
            listen,
        })
    }
}

impl TracingConfig {
    pub(super) fn resolve(input: TracingOptions) -> Result<TracingConfig> {
        let Some(otlp) = input.otlp else {
            return Ok(TracingConfig::default());
        };
        // Refused rather than ignored: a caller asking for export would otherwise see no spans
        // and no reason.
        if !cfg!(feature = "otlp") {
            return Err(invalid(
                "option tracing.otlp: this addon was built without OTLP export (the `otlp` \
                 cargo feature)"
                    .to_string(),
            ));
        }
        let bad = |why: String| {
            invalid(format!(
                "tracing.otlp.endpoint must be an http or https URL, got {:?}: {why}",
                otlp.endpoint
            ))
        };
        let mut url = url::Url::parse(&otlp.endpoint).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(bad(format!("scheme {}", url.scheme())));
        }
        // As OTEL_EXPORTER_OTLP_ENDPOINT: a base URL, the signal's path appended.
        if !url.path().ends_with("/v1/traces") {
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let service_name = match otlp.service_name {
            Some(name) if name.trim().is_empty() => {
                return Err(invalid(
                    "tracing.otlp.serviceName must not be empty".to_string(),
                ))
            }
            Some(name) => name,
            None => crate::trace_context::MESSAGING_SYSTEM.to_string(),
        };
        Ok(TracingConfig {
            otlp: Some(OtlpConfig {
                endpoint: url.to_string(),
                service_name,
            }),
        })
    }
}
