//! The heartbeat watchdog of one engine: the staleness deadlines of all its attempts, so that
//! whichever attempt runs first after deadlines passed finds every attempt whose deadline passed
//! and marks it stale at that moment.
//!
//! Each attempt still sleeps on a timer of its own to its deadline (`timers`). What this adds:
//! the attempt woken by its timer, and every attempt about to settle, [sweeps](Watchdog::sweep)
//! the deadlines and raises [`STALE`] on each attempt found silent, with the time it was found.
//! When many deadlines pass together, an attempt is then no longer found stale only when its own
//! turn in the runtime's queue comes, after the attempts before it have settled: the time
//! recorded is when the watchdog found it silent. The attempt decides when it next runs, as
//! before: its compute's own result still wins a tie, and so does its timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use stint_domain::heartbeat::stale_at_ms;

use crate::heartbeat::LastReceived;
use crate::shared::{STALE, Shared};

/// What the watchdog knows of one attempt's staleness: kept in the attempt's shared state.
#[derive(Debug)]
pub(crate) struct Staleness {
    started_at_ms: u64,
    timeout_ms: Option<u64>,
    /// The deadline the attempt is filed under (0 when it is not filed).
    filed_at_ms: AtomicU64,
    /// When it was found stale, plus one (0: not found stale).
    found_at_ms: AtomicU64,
}

impl Staleness {
    /// The staleness of an attempt started at `started_at_ms`, silent for at most `timeout_ms`.
    pub(crate) fn new(started_at_ms: u64, timeout_ms: Option<u64>) -> Self {
        Self {
            started_at_ms,
            timeout_ms,
            filed_at_ms: AtomicU64::new(0),
            found_at_ms: AtomicU64::new(0),
        }
    }

    /// When the watchdog found the attempt stale, if it did.
    pub(crate) fn found_at_ms(&self) -> Option<u64> {
        self.found_at_ms.load(Ordering::Acquire).checked_sub(1)
    }

    /// The first millisecond at which the attempt is stale, given when it last heard of its
    /// compute (`received`); `None` when it has no heartbeat timeout.
    pub(crate) fn deadline(&self, received: &LastReceived) -> Option<u64> {
        let timeout_ms = self.timeout_ms?;
        Some(stale_at_ms(self.started_at_ms, received.get(), timeout_ms))
    }
}

/// The deadlines of an engine's attempts, by time (then by filing order).
#[derive(Debug, Default)]
pub(crate) struct Watchdog {
    filed: Mutex<BTreeMap<(u64, u64), Weak<Shared>>>,
    next_id: AtomicU64,
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(u64, u64), Weak<Shared>>> {
        // Every change leaves the map consistent: recovering from poisoning is sound.
        self.filed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files the deadline of `shared`'s attempt while the returned guard lives (nothing when it
    /// has no heartbeat timeout).
    pub(crate) fn watch(&self, shared: &Arc<Shared>) -> Option<Watch<'_>> {
        let staleness = &shared.staleness;
        let at_ms = staleness.deadline(&shared.heartbeats.received)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut filed = self.lock();
        staleness.filed_at_ms.store(at_ms, Ordering::Release);
        filed.insert((at_ms, id), Arc::downgrade(shared));
        Some(Watch {
            watchdog: self,
            shared: Arc::downgrade(shared),
            id,
        })
    }

    /// Marks every filed attempt whose deadline passed by `now_ms` stale, found at `now_ms`; an
    /// attempt a heartbeat kept alive is filed again under its new deadline.
    pub(crate) fn sweep(&self, now_ms: u64) {
        let mut filed = self.lock();
        while let Some(entry) = filed.first_entry() {
            let (at_ms, id) = *entry.key();
            if at_ms > now_ms {
                return;
            }
            let attempt = entry.remove();
            let Some(shared) = attempt.upgrade() else {
                continue;
            };
            let staleness = &shared.staleness;
            let Some(deadline) = staleness.deadline(&shared.heartbeats.received) else {
                continue;
            };
            if deadline <= now_ms {
                let _ = staleness.found_at_ms.compare_exchange(
                    0,
                    now_ms.saturating_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                staleness.filed_at_ms.store(0, Ordering::Release);
                shared.raise(STALE);
            } else {
                staleness.filed_at_ms.store(deadline, Ordering::Release);
                filed.insert((deadline, id), attempt);
            }
        }
    }
}

/// An attempt's filed deadline; dropping it takes the attempt off the watchdog's list.
pub(crate) struct Watch<'a> {
    watchdog: &'a Watchdog,
    shared: Weak<Shared>,
    id: u64,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut filed = self.watchdog.lock();
        if let Some(shared) = self.shared.upgrade() {
            let at_ms = shared.staleness.filed_at_ms.load(Ordering::Acquire);
            filed.remove(&(at_ms, self.id));
        }
    }
}
