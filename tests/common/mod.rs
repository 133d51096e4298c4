//! Helpers shared by the integration tests: a recording sink and event builders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use situs_event_bus::{Config, Event, EventBus, HandlerFailure, SharedEvent, Sink};

pub fn event(json: &str) -> Event {
    Event::from_json(json).expect("test event parses")
}

pub fn typed(event_type: &str, payload: serde_json::Value) -> Event {
    event(&serde_json::json!({ "type": event_type, "payload": payload }).to_string())
}

pub async fn open(options: &str) -> EventBus {
    let config = Config::resolve(options, &HashMap::new()).expect("valid options");
    EventBus::open(config, None).await.expect("bus opens")
}

/// Records what it receives; fails events whose payload has `"fail": true`; optionally slow.
#[derive(Default, Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<SharedEvent>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub delay: Option<Duration>,
}

impl Recorder {
    pub fn positions(&self) -> Vec<u64> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.position)
            .collect()
    }

    pub fn types(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.event.event_type.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Polls until `n` events arrived (deliveries are asynchronous); bounded, never timed as a check.
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..2000 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Sink for Recorder {
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        self.batches.lock().expect("lock").push(events.len());
        let mut failures = Vec::new();
        for e in events {
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            self.seen.lock().expect("lock").push(e.clone());
            if e.event.payload.get().contains("\"fail\":true") {
                failures.push(HandlerFailure {
                    position: e.position,
                    message: "handler failed".into(),
                });
            }
        }
        failures
    }
}
