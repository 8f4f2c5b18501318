//! Heartbeats: the handle a compute calls, and the one writer task per attempt that coalesces
//! what the handle receives into throttled store writes.
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
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use stint_domain::heartbeat::{WriteDecision, next_write, to_validated_payload, validate_payload};
use stint_domain::{AttemptCommand, AttemptKey, AttemptMachine, HeartbeatPayloadError};
use stint_ports::{AttemptStore, Clock, HeartbeatWrite, OwnedAttempt, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::metrics::Metrics;
use crate::options::Observer;

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
            .field("attempt", &self.shared.key)
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
    warned_large: bool,
}

/// State shared by the handles and the writer.
struct Shared {
    key: AttemptKey,
    clock: Arc<dyn Clock>,
    mailbox: Mutex<Mailbox>,
    wake: Notify,
    /// Receive time of the latest heartbeat, read by the watchdog when its deadline comes.
    received: Arc<LastReceived>,
    /// When the outcome was decided (`u64::MAX` until then): later writes are stamped no later.
    decided_at_ms: AtomicU64,
    metrics: Metrics,
}

impl Shared {
    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // The mailbox is consistent after every statement, so a panic elsewhere cannot leave
        // it half-updated: recovering from poisoning is sound.
        self.mailbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_pending(&self) -> Option<Pending> {
        self.mailbox().pending.take()
    }

    fn has_pending(&self) -> bool {
        self.mailbox().pending.is_some()
    }

    /// Puts back a heartbeat whose write failed, unless a newer payload superseded it; a newer
    /// bare ping keeps its receive time and takes the older payload.
    fn restore(&self, failed: Pending) {
        let mut mailbox = self.mailbox();
        mailbox.pending = Some(match mailbox.pending.take() {
            None => failed,
            Some(newer) if newer.payload.is_some() => newer,
            Some(ping) => Pending {
                received_at_ms: ping.received_at_ms,
                payload: failed.payload,
            },
        });
    }

    /// The time a write is stamped with: now, but never after the decision.
    fn stamp_ms(&self) -> u64 {
        self.clock
            .now_ms()
            .min(self.decided_at_ms.load(Ordering::Acquire))
    }
}

impl Heartbeat {
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
        let now_ms = shared.clock.now_ms();
        let replaced = {
            let mut mailbox = shared.mailbox();
            if mailbox.closed {
                shared.metrics.heartbeats_dropped.add(1, &[]);
                return;
            }
            if large && !mailbox.warned_large {
                mailbox.warned_large = true;
                tracing::warn!(attempt = %shared.key, "heartbeat payload is over 256 KiB; the limit is 1,000,000 bytes");
            }
            let previous = mailbox.pending.take();
            if previous.is_some() {
                shared.metrics.heartbeats_coalesced.add(1, &[]);
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
        shared.received.set(now_ms);
        shared.wake.notify_one();
    }
}

/// What the writer needs to write.
pub(crate) struct WriterPorts {
    pub(crate) store: Arc<dyn AttemptStore>,
    pub(crate) owned: OwnedAttempt,
    pub(crate) machine: Arc<Mutex<AttemptMachine>>,
    pub(crate) observer: Arc<dyn Observer>,
    /// The attempt's throttle interval (from its heartbeat timeout).
    pub(crate) throttle_interval_ms: u64,
}

/// One attempt's heartbeat machinery: the shared mailbox and its writer task.
pub(crate) struct HeartbeatHub {
    shared: Arc<Shared>,
    flush: CancellationToken,
    lost: CancellationToken,
    conflict: Arc<OnceLock<StoreError>>,
    writer: Option<AbortOnDropHandle<()>>,
}

impl HeartbeatHub {
    /// Starts the writer. Dropping the hub aborts it.
    pub(crate) fn start(
        key: AttemptKey,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        ports: WriterPorts,
    ) -> Self {
        let shared = Arc::new(Shared {
            key,
            clock,
            mailbox: Mutex::new(Mailbox::default()),
            wake: Notify::new(),
            received: Arc::new(LastReceived::default()),
            decided_at_ms: AtomicU64::new(u64::MAX),
            metrics,
        });
        let flush = CancellationToken::new();
        let lost = CancellationToken::new();
        let conflict = Arc::new(OnceLock::new());
        let writer = Writer {
            shared: shared.clone(),
            ports,
            flush: flush.clone(),
            lost: lost.clone(),
            conflict: conflict.clone(),
        };
        let task = tokio::spawn(writer.run());
        Self {
            shared,
            flush,
            lost,
            conflict,
            writer: Some(AbortOnDropHandle::new(task)),
        }
    }

    /// A handle for the compute.
    pub(crate) fn handle(&self) -> Heartbeat {
        Heartbeat {
            shared: self.shared.clone(),
        }
    }

    /// Receive time of the latest heartbeat, for the watchdog.
    pub(crate) fn received(&self) -> Arc<LastReceived> {
        self.shared.received.clone()
    }

    /// Resolves with the conflict when a heartbeat write found the attempt owned by another.
    pub(crate) async fn lost(&self) -> StoreError {
        self.lost.cancelled().await;
        self.conflict
            .get()
            .cloned()
            .unwrap_or_else(|| StoreError::conflict("attempt lost"))
    }

