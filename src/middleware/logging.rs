//! Built-in logging: one debug record per accepted publish, inside the publish span.

use async_trait::async_trait;
use tracing::debug;

use super::{Middleware, Scope};
use crate::error::Result;
use crate::event::Event;

pub struct Logging;

#[async_trait]
impl Middleware for Logging {
    fn name(&self) -> &str {
        "logging"
    }

    async fn process(&self, event: Event, _scope: &Scope) -> Result<Event> {
        debug!(
            event_type = %event.event_type,
            event_id = %event.id,
            project_id = event.project_id.as_deref(),
            tenant_id = event.tenant_id.as_deref(),
            "publishing event"
        );
        Ok(event)
    }
}
