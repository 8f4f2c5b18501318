//! The lease: renewed from the begin of an attempt until its terminal write has committed, and
//! the self-fence that stops an attempt whose lease can no longer be proven.
//!
//! The keeper is a task of its own, not a branch of the race against the compute, so it goes on
//! renewing through the grace period, the heartbeat flush, the VCS read and the terminal write's
//! retries: a live attempt is never recoverable.
//!
//! **Self-fencing.** The store's lease runs out `lease` after the start of the last renewal that
//! succeeded. When no renewal has succeeded for [`FENCE_FRACTION`] of the lease, measured on the
//! local monotonic clock (never the wall clock, which can jump), the keeper declares the attempt
//! fenced: the engine stops the compute at once and writes nothing terminal, so whatever
//! recovery decides later is never contradicted. Renewals come every quarter of the lease, so a
//! slow one (a busy disk, a far database) has five twelfths of the lease to answer before the
//! fence; a failed renewal is retried promptly ([`RETRY_FRACTION`] of the lease), not a full
//! period later.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use stint_ports::{AttemptStore, Clock, OwnedAttempt, Renewal, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::options::Observer;

/// The fraction of the lease after which an attempt with no successful renewal fences itself.
/// Two thirds leaves the last third for the compute to be stopped and for clocks to disagree.
pub(crate) const FENCE_FRACTION: (u64, u64) = (2, 3);

/// How often the lease is renewed while renewals succeed: four times per lease.
const RENEW_FRACTION: (u64, u64) = (1, 4);

/// How soon a failed renewal is tried again.
const RETRY_FRACTION: (u64, u64) = (1, 20);

fn fraction(lease: Duration, (num, den): (u64, u64)) -> Duration {
    (lease * u32::try_from(num).unwrap_or(1) / u32::try_from(den).unwrap_or(1))
        .max(Duration::from_millis(1))
}

/// When a lease is renewed, retried and given up for lost: the rule of the attempt's lease
/// keeper, for any other lease kept the same way (a worker's claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSchedule {
    period: Duration,
    retry: Duration,
    fence_after: Duration,
}

impl LeaseSchedule {
    /// The schedule of a lease of `lease`: renewed every quarter of it, a failed renewal tried
    /// again after a twentieth, fenced after two thirds without a success.
    pub fn new(lease: Duration) -> Self {
        Self {
            period: fraction(lease, RENEW_FRACTION),
            retry: fraction(lease, RETRY_FRACTION),
            fence_after: fraction(lease, FENCE_FRACTION),
        }
    }

    /// When the holder must stop, the lease last renewed at `renewed_at`.
    pub fn fence_at(&self, renewed_at: Instant) -> Instant {
        renewed_at + self.fence_after
    }

    /// When to renew next: a period after the last success, soon after a failure, and never
    /// later than the fence.
    pub fn next_renewal(&self, renewed_at: Instant, failing: bool) -> Instant {
        let next = if failing {
            Instant::now() + self.retry
        } else {
            renewed_at + self.period
        };
        next.min(self.fence_at(renewed_at))
    }
}

/// Why an attempt's lease was lost.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LeaseLoss {
    /// A renewal found the attempt owned by another execution (or already ended).
    Conflict(StoreError),
    /// No renewal succeeded for the fence fraction of the lease.
    Fenced {
        /// How long no renewal had succeeded.
        unrenewed_ms: u64,
        /// The last renewal error, if a renewal failed rather than hung.
        last_error: Option<StoreError>,
    },
}

/// State the keeper shares with the attempt.
#[derive(Debug)]
struct Shared {
    /// When the last successful renewal was sent (the begin, at first).
    renewed_at: Mutex<Instant>,
    loss: OnceLock<LeaseLoss>,
    lost: CancellationToken,
    /// Cancelled once a renewal reports that the attempt's cancellation was requested.
    cancel_requested: CancellationToken,
}

impl Shared {
    fn renewed_at(&self) -> Instant {
        *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lose(&self, loss: LeaseLoss) {
        let _ = self.loss.set(loss);
        self.lost.cancel();
    }
}

/// Renews one attempt's lease until dropped.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    shared: Arc<Shared>,
    fence_after: Duration,
    task: AbortOnDropHandle<()>,
}

/// What the renewal task needs.
struct Renewer {
    observer: Arc<dyn Observer>,
    store: Arc<dyn AttemptStore>,
    owned: OwnedAttempt,
    clock: Arc<dyn Clock>,
    lease: Duration,
    shared: Arc<Shared>,
}

impl LeaseKeeper {
    /// Starts renewing the lease of `owned`, whose begin was sent at `begun_at` with a lease of
    /// `lease_ms`.
    pub(crate) fn start(
        observer: Arc<dyn Observer>,
        store: Arc<dyn AttemptStore>,
        owned: OwnedAttempt,
        clock: Arc<dyn Clock>,
        lease_ms: u64,
        begun_at: Instant,
    ) -> Self {
        let lease = Duration::from_millis(lease_ms.max(1));
        let shared = Arc::new(Shared {
            renewed_at: Mutex::new(begun_at),
            loss: OnceLock::new(),
            lost: CancellationToken::new(),
            cancel_requested: CancellationToken::new(),
        });
        let renewer = Renewer {
            observer,
            store,
            owned,
            clock,
            lease,
            shared: shared.clone(),
        };
        Self {
            shared,
            fence_after: fraction(lease, FENCE_FRACTION),
            task: AbortOnDropHandle::new(tokio::spawn(renewer.run())),
        }
    }

