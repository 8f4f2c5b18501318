//! Heartbeats (SPEC section 4): the handle a compute calls, and the one writer task per attempt
//! that coalesces what the handle receives into throttled store writes.
//!
//! The handle never waits on I/O: it validates the payload, swaps it into a one-slot mailbox
//! (last one wins) and wakes the writer. The writer writes the first heartbeat at once, then at
//! most one per throttle interval, never two at a time, and drains the mailbox when the attempt
//! closes it, so the next attempt sees the latest checkpoint.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use stint_domain::heartbeat::{to_validated_payload, validate_payload};
use stint_domain::{AttemptCommand, AttemptKey, AttemptMachine, HeartbeatPayloadError};
use stint_ports::{AttemptStore, Clock, HeartbeatWrite, OwnedAttempt, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::compute::Observer;
use crate::metrics::Metrics;

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
    pub(crate) interval: Duration,
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

impl Writer {
    async fn run(self) {
        let mut last_write: Option<Instant> = None;
        loop {
            if let Some(previous) = last_write {
                // The throttle: at most one write per interval, except the final flush.
                tokio::select! {
                    () = tokio::time::sleep_until(previous + self.ports.interval) => {}
                    () = self.flush.cancelled() => {}
                }
            }
            let Some(pending) = self.next_pending().await else {
                return;
            };
            last_write = Some(Instant::now());
            if let Err(conflict) = self.write(pending).await {
                let _ = self.conflict.set(conflict);
                self.lost.cancel();
                return;
            }
        }
    }

    /// Waits for a heartbeat to write; `None` once flushed and empty.
    async fn next_pending(&self) -> Option<Pending> {
        loop {
            // A notification between the check and the wait leaves a permit, so none is lost.
            if let Some(pending) = self.shared.take_pending() {
                return Some(pending);
            }
            if self.flush.is_cancelled() {
                return None;
            }
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = self.flush.cancelled() => {}
            }
        }
    }

    /// Writes one heartbeat; only a conflict is returned, other failures are logged.
    async fn write(&self, pending: Pending) -> Result<(), StoreError> {
        let metrics = &self.shared.metrics;
        let command = AttemptCommand::Heartbeat {
            received_at_ms: pending.received_at_ms,
            data_size_bytes: pending.payload.as_ref().map(|(_, size)| *size),
        };
        let now_ms = self.shared.clock.now_ms();
        let applied = lock_machine(&self.ports.machine).apply(command, now_ms);
        let Some(event) = applied.ok().and_then(|events| events.into_iter().next()) else {
            tracing::warn!(attempt = %self.shared.key, "heartbeat after the attempt ended; dropped");
            metrics.heartbeats_dropped.add(1, &[]);
            return Ok(());
        };
        let payload = pending.payload.map(|(value, _)| value);
        let write = HeartbeatWrite {
            received_at_ms: pending.received_at_ms,
            payload: payload.clone(),
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
                self.ports
                    .observer
                    .heartbeat(&self.shared.key, payload.as_ref());
                Ok(())
            }
            Err(error @ StoreError::Conflict { .. }) => Err(error),
            Err(error) => {
                tracing::warn!(attempt = %self.shared.key, %error, "heartbeat write failed");
                metrics.heartbeats_dropped.add(1, &[]);
                Ok(())
            }
        }
    }
}

/// Locks the attempt's state machine; see [`Shared::mailbox`] for why poisoning is recovered.
pub(crate) fn lock_machine(machine: &Mutex<AttemptMachine>) -> MutexGuard<'_, AttemptMachine> {
    machine.lock().unwrap_or_else(PoisonError::into_inner)
}
