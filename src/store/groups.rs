//! Durable consumer-group state: partition checkpoints with leases, member presence and dead
//! letters. Every backend keeps it next to the log so that one database is the whole engine.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::group_bell::{GroupBell, Rebalance};
use crate::error::Result;
use crate::event::SharedEvent;

/// A partition this member holds, and the last position the group finished in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// 0 to the group's partition count − 1.
    pub partition: u32,
    /// The last position finished in it: delivery resumes after it.
    pub checkpoint: u64,
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatus {
    /// Gave up after maxAttempts; kept until retried.
    Dead,
    /// `retryDeadLetter` asked for another round; a member of the group will pick it up.
    Retrying,
    /// A retry succeeded.
    Resolved,
}

impl DeadLetterStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Dead => "dead",
            DeadLetterStatus::Retrying => "retrying",
            DeadLetterStatus::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DeadLetterStatus> {
        match s {
            "dead" => Some(DeadLetterStatus::Dead),
            "retrying" => Some(DeadLetterStatus::Retrying),
            "resolved" => Some(DeadLetterStatus::Resolved),
            _ => None,
        }
    }
}

/// An event a group gave up on, with the event as it was delivered (wire JSON).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id, for `retry_dead_letter`.
    pub id: u64,
    /// The group that gave up.
    pub group: String,
    /// The event's position in the log.
    pub position: u64,
    /// The event's wire JSON.
    pub event_json: String,
    /// Handler calls made, over every round.
    pub attempts: u32,
    /// The last failure's message.
    pub error: String,
    /// Dead, retrying or resolved.
    pub status: DeadLetterStatus,
    /// When the group first gave up.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl DeadLetter {
    /// `{ id, group, position, event, attempts, error, status, createdAt, updatedAt }`, with the
    /// event's JSON as stored.
    pub fn to_json(&self) -> String {
        let text = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        format!(
            r#"{{"id":{},"group":{},"position":{},"event":{},"attempts":{},"error":{},"status":"{}","createdAt":{},"updatedAt":{}}}"#,
            self.id,
            text(&self.group),
            self.position,
            self.event_json,
            self.attempts,
            text(&self.error),
            self.status.as_str(),
            text(&crate::event::format_timestamp(&self.created_at)),
            text(&crate::event::format_timestamp(&self.updated_at)),
        )
    }
}

/// Fair share of `partitions` among `members` live members (at least one partition each while
/// there are enough).
pub(crate) fn fair_share(partitions: u32, members: u32) -> u32 {
    partitions.div_ceil(members.max(1))
}

/// What one claim does with a member's partitions: the rule of [`GroupStore::claim`], decided
/// once here so every backend only reads and writes around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPlan {
    /// Held partitions to renew (at most the fair share), by partition.
    pub kept: Vec<Lease>,
    /// Held partitions to give back, beyond the fair share, by partition.
    pub give_back: Vec<u32>,
    /// How many free or expired partitions to take, lowest first. Zero whenever `give_back` is
    /// not empty, so a backend never takes back what it has just given back.
    pub take: usize,
}

impl ClaimPlan {
    /// What the member holds once the claim is written: what it kept plus `taken` (what it took),
    /// by partition.
    pub(crate) fn held(self, taken: Vec<Lease>) -> Vec<Lease> {
        let mut held = self.kept;
        held.extend(taken);
        held.sort_by_key(|l| l.partition);
        held
    }
}

/// Decides a claim by a member holding `held` (its unexpired leases) in a group of `partitions`
/// partitions with `live_members` live members, itself included: it keeps up to its
/// [`fair_share`] and gives back the rest, the highest partitions first and those in `keep` last
/// (a retry is under way in them: handing one over mid-retry would let two members handle the
/// event), then takes what it still lacks.
pub(crate) fn plan_claim(
    mut held: Vec<Lease>,
    partitions: u32,
    live_members: u32,
    keep: &[u32],
) -> ClaimPlan {
    let share = fair_share(partitions, live_members) as usize;
    held.sort_by_key(|l| (!keep.contains(&l.partition), l.partition));
    let mut give_back: Vec<u32> = held
        .split_off(share.min(held.len()))
        .iter()
        .map(|l| l.partition)
        .collect();
    give_back.sort_unstable();
    held.sort_by_key(|l| l.partition);
    // split_off left at most `share`.
    let take = share - held.len();
    ClaimPlan {
        kept: held,
        give_back,
        take,
    }
}

