//! Database failures as people read them: the cause named the way `pg` and psql name it
//! ("connection refused", `role "x" does not exist`), without server internals (PostgreSQL's
//! source line, file names) or Rust syntax. Nothing here sees the connection URL, so no message
//! can carry its password.

use std::io::ErrorKind;

/// What kind of failure a connection attempt met, which decides how `open` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    /// The URL names something the server refuses: a missing role or database, a wrong password,
    /// no permission. Retrying cannot help: `INVALID_CONFIG`.
    Config,
    /// The server said "not now" (starting up, too many clients): worth retrying for a while.
    Busy,
    /// Nobody answered usefully (refused, unknown host, unreachable, TLS): `STORE_UNAVAILABLE`.
    Unreachable,
}

/// The cause of `err` in a few words, for messages and log fields.
pub(crate) fn describe(err: &sqlx::Error) -> String {
    match err {
        // The server's own primary message; its Display would append " at line N" of the
        // server's C source.
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => describe_io(io),
        sqlx::Error::Tls(e) => format!("TLS failed: {e}"),
        sqlx::Error::Protocol(text) => format!("protocol error: {text}"),
        sqlx::Error::PoolTimedOut => {
            "no connection became free within store.acquireTimeoutMs".to_string()
        }
        other => other.to_string(),
    }
}

fn describe_io(io: &std::io::Error) -> String {
    let text = match io.kind() {
        ErrorKind::ConnectionRefused => return "connection refused".into(),
        ErrorKind::ConnectionReset => return "connection reset by the server".into(),
        ErrorKind::ConnectionAborted => return "connection aborted".into(),
        ErrorKind::TimedOut => return "timed out".into(),
        ErrorKind::HostUnreachable => return "host unreachable".into(),
        ErrorKind::NetworkUnreachable => return "network unreachable".into(),
        ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe => {
            return "the server closed the connection".into()
        }
        _ => io.to_string(),
    };
    if text.contains("failed to lookup address") {
        return "host not found".into();
    }
    // "… (os error 111)" is the OS's number for what the text already says.
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// How `open` should treat `err` from a connection attempt.
pub(crate) fn connect_failure(err: &sqlx::Error) -> ConnectFailure {
    let sqlx::Error::Database(db) = err else {
        return ConnectFailure::Unreachable;
    };
    match db.code().as_deref() {
        // invalid_authorization_specification (no such role, no pg_hba entry),
        // invalid_password, invalid_catalog_name (no such database), insufficient_privilege.
        Some("28000" | "28P01" | "3D000" | "42501") => ConnectFailure::Config,
        // cannot_connect_now (starting up, shutting down), too_many_connections.
        Some("57P03" | "53300") => ConnectFailure::Busy,
        _ => ConnectFailure::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_causes_read_like_pg_reports_them() {
        let io = |kind: ErrorKind| sqlx::Error::Io(std::io::Error::from(kind));
        assert_eq!(
            describe(&io(ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(describe(&io(ErrorKind::TimedOut)), "timed out");
        let dns = sqlx::Error::Io(std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        ));
        assert_eq!(describe(&dns), "host not found");
        let os = sqlx::Error::Io(std::io::Error::other("Permission denied (os error 13)"));
        assert_eq!(describe(&os), "Permission denied");
        assert_eq!(
            connect_failure(&io(ErrorKind::ConnectionRefused)),
            ConnectFailure::Unreachable
        );
    }
}
