//! Built-in validation: type grammar, id lengths, payload size and optional JSON Schemas.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Middleware, Scope};
use crate::config::ValidationConfig;
use crate::error::{EventBusError, Result};
use crate::event::Event;
use crate::pattern::is_type_segment;

pub const TYPE_GRAMMAR: &str = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$";
pub const MAX_ID_CHARS: usize = 200;
pub const MAX_TYPE_CHARS: usize = 200;

pub struct Validation {
    max_payload_bytes: usize,
    schemas: HashMap<String, jsonschema::Validator>,
}

pub fn is_valid_type(t: &str) -> bool {
    t.len() <= MAX_TYPE_CHARS && t.contains('.') && t.split('.').all(is_type_segment)
}

fn check_type(t: &str) -> Result<()> {
    if is_valid_type(t) {
        return Ok(());
    }
    let shown: String = t.chars().take(MAX_TYPE_CHARS).collect();
    Err(EventBusError::InvalidEvent(format!(
        "type must match {TYPE_GRAMMAR} (at most {MAX_TYPE_CHARS} characters), got {shown:?}"
    )))
}

pub(crate) fn check_id(value: Option<&str>, field: &str) -> Result<()> {
    let Some(v) = value else { return Ok(()) };
    if v.is_empty() {
        return Err(EventBusError::InvalidEvent(format!(
            "{field} must be a non-empty string"
        )));
    }
    let chars = v.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(EventBusError::InvalidEvent(format!(
            "{field} must be at most {MAX_ID_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

impl Validation {
    pub fn new(config: &ValidationConfig) -> Result<Validation> {
        let mut schemas = HashMap::new();
        for (event_type, schema) in &config.schemas {
            let field = format!("option validation.schemas[{event_type:?}]");
            if !is_valid_type(event_type) {
                return Err(EventBusError::InvalidConfig(format!(
                    "{field}: {event_type:?} is not a valid event type"
                )));
            }
            let validator = jsonschema::validator_for(schema).map_err(|e| {
                EventBusError::InvalidConfig(format!("{field} is not a valid JSON Schema: {e}"))
            })?;
            schemas.insert(event_type.clone(), validator);
        }
        Ok(Validation {
            max_payload_bytes: config.max_payload_bytes,
            schemas,
        })
    }

    pub fn check(&self, event: &Event) -> Result<()> {
        check_type(&event.event_type)?;
        check_id(event.project_id.as_deref(), "projectId")?;
        check_id(event.tenant_id.as_deref(), "tenantId")?;
        check_id(event.user_id.as_deref(), "userId")?;
        let limit = self.max_payload_bytes;
        let size = event.payload_bytes();
        if size > limit {
            return Err(EventBusError::PayloadTooLarge(format!(
                "payload is {size} bytes, over the limit of {limit} (validation.maxPayloadBytes)"
            )));
        }
        if let Some(meta) = &event.metadata {
            let size = meta.get().len();
            if size > limit {
                return Err(EventBusError::PayloadTooLarge(format!(
                    "metadata is {size} bytes, over the limit of {limit} (validation.maxPayloadBytes)"
                )));
            }
        }
        if let Some(validator) = self.schemas.get(&event.event_type) {
            let payload: serde_json::Value =
                serde_json::from_str(event.payload.get()).map_err(|e| {
                    EventBusError::InvalidEvent(format!("payload is not valid JSON: {e}"))
                })?;
            let first_error = validator.iter_errors(&payload).next().map(|error| {
                let pointer = error.instance_path().to_string();
                let path = pointer
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .fold("payload".to_string(), |acc, s| acc + "." + s);
                format!(
                    "{path} does not match the schema for {}: {error}",
                    event.event_type
                )
            });
            if let Some(message) = first_error {
                return Err(EventBusError::InvalidEvent(message));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Middleware for Validation {
    fn name(&self) -> &str {
        "validation"
    }

    async fn process(&self, event: Event, _scope: &Scope) -> Result<Event> {
        self.check(&event)?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn validation(schemas: &[(&str, serde_json::Value)]) -> Validation {
        let schemas: BTreeMap<String, serde_json::Value> = schemas
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Validation::new(&ValidationConfig {
            max_payload_bytes: 64,
            schemas,
        })
        .expect("valid config")
    }

    fn event(json: &str) -> Event {
        Event::from_json(json).expect("parses")
    }

    #[test]
    fn validation_table() {
        let long = "x".repeat(201);
        let v = validation(&[(
            "project.created",
            serde_json::json!({"type":"object","required":["name"],"properties":{"name":{"type":"string"}}}),
        )]);
        let cases: Vec<(String, Option<(&str, &str)>)> = vec![
            (r#"{"type":"project.created","payload":{"name":"a"}}"#.into(), None),
            (r#"{"type":"a.b","payload":null}"#.into(), None),
            (r#"{"type":"a.b_c.d9","payload":1}"#.into(), None),
            (r#"{"type":"project","payload":1}"#.into(), Some(("INVALID_EVENT", "type must match"))),
            (r#"{"type":"Project.created","payload":1}"#.into(), Some(("INVALID_EVENT", "type must match"))),
            (r#"{"type":"project..created","payload":1}"#.into(), Some(("INVALID_EVENT", "type must match"))),
            (r#"{"type":"project.9x","payload":1}"#.into(), Some(("INVALID_EVENT", "type must match"))),
            (r#"{"type":"projet.créé","payload":1}"#.into(), Some(("INVALID_EVENT", "type must match"))),
            (r#"{"type":"a.b","payload":1,"projectId":""}"#.into(), Some(("INVALID_EVENT", "projectId must be a non-empty"))),
            (format!(r#"{{"type":"a.b","payload":1,"tenantId":"{long}"}}"#), Some(("INVALID_EVENT", "tenantId must be at most 200 characters, got 201"))),
            (format!(r#"{{"type":"a.b","payload":1,"userId":"{}"}}"#, "é".repeat(200)), None),
            (r#"{"type":"a.b","payload":"012345678901234567890123456789012345678901234567890123456789012"}"#.into(), Some(("PAYLOAD_TOO_LARGE", "payload is 65 bytes, over the limit of 64"))),
            (r#"{"type":"a.b","payload":1,"metadata":{"k":"0123456789012345678901234567890123456789012345678901234567"}}"#.into(), Some(("PAYLOAD_TOO_LARGE", "metadata is"))),
            (r#"{"type":"project.created","payload":{"name":5}}"#.into(), Some(("INVALID_EVENT", "payload.name does not match the schema"))),
            (r#"{"type":"project.created","payload":{}}"#.into(), Some(("INVALID_EVENT", "payload does not match the schema"))),
        ];
        for (json, expected) in cases {
            let result = v.check(&event(&json));
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(e), Some((code, text))) => {
                    assert_eq!(e.code(), code, "{json}: {e}");
                    assert!(e.to_string().contains(text), "{json}: {e}");
                }
                (r, e) => panic!("{json}: got {r:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn payload_size_counts_utf8_bytes() {
        let v = validation(&[]);
        // 31 two-byte characters plus quotes = 64 bytes: at the limit.
        assert!(v
            .check(&event(&format!(
                r#"{{"type":"a.b","payload":"{}"}}"#,
                "é".repeat(31)
            )))
            .is_ok());
        let err = v
            .check(&event(&format!(
                r#"{{"type":"a.b","payload":"{}"}}"#,
                "é".repeat(32)
            )))
            .unwrap_err();
        assert_eq!(err.code(), "PAYLOAD_TOO_LARGE");
    }

    #[test]
    fn bad_schemas_fail_at_open() {
        let cfg = |k: &str, v: serde_json::Value| ValidationConfig {
            max_payload_bytes: 10,
            schemas: [(k.to_string(), v)].into_iter().collect(),
        };
        let err = Validation::new(&cfg("a.b", serde_json::json!({"type": 12})))
            .err()
            .expect("bad schema");
        assert_eq!(err.code(), "INVALID_CONFIG");
        assert!(
            err.to_string().contains(r#"validation.schemas["a.b"]"#),
            "{err}"
        );
        let err = Validation::new(&cfg("Nope", serde_json::json!({})))
            .err()
            .expect("bad type");
        assert!(err.to_string().contains("not a valid event type"), "{err}");
    }
}