    /// Stops renewing (the terminal write committed, or nothing more will be written) and waits
    /// until the renewal task is gone, so nothing of the attempt outlives it.
    pub(crate) async fn stop(self) {
        self.task.abort();
        // A renewal task ends by being aborted or by losing the lease; either is the end.
        let _ = self.task.await;
    }

    /// Resolves when the lease is lost (a conflict, or the fence).
    pub(crate) async fn lost(&self) -> LeaseLoss {
        self.shared.lost.cancelled().await;
        self.loss().unwrap_or(LeaseLoss::Fenced {
            unrenewed_ms: 0,
            last_error: None,
        })
    }

    /// Resolves once a renewal reported that someone asked for the attempt to be cancelled
    /// (`stint cancel --run`, on any machine).
    pub(crate) async fn cancel_requested(&self) {
        self.shared.cancel_requested.cancelled().await;
    }

    /// The loss, once the lease is lost.
    pub(crate) fn loss(&self) -> Option<LeaseLoss> {
        self.shared.loss.get().cloned()
    }

    /// How long the lease is still proven (until the fence, counted from the last successful
    /// renewal), or why it is not. Judged here too, not only by the renewal task, so that a
    /// renewal task that died cannot leave the attempt writing on an unproven lease.
    pub(crate) fn remaining(&self) -> Result<Duration, LeaseLoss> {
        if let Some(loss) = self.loss() {
            return Err(loss);
        }
        let renewed_at = self.shared.renewed_at();
        let left = (renewed_at + self.fence_after).saturating_duration_since(Instant::now());
        if left.is_zero() {
            let unrenewed = Instant::now().saturating_duration_since(renewed_at);
            return Err(LeaseLoss::Fenced {
                unrenewed_ms: u64::try_from(unrenewed.as_millis()).unwrap_or(u64::MAX),
                last_error: None,
            });
        }
        Ok(left)
    }
}

impl Renewer {
    async fn run(self) {
        let schedule = LeaseSchedule::new(self.lease);
        let mut last_error: Option<StoreError> = None;
        loop {
            let renewed_at = self.shared.renewed_at();
            let fence_at = schedule.fence_at(renewed_at);
            tokio::time::sleep_until(schedule.next_renewal(renewed_at, last_error.is_some())).await;
            if Instant::now() >= fence_at {
                return self.fence(renewed_at, last_error);
            }
            let sent = Instant::now();
            let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
            let renewal = self.store.renew_lease(
                &self.owned,
                Renewal {
                    now_ms: self.clock.now_ms(),
                    lease_ms,
                },
            );
            match tokio::time::timeout_at(fence_at, renewal).await {
                Ok(Ok(renewed)) => {
                    if renewed.cancel_requested && !self.shared.cancel_requested.is_cancelled() {
                        tracing::info!(attempt = %self.owned.key, "cancellation requested");
                        self.shared.cancel_requested.cancel();
                    }
                    if last_error.take().is_some() {
                        tracing::info!(attempt = %self.owned.key, "lease renewed again");
                    }
                    *self
                        .shared
                        .renewed_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = sent;
                }
                Ok(Err(error)) if error.is_conflict() => {
                    return self.shared.lose(LeaseLoss::Conflict(error));
                }
                Ok(Err(error)) => {
                    tracing::warn!(attempt = %self.owned.key, %error, "lease renewal failed; retrying");
                    self.observer.lease_renewal_failed(&self.owned.key, &error);
                    last_error = Some(error);
                }
                // The renewal hung until the fence: the next turn fences.
                Err(_elapsed) => {}
            }
        }
    }

    fn fence(&self, renewed_at: Instant, last_error: Option<StoreError>) {
        let unrenewed = Instant::now().saturating_duration_since(renewed_at);
        let unrenewed_ms = u64::try_from(unrenewed.as_millis()).unwrap_or(u64::MAX);
        tracing::error!(
            attempt = %self.owned.key,
            unrenewed_ms,
            "no lease renewal succeeded for two thirds of the lease: stopping the attempt and \
             leaving it to recovery"
        );
        self.shared.lose(LeaseLoss::Fenced {
            unrenewed_ms,
            last_error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_every_quarter_retried_at_a_twentieth_fenced_at_two_thirds() {
        let schedule = LeaseSchedule::new(Duration::from_secs(60));
        let renewed_at = Instant::now();
        assert_eq!(
            schedule.next_renewal(renewed_at, false),
            renewed_at + Duration::from_secs(15)
        );
        assert_eq!(
            schedule.fence_at(renewed_at),
            renewed_at + Duration::from_secs(40)
        );
        let retry = schedule.next_renewal(renewed_at, true);
        assert!(retry >= renewed_at + Duration::from_secs(3), "{retry:?}");
        assert!(
            retry <= Instant::now() + Duration::from_secs(3),
            "{retry:?}"
        );
        // Never later than the fence, however long ago the last success was.
        let long_ago = renewed_at - Duration::from_secs(39);
        assert_eq!(
            schedule.next_renewal(long_ago, true),
            schedule.fence_at(long_ago)
        );
    }
}
