//! Errors as values with stable codes. The JS wrapper turns them into `EventBusError`.

use thiserror::Error;

/// Every failure the bus reports. The message always names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventBusError {
    #[error("{0}")]
    InvalidEvent(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    DuplicateEvent(String),
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("{0}")]
    Closed(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    NotFound(String),
}

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
