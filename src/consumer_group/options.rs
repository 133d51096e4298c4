//! `subscribe` and `deadLetters` options as callers write them, and the group settings they
//! resolve to (defaults filled in, ranges checked, the bad field named).

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{EventBusError, Result};
use crate::router::{StartFrom, SubscriberFilter};

/// Which event field decides the partition (events with the same value are handled in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PartitionKey {
    /// `projectId` (the default).
    #[default]
    ProjectId,
    /// `tenantId`.
    TenantId,
    /// `userId`.
    UserId,
    /// The event type.
    Type,
}

/// A group subscription's settings, resolved by [`parse_subscribe_options`].
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    /// The group's name, shared by its members in every instance.
    pub name: String,
    /// Where a group starts the first time it is created; afterwards its checkpoint wins.
    pub start: StartFrom,
    /// Handler calls per event, the first included.
    pub max_attempts: u32,
    /// Delays between a failing event's calls.
    pub backoff: Backoff,
    /// The event field that decides the partition.
    pub partition_by: PartitionKey,
    /// How many partitions the group's events are split into.
    pub partitions: u32,
    /// How long a member holds its partitions without renewing (renewed every third of it).
    pub lease: Duration,
}

/// `subscribe` options as callers write them (`{ projectId, tenantId, from, group, … }`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeOptionsInput {
    project_id: Option<String>,
    tenant_id: Option<String>,
    #[serde(default, deserialize_with = "crate::router::start_from")]
    from: Option<StartFrom>,
    group: Option<String>,
    max_attempts: Option<u32>,
    backoff: Option<BackoffInput>,
    partition_by: Option<PartitionKey>,
    partitions: Option<u32>,
    lease_ms: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackoffInput {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    factor: Option<f64>,
}

fn invalid(message: String) -> EventBusError {
    EventBusError::InvalidEvent(message)
}

/// Parses `subscribe` options: the filter every subscription has, and the group settings when
/// `group` is given.
pub fn parse_subscribe_options(text: &str) -> Result<(SubscriberFilter, Option<GroupOptions>)> {
    let input: SubscribeOptionsInput =
        crate::json_input::parse_object(text, "subscribe options", "").map_err(invalid)?;
    let filter = SubscriberFilter {
        project_id: input.project_id,
        tenant_id: input.tenant_id,
        from: input.from,
    };
    let Some(name) = input.group else {
        for (set, field) in [
            (input.max_attempts.is_some(), "maxAttempts"),
            (input.backoff.is_some(), "backoff"),
            (input.partition_by.is_some(), "partitionBy"),
            (input.partitions.is_some(), "partitions"),
            (input.lease_ms.is_some(), "leaseMs"),
        ] {
            if set {
                return Err(invalid(format!(
                    "{field} applies only to a group subscription (set group)"
                )));
            }
        }
        return Ok((filter, None));
    };
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(invalid(
            "group must be a non-empty string of at most 200 characters".into(),
        ));
    }
    let in_range = |value: Option<u64>, field: &str, default: u64, min: u64, max: u64| {
        let v = value.unwrap_or(default);
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(invalid(format!(
                "{field} must be between {min} and {max}, got {v}"
            )))
        }
    };
    let defaults = Backoff::default();
    let backoff = match input.backoff {
        None => defaults,
        Some(b) => {
            let initial = in_range(b.initial_ms, "backoff.initialMs", 100, 1, 3_600_000)?;
            let max = in_range(
                b.max_ms,
                "backoff.maxMs",
                30_000.max(initial),
                initial,
                3_600_000,
            )?;
            let factor = b.factor.unwrap_or(defaults.factor);
            if !(1.0..=10.0).contains(&factor) {
                return Err(invalid(format!(
                    "backoff.factor must be between 1 and 10, got {factor}"
                )));
            }
            Backoff {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
                factor,
            }
        }
    };
    let group = GroupOptions {
        name,
        start: filter.from.unwrap_or(StartFrom::Now),
        max_attempts: in_range(input.max_attempts.map(u64::from), "maxAttempts", 5, 1, 100)? as u32,
        backoff,
        partition_by: input.partition_by.unwrap_or_default(),
        partitions: in_range(input.partitions.map(u64::from), "partitions", 16, 1, 1024)? as u32,
        lease: Duration::from_millis(in_range(input.lease_ms, "leaseMs", 10_000, 200, 600_000)?),
    };
    Ok((filter, Some(group)))
}

