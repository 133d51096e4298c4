//! Reading the log: filters, ordering and opaque cursors for `getEvents`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{EventBusError, Result};
use crate::event::SharedEvent;
use crate::json_input::parse_object;
use crate::pattern::{any_matches, Pattern};

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

/// The order of a page, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// A resolved query, as stores receive it. Position bounds are exclusive.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Type patterns, any of which matches; empty matches every type.
    pub types: Vec<Pattern>,
    /// Only this project's events.
    pub project_id: Option<String>,
    /// Only this tenant's events.
    pub tenant_id: Option<String>,
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Exclusive lower bound on the position.
    pub after_position: Option<u64>,
    /// Exclusive upper bound on the position (from a descending page's cursor).
    pub before_position: Option<u64>,
    /// Inclusive lower bound on the timestamp.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on the timestamp.
    pub until: Option<DateTime<Utc>>,
    /// The page size: stores return up to `limit + 1` rows, the extra one proving a next page.
    pub limit: usize,
    /// By position.
    pub order: Order,
    /// Also read archived events.
    pub include_archived: bool,
}

impl Query {
    /// Whether an event passes every filter except the position bounds.
    pub(crate) fn accepts(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        (self.types.is_empty() || any_matches(&self.types, &e.event_type))
            && self
                .project_id
                .as_ref()
                .is_none_or(|p| e.project_id.as_ref() == Some(p))
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|t| e.tenant_id.as_ref() == Some(t))
            && self
                .user_id
                .as_ref()
                .is_none_or(|u| e.user_id.as_ref() == Some(u))
            && self.since.is_none_or(|s| e.timestamp >= s)
            && self.until.is_none_or(|u| e.timestamp < u)
    }
}

/// The filter as callers write it (`getEvents({ … })`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventFilter {
    /// Type patterns, as subscriptions take them ([`Pattern`]); any may match.
    pub types: Option<Vec<String>>,
    /// Only this project's events.
    pub project_id: Option<String>,
    /// Only this tenant's events (a tenant-scoped handle's own; another is FORBIDDEN).
    pub tenant_id: Option<String>,
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Events after this position (exclusive); not with `cursor`.
    pub after_position: Option<u64>,
    /// ISO-8601, inclusive.
    pub since: Option<String>,
    /// ISO-8601, exclusive.
    pub until: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<usize>,
    /// A previous page's `next_cursor`, for the same order.
    pub cursor: Option<String>,
    /// Ascending by default.
    pub order: Option<Order>,
    /// Also read archived events.
    pub include_archived: Option<bool>,
}

/// One page of `getEvents`.
pub struct Page {
    /// In the query's order.
    pub events: Vec<SharedEvent>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

impl EventFilter {
    /// Parses `getEvents`' argument; unknown fields are refused (INVALID_EVENT).
    pub fn from_json(text: &str) -> Result<EventFilter> {
        parse_object(text, "filter", "").map_err(EventBusError::InvalidEvent)
    }

    /// Checks the filter and turns it into a store query.
    pub(crate) fn resolve(self) -> Result<Query> {
        let invalid = |m: String| EventBusError::InvalidEvent(m);
        let types = match &self.types {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, t)| Pattern::parse(t, &format!("types[{i}]")))
                .collect::<Result<_>>()?,
        };
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(invalid(format!(
                    "limit must be between 1 and {MAX_LIMIT}, got {n}"
                )))
            }
        };
        let order = self.order.unwrap_or_default();
        let mut query = Query {
            types,
            project_id: self.project_id,
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            since: parse_time(self.since.as_deref(), "since")?,
            until: parse_time(self.until.as_deref(), "until")?,
            limit,
            order,
            include_archived: self.include_archived.unwrap_or(false),
            ..Query::default()
        };
        match (self.cursor, self.after_position) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "cursor and afterPosition cannot be combined".into(),
                ))
            }
            (Some(cursor), None) => {
                let (cursor_order, position) = decode_cursor(&cursor)?;
                if cursor_order != order {
                    return Err(invalid("cursor was issued for the other order".into()));
                }
                match order {
                    Order::Asc => query.after_position = Some(position),
                    Order::Desc => query.before_position = Some(position),
                }
            }
            (None, after) => query.after_position = after,
        }
        Ok(query)
    }
}

