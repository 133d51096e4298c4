//! A count of work in flight that can be awaited down to zero (publishes before close, events
//! queued for subscribers before Node may exit), and that can tell a watcher when it goes from
//! none to some and back (the napi layer holds Node open meanwhile).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
