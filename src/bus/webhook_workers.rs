//! The bus's webhook workers: started at open (unless `webhook.workers` is false); an endpoint
//! they disable is announced on the bus itself.

use std::sync::Arc;

use tracing::info_span;

use super::EventBus;
use crate::error::Result;
use crate::event::Event;
use crate::middleware::Scope;
use crate::transport::webhook::dispatcher;

impl EventBus {
    /// Starts the webhook workers; an endpoint they disable is announced on the bus as a
    /// `webhook.endpoint_disabled` event.
    pub(super) fn start_webhook_workers(&self) -> Result<()> {
        let inner = &self.inner;
        let weak = Arc::downgrade(inner);
        let on_disabled: dispatcher::OnDisabled = Arc::new(move |disabled| {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let bus = EventBus { inner };
            let runtime = bus.inner.runtime.clone();
            runtime.spawn(async move {
                let endpoint = bus.inner.webhooks.get(disabled.endpoint_id).await.ok();
                let event = serde_json::json!({
                    "type": "webhook.endpoint_disabled",
                    "payload": {
                        "endpointId": disabled.endpoint_id,
                        "url": endpoint.as_ref().map(|e| e.url.clone()),
                        "reason": disabled.reason,
                    },
                    "tenantId": endpoint.as_ref().and_then(|e| e.tenant_id.clone()),
                    "projectId": endpoint.as_ref().and_then(|e| e.project_id.clone()),
                });
                let published = match Event::from_json(&event.to_string()) {
                    Ok(e) => bus.publish(e, &Scope::default()).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = published {
                    tracing::warn!(error = %e, "publishing webhook.endpoint_disabled failed");
                }
            });
        });
        let workers = dispatcher::spawn(
            inner.store.clone(),
            inner.config.webhook.clone(),
            inner.metrics.clone(),
            inner.webhooks.endpoints_hint(),
            on_disabled,
            self.child_span(info_span!(parent: &inner.span, "webhooks")),
        )?;
        inner.router.observe(workers.waker());
        let _ = inner.webhook_workers.set(workers);
        Ok(())
    }
}
