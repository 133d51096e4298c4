//! The commit-wait protocol: when the writer holds a commit for publishes on their way, and how
//! answered callers count as on their way until the binding that answers them says they have run.
//!
//! Two kinds of publish are expected (`Expected`):
//! - arriving: admitted but not yet queued for the writer. A commit always waits for these (up to
//!   `ARRIVAL_WAIT`);
//! - returning: callers answered by an earlier commit who will probably publish again at once (one
//!   awaiting each publish in a loop). A commit waits for these only while it is small
//!   (under `HOLD_FOR_RETURNS_BELOW` events), and only on a store whose commit has a fixed cost.
//!
//! A returning caller's token ([`Arrival`]) rides with its answer to the binding (the napi layer
//! hands answers to JS in batches, [`HandOver`], cut at 4096 answers or about 8 MiB).
//! While the batch is in transit ([`InTransit`]) the token holds the next commit. Each publish the
//! binding hands over releases one token, oldest batch first (that publish now holds an arrival of
//! its own); the binding reporting the oldest batches handled releases the rest of theirs (those
//! callers did not publish again at once).
//!
//! Without the hold, callers that await each publish split into groups alternating between
//! commits, each group waiting for the other's commit; with it they share one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::in_flight::InFlight;

/// Longest a commit waits for publishes that were admitted but are still on their way.
pub(super) const ARRIVAL_WAIT: Duration = Duration::from_millis(2);

/// A commit waits for answered callers to come back only while it holds fewer events than this:
/// a bigger one already shares its fixed cost (round trip, flush) widely, and letting it go while
/// the callers work overlaps their work with the commit (measured: 16 publishers with 32 publishes
/// in flight each lost ~8% when every commit waited for them).
const HOLD_FOR_RETURNS_BELOW: usize = 32;

/// Most answers handed over in one batch.
const BATCH: usize = 4096;

/// About the most bytes handed over in one batch (events may be large; a JS string past V8's
/// limit could not be made at all). The answer that crosses it still goes in.
const BATCH_BYTES: usize = 8 << 20;

/// A publish on its way to the writer: admitted but not yet queued, or a caller being answered who
/// will probably publish again. While any exist, the writer holds a commit briefly (up to
/// `ARRIVAL_WAIT`; for answered callers only a small commit) so they join it: concurrent
/// publishers then share one commit instead of alternating between a commit of one and a commit
/// of the rest. Dropping it says the publish is here (or will not come).
pub struct Arrival(Arc<InFlight>);

impl Arrival {
    fn of(count: &Arc<InFlight>) -> Arrival {
        count.add(1);
        Arrival(count.clone())
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

/// Publishes the writer may wait for; clones share the counts.
#[derive(Clone, Default)]
pub(super) struct Expected {
    /// Admitted, not yet queued.
    arriving: Arc<InFlight>,
    /// Answered callers on their way back.
    returning: Arc<InFlight>,
    /// Whether answered callers are waited for at all (a store with a fixed commit cost).
    hold_for_returns: bool,
}

impl Expected {
    /// `hold_for_returns`: whether a commit costs enough for waiting on answered callers to pay.
    pub(super) fn new(hold_for_returns: bool) -> Expected {
        Expected {
            hold_for_returns,
            ..Expected::default()
        }
    }

    /// A publish admitted now, to be queued soon.
    pub(super) fn arrival(&self) -> Arrival {
        Arrival::of(&self.arriving)
    }

    /// A caller being answered now; None where returning callers are not waited for.
    pub(super) fn returning(&self) -> Option<Arrival> {
        self.hold_for_returns.then(|| Arrival::of(&self.returning))
    }

    /// Whether a commit of `size` events should wait for more.
    pub(super) fn any(&self, size: usize) -> bool {
        self.arriving.get() > 0 || (size < HOLD_FOR_RETURNS_BELOW && self.returning.get() > 0)
    }

    /// Resolves once what `any(size)` waits for is gone (check again: more may have come).
    pub(super) async fn gone(&self, size: usize) {
        self.arriving.idle().await;
        if size < HOLD_FOR_RETURNS_BELOW {
            self.returning.idle().await;
        }
    }
}

/// One batch of answers being gathered for hand-over: how many, and their callers' tokens.
#[derive(Default)]
pub struct HandOver {
    answers: usize,
    tokens: Vec<Arrival>,
}

impl HandOver {
    /// Counts in one answer, with its caller's token if it has one.
    pub fn add(&mut self, token: Option<Arrival>) {
        self.answers += 1;
        self.tokens.extend(token);
    }

    /// Whether the batch takes another answer, `bytes` being its rendered size so far.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.answers < BATCH && bytes < BATCH_BYTES
    }
}

/// The tokens of the batches handed over and not yet reported handled, oldest first; shared by
/// the task that hands batches over and the calls the binding makes as it publishes and settles.
#[derive(Default)]
pub struct InTransit(Mutex<VecDeque<Vec<Arrival>>>);

impl InTransit {
    /// `batch` is about to be handed over (recorded first, so its report cannot come before it).
    pub fn handing_over(&self, batch: HandOver) {
        self.lock().push_back(batch.tokens);
    }

    /// The last batch recorded could not be handed over: its callers will not come back.
    pub fn not_handed_over(&self) {
        self.lock().pop_back();
    }

