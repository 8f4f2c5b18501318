//! Heartbeats: the handle a compute calls, and the writer, one of the two loops of the attempt's
//! keeper task (see `shared`), that coalesces what the handle receives into throttled store
//! writes.
//!
//! The handle never waits on I/O: it validates the payload, swaps it into a one-slot mailbox
//! (last one wins) and wakes the writer. The writer asks the domain's throttle rule
//! ([`next_write`]) when to write, on the injected clock: the first heartbeat at once, then at
//! most one per throttle interval, never two at a time. A write that fails puts its payload back
//! unless a newer one superseded it, so the final flush, when the attempt closes the mailbox,
//! still writes it and the next attempt sees the latest checkpoint.
//!
//! When the outcome is decided the mailbox stops accepting heartbeats, and what is flushed
//! afterwards is stamped no later than the decision, so no heartbeat event of an attempt follows
//! its terminal event.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use stint_domain::heartbeat::{WriteDecision, next_write, to_validated_payload, validate_payload};
use stint_domain::{AttemptCommand, HeartbeatPayloadError};
use stint_ports::{HeartbeatWrite, StoreError};
use tokio::sync::Notify;

use crate::metrics::HeartbeatCounters;
use crate::shared::{FLUSH, Shared, WRITER_DONE};

/// The handle a compute reports progress through. Cheap to clone, `Send + Sync`, never waits.
///
/// Calls after the compute returned or the attempt ended are ignored and return `Ok(())`.
#[derive(Clone)]
pub struct Heartbeat {
    shared: Arc<Shared>,
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("attempt", &self.shared.owned.key)
            .finish_non_exhaustive()
    }
}

/// Receive time of the latest heartbeat. A heartbeat only stores a number here: the watchdog
/// reads it when its deadline comes, so a heartbeat call never wakes another task for it.
///
/// Holds `at_ms + 1`, so that 0 means "no heartbeat yet"; `fetch_max` keeps it from going back.
#[derive(Debug, Default)]
pub(crate) struct LastReceived(AtomicU64);

impl LastReceived {
    fn set(&self, at_ms: u64) {
        self.0.fetch_max(at_ms.saturating_add(1), Ordering::AcqRel);
    }

    /// The latest receive time, if any heartbeat arrived.
    pub(crate) fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Acquire).checked_sub(1)
    }
}

/// A heartbeat received and not yet written.
#[derive(Debug)]
struct Pending {
    received_at_ms: u64,
    /// The payload and its size; `None` for a bare ping.
    payload: Option<(Value, u64)>,
}

#[derive(Debug, Default)]
struct Mailbox {
    closed: bool,
    pending: Option<Pending>,
    /// A taken heartbeat is being written.
    writing: bool,
    warned_large: bool,
}

/// The heartbeat part of an attempt's [`Shared`] state: the mailbox the handles fill and the
/// writer empties.
pub(crate) struct Heartbeats {
    mailbox: Mutex<Mailbox>,
    wake: Notify,
    /// Receive time of the latest heartbeat, read by the watchdog when its deadline comes.
    pub(crate) received: LastReceived,
    /// When the outcome was decided (`u64::MAX` until then): later writes are stamped no later.
    decided_at_ms: AtomicU64,
    counters: Arc<HeartbeatCounters>,
}

