//! A count of work in flight that can be awaited down to zero (publishes before close, events
//! queued for subscribers before Node may exit), and that can tell a watcher when it goes from
//! none to some and back (the napi layer holds Node open meanwhile).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Called, from any thread, when the count leaves or reaches zero. Transitions racing on two
/// threads may be reported out of order, so a watcher reads [`InFlight::get`] for the state
/// instead of trusting the call's order: the last call always sees the final count.
pub type Watcher = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    watcher: OnceLock<Watcher>,
}

impl InFlight {
    pub fn add(&self, n: usize) {
        if n > 0 && self.count.fetch_add(n, Ordering::SeqCst) == 0 {
            self.changed();
        }
    }

    pub fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.idle.notify_waiters();
            self.changed();
        }
    }

    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Sets the watcher of zero crossings; only the first call takes effect (returns false after).
    pub fn watch(&self, watcher: Watcher) -> bool {
        self.watcher.set(watcher).is_ok()
    }

    fn changed(&self) {
        if let Some(watcher) = self.watcher.get() {
            watcher();
        }
    }

    /// Resolves once the count is zero.
    pub async fn idle(&self) {
        loop {
            // Registered before the check, so a `done` in between still wakes us.
            let idle = self.idle.notified();
            if self.get() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Work a wake-up promises, counted in an [`InFlight`] from the moment the doorbell rings until
/// the woken task has caught up: a task that reads its own work (a consumer-group member) keeps
/// the count above zero across the hand-over from whoever rang it. Rings coalesce into one; once
/// closed (the task ended), rings count nothing, so none is left counted forever.
pub struct WakeHold {
    state: AtomicU8,
    count: Arc<InFlight>,
}

const IDLE: u8 = 0;
const RUNG: u8 = 1;
const CLOSED: u8 = 2;

/// One ring taken by the woken task; released (counted done) when dropped.
pub struct Held(Arc<InFlight>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

impl WakeHold {
    pub fn new(count: Arc<InFlight>) -> WakeHold {
        WakeHold {
            state: AtomicU8::new(IDLE),
            count,
        }
    }

    /// Called by the ringer before it wakes the task.
    pub fn ring(&self) {
        // Counted first, so `close` can never count it done before it is counted.
        self.count.add(1);
        if self
            .state
            .compare_exchange(IDLE, RUNG, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.count.done(1); // already rung, or closed
        }
    }

    /// Called by the task before it looks for work: the ring (if any) it now answers. A ring while
    /// it works counts again, for its next pass.
    pub fn take(&self) -> Option<Held> {
        self.state
            .compare_exchange(RUNG, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
            .then(|| Held(self.count.clone()))
    }

    /// The task has ended: a ring not taken is done, and later rings count nothing.
    pub fn close(&self) {
        if self.state.swap(CLOSED, Ordering::SeqCst) == RUNG {
            self.count.done(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_hold_counts_coalesced_rings_until_the_task_lets_go() {
        let count = Arc::new(InFlight::default());
        let hold = WakeHold::new(count.clone());
        assert!(hold.take().is_none());
        hold.ring();
        hold.ring();
        assert_eq!(count.get(), 1);
        let held = hold.take().expect("rung");
        hold.ring(); // while the task works
        assert_eq!(count.get(), 2);
        drop(held);
        assert_eq!(count.get(), 1);
        drop(hold.take());
        assert_eq!(count.get(), 0);
        hold.ring();
        hold.close();
        assert_eq!(count.get(), 0, "closing lets go of a ring not taken");
        hold.ring();
        assert_eq!(count.get(), 0, "a closed hold counts no ring");
        assert!(hold.take().is_none());
    }

    #[test]
    fn the_watcher_hears_each_zero_crossing_and_nothing_between() {
        let calls = Arc::new(AtomicUsize::new(0));
        let in_flight = InFlight::default();
        let seen = calls.clone();
        assert!(in_flight.watch(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        })));
        in_flight.add(1); // 0 → 1
        in_flight.add(2);
        in_flight.done(1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        in_flight.done(2); // 2 → 0
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        in_flight.add(0);
        in_flight.done(0);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(!in_flight.watch(Box::new(|| {})), "the first watcher stays");
    }
}
