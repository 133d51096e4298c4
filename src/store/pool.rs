//! A backend's connection pool, counted: an acquire that finds no idle connection in a full pool
//! waits for one to come back. sqlx exposes the pool's size and idle count, not its waiters, so
//! each store hands its pool to a query through [`PoolMeter::pool`], which looks just before.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Database, Pool};

use crate::store::PoolStats;

/// Counts the acquires of one pool that will wait.
#[derive(Debug, Default)]
pub(crate) struct PoolMeter {
    waits: AtomicU64,
}

impl PoolMeter {
    /// `pool`, for one query or transaction about to take a connection from it.
    pub(crate) fn pool<'p, DB: Database>(&self, pool: &'p Pool<DB>) -> &'p Pool<DB> {
        if pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections() {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        pool
    }

    /// The pool's connections now, and the waits so far.
    pub(crate) fn stats<DB: Database>(&self, pool: &Pool<DB>) -> PoolStats {
        let idle = pool.num_idle() as u64;
        PoolStats {
            in_use: u64::from(pool.size()).saturating_sub(idle),
            idle,
            waits: self.waits.load(Ordering::Relaxed),
        }
    }
}