/// A store's consumer-group state (`Store::groups`): what members of any instance share.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates the group's `partitions` partitions with checkpoint `start` unless the group
    /// exists; returns the partition count the group actually has (the first creator's).
    async fn ensure_group(&self, group: &str, partitions: u32, start: u64) -> Result<u32>;

    /// Marks `member` alive for `lease`, renews its partition leases, gives back what exceeds its
    /// fair share and takes free or expired partitions up to it. Returns what it holds now.
    /// Partitions in `keep` are the last given back (a retry is under way in them: handing one
    /// over mid-retry would let two members handle the event).
    async fn claim(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
        keep: &[u32],
    ) -> Result<Vec<Lease>>;

    /// Advances checkpoints of partitions `member` still holds (never backwards); returns the
    /// partitions it no longer holds (taken over after its lease expired).
    async fn commit(&self, group: &str, member: &str, checkpoints: &[Lease]) -> Result<Vec<u32>>;

    /// Every group with its lowest partition checkpoint: where its slowest partition stands.
    async fn lowest_checkpoints(&self) -> Result<Vec<(String, u64)>>;

    /// Releases the member's partitions and presence so others take over at once.
    async fn leave(&self, group: &str, member: &str) -> Result<()>;

    /// The bell the members of this store's groups listen on in this process.
    fn bell(&self) -> &GroupBell;

    /// Rings the other members of `group` (a member joined, gave partitions back or left) so they
    /// claim now. Locally by default; PostgreSQL also rings the other instances.
    async fn ring(&self, group: &str, from: &Arc<Rebalance>) -> Result<()> {
        self.bell().ring(group, Some(from));
        Ok(())
    }

    /// Records that `group` gave up on `event` after `attempts` calls; returns its id.
    async fn add_dead_letter(
        &self,
        group: &str,
        event: &SharedEvent,
        attempts: u32,
        error: &str,
    ) -> Result<u64>;

    /// Newest first.
    async fn dead_letters(
        &self,
        group: Option<&str>,
        status: Option<DeadLetterStatus>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;

    /// Marks a dead letter for re-delivery; false when there is no such dead letter.
    async fn retry_dead_letter(&self, id: u64) -> Result<bool>;

    /// Takes dead letters of `group` marked for retry (or whose retrier's lease expired).
    async fn claim_retries(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
    ) -> Result<Vec<DeadLetter>>;

    /// Records the outcome of a retry: resolved, or dead again with the new attempts and error.
    async fn settle_retry(
        &self,
        id: u64,
        delivered: bool,
        attempts: u32,
        error: &str,
    ) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_rounds_up() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 16), 1);
        assert_eq!(fair_share(4, 8), 1);
        assert_eq!(fair_share(16, 0), 16);
    }

    fn leases(partitions: &[u32]) -> Vec<Lease> {
        partitions
            .iter()
            .map(|&partition| Lease {
                partition,
                checkpoint: u64::from(partition) * 10,
            })
            .collect()
    }

    #[test]
    fn a_lone_member_takes_every_partition() {
        let plan = plan_claim(Vec::new(), 4, 1, &[]);
        assert_eq!(plan.kept, Vec::new());
        assert!(plan.give_back.is_empty());
        assert_eq!(plan.take, 4);
    }

    #[test]
    fn a_member_over_its_share_gives_back_the_highest() {
        // A second member joined: the share of 4 is 2.
        let plan = plan_claim(leases(&[3, 0, 2, 1]), 4, 2, &[]);
        assert_eq!(plan.kept, leases(&[0, 1]));
        assert_eq!(plan.give_back, vec![2, 3]);
        assert_eq!(plan.take, 0);
    }

    #[test]
    fn partitions_to_keep_are_the_last_given_back() {
        let plan = plan_claim(leases(&[0, 1, 2, 3]), 4, 2, &[3]);
        assert_eq!(plan.kept, leases(&[0, 3]));
        assert_eq!(plan.give_back, vec![1, 2]);
        // More to keep than the share: still only the share is kept, the lowest of them.
        let plan = plan_claim(leases(&[0, 1, 2, 3]), 4, 4, &[2, 3]);
        assert_eq!(plan.kept, leases(&[2]));
        assert_eq!(plan.give_back, vec![0, 1, 3]);
        assert_eq!(plan.take, 0);
    }

    #[test]
    fn a_member_under_its_share_takes_up_to_it() {
        // 16 partitions among 3: a share of 6; holding 2, it takes 4 more.
        let plan = plan_claim(leases(&[5, 4]), 16, 3, &[4]);
        assert_eq!(plan.kept, leases(&[4, 5]));
        assert!(plan.give_back.is_empty());
        assert_eq!(plan.take, 4);
    }

    #[test]
    fn a_member_at_its_share_has_nothing_to_take() {
        let plan = plan_claim(leases(&[1, 3]), 4, 2, &[]);
        assert_eq!(plan.kept, leases(&[1, 3]));
        assert!(plan.give_back.is_empty());
        assert_eq!(plan.take, 0);
    }

    #[test]
    fn more_members_than_partitions_hold_one_each_at_most() {
        let plan = plan_claim(Vec::new(), 2, 5, &[]);
        assert_eq!(plan.take, 1);
        let plan = plan_claim(leases(&[0, 1]), 2, 5, &[1]);
        assert_eq!(plan.kept, leases(&[1]));
        assert_eq!(plan.give_back, vec![0]);
        assert_eq!(plan.take, 0);
    }

    #[test]
    fn a_group_without_partitions_gives_nothing() {
        let plan = plan_claim(Vec::new(), 0, 1, &[]);
        assert_eq!(plan, plan_claim(Vec::new(), 0, 3, &[7]));
        assert_eq!(plan.take, 0);
        assert!(plan.kept.is_empty() && plan.give_back.is_empty());
    }

    #[test]
    fn what_is_held_after_a_claim_is_kept_and_taken_by_partition() {
        let plan = plan_claim(leases(&[2]), 4, 1, &[]);
        assert_eq!(plan.take, 3);
        assert_eq!(plan.held(leases(&[3, 0, 1])), leases(&[0, 1, 2, 3]));
    }
}
