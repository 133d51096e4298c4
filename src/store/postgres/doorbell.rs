//! The doorbell: NOTIFY payloads on the schema's channel say "commits to read" or "a group
//! changed", and one LISTEN connection per store turns them into wake-ups.

use std::time::Duration;

use sqlx::postgres::PgPool;

use super::PostgresStore;
use crate::store::db_error;
use crate::store::group_bell::GroupBell;

/// Starts a group ring's NOTIFY payload (`group:<token>:<group>`); any other payload is a commit.
const GROUP_RING: &str = "group:";

/// What a doorbell payload asks for.
#[derive(Debug, PartialEq)]
enum Ring<'a> {
    /// Commits to read (another instance's, or SQL-side publishes).
    Commit,
    /// A member of this group joined, gave partitions back or left.
    Group(&'a str),
    /// Sent by this store itself: already handled locally.
    Own,
}

fn parse_ring<'a>(payload: &'a str, token: &str) -> Ring<'a> {
    if payload == token {
        return Ring::Own;
    }
    match payload
        .strip_prefix(GROUP_RING)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((from, _)) if from == token => Ring::Own,
        Some((_, group)) => Ring::Group(group),
        None => Ring::Commit,
    }
}

/// One LISTEN connection: wakes the tailer for every other instance's commit, and once after each
/// reconnect (notifications sent meanwhile are lost; the log is not); rings this instance's group
/// members for other instances' group rings (a lost one waits for the next lease renewal).
async fn listen(
    pool: &PgPool,
    channel: &str,
    token: &str,
    bell: &GroupBell,
    wake: &(dyn Fn() + Send + Sync),
    down: &ListenerDown,
) -> std::result::Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    set_down(down, false);
    wake();
    loop {
        match listener.try_recv().await? {
            Some(notification) => match parse_ring(notification.payload(), token) {
                Ring::Own => {}
                Ring::Commit => wake(),
                Ring::Group(group) => bell.ring(group, None),
            },
            // The connection dropped and was re-established (eagerly, by PgListener): catch up.
            None => {
                set_down(down, false);
                wake();
            }
        }
    }
}

/// Since when the LISTEN connection has been down.
type ListenerDown = std::sync::Mutex<Option<std::time::Instant>>;

/// Marks the connection up, or down from now unless it was down already.
fn set_down(state: &ListenerDown, is_down: bool) {
    let mut since = state.lock().unwrap_or_else(|p| p.into_inner());
    match (is_down, *since) {
        (false, _) => *since = None,
        (true, None) => *since = Some(std::time::Instant::now()),
        (true, Some(_)) => {}
    }
}

impl PostgresStore {
    /// The NOTIFY payload of a group ring from this store.
    pub(super) fn group_ring_payload(&self, group: &str) -> String {
        format!("{GROUP_RING}{}:{group}", self.token)
    }

    pub(super) fn spawn_doorbell(
        &self,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let channel = self.channel.clone();
        let token = self.token.clone();
        let bell = self.bell.clone();
        let down = self.listener_down.clone();
        tokio::spawn(async move {
            loop {
                match listen(&pool, &channel, &token, &bell, &*wake, &down).await {
                    Ok(()) => return,
                    Err(e) => {
                        set_down(&down, true);
                        tracing::warn!(error = %db_error::describe(&e), "event doorbell (LISTEN) lost; reconnecting");
                        wake();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_payloads_are_commits_group_rings_or_our_own() {
        let token = "abc";
        assert_eq!(parse_ring("abc", token), Ring::Own);
        assert_eq!(parse_ring("sql", token), Ring::Commit);
        assert_eq!(parse_ring("def", token), Ring::Commit);
        assert_eq!(
            parse_ring("group:def:billing", token),
            Ring::Group("billing")
        );
        assert_eq!(parse_ring("group:def:a:b", token), Ring::Group("a:b"));
        assert_eq!(parse_ring("group:abc:billing", token), Ring::Own);
    }
}