    /// The outcome was decided at `decided_at_ms`: heartbeats sent from now on are ignored, and
    /// the pending one, written later, is stamped no later than the decision.
    pub(crate) fn stop_accepting(&self, decided_at_ms: u64) {
        self.shared
            .decided_at_ms
            .fetch_min(decided_at_ms, Ordering::AcqRel);
        self.shared.mailbox().closed = true;
    }

    /// Stops accepting heartbeats, writes the pending one and waits for the writer to end.
    /// Returns the conflict if a write found the attempt owned by another execution.
    pub(crate) async fn close_and_flush(mut self) -> Option<StoreError> {
        self.shared.mailbox().closed = true;
        self.flush.cancel();
        if let Some(writer) = self.writer.take()
            && let Err(error) = writer.await
        {
            tracing::warn!(%error, "heartbeat writer ended abnormally");
        }
        self.conflict.get().cloned()
    }
}

/// The writer task's state.
struct Writer {
    shared: Arc<Shared>,
    ports: WriterPorts,
    flush: CancellationToken,
    lost: CancellationToken,
    conflict: Arc<OnceLock<StoreError>>,
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

impl Writer {
    async fn run(self) {
        let mut last_write_ms: Option<u64> = None;
        let mut failed = false;
        let mut flush_failures = 0;
        while let Some(pending) = self.next_pending(last_write_ms, failed).await {
            last_write_ms = Some(self.shared.clock.now_ms());
            match self.write(pending).await {
                Written::Done => failed = false,
                Written::Failed(error) if self.flush.is_cancelled() => {
                    flush_failures += 1;
                    if !is_transient(&error) || flush_failures >= FLUSH_TRIES {
                        tracing::warn!(attempt = %self.shared.key, %error, "final heartbeat not written");
                        return;
                    }
                    failed = true;
                }
                Written::Failed(_) => failed = true,
                Written::Lost(conflict) => {
                    let _ = self.conflict.set(conflict);
                    self.lost.cancel();
                    return;
                }
            }
        }
    }

    /// Waits until the throttle lets the pending heartbeat be written and takes it; `None` once
    /// flushed and empty. During the final flush the throttle no longer applies, but a write
    /// that just failed is retried after [`FLUSH_RETRY`].
    async fn next_pending(&self, last_write_ms: Option<u64>, failed: bool) -> Option<Pending> {
        loop {
            if self.flush.is_cancelled() {
                if failed {
                    tokio::time::sleep(FLUSH_RETRY).await;
                }
                return self.shared.take_pending();
            }
            if !self.shared.has_pending() {
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = self.flush.cancelled() => {}
                }
                continue;
            }
            let now_ms = self.shared.clock.now_ms();
            match next_write(self.ports.throttle_interval_ms, last_write_ms, now_ms) {
                WriteDecision::Now => {
                    // A notification between the check and the take leaves a permit: none lost.
                    if let Some(pending) = self.shared.take_pending() {
                        return Some(pending);
                    }
                }
                WriteDecision::WaitUntil(due_ms) => tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(due_ms - now_ms)) => {}
                    () = self.flush.cancelled() => {}
                },
            }
        }
    }

    /// Writes one heartbeat; a failure other than a conflict puts it back.
    async fn write(&self, pending: Pending) -> Written {
        let metrics = &self.shared.metrics;
        let command = AttemptCommand::Heartbeat {
            received_at_ms: pending.received_at_ms,
            data_size_bytes: pending.payload.as_ref().map(|(_, size)| *size),
        };
        let applied = lock_machine(&self.ports.machine).apply(command, self.shared.stamp_ms());
        let Some(event) = applied.ok().and_then(|events| events.into_iter().next()) else {
            tracing::warn!(attempt = %self.shared.key, "heartbeat after the attempt ended; dropped");
            metrics.heartbeats_dropped.add(1, &[]);
            return Written::Done;
        };
        let write = HeartbeatWrite {
            received_at_ms: pending.received_at_ms,
            payload: pending.payload.as_ref().map(|(value, _)| value.clone()),
            event,
        };
        match self
            .ports
            .store
            .record_heartbeat(&self.ports.owned, write)
            .await
        {
            Ok(()) => {
                metrics.heartbeats_written.add(1, &[]);
                let payload = pending.payload.as_ref().map(|(value, _)| value);
                self.ports.observer.heartbeat(&self.shared.key, payload);
                Written::Done
            }
            Err(error) if error.is_conflict() => Written::Lost(error),
            Err(error) => {
                tracing::warn!(attempt = %self.shared.key, %error, "heartbeat write failed; kept for the next write");
                self.ports
                    .observer
                    .heartbeat_write_failed(&self.shared.key, &error);
                self.shared.restore(pending);
                Written::Failed(error)
            }
        }
    }
}

/// Whether a failed write may succeed if tried again.
fn is_transient(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable { .. })
}

/// Locks the attempt's state machine; see [`Shared::mailbox`] for why poisoning is recovered.
pub(crate) fn lock_machine(machine: &Mutex<AttemptMachine>) -> MutexGuard<'_, AttemptMachine> {
    machine.lock().unwrap_or_else(PoisonError::into_inner)
}
