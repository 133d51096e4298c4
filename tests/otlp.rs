//! OTLP export (the `otlp` feature): a tiny OTLP/HTTP receiver on loopback gets the publish and
//! process spans of an event whose metadata carries a W3C traceparent, in the publisher's trace.

#![cfg(feature = "otlp")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{event, subscribe, Recorder, TestStore};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use situs_event_bus::Scope;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A span as received: name, kind, ids in hex, string attributes, and its resource's service.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    kind: i32,
    trace_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    service: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut spans = spans.lock().expect("lock");
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| text(&r.attributes).remove("service.name"));
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    name: span.name.clone(),
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: text(&span.attributes),
                    service: service.clone(),
                });
            }
        }
    }
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_in_the_publishers_trace() {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let store = TestStore::memory().await;
    let bus = store
        .open(&format!(
            r#"{{"tracing":{{"otlp":{{"endpoint":"http://{addr}","serviceName":"otlp-test"}}}}}}"#
        ))
        .await;
    let recorder = Recorder::default();
    let _subscription = subscribe(&bus, "order.*", &recorder);
    let published = bus
        .publish(
            event(&format!(
                r#"{{"type":"order.created","payload":{{"n":1}},
                    "metadata":{{"traceparent":"00-{TRACE_ID}-{PARENT_ID}-01"}}}}"#
            )),
            &Scope::default(),
        )
        .await
        .expect("publish");
    recorder.wait_for(1).await;
    assert_eq!(recorder.count(), 1);
    bus.close().await;
    server.abort();

    let spans = spans.lock().expect("lock").clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name:?} span among {spans:#?}"))
            .clone()
    };
    let id = published.event().id.to_string();
    for (span, operation, kind) in [
        (find("publish order.created"), "send", SpanKind::Producer),
        (find("process order.created"), "process", SpanKind::Consumer),
    ] {
        assert_eq!(span.trace_id, TRACE_ID, "{span:?}");
        assert_eq!(span.parent_span_id, PARENT_ID, "{span:?}");
        assert_eq!(span.kind, kind as i32, "{span:?}");
        assert_eq!(span.service.as_deref(), Some("otlp-test"));
        let attribute = |key: &str| span.attributes.get(key).map(String::as_str);
        assert_eq!(attribute("messaging.system"), Some("situs-event-bus"));
        assert_eq!(attribute("messaging.operation.type"), Some(operation));
        assert_eq!(
            attribute("messaging.destination.name"),
            Some("order.created")
        );
        assert_eq!(attribute("messaging.message.id"), Some(id.as_str()));
    }
    // The bus's long-lived task spans are not exported (they would hold every span in one trace).
    assert!(spans.iter().all(|s| s.name != "event_bus"), "{spans:#?}");
}
