//! Consumer-group state in memory, for the memory store (one process): the same contract as the
//! durable backends' tables, under one lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use crate::error::Result;
use crate::event::SharedEvent;
use crate::store::group_bell::GroupBell;
use crate::store::groups::{plan_claim, DeadLetter, DeadLetterStatus, GroupStore, Lease};

/// Group state in memory, for the memory store (one process).
#[derive(Default)]
pub struct MemoryGroups {
    state: Mutex<GroupsState>,
    bell: GroupBell,
}

#[derive(Default)]
struct GroupsState {
    partitions: HashMap<String, Vec<MemoryPartition>>,
    members: HashMap<String, HashMap<String, std::time::Instant>>,
    dead: Vec<(DeadLetter, Option<(String, std::time::Instant)>)>,
}

struct MemoryPartition {
    checkpoint: u64,
    owner: Option<(String, std::time::Instant)>,
}

impl MemoryGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn held_by(owner: &Option<(String, std::time::Instant)>, member: &str) -> bool {
    matches!(owner, Some((m, until)) if m == member && *until > std::time::Instant::now())
}

fn free(owner: &Option<(String, std::time::Instant)>) -> bool {
    owner
        .as_ref()
        .is_none_or(|(_, until)| *until <= std::time::Instant::now())
}

#[async_trait]
impl GroupStore for MemoryGroups {
    async fn lowest_checkpoints(&self) -> Result<Vec<(String, u64)>> {
        let state = self.lock();
        let mut lowest: Vec<(String, u64)> = state
            .partitions
            .iter()
            .filter_map(|(group, parts)| {
                let low = parts.iter().map(|p| p.checkpoint).min()?;
                Some((group.clone(), low))
            })
            .collect();
        lowest.sort();
        Ok(lowest)
    }

    async fn ensure_group(&self, group: &str, partitions: u32, start: u64) -> Result<u32> {
        let mut state = self.lock();
        let parts = state
            .partitions
            .entry(group.to_string())
            .or_insert_with(|| {
                (0..partitions)
                    .map(|_| MemoryPartition {
                        checkpoint: start,
                        owner: None,
                    })
                    .collect()
            });
        Ok(parts.len() as u32)
    }

