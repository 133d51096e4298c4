//! Built-in tenant rules: `security.requireTenant`, and tenant-scoped handles that stamp their
//! tenant on what they publish and only ever see their own tenant.

use async_trait::async_trait;

use super::{Middleware, Scope};
use crate::config::SecurityConfig;
use crate::error::{EventBusError, Result};
use crate::event::Event;

pub struct Security {
    require_tenant: bool,
}

impl Security {
    pub fn new(config: &SecurityConfig) -> Security {
        Security {
            require_tenant: config.require_tenant,
        }
    }
}

/// A tenant id for a scoped handle follows the rules of an event's tenantId.
pub fn check_scope_tenant(tenant: &str) -> Result<()> {
    super::validation::check_id(Some(tenant), "tenantId")
}

/// The tenant a scoped read or subscription may use: its own, whatever the caller asked for.
pub fn scoped_tenant(scope: &Scope, requested: Option<String>) -> Result<Option<String>> {
    match (&scope.tenant_id, requested) {
        (None, requested) => Ok(requested),
        (Some(own), None) => Ok(Some(own.clone())),
        (Some(own), Some(asked)) if *own == asked => Ok(Some(asked)),
        (Some(own), Some(asked)) => Err(EventBusError::Forbidden(format!(
            "tenantId {asked:?} is outside this handle's tenant {own:?}"
        ))),
    }
}

#[async_trait]
impl Middleware for Security {
    fn name(&self) -> &str {
        "security"
    }

    async fn process(&self, mut event: Event, scope: &Scope) -> Result<Event> {
        event.tenant_id = scoped_tenant(scope, event.tenant_id.take())?;
        if self.require_tenant && event.tenant_id.is_none() {
            return Err(EventBusError::Forbidden(
                "tenantId is required (security.requireTenant)".into(),
            ));
        }
        Ok(event)
    }
}
