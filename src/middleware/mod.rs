//! The publish pipeline: built-in checks first (validation, security, logging), then user
//! middleware in registration order. When user middleware ran, the built-in checks run again on
//! what it returned, so a middleware cannot smuggle an invalid or foreign-tenant event through.

pub mod logging;
pub mod security;
pub mod validation;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::config::Config;
use crate::error::Result;
use crate::event::Event;

/// Who is publishing: the whole bus, or a tenant-scoped handle (`bus.forTenant(id)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The handle's tenant: stamped on what it publishes, and the only one it may publish to or
    /// read.
    pub tenant_id: Option<String>,
}

impl Scope {
    /// The scope of `bus.forTenant(id)`.
    pub fn tenant(id: impl Into<String>) -> Scope {
        Scope {
            tenant_id: Some(id.into()),
        }
    }
}

/// A step of the publish pipeline, run on every event before it is stored.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// A short name, e.g. `validation` or `js`.
    fn name(&self) -> &str;
    /// Returns the (possibly modified) event, or an error that rejects the publish.
    async fn process(&self, event: Event, scope: &Scope) -> Result<Event>;
}

/// Names a user middleware, to remove it.
pub type MiddlewareId = u64;

pub struct MiddlewareChain {
    builtin: Vec<Arc<dyn Middleware>>,
    /// Checks re-run after user middleware (validation and security, not logging).
    recheck: Vec<Arc<dyn Middleware>>,
    user: RwLock<Vec<(MiddlewareId, Arc<dyn Middleware>)>>,
    next_id: AtomicU64,
}

impl MiddlewareChain {
    pub fn new(config: &Config) -> Result<MiddlewareChain> {
        let validation: Arc<dyn Middleware> =
            Arc::new(validation::Validation::new(&config.validation)?);
        let security: Arc<dyn Middleware> = Arc::new(security::Security::new(&config.security));
        let logging: Arc<dyn Middleware> = Arc::new(logging::Logging);
        Ok(MiddlewareChain {
            builtin: vec![validation.clone(), security.clone(), logging],
            recheck: vec![validation, security],
            user: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn add(&self, middleware: Arc<dyn Middleware>) -> MiddlewareId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.user
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, middleware));
        id
    }

    /// Removes a user middleware; false when it was already gone.
    pub fn remove(&self, id: MiddlewareId) -> bool {
        let mut user = self.user.write().unwrap_or_else(|p| p.into_inner());
        let before = user.len();
        user.retain(|(i, _)| *i != id);
        user.len() != before
    }

    pub async fn run(&self, mut event: Event, scope: &Scope) -> Result<Event> {
        for m in &self.builtin {
            event = m.process(event, scope).await?;
        }
        // Snapshot so registration changes never block or reorder a publish in flight.
        let user: Vec<_> = self
            .user
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, m)| m.clone())
            .collect();
        if user.is_empty() {
            return Ok(event);
        }
        for m in &user {
            event = m.process(event, scope).await?;
        }
        for m in &self.recheck {
            event = m.process(event, scope).await?;
        }
        Ok(event)
    }
}