    async fn claim(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
        keep: &[u32],
    ) -> Result<Vec<Lease>> {
        let now = std::time::Instant::now();
        let mut state = self.lock();
        let members = state.members.entry(group.to_string()).or_default();
        members.insert(member.to_string(), now + lease);
        members.retain(|_, until| *until > now);
        let live = members.len() as u32;
        let Some(parts) = state.partitions.get_mut(group) else {
            return Ok(Vec::new());
        };
        let held = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| held_by(&p.owner, member))
            .map(|(i, p)| Lease {
                partition: i as u32,
                checkpoint: p.checkpoint,
            })
            .collect();
        let plan = plan_claim(held, parts.len() as u32, live, keep);
        let owner = Some((member.to_string(), now + lease));
        for l in &plan.kept {
            if let Some(p) = parts.get_mut(l.partition as usize) {
                p.owner = owner.clone();
            }
        }
        for &i in &plan.give_back {
            if let Some(p) = parts.get_mut(i as usize) {
                p.owner = None;
            }
        }
        let taken = parts
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| free(&p.owner))
            .take(plan.take)
            .map(|(i, p)| {
                p.owner = owner.clone();
                Lease {
                    partition: i as u32,
                    checkpoint: p.checkpoint,
                }
            })
            .collect();
        Ok(plan.held(taken))
    }

    async fn commit(&self, group: &str, member: &str, checkpoints: &[Lease]) -> Result<Vec<u32>> {
        let mut state = self.lock();
        let mut lost = Vec::new();
        let Some(parts) = state.partitions.get_mut(group) else {
            return Ok(checkpoints.iter().map(|l| l.partition).collect());
        };
        for lease in checkpoints {
            match parts.get_mut(lease.partition as usize) {
                Some(p) if held_by(&p.owner, member) => {
                    p.checkpoint = p.checkpoint.max(lease.checkpoint)
                }
                _ => lost.push(lease.partition),
            }
        }
        Ok(lost)
    }

    async fn leave(&self, group: &str, member: &str) -> Result<()> {
        let mut state = self.lock();
        if let Some(members) = state.members.get_mut(group) {
            members.remove(member);
        }
        if let Some(parts) = state.partitions.get_mut(group) {
            for p in parts.iter_mut() {
                if matches!(&p.owner, Some((m, _)) if m == member) {
                    p.owner = None;
                }
            }
        }
        Ok(())
    }

    fn bell(&self) -> &GroupBell {
        &self.bell
    }

    async fn add_dead_letter(
        &self,
        group: &str,
        event: &SharedEvent,
        attempts: u32,
        error: &str,
    ) -> Result<u64> {
        let mut state = self.lock();
        let id = state.dead.len() as u64 + 1;
        let now = Utc::now();
        state.dead.push((
            DeadLetter {
                id,
                group: group.to_string(),
                position: event.position,
                event_json: event.json().to_string(),
                attempts,
                error: error.to_string(),
                status: DeadLetterStatus::Dead,
                created_at: now,
                updated_at: now,
            },
            None,
        ));
        Ok(id)
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        status: Option<DeadLetterStatus>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let state = self.lock();
        Ok(state
            .dead
            .iter()
            .rev()
            .map(|(d, _)| d)
            .filter(|d| group.is_none_or(|g| d.group == g))
            .filter(|d| status.is_none_or(|s| d.status == s))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn retry_dead_letter(&self, id: u64) -> Result<bool> {
        let mut state = self.lock();
        match state.dead.iter_mut().find(|(d, _)| d.id == id) {
            Some((d, claim)) => {
                if d.status != DeadLetterStatus::Resolved {
                    d.status = DeadLetterStatus::Retrying;
                    d.updated_at = Utc::now();
                    *claim = None;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn claim_retries(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
    ) -> Result<Vec<DeadLetter>> {
        let now = std::time::Instant::now();
        let mut state = self.lock();
        Ok(state
            .dead
            .iter_mut()
            .filter(|(d, claim)| {
                d.group == group && d.status == DeadLetterStatus::Retrying && free(claim)
            })
            .map(|(d, claim)| {
                *claim = Some((member.to_string(), now + lease));
                d.clone()
            })
            .collect())
    }

    async fn settle_retry(
        &self,
        id: u64,
        delivered: bool,
        attempts: u32,
        error: &str,
    ) -> Result<()> {
        let mut state = self.lock();
        if let Some((d, claim)) = state.dead.iter_mut().find(|(d, _)| d.id == id) {
            *claim = None;
            d.updated_at = Utc::now();
            d.attempts += attempts;
            if delivered {
                d.status = DeadLetterStatus::Resolved;
            } else {
                d.status = DeadLetterStatus::Dead;
                d.error = error.to_string();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn members_split_partitions_and_take_over_expired_ones() {
        let g = MemoryGroups::default();
        assert_eq!(g.ensure_group("g", 4, 7).await.unwrap(), 4);
        // A second creator with another count gets the first one's.
        assert_eq!(g.ensure_group("g", 9, 0).await.unwrap(), 4);
        let lease = Duration::from_millis(200);
        let a = g.claim("g", "a", lease, &[]).await.unwrap();
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|l| l.checkpoint == 7));
        // b joins: nothing free yet; a gives back half on its next claim; b takes it.
        assert!(g.claim("g", "b", lease, &[]).await.unwrap().is_empty());
        assert_eq!(g.claim("g", "a", lease, &[]).await.unwrap().len(), 2);
        let b = g.claim("g", "b", lease, &[]).await.unwrap();
        assert_eq!(b.len(), 2);
        // Commits by a non-owner are refused; by the owner they advance, never backwards.
        let p = b[0].partition;
        let stolen = Lease {
            partition: p,
            checkpoint: 50,
        };
        assert_eq!(g.commit("g", "a", &[stolen]).await.unwrap(), vec![p]);
        assert!(g.commit("g", "b", &[stolen]).await.unwrap().is_empty());
        let back = Lease {
            partition: p,
            checkpoint: 10,
        };
        g.commit("g", "b", &[back]).await.unwrap();
        // b stops renewing: after its lease a takes everything, with b's checkpoint.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let a = g.claim("g", "a", lease, &[]).await.unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(
            a.iter().find(|l| l.partition == p).map(|l| l.checkpoint),
            Some(50)
        );
    }

    #[tokio::test]
    async fn partitions_to_keep_are_the_last_given_back() {
        let g = MemoryGroups::default();
        g.ensure_group("g", 4, 0).await.unwrap();
        let lease = Duration::from_secs(10);
        assert_eq!(g.claim("g", "a", lease, &[]).await.unwrap().len(), 4);
        g.claim("g", "b", lease, &[]).await.unwrap();
        // a is retrying an event of partition 3: it keeps 3 and gives back 1 and 2 instead.
        let a: Vec<u32> = g
            .claim("g", "a", lease, &[3])
            .await
            .unwrap()
            .iter()
            .map(|l| l.partition)
            .collect();
        assert_eq!(a, vec![0, 3]);
    }
}
