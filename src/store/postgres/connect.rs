//! The first connection of `open`: fail at once when retrying cannot help, retry a busy server.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;
use tokio::time::Instant;

use crate::error::{EventBusError, Result};
use crate::store::db_error::{self, ConnectFailure};

/// `host:port` (or the socket directory) of the server, for messages; never the password.
pub(super) fn address(connect: &PgConnectOptions) -> String {
    format!("{}:{}", connect.get_host(), connect.get_port())
}

/// Opens a connection at `open`, failing at once with the cause when retrying cannot help (refused,
/// unknown host, missing role or database, bad password) and retrying a busy server ("starting
/// up", "too many clients") until `timeout`.
pub(super) async fn first_connection(
    connect: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection> {
    let deadline = Instant::now() + timeout;
    let at = address(connect);
    loop {
        let cause = match tokio::time::timeout_at(deadline, connect.connect()).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(EventBusError::StoreUnavailable(format!(
                    "cannot connect to PostgreSQL at {at}: no answer within store.acquireTimeoutMs ({} ms)",
                    timeout.as_millis()
                )))
            }
        };
        let message = format!(
            "cannot connect to PostgreSQL at {at}: {}",
            db_error::describe(&cause)
        );
        match db_error::connect_failure(&cause) {
            ConnectFailure::Config => return Err(EventBusError::InvalidConfig(message)),
            ConnectFailure::Busy if Instant::now() + RETRY_BUSY < deadline => {
                tracing::debug!(address = %at, error = %db_error::describe(&cause), "PostgreSQL is busy; retrying");
                tokio::time::sleep(RETRY_BUSY).await;
            }
            _ => return Err(EventBusError::StoreUnavailable(message)),
        }
    }
}

/// Pause between attempts while the server says it cannot take a connection yet.
const RETRY_BUSY: Duration = Duration::from_millis(200);
