//! W3C trace context carried in an event's metadata (`metadata.traceparent`, `metadata.tracestate`):
//! stored and delivered with the event like the rest of its metadata, so a trace crosses
//! instances, consumer groups and SSE; webhook requests carry it as headers. Only well-formed
//! values are propagated as headers (as W3C propagators do, a malformed one is ignored, never a
//! reason to refuse a business event).

use serde::Deserialize;

use crate::event::Event;

/// `messaging.system` of the bus's spans (OpenTelemetry messaging conventions allow a custom one).
pub const MESSAGING_SYSTEM: &str = "situs-event-bus";

/// Longest `tracestate` passed on (the W3C limit is 32 members; 512 bytes is what propagators
/// must at least keep).
const TRACESTATE_MAX: usize = 512;

/// A valid `traceparent`, and `tracestate` when valid too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace id>-<parent id>-<flags>`
    pub traceparent: String,
    /// Vendor-specific trace data, passed on as it is.
    pub tracestate: Option<String>,
}

/// Owned: a value with JSON escapes in it cannot be borrowed from the text.
#[derive(Deserialize)]
struct Carrier {
    traceparent: Option<serde_json::Value>,
    tracestate: Option<serde_json::Value>,
}

impl TraceContext {
    /// The trace context in `event`'s metadata, if it has a valid one.
    pub fn of(event: &Event) -> Option<TraceContext> {
        let metadata = event.metadata.as_deref()?;
        let carrier: Carrier = serde_json::from_str(metadata.get()).ok()?;
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let traceparent = text(carrier.traceparent).filter(|t| valid_traceparent(t))?;
        Some(TraceContext {
            traceparent,
            tracestate: text(carrier.tracestate).filter(|s| valid_tracestate(s)),
        })
    }
}

/// Names `span` `{operation} {destination}` for OTLP export and parents it on the trace context
/// `event` carries; nothing unless the addon has the `otlp` feature and spans are exported.
#[inline]
pub(crate) fn export_as(
    span: &tracing::Span,
    operation: &str,
    destination: &str,
    event: Option<&Event>,
) {
    #[cfg(feature = "otlp")]
    crate::otlp::export_as(span, operation, destination, event);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, operation, destination, event);
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero (version 00; later
/// versions may append fields, which are kept).
pub fn valid_traceparent(value: &str) -> bool {
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() < 4 {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
    let shaped = version.len() == 2
        && trace_id.len() == 32
        && parent_id.len() == 16
        && flags.len() == 2
        && [version, trace_id, parent_id, flags]
            .iter()
            .all(|p| lower_hex(p));
    shaped
        && version != "ff"
        && (version != "00" || parts.len() == 4)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0')
}

/// Printable ASCII within the size a propagator keeps.
fn valid_tracestate(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= TRACESTATE_MAX
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparents_are_checked_as_w3c_says() {
        assert!(valid_traceparent(VALID));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!valid_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(&format!("{VALID}-extra")));
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        assert!(!valid_traceparent("not a traceparent"));
    }

    #[test]
    fn the_context_comes_from_metadata_and_bad_values_are_left_out() {
        let event = |metadata: &str| {
            Event::from_json(&format!(
                r#"{{"type":"a.b","payload":{{}},"metadata":{metadata}}}"#
            ))
            .expect("event")
        };
        let found = TraceContext::of(&event(&format!(
            r#"{{"traceparent":"{VALID}","tracestate":"vendor=1"}}"#
        )));
        assert_eq!(
            found,
            Some(TraceContext {
                traceparent: VALID.into(),
                tracestate: Some("vendor=1".into())
            })
        );
        let bad_state = TraceContext::of(&event(&format!(
            r#"{{"traceparent":"{VALID}","tracestate":"a\nb"}}"#
        )));
        assert_eq!(bad_state.expect("kept").tracestate, None);
        assert_eq!(TraceContext::of(&event(r#"{"traceparent":"nope"}"#)), None);
        assert_eq!(TraceContext::of(&event(r#"{"other":1}"#)), None);
    }
}