pub(crate) fn parse_time(value: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    EventBusError::InvalidEvent(format!(
                        "{field} must be an ISO-8601 date, got {v:?}"
                    ))
                })
        })
        .transpose()
}

/// Like [`parse_time`], for a field that must be given (`archive`'s `olderThan`).
pub(crate) fn parse_required_time(value: Option<&str>, field: &str) -> Result<DateTime<Utc>> {
    parse_time(value, field)?
        .ok_or_else(|| EventBusError::InvalidEvent(format!("{field} is required")))
}

/// `archive`'s `limit`: a positive whole number of events.
pub(crate) fn parse_archive_limit(limit: f64) -> Result<u64> {
    crate::json_input::whole_number_id(limit).ok_or_else(|| {
        EventBusError::InvalidEvent(format!(
            "limit must be a positive whole number of events, got {limit}"
        ))
    })
}

pub(crate) fn encode_cursor(order: Order, position: u64) -> String {
    let tag = match order {
        Order::Asc => 'a',
        Order::Desc => 'd',
    };
    URL_SAFE_NO_PAD.encode(format!("v1:{tag}:{position}"))
}

fn decode_cursor(cursor: &str) -> Result<(Order, u64)> {
    let bad = || EventBusError::InvalidEvent("cursor is not a cursor returned by getEvents".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(tag), Some(pos)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let order = match tag {
        "a" => Order::Asc,
        "d" => Order::Desc,
        _ => return Err(bad()),
    };
    Ok((order, pos.parse().map_err(|_| bad())?))
}

/// Builds a page from up to `limit + 1` rows: the extra row only proves there is a next page.
pub(crate) fn into_page(mut rows: Vec<SharedEvent>, query: &Query) -> Page {
    let more = rows.len() > query.limit;
    rows.truncate(query.limit);
    let next_cursor = if more {
        rows.last().map(|e| encode_cursor(query.order, e.position))
    } else {
        None
    };
    Page {
        events: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_limits_are_positive_whole_numbers() {
        assert_eq!(parse_archive_limit(1.0).unwrap(), 1);
        assert_eq!(parse_archive_limit(2500.0).unwrap(), 2500);
        for bad in [0.0, -3.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = parse_archive_limit(bad).expect_err("refused");
            assert_eq!(err.code(), "INVALID_EVENT");
            assert!(err.to_string().contains("limit"), "{err}");
        }
    }

    #[test]
    fn required_times_are_required() {
        let err = parse_required_time(None, "olderThan").unwrap_err();
        assert_eq!(err.code(), "INVALID_EVENT");
        assert_eq!(err.to_string(), "olderThan is required");
        assert!(parse_required_time(Some("yesterday"), "olderThan")
            .unwrap_err()
            .to_string()
            .contains("olderThan must be an ISO-8601 date"));
        assert!(parse_required_time(Some("2026-01-01T00:00:00Z"), "olderThan").is_ok());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = encode_cursor(Order::Desc, 42);
        assert_eq!(decode_cursor(&c).expect("decodes"), (Order::Desc, 42));
        assert!(decode_cursor("not-a-cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:x:1")).is_err());
    }

    #[test]
    fn filter_errors_name_the_field() {
        let err = EventFilter::from_json(r#"{"limit":"ten"}"#).unwrap_err();
        assert!(err.to_string().starts_with("limit: invalid type"), "{err}");
        let err = EventFilter::from_json(r#"{"nope":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `nope`"), "{err}");
        let err = EventFilter::from_json(r#"{"limit":5000}"#)
            .and_then(EventFilter::resolve)
            .err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("limit must be between")));
        let err = EventFilter::from_json(r#"{"since":"yesterday"}"#)
            .and_then(EventFilter::resolve)
            .err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("since must be an ISO-8601")));
    }
}
