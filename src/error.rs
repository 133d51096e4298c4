//! Errors as values with stable codes. The JS wrapper turns them into `EventBusError`.

use thiserror::Error;

/// Every failure the bus reports. The message always names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventBusError {
    /// An event, or a query's or call's argument, is malformed or breaks a rule.
    #[error("{0}")]
    InvalidEvent(String),
    /// A payload or metadata over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A middleware (or an SSE authorizer) refused or failed.
    #[error("{0}")]
    Rejected(String),
    /// Outside the caller's tenant.
    #[error("{0}")]
    Forbidden(String),
    /// An id already stored with other content.
    #[error("{0}")]
    DuplicateEvent(String),
    /// The store failed or cannot be reached; retrying later may help.
    #[error("{0}")]
    StoreUnavailable(String),
    /// The bus is closing or closed.
    #[error("{0}")]
    Closed(String),
    /// Options or setup the bus cannot work with (a bad option or schema, a store URL the server
    /// refuses, an address it cannot listen on); retrying cannot help.
    #[error("{0}")]
    InvalidConfig(String),
    /// What an id names does not exist (a webhook endpoint or delivery, a dead letter).
    #[error("{0}")]
    NotFound(String),
}

/// Results of the bus's operations.
pub type Result<T, E = EventBusError> = std::result::Result<T, E>;

impl EventBusError {
    /// The stable code, identical to the `code` of the JS `EventBusError`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "INVALID_EVENT",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::Rejected(_) => "REJECTED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::DuplicateEvent(_) => "DUPLICATE_EVENT",
            Self::StoreUnavailable(_) => "STORE_UNAVAILABLE",
            Self::Closed(_) => "CLOSED",
            Self::InvalidConfig(_) => "INVALID_CONFIG",
            Self::NotFound(_) => "NOT_FOUND",
        }
    }

    /// The error every operation on a closed bus returns.
    pub(crate) fn closed() -> Self {
        Self::Closed("event bus is closed".into())
    }

    /// Prefixes the message with a location, e.g. `events[3]`, keeping the code.
    pub(crate) fn at(self, location: &str) -> Self {
        // Field messages start with the field path, so the location joins it with a dot.
        let field = |m: String| format!("{location}.{m}");
        let other = |m: String| format!("{location}: {m}");
        match self {
            Self::InvalidEvent(m) => Self::InvalidEvent(field(m)),
            Self::PayloadTooLarge(m) => Self::PayloadTooLarge(field(m)),
            Self::Forbidden(m) => Self::Forbidden(field(m)),
            Self::Rejected(m) => Self::Rejected(other(m)),
            Self::DuplicateEvent(m) => Self::DuplicateEvent(other(m)),
            unchanged => unchanged,
        }
    }
}
