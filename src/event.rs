//! The event as it travels through the bus, and its JSON forms.
//!
//! Payload and metadata stay as raw JSON text from the moment they are parsed: the bus never needs
//! their structure on the hot path (only JSON Schema validation and idempotency checks parse them),
//! and re-emitting the caller's text is cheaper than re-serialising a tree.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{EventBusError, Result};
use crate::json_input::{describe_json_error, is_json_object};

/// An event before it is stored: what publishers send, after parsing.
#[derive(Debug, Clone)]
pub struct Event {
    /// The publisher's id, or a UUIDv7 the bus generated.
    pub id: Uuid,
    /// `type` on the wire: dot-separated lowercase words, e.g. `project.created`.
    pub event_type: String,
    /// Any JSON value, as the publisher's text.
    pub payload: Box<RawValue>,
    /// When the bus accepted it, to the millisecond (publishers cannot set it).
    pub timestamp: DateTime<Utc>,
    /// The project it concerns, for filtering.
    pub project_id: Option<String>,
    /// Its tenant: scoped handles, subscriptions and streams see only their own.
    pub tenant_id: Option<String>,
    /// Who caused it, for filtering.
    pub user_id: Option<String>,
    /// A JSON object, as the publisher's text.
    pub metadata: Option<Box<RawValue>>,
    /// The bus generated the id (UUIDv7), so no stored event can already have it.
    pub id_generated: bool,
}

/// An event committed to the store at a global position. Shared between the store, the router and
/// every subscriber; its JSON form is rendered once, on first use.
#[derive(Debug)]
pub struct StoredEvent {
    /// The event as published (after middleware).
    pub event: Event,
    /// Its place in the log: increasing in commit order, unique across instances.
    pub position: u64,
    json: OnceLock<String>,
}

/// How stored events are passed around: one allocation however many subscribers see it.
pub type SharedEvent = Arc<StoredEvent>;

impl StoredEvent {
    /// `event` as stored at `position`.
    pub fn new(event: Event, position: u64) -> Self {
        Self {
            event,
            position,
            json: OnceLock::new(),
        }
    }

    /// The event as the JSON object handlers, queries and webhooks receive.
    pub(crate) fn json(&self) -> &str {
        self.json
            .get_or_init(|| self.event.to_json(Some(self.position)))
    }
}

/// Renders a JSON array of events without re-serialising each one.
pub fn json_array<'a>(events: impl IntoIterator<Item = &'a str> + Clone) -> String {
    // Sized up front: batches run to hundreds of kilobytes.
    let len: usize = events.clone().into_iter().map(|j| j.len() + 1).sum();
    let mut out = String::with_capacity(len + 2);
    out.push('[');
    for (i, json) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(json);
    }
    out.push(']');
    out
}

/// The wire shape of an event. `position` is `null` for events that were not stored.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView<'a> {
    id: String,
    #[serde(rename = "type")]
    event_type: &'a str,
    payload: &'a RawValue,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    position: Option<u64>,
}

/// What a publisher may send. Unknown fields are refused rather than silently dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventInput {
    #[serde(default)]
    id: Option<Value>,
    #[serde(rename = "type", default)]
    event_type: Option<Value>,
    // `null` is a legitimate payload, so presence is tracked separately from the value.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    project_id: Option<Value>,
    #[serde(default)]
    tenant_id: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A timestamp with the millisecond precision JavaScript's `Date` keeps, so round trips are exact.
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_string(value: Option<Value>, field: &str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EventBusError::InvalidEvent(format!(
            "{field} must be a string, got {}",
            json_kind(&other)
        ))),
    }
}

impl Event {
    /// Parses one event as a publisher sent it. Structure only: the validation middleware checks
    /// the rules (type grammar, lengths, sizes, schemas).
    pub fn from_json(text: &str) -> Result<Event> {
        Self::parse(text).map(|(event, _)| event)
    }

    /// Parses what a middleware returned for `self`: the id stays unless the middleware set one,
    /// and the timestamp always stays.
    pub(crate) fn replaced_from_json(&self, text: &str) -> Result<Event> {
        let (mut event, id_given) = Self::parse(text)?;
        if !id_given {
            event.id = self.id;
            event.id_generated = self.id_generated;
        }
        event.timestamp = self.timestamp;
        Ok(event)
    }