    /// The binding is handing over `calls` publishes: as many expected callers are here (or it is
    /// busy publishing, and the others will be reported by `settled`), so as many tokens go,
    /// oldest batch first.
    pub fn publishing(&self, calls: usize) {
        // Entries stay, even empty, until `settled` counts them off.
        let mut batches = self.lock();
        for _ in 0..calls {
            let Some(token) = batches.iter_mut().find_map(Vec::pop) else {
                break;
            };
            drop(token);
        }
    }

    /// The binding has handled the oldest `batches` batches, and everything their callers did at
    /// once: the rest of their tokens go.
    pub fn settled(&self, batches: u32) {
        let mut in_transit = self.lock();
        for _ in 0..batches {
            if in_transit.pop_front().is_none() {
                break;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Vec<Arrival>>> {
        // Nothing here leaves the queue half-changed, so a poisoned lock is still sound.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// A batch of `n` answers whose tokens count in `count`.
    fn batch(count: &Arc<InFlight>, n: usize) -> HandOver {
        let mut batch = HandOver::default();
        for _ in 0..n {
            batch.add(Some(Arrival::of(count)));
        }
        batch
    }

    #[tokio::test]
    async fn a_small_commit_waits_for_returning_callers_a_big_one_only_for_arrivals() {
        let expected = Expected::new(true);
        assert!(!expected.any(1), "nothing expected");
        let returning = expected.returning().expect("held for");
        assert!(expected.any(1));
        assert!(expected.any(HOLD_FOR_RETURNS_BELOW - 1));
        assert!(!expected.any(HOLD_FOR_RETURNS_BELOW), "big enough to go");
        let arriving = expected.arrival();
        assert!(
            expected.any(HOLD_FOR_RETURNS_BELOW * 10),
            "admitted publishes always"
        );

        // gone() resolves once what held the commit is gone, and not before.
        let gone = expected.gone(1);
        tokio::pin!(gone);
        assert!(gone.as_mut().now_or_never().is_none());
        drop(arriving);
        assert!(
            gone.as_mut().now_or_never().is_none(),
            "a caller is still returning"
        );
        drop(returning);
        gone.await;
        assert!(!expected.any(1));
    }

    #[tokio::test]
    async fn a_big_commit_goes_while_callers_return() {
        let expected = Expected::new(true);
        let _returning = expected.returning();
        let gone = expected.gone(HOLD_FOR_RETURNS_BELOW);
        assert!(gone.now_or_never().is_some(), "not waiting for them");
    }

    #[test]
    fn where_commits_are_cheap_answered_callers_hold_nothing() {
        let expected = Expected::new(false);
        assert!(expected.returning().is_none());
        assert!(!expected.any(1));
        let _arriving = expected.arrival();
        assert!(expected.any(1), "admitted publishes still do");
    }

    #[test]
    fn a_token_holds_the_commit_while_its_answer_is_in_transit() {
        let expected = Expected::new(true);
        let in_transit = InTransit::default();
        let mut answers = HandOver::default();
        answers.add(expected.returning());
        in_transit.handing_over(answers);
        assert!(expected.any(1), "the answer is on its way");
        in_transit.settled(1);
        assert!(!expected.any(1));
    }

    #[test]
    fn handing_over_n_publishes_releases_n_tokens_oldest_batch_first() {
        let (older, newer) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
        let in_transit = InTransit::default();
        in_transit.handing_over(batch(&older, 2));
        in_transit.handing_over(batch(&newer, 3));
        in_transit.publishing(1);
        assert_eq!((older.get(), newer.get()), (1, 3));
        in_transit.publishing(2);
        assert_eq!((older.get(), newer.get()), (0, 2));
        in_transit.publishing(5);
        assert_eq!(
            newer.get(),
            0,
            "more publishes than tokens release them all"
        );

        // The emptied batches still stand for their reports: the next batch is released by the
        // third report, not the first.
        in_transit.handing_over(batch(&older, 1));
        in_transit.settled(2);
        assert_eq!(older.get(), 1);
        in_transit.settled(1);
        assert_eq!(older.get(), 0);
    }

    #[test]
    fn settled_k_releases_the_rest_of_the_k_oldest_batches() {
        let counts: Vec<_> = (0..3).map(|_| Arc::new(InFlight::default())).collect();
        let in_transit = InTransit::default();
        for count in &counts {
            in_transit.handing_over(batch(count, 2));
        }
        in_transit.publishing(1);
        in_transit.settled(2);
        let left: Vec<_> = counts.iter().map(|c| c.get()).collect();
        assert_eq!(left, [0, 0, 2]);
        in_transit.settled(5);
        assert_eq!(counts[2].get(), 0, "reporting past the end is harmless");
    }

    #[test]
    fn a_batch_not_handed_over_releases_its_tokens() {
        let (first, last) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
        let in_transit = InTransit::default();
        in_transit.handing_over(batch(&first, 1));
        in_transit.handing_over(batch(&last, 2));
        in_transit.not_handed_over();
        assert_eq!((first.get(), last.get()), (1, 0));
    }

    #[test]
    fn a_batch_is_cut_at_the_count_or_the_byte_limit() {
        let mut answers = HandOver::default();
        answers.add(None);
        assert!(answers.has_room(1));
        assert!(answers.has_room(BATCH_BYTES - 1));
        assert!(!answers.has_room(BATCH_BYTES), "past the bytes");
        for _ in 1..BATCH - 1 {
            answers.add(None);
        }
        assert!(answers.has_room(1), "one more fits");
        answers.add(None);
        assert!(!answers.has_room(1), "full at BATCH answers");
    }
}
