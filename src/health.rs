//! `bus.health()`: whether this bus can do its work now — the store answers, the LISTEN connection
//! is up (or down only briefly), webhook deliveries are not piling up, consumer groups keep up.
//! Each check reports `ok` and, when not, why; nothing is cached, so the bus is healthy again as
//! soon as the cause is gone, without reopening.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::HealthConfig;
use crate::metrics::refresh;
use crate::store::Store;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Whether this part can do its work.
    pub ok: bool,
    /// Why it is not ok, or a note on an ok one (e.g. "reconnecting"); None when there is
    /// nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Check {
    fn ok() -> Check {
        Check {
            ok: true,
            reason: None,
        }
    }

    fn ok_because(reason: impl Into<String>) -> Check {
        Check {
            ok: true,
            reason: Some(reason.into()),
        }
    }

    fn failed(reason: impl Into<String>) -> Check {
        Check {
            ok: false,
            reason: Some(reason.into()),
        }
    }
}

/// The checks, by what they watch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    /// The store answers a read within `health.storeTimeoutMs`.
    pub store: Check,
    /// The LISTEN connection is up, or down for less than `health.listenerDownMs`.
    pub listener: Check,
    /// Webhook deliveries waiting are within `health.maxWebhookBacklog`.
    pub webhook_workers: Check,
    /// Every consumer group is within its lag limits.
    pub consumer_groups: Check,
}

/// `healthy` when every check is ok.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// Every check is ok.
    pub healthy: bool,
    /// Each check's verdict.
    pub checks: Checks,
}

/// Runs every check against `store` now.
pub(crate) async fn check(store: &dyn Store, config: &HealthConfig) -> HealthReport {
    let listener = listener_check(store.listener_down_since(), config.listener_down);
    let (store_check, webhook_workers, consumer_groups) =
        match tokio::time::timeout(config.store_timeout, refresh::read(store)).await {
            Err(_) => {
                let why = format!(
                    "the store did not answer within {} ms",
                    config.store_timeout.as_millis()
                );
                unreachable_store(why)
            }
            Ok(Err(e)) => unreachable_store(format!("the store is unreachable: {e}")),
            Ok(Ok(depths)) => {
                let backlog = depths.webhook_pending + depths.webhook_retrying;
                let webhooks = if backlog > config.max_webhook_backlog {
                    Check::failed(format!(
                        "{backlog} webhook deliveries are waiting (more than {})",
                        config.max_webhook_backlog
                    ))
                } else {
                    Check::ok()
                };
                let late: Vec<String> = depths
                    .groups
                    .iter()
                    .filter_map(|g| {
                        let secs = config.max_group_lag.as_secs_f64();
                        if g.events > config.max_group_lag_events {
                            Some(format!("{} is {} events behind", g.group, g.events))
                        } else if g.seconds > secs {
                            Some(format!(
                                "{}'s oldest unhandled event is {:.0} s old",
                                g.group, g.seconds
                            ))
                        } else {
                            None
                        }
                    })
                    .collect();
                let groups = if late.is_empty() {
                    Check::ok()
                } else {
                    Check::failed(late.join("; "))
                };
                (Check::ok(), webhooks, groups)
            }
        };
    let checks = Checks {
        store: store_check,
        listener,
        webhook_workers,
        consumer_groups,
    };
    HealthReport {
        healthy: checks.store.ok
            && checks.listener.ok
            && checks.webhook_workers.ok
            && checks.consumer_groups.ok,
        checks,
    }
}

/// When the store cannot be read, the backlog and lag cannot be known either.
fn unreachable_store(why: String) -> (Check, Check, Check) {
    let unknown = || Check::failed("unknown: the store is unreachable");
    (Check::failed(why), unknown(), unknown())
}

fn listener_check(down_since: Option<Instant>, allowed: Duration) -> Check {
    match down_since {
        None => Check::ok(),
        Some(since) => {
            let down = since.elapsed();
            if down > allowed {
                Check::failed(format!(
                    "the LISTEN connection has been down for {} s",
                    down.as_secs()
                ))
            } else {
                Check::ok_because("the LISTEN connection is reconnecting")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_may_be_down_briefly() {
        assert_eq!(listener_check(None, Duration::from_secs(1)), Check::ok());
        let now = Instant::now();
        assert!(listener_check(Some(now), Duration::from_secs(60)).ok);
        let long_ago = now - Duration::from_secs(120);
        let check = listener_check(Some(long_ago), Duration::from_secs(60));
        assert!(!check.ok);
        assert!(check.reason.expect("why").contains("down for 120 s"));
    }
}