    fn parse(text: &str) -> Result<(Event, bool)> {
        if !is_json_object(text) {
            return Err(EventBusError::InvalidEvent(
                "event must be an object".into(),
            ));
        }
        let input: EventInput = serde_json::from_str(text).map_err(|e| {
            let msg = describe_json_error(&e);
            match msg.strip_prefix("unknown field ") {
                Some(rest) => {
                    EventBusError::InvalidEvent(format!("event has an unknown field {rest}"))
                }
                None => {
                    EventBusError::InvalidEvent(format!("event is not a valid event object: {msg}"))
                }
            }
        })?;
        let given_id = optional_string(input.id, "id")?;
        let id_given = given_id.is_some();
        let id = match given_id {
            None => Uuid::now_v7(),
            Some(s) => Uuid::try_parse(&s).map_err(|_| {
                EventBusError::InvalidEvent(format!("id must be a UUID, got {s:?}"))
            })?,
        };
        let event_type = optional_string(input.event_type, "type")?
            .ok_or_else(|| EventBusError::InvalidEvent("type is required".into()))?;
        let payload = input
            .payload
            .ok_or_else(|| EventBusError::InvalidEvent("payload is required".into()))?;
        let metadata = match input.metadata {
            Some(raw) if raw.get() == "null" => None,
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(EventBusError::InvalidEvent(
                    "metadata must be an object".into(),
                ))
            }
            other => other,
        };
        let event = Event {
            id,
            event_type,
            payload,
            timestamp: now_millis(),
            project_id: optional_string(input.project_id, "projectId")?,
            tenant_id: optional_string(input.tenant_id, "tenantId")?,
            user_id: optional_string(input.user_id, "userId")?,
            metadata,
            id_generated: !id_given,
        };
        Ok((event, id_given))
    }

    /// Parses a JSON array of events; errors name the index (`events[3].type …`).
    pub(crate) fn many_from_json(text: &str) -> Result<Vec<Event>> {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            EventBusError::InvalidEvent(format!(
                "events must be an array of events: {}",
                describe_json_error(&e)
            ))
        })?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| Event::from_json(raw.get()).map_err(|e| e.at(&format!("events[{i}]"))))
            .collect()
    }

    /// Same content as another publish of the same id (timestamps and positions aside).
    pub(crate) fn same_content(&self, other: &Event) -> bool {
        fn parsed(raw: Option<&RawValue>) -> Option<Value> {
            raw.and_then(|r| serde_json::from_str(r.get()).ok())
        }
        self.event_type == other.event_type
            && self.project_id == other.project_id
            && self.tenant_id == other.tenant_id
            && self.user_id == other.user_id
            && (self.payload.get() == other.payload.get()
                || parsed(Some(&self.payload)) == parsed(Some(&other.payload)))
            && parsed(self.metadata.as_deref()) == parsed(other.metadata.as_deref())
    }

    /// Payload size in bytes, as the UTF-8 of its JSON text.
    pub(crate) fn payload_bytes(&self) -> usize {
        self.payload.get().len()
    }

    /// The wire form, with `position` (`null` when not stored).
    pub(crate) fn to_json(&self, position: Option<u64>) -> String {
        let view = EventView {
            id: self.id.hyphenated().to_string(),
            event_type: &self.event_type,
            payload: &self.payload,
            timestamp: format_timestamp(&self.timestamp),
            project_id: self.project_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            user_id: self.user_id.as_deref(),
            metadata: self.metadata.as_deref(),
            position,
        };
        let mut out = Vec::with_capacity(256 + self.payload.get().len());
        // Serialising borrowed strings and raw JSON into memory cannot fail, and the bytes are UTF-8.
        let _ = serde_json::to_writer(&mut out, &view);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_round_trip() {
        let e = Event::from_json(
            r#"{"type":"project.created","payload":{"a":[1,"é"]},"projectId":"p1"}"#,
        )
        .expect("valid");
        assert_eq!(e.event_type, "project.created");
        assert_eq!(e.id.get_version_num(), 7);
        let json: Value = serde_json::from_str(&e.to_json(Some(4))).expect("json");
        assert_eq!(json["payload"]["a"][1], "é");
        assert_eq!(json["projectId"], "p1");
        assert_eq!(json["position"], 4);
        assert!(json.get("tenantId").is_none());
    }

    #[test]
    fn null_payload_is_present_but_missing_payload_is_not() {
        assert!(Event::from_json(r#"{"type":"a.b","payload":null}"#).is_ok());
        let err = Event::from_json(r#"{"type":"a.b"}"#).unwrap_err();
        assert_eq!(
            err,
            EventBusError::InvalidEvent("payload is required".into())
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_the_field() {
        let err = Event::from_json(r#"{"type":"a.b","payload":1,"bogus":1}"#).unwrap_err();
        assert!(err.to_string().contains("`bogus`"), "{err}");
        let err = Event::from_json(r#"{"type":"a.b","payload":1,"projectId":5}"#).unwrap_err();
        assert_eq!(err.to_string(), "projectId must be a string, got a number");
        let err = Event::many_from_json(r#"[{"type":"a.b","payload":1},{"type":7,"payload":1}]"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[1].type must be a string, got a number"
        );
    }

    #[test]
    fn same_content_ignores_key_order_and_timestamp() {
        let a = Event::from_json(r#"{"type":"a.b","payload":{"x":1,"y":2}}"#).expect("a");
        let mut b = Event::from_json(r#"{"type":"a.b","payload":{"y":2,"x":1}}"#).expect("b");
        b.timestamp = a.timestamp + chrono::Duration::seconds(5);
        assert!(a.same_content(&b));
        let c = Event::from_json(r#"{"type":"a.b","payload":{"x":1,"y":3}}"#).expect("c");
        assert!(!a.same_content(&c));
    }
}