impl Heartbeats {
    pub(crate) fn new(counters: Arc<HeartbeatCounters>) -> Self {
        Self {
            mailbox: Mutex::new(Mailbox::default()),
            wake: Notify::new(),
            received: LastReceived::default(),
            decided_at_ms: AtomicU64::new(u64::MAX),
            counters,
        }
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // The mailbox is consistent after every statement, so a panic elsewhere cannot leave
        // it half-updated: recovering from poisoning is sound.
        self.mailbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the pending heartbeat to write it: until [`Heartbeats::written`], a write is in
    /// flight.
    fn take_pending(&self) -> Option<Pending> {
        let mut mailbox = self.mailbox();
        let pending = mailbox.pending.take();
        mailbox.writing = pending.is_some();
        pending
    }

    fn has_pending(&self) -> bool {
        self.mailbox().pending.is_some()
    }

    /// The write of a taken heartbeat is over; one whose write failed is put back, unless a
    /// newer payload superseded it (a newer bare ping keeps its receive time and takes the
    /// older payload).
    fn written(&self, failed: Option<Pending>) {
        let mut mailbox = self.mailbox();
        mailbox.writing = false;
        let Some(failed) = failed else {
            return;
        };
        mailbox.pending = Some(match mailbox.pending.take() {
            None => failed,
            Some(newer) if newer.payload.is_some() => newer,
            Some(ping) => Pending {
                received_at_ms: ping.received_at_ms,
                payload: failed.payload,
            },
        });
    }

    /// The time a write is stamped with: `now_ms`, but never after the decision.
    fn stamp_ms(&self, now_ms: u64) -> u64 {
        now_ms.min(self.decided_at_ms.load(Ordering::Acquire))
    }

    /// The outcome was decided at `decided_at_ms`: heartbeats sent from now on are ignored, and
    /// the pending one, written later, is stamped no later than the decision.
    pub(crate) fn stop_accepting(&self, decided_at_ms: u64) {
        self.decided_at_ms
            .fetch_min(decided_at_ms, Ordering::AcqRel);
        self.mailbox().closed = true;
    }
}

impl Heartbeat {
    /// The handle of the attempt of `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Reports progress with `payload`, which the next attempt receives as its checkpoint.
    pub fn beat(&self, payload: Value) -> Result<(), HeartbeatPayloadError> {
        let info = validate_payload(&payload)?;
        self.offer(
            Some((payload, info.size_bytes)),
            info.over_warning_threshold,
        );
        Ok(())
    }

    /// Serialises `payload` and reports it like [`Heartbeat::beat`].
    pub fn beat_typed<T: Serialize + ?Sized>(
        &self,
        payload: &T,
    ) -> Result<(), HeartbeatPayloadError> {
        // Checked while serialising: serde_json alone would turn NaN into null.
        let (value, info) = to_validated_payload(payload)?;
        self.offer(Some((value, info.size_bytes)), info.over_warning_threshold);
        Ok(())
    }

    /// A bare liveness ping: the stored payload is kept.
    pub fn ping(&self) {
        self.offer(None, false);
    }

