//! Embedded migrations, applied on open with sqlx's migrator.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Acquire, Database, SqlSafeStr};

use crate::error::{EventBusError, Result};

pub enum Backend {
    Postgres,
    Sqlite,
}

fn migrations(backend: Backend) -> Vec<Migration> {
    let files: &[(i64, &str, &'static str)] = match backend {
        Backend::Postgres => &[
            (
                1,
                "events",
                include_str!("../../migrations/postgres/0001_events.sql"),
            ),
            (
                2,
                "publish_function",
                include_str!("../../migrations/postgres/0002_publish_function.sql"),
            ),
            (
                3,
                "consumer groups",
                include_str!("../../migrations/postgres/0003_consumer_groups.sql"),
            ),
            (
                4,
                "webhooks",
                include_str!("../../migrations/postgres/0004_webhooks.sql"),
            ),
            (
                5,
                "webhook outbox on demand",
                include_str!("../../migrations/postgres/0005_webhook_outbox_on_demand.sql"),
            ),
            (
                6,
                "append function",
                include_str!("../../migrations/postgres/0006_append_function.sql"),
            ),
            (
                7,
                "outbox depth index",
                include_str!("../../migrations/postgres/0007_outbox_depth_index.sql"),
            ),
        ],
        // Each backend numbers its migrations on its own: SQLite has no stored functions, so the
        // SQL-side publish (PostgreSQL migration 2) has no SQLite counterpart.
        Backend::Sqlite => &[
            (
                1,
                "events",
                include_str!("../../migrations/sqlite/0001_events.sql"),
            ),
            (
                2,
                "consumer groups",
                include_str!("../../migrations/sqlite/0002_consumer_groups.sql"),
            ),
            (
                3,
                "webhooks",
                include_str!("../../migrations/sqlite/0003_webhooks.sql"),
            ),
            (
                4,
                "outbox depth index",
                include_str!("../../migrations/sqlite/0004_outbox_depth_index.sql"),
            ),
        ],
    };
    files
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect()
}

/// Applies missing migrations. PostgreSQL serialises concurrent openers with the migrator's
/// advisory lock; SQLite has none, so a process that lost the race retries and finds the work done.
pub async fn run<'a, A>(backend: Backend, connection: A) -> Result<()>
where
    A: Acquire<'a> + Copy,
    <A::Connection as std::ops::Deref>::Target: Migrate,
    A::Database: Database,
{
    let retries = match backend {
        Backend::Postgres => 0,
        Backend::Sqlite => 10,
    };
    let migrator = Migrator::with_migrations(migrations(backend));
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let mut attempt = 0;
    loop {
        match migrator.run(connection).await {
            Ok(()) => return Ok(()),
            Err(MigrateError::VersionMissing(version)) => {
                return Err(EventBusError::InvalidConfig(format!(
                    "the database schema is at migration {version}, newer than this version of \
                     @situs/event-bus knows (up to {latest}); upgrade the package"
                )))
            }
            Err(e) if attempt < retries => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(MigrateError::Execute(e)) => {
                return Err(super::unavailable("applying migrations", e))
            }
            Err(e) => {
                return Err(EventBusError::InvalidConfig(format!(
                    "cannot migrate the store: {e}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL publish function must take the very lock the Rust appender takes.
    #[test]
    fn the_publish_function_takes_the_append_lock() {
        let sql = migrations(Backend::Postgres)
            .into_iter()
            .find(|m| m.version == 2)
            .expect("migration 2")
            .sql;
        let call = format!(
            "pg_advisory_xact_lock({})",
            crate::store::postgres::APPEND_LOCK
        );
        assert!(sql.as_ref().contains(&call), "{call} not in migration 2");
    }

    /// The bus's append function takes the lock it is passed (APPEND_LOCK) before inserting.
    #[test]
    fn the_append_function_locks_before_it_inserts() {
        let sql = migrations(Backend::Postgres)
            .into_iter()
            .find(|m| m.version == 6)
            .expect("migration 6")
            .sql;
        let sql = sql.as_ref();
        let lock = sql.find("pg_advisory_xact_lock(p_lock)");
        let insert = sql.find("INSERT INTO event_bus_events");
        assert!(matches!((lock, insert), (Some(l), Some(i)) if l < i));
    }
}
