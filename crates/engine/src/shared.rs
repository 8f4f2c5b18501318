//! What one attempt shares between its own future, its keeper task and the compute's heartbeat
//! handles, in one allocation; and the keeper, the one task an attempt spawns.
//!
//! The keeper renews the lease (see `lease`) and writes the heartbeats (see `heartbeat`): two
//! loops polled side by side in one task, from the begin until the terminal write has committed.
//! Being a task of its own, apart from the compute, it goes on renewing and writing while a
//! compute holds its thread, and through the grace period, the heartbeat flush, the VCS read and
//! the terminal write's retries. A panic in one loop (a store that panics) ends that loop only.
//!
//! The keeper tells the attempt what happened by raising flags ([`Shared::raise`]): one flag word
//! and one `Notify`, on which the attempt waits for whichever flags it cares about at that step.

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};

use stint_domain::AttemptMachine;
use stint_ports::{AttemptStore, Clock, OwnedAttempt, StoreError};
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;

use crate::heartbeat::{Heartbeats, write_heartbeats};
use crate::lease::{LeaseState, keep_lease};
use crate::options::Observer;
use crate::watchdog::Staleness;

/// The lease is lost: a renewal found another owner, or the fence passed (see `lease`).
pub(crate) const LOST: u8 = 1;
/// A heartbeat write found the attempt owned by another execution.
pub(crate) const CONFLICT: u8 = 1 << 1;
/// A renewal reported that someone asked for the attempt to be cancelled.
pub(crate) const CANCEL_REQUESTED: u8 = 1 << 2;
/// The attempt asks the heartbeat writer to write what is pending and end.
pub(crate) const FLUSH: u8 = 1 << 3;
/// The heartbeat writer ended.
pub(crate) const WRITER_DONE: u8 = 1 << 4;
/// The engine's watchdog found the attempt silent for longer than its heartbeat timeout.
pub(crate) const STALE: u8 = 1 << 5;

/// One attempt's state, shared by the attempt, its keeper and its heartbeat handles.
pub(crate) struct Shared {
    pub(crate) owned: OwnedAttempt,
    pub(crate) store: Arc<dyn AttemptStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) observer: Arc<dyn Observer>,
    machine: Mutex<AttemptMachine>,
    pub(crate) heartbeats: Heartbeats,
    pub(crate) lease: LeaseState,
    pub(crate) staleness: Staleness,
    /// The conflict a heartbeat write met, once [`CONFLICT`] is raised.
    conflict: OnceLock<StoreError>,
    flags: AtomicU8,
    signal: Notify,
}

/// What [`Shared::new`] is built from.
pub(crate) struct SharedParts {
    pub(crate) owned: OwnedAttempt,
    pub(crate) store: Arc<dyn AttemptStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) machine: AttemptMachine,
    pub(crate) heartbeats: Heartbeats,
    pub(crate) lease: LeaseState,
    pub(crate) staleness: Staleness,
}

impl Shared {
    pub(crate) fn new(parts: SharedParts) -> Self {
        Self {
            owned: parts.owned,
            store: parts.store,
            clock: parts.clock,
            observer: parts.observer,
            machine: Mutex::new(parts.machine),
            heartbeats: parts.heartbeats,
            lease: parts.lease,
            staleness: parts.staleness,
            conflict: OnceLock::new(),
            flags: AtomicU8::new(0),
            signal: Notify::new(),
        }
    }

    /// Locks the attempt's state machine. Every command leaves it consistent, so a panic
    /// elsewhere cannot leave it half-updated: recovering from poisoning is sound.
    pub(crate) fn machine(&self) -> MutexGuard<'_, AttemptMachine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises `flags` and wakes whoever waits for any of them.
    pub(crate) fn raise(&self, flags: u8) {
        self.flags.fetch_or(flags, Ordering::AcqRel);
        self.signal.notify_waiters();
    }

    /// Which of `flags` are raised.
    pub(crate) fn raised(&self, flags: u8) -> u8 {
        self.flags.load(Ordering::Acquire) & flags
    }

    /// Resolves with the raised ones of `flags`, once any is raised.
    pub(crate) async fn until(&self, flags: u8) -> u8 {
        loop {
            let mut notified = pin!(self.signal.notified());
            // Registered before the check: a raise in between is not missed.
            notified.as_mut().enable();
            let raised = self.raised(flags);
            if raised != 0 {
                return raised;
            }
            notified.await;
        }
    }

    /// Records that a heartbeat write found the attempt owned by another execution.
    pub(crate) fn conflicted(&self, conflict: StoreError) {
        let _ = self.conflict.set(conflict);
        self.raise(CONFLICT);
    }

    /// The conflict a heartbeat write met, if one did.
    pub(crate) fn conflict(&self) -> Option<StoreError> {
        self.conflict.get().cloned()
    }
}

/// The attempt's keeper task: lease renewals and heartbeat writes.
#[derive(Debug)]
pub(crate) struct Keeper {
    task: AbortOnDropHandle<()>,
}

impl Keeper {
    /// Starts the keeper of `shared`, whose heartbeats are written at most once per
    /// `throttle_interval_ms`. Dropping the keeper aborts it.
    pub(crate) fn start(shared: Arc<Shared>, throttle_interval_ms: u64) -> Self {
        let task = tokio::spawn(async move {
            let mut lease = Some(pin!(keep_lease(&shared)));
            let mut writer = Some(pin!(write_heartbeats(&shared, throttle_interval_ms)));
            poll_fn(|cx| {
                // Once renewals are over, the lease is lost or left unproven: the attempt
                // judges that itself (`LeaseState::remaining`).
                poll_isolated(&mut lease, cx, "lease renewal");
                if poll_isolated(&mut writer, cx, "heartbeat writer") {
                    shared.raise(WRITER_DONE);
                }
                if lease.is_none() && writer.is_none() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        });
        Self {
            task: AbortOnDropHandle::new(task),
        }
    }

    /// Stops the keeper (the terminal write committed, or nothing more will be written) and
    /// waits until its task is gone, so nothing of the attempt outlives it.
    pub(crate) async fn stop(self) {
        self.task.abort();
        // The task ends by being aborted or by running out of work; either is the end.
        let _ = self.task.await;
    }
}

/// Polls one loop of the keeper, unless it already ended; a panic ends it like a return.
/// Returns whether it ended at this poll.
fn poll_isolated<F: Future<Output = ()>>(
    slot: &mut Option<Pin<&mut F>>,
    cx: &mut Context<'_>,
    what: &str,
) -> bool {
    let Some(future) = slot else {
        return false;
    };
    // A loop that panicked is never polled again, so no broken state of it is observed.
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
    match polled {
        Ok(Poll::Pending) => false,
        Ok(Poll::Ready(())) => {
            *slot = None;
            true
        }
        Err(_panic) => {
            tracing::warn!("the attempt's {what} ended abnormally");
            *slot = None;
            true
        }
    }
}