    fn offer(&self, payload: Option<(Value, u64)>, large: bool) {
        let shared = &self.shared;
        let hub = &shared.heartbeats;
        let now_ms = shared.clock.now_ms();
        let replaced = {
            let mut mailbox = hub.mailbox();
            if mailbox.closed {
                hub.counters.dropped.add(1, &[]);
                return;
            }
            if large && !mailbox.warned_large {
                mailbox.warned_large = true;
                tracing::warn!(attempt = %shared.owned.key, "heartbeat payload is over 256 KiB; the limit is 1,000,000 bytes");
            }
            let previous = mailbox.pending.take();
            if previous.is_some() {
                hub.counters.coalesced.add(1, &[]);
            }
            let (payload, replaced) = match payload {
                Some(payload) => (Some(payload), previous),
                // A ping that replaces an unwritten payload must not lose that payload.
                None => (previous.and_then(|p| p.payload), None),
            };
            mailbox.pending = Some(Pending {
                received_at_ms: now_ms,
                payload,
            });
            replaced
        };
        // Freeing a large coalesced payload is a quarter of a call's cost: do it after the
        // lock is released, so the writer never waits on it.
        drop(replaced);
        hub.received.set(now_ms);
        hub.wake.notify_one();
    }
}

/// Stops accepting heartbeats and has the writer write the pending one. Resolves at once when
/// nothing is pending or being written (the writer, idle, has nothing left to do); otherwise
/// once the writer ended. Returns the conflict if a write found the attempt owned by another
/// execution.
pub(crate) async fn flush_heartbeats(shared: &Shared) -> Option<StoreError> {
    let idle = {
        let mut mailbox = shared.heartbeats.mailbox();
        mailbox.closed = true;
        mailbox.pending.is_none() && !mailbox.writing
    };
    if !idle {
        shared.raise(FLUSH);
        shared.heartbeats.wake.notify_one();
        shared.until(WRITER_DONE).await;
    }
    shared.conflict()
}

/// How one write went.
enum Written {
    /// Written, or dropped for good (the attempt already ended).
    Done,
    /// Failed; the payload is pending again.
    Failed(StoreError),
    /// Another execution owns the attempt.
    Lost(StoreError),
}

/// The pause before a failed write is tried again during the final flush.
const FLUSH_RETRY: Duration = Duration::from_millis(100);

/// How many failed writes the final flush tolerates before it gives the pending heartbeat up:
/// enough to outlast a lock held past one busy timeout, few enough that a store refusing
/// heartbeats does not hold the terminal write back.
const FLUSH_TRIES: u32 = 5;

/// The writer: writes what the handles leave in the mailbox, throttled to one write per
/// `throttle_interval_ms`, until the attempt flushes it (or a write finds another owner).
pub(crate) async fn write_heartbeats(shared: &Shared, throttle_interval_ms: u64) {
    let mut last_write_ms: Option<u64> = None;
    let mut failed = false;
    let mut flush_failures = 0;
    while let Some(pending) =
        next_pending(shared, throttle_interval_ms, last_write_ms, failed).await
    {
        last_write_ms = Some(shared.clock.now_ms());
        // Boxed: needed once per write, not in the keeper's idle state.
        match Box::pin(write(shared, pending)).await {
            Written::Done => failed = false,
            Written::Failed(error) if shared.raised(FLUSH) != 0 => {
                flush_failures += 1;
                if !is_transient(&error) || flush_failures >= FLUSH_TRIES {
                    tracing::warn!(attempt = %shared.owned.key, %error, "final heartbeat not written");
                    return;
                }
                failed = true;
            }
            Written::Failed(_) => failed = true,
            Written::Lost(conflict) => return shared.conflicted(conflict),
        }
    }
}

/// Waits until the throttle lets the pending heartbeat be written and takes it; `None` once
/// flushed and empty. During the final flush the throttle no longer applies, but a write that
/// just failed is retried after [`FLUSH_RETRY`].
async fn next_pending(
    shared: &Shared,
    throttle_interval_ms: u64,
    last_write_ms: Option<u64>,
    failed: bool,
) -> Option<Pending> {
    let hub = &shared.heartbeats;
    loop {
        if shared.raised(FLUSH) != 0 {
            if failed {
                // Boxed: rare, and not part of the keeper's idle state.
                Box::pin(tokio::time::sleep(FLUSH_RETRY)).await;
            }
            return hub.take_pending();
        }
        if !hub.has_pending() {
            // A flush notifies `wake` too.
            hub.wake.notified().await;
            continue;
        }
        let now_ms = shared.clock.now_ms();
        match next_write(throttle_interval_ms, last_write_ms, now_ms) {
            WriteDecision::Now => {
                // A notification between the check and the take leaves a permit: none lost.
                if let Some(pending) = hub.take_pending() {
                    return Some(pending);
                }
            }
            // Boxed, like a write: not part of the keeper's idle state.
            WriteDecision::WaitUntil(due_ms) => {
                Box::pin(async {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(due_ms - now_ms)) => {}
                        _ = shared.until(FLUSH) => {}
                    }
                })
                .await;
            }
        }
    }
}

/// Writes one heartbeat; a failure other than a conflict puts it back.
async fn write(shared: &Shared, pending: Pending) -> Written {
    let hub = &shared.heartbeats;
    let command = AttemptCommand::Heartbeat {
        received_at_ms: pending.received_at_ms,
        data_size_bytes: pending.payload.as_ref().map(|(_, size)| *size),
    };
    let stamp_ms = hub.stamp_ms(shared.clock.now_ms());
    let applied = shared.machine().apply(command, stamp_ms);
    let Some(event) = applied.ok().and_then(|events| events.into_iter().next()) else {
        tracing::warn!(attempt = %shared.owned.key, "heartbeat after the attempt ended; dropped");
        hub.counters.dropped.add(1, &[]);
        hub.written(None);
        return Written::Done;
    };
    let write = HeartbeatWrite {
        received_at_ms: pending.received_at_ms,
        payload: pending.payload.as_ref().map(|(value, _)| value.clone()),
        event,
    };
    match shared.store.record_heartbeat(&shared.owned, write).await {
        Ok(()) => {
            hub.written(None);
            hub.counters.written.add(1, &[]);
            let payload = pending.payload.as_ref().map(|(value, _)| value);
            shared.observer.heartbeat(&shared.owned.key, payload);
            Written::Done
        }
        Err(error) if error.is_conflict() => {
            hub.written(None);
            Written::Lost(error)
        }
        Err(error) => {
            tracing::warn!(attempt = %shared.owned.key, %error, "heartbeat write failed; kept for the next write");
            shared
                .observer
                .heartbeat_write_failed(&shared.owned.key, &error);
            hub.written(Some(pending));
            Written::Failed(error)
        }
    }
}

/// Whether a failed write may succeed if tried again.
fn is_transient(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable { .. })
}