/// How many dead letters `deadLetters` returns when no `limit` is given.
pub(crate) const DEAD_LETTER_DEFAULT_LIMIT: usize = 100;

/// `deadLetters({ group, status, limit })`, resolved.
#[derive(Debug, PartialEq)]
pub(crate) struct DeadLetterFilter {
    /// One group's dead letters (none: every group's).
    pub group: Option<String>,
    /// Only dead letters in this state.
    pub status: Option<crate::store::groups::DeadLetterStatus>,
    /// At most this many dead letters.
    pub limit: usize,
}

/// `deadLetters` options as the caller wrote them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeadLetterInput {
    group: Option<String>,
    status: Option<crate::store::groups::DeadLetterStatus>,
    limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Parses `deadLetters` options (INVALID_EVENT naming a bad field), with the default limit.
    pub(crate) fn from_json(text: &str) -> Result<DeadLetterFilter> {
        let input: DeadLetterInput =
            crate::json_input::parse_object(text, "deadLetters options", "").map_err(invalid)?;
        Ok(DeadLetterFilter {
            group: input.group,
            status: input.status,
            limit: input.limit.unwrap_or(DEAD_LETTER_DEFAULT_LIMIT),
        })
    }
}

/// The id `retryDeadLetter` was given, as the store's dead-letter id.
pub(crate) fn parse_dead_letter_id(id: f64) -> Result<u64> {
    crate::json_input::whole_number_id(id)
        .ok_or_else(|| invalid("id must be a dead letter id (a positive whole number)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_options_default_the_limit_and_ids_are_checked() {
        let filter = DeadLetterFilter::from_json("{}").unwrap();
        assert_eq!(filter.limit, DEAD_LETTER_DEFAULT_LIMIT);
        assert_eq!(
            DeadLetterFilter::from_json(r#"{"group":"g","limit":5}"#).unwrap(),
            DeadLetterFilter {
                group: Some("g".into()),
                status: None,
                limit: 5
            }
        );
        assert_eq!(parse_dead_letter_id(7.0), Ok(7));
        let err = parse_dead_letter_id(0.5).unwrap_err();
        assert_eq!(err.code(), "INVALID_EVENT");
        assert_eq!(
            err.to_string(),
            "id must be a dead letter id (a positive whole number)"
        );
    }

    #[test]
    fn options_parse_with_defaults_and_name_bad_fields() {
        let (filter, group) = parse_subscribe_options(r#"{"projectId":"p"}"#).unwrap();
        assert_eq!(filter.project_id.as_deref(), Some("p"));
        assert!(group.is_none());
        let (_, group) =
            parse_subscribe_options(r#"{"group":"billing","from":"beginning","maxAttempts":3}"#)
                .unwrap();
        let group = group.unwrap();
        assert_eq!(group.name, "billing");
        assert_eq!(group.start, StartFrom::Beginning);
        assert_eq!(group.max_attempts, 3);
        assert_eq!(group.partitions, 16);
        assert_eq!(group.partition_by, PartitionKey::ProjectId);
        for (json, field) in [
            (r#"{"maxAttempts":3}"#, "maxAttempts"),
            (r#"{"group":""}"#, "group"),
            (r#"{"group":"g","maxAttempts":0}"#, "maxAttempts"),
            (r#"{"group":"g","partitions":5000}"#, "partitions"),
            (r#"{"group":"g","partitionBy":"color"}"#, "partitionBy"),
            (
                r#"{"group":"g","backoff":{"initialMs":10,"maxMs":5}}"#,
                "backoff.maxMs",
            ),
            (
                r#"{"group":"g","backoff":{"factor":0.5}}"#,
                "backoff.factor",
            ),
            (r#"{"group":"g","leaseMs":1}"#, "leaseMs"),
            (r#"{"group":"g","colour":1}"#, "colour"),
        ] {
            let err = parse_subscribe_options(json).unwrap_err();
            assert_eq!(err.code(), "INVALID_EVENT");
            assert!(err.to_string().contains(field), "{json}: {err}");
        }
    }
}
