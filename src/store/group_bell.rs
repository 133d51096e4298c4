//! The group doorbell: how the members of a consumer group hear at once that another member
//! joined, gave partitions back or left, instead of at their next lease renewal (every third of
//! `leaseMs`). A ring only makes members claim now; the claim itself decides, so a lost or
//! spurious ring costs a renewal period or one claim, never correctness.
//!
//! Rings reach the members registered on the same bell: one per store instance, or one per
//! SQLite file shared by the stores of this process. PostgreSQL also carries them to other
//! instances on the log's NOTIFY channel (see `postgres.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::Notify;

/// One member's side of the bell: a flag saying "claim now" and the member's wake-up.
pub struct Rebalance {
    due: AtomicBool,
    wake: Arc<Notify>,
}

impl Rebalance {
    /// A receiver that wakes the member through `wake` (the same one commits ring).
    pub(crate) fn new(wake: Arc<Notify>) -> Arc<Rebalance> {
        Arc::new(Rebalance {
            due: AtomicBool::new(false),
            wake,
        })
    }

    /// Asks the member to claim its share now.
    pub(crate) fn ring(&self) {
        self.due.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether the member was rung since the last call (and clears it).
    pub(crate) fn take(&self) -> bool {
        self.due.swap(false, Ordering::SeqCst)
    }
}

/// The members listening for their groups' rings. Holds them weakly: a member that ended is
/// dropped from the bell on the next ring.
#[derive(Default)]
pub struct GroupBell {
    groups: Mutex<HashMap<String, Vec<Weak<Rebalance>>>>,
}

impl GroupBell {
    /// Registers `member` for rings of `group`.
    pub(crate) fn listen(&self, group: &str, member: &Arc<Rebalance>) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let members = groups.entry(group.to_string()).or_default();
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(member));
    }

    /// Rings every live member of `group` but `except` (the ringer itself).
    pub(crate) fn ring(&self, group: &str, except: Option<&Arc<Rebalance>>) {
        let live: Vec<Arc<Rebalance>> = {
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let Some(members) = groups.get_mut(group) else {
                return;
            };
            members.retain(|m| m.strong_count() > 0);
            if members.is_empty() {
                groups.remove(group);
                return;
            }
            members.iter().filter_map(Weak::upgrade).collect()
        };
        for member in live {
            if !except.is_some_and(|e| Arc::ptr_eq(e, &member)) {
                member.ring();
            }
        }
    }
}

/// The bell shared by every store of this process opened on `key` (a database file), so that
/// members of two buses on one SQLite file hear each other.
pub(crate) fn shared(key: &str) -> Arc<GroupBell> {
    static BELLS: OnceLock<Mutex<HashMap<String, Weak<GroupBell>>>> = OnceLock::new();
    let mut bells = BELLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    bells.retain(|_, bell| bell.strong_count() > 0);
    if let Some(bell) = bells.get(key).and_then(Weak::upgrade) {
        return bell;
    }
    let bell = Arc::new(GroupBell::default());
    bells.insert(key.to_string(), Arc::downgrade(&bell));
    bell
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_the_other_members_of_the_group_only() {
        let bell = GroupBell::default();
        let (a, b, other) = (
            Rebalance::new(Arc::default()),
            Rebalance::new(Arc::default()),
            Rebalance::new(Arc::default()),
        );
        bell.listen("g", &a);
        bell.listen("g", &b);
        bell.listen("h", &other);
        bell.ring("g", Some(&a));
        assert!(!a.take(), "the ringer is not rung");
        assert!(b.take());
        assert!(!b.take(), "taken once");
        assert!(!other.take(), "another group is not rung");
        drop(b);
        bell.ring("g", None);
        assert!(a.take());
    }

    #[test]
    fn stores_on_one_key_share_a_bell() {
        let one = shared("file-a");
        assert!(Arc::ptr_eq(&one, &shared("file-a")));
        assert!(!Arc::ptr_eq(&one, &shared("file-b")));
    }
}
