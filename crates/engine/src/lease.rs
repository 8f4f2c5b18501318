//! The lease: renewed from the begin of an attempt until its terminal write has committed, and
//! the self-fence that stops an attempt whose lease can no longer be proven.
//!
//! The renewals are one of the two loops of the attempt's keeper task (see `shared`), not a
//! branch of the race against the compute, so they go on through the grace period, the
//! heartbeat flush, the VCS read and the terminal write's retries: a live attempt is never
//! recoverable.
//!
//! **Self-fencing.** The store's lease runs out `lease` after the start of the last renewal that
//! succeeded. When no renewal has succeeded for [`FENCE_FRACTION`] of the lease, measured on the
//! local monotonic clock (never the wall clock, which can jump), the keeper declares the attempt
//! fenced: the engine stops the compute at once and writes nothing terminal, so whatever
//! recovery decides later is never contradicted. Renewals come every quarter of the lease, so a
//! slow one (a busy disk, a far database) has five twelfths of the lease to answer before the
//! fence; a failed renewal is retried promptly ([`RETRY_FRACTION`] of the lease), not a full
//! period later.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use stint_ports::{Renewal, StoreError};
use tokio::time::Instant;

use crate::shared::{CANCEL_REQUESTED, LOST, Shared};

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

/// The lease part of an attempt's [`Shared`] state.
#[derive(Debug)]
pub(crate) struct LeaseState {
    lease: Duration,
    /// When the last successful renewal was sent (the begin, at first).
    renewed_at: Mutex<Instant>,
    /// Why the lease was lost, once [`LOST`] is raised.
    loss: OnceLock<LeaseLoss>,
}

impl LeaseState {
    /// The lease of an attempt whose begin was sent at `begun_at` with a lease of `lease_ms`.
    pub(crate) fn new(lease_ms: u64, begun_at: Instant) -> Self {
        let lease = Duration::from_millis(lease_ms.max(1));
        Self {
            lease,
            renewed_at: Mutex::new(begun_at),
            loss: OnceLock::new(),
        }
    }

    fn schedule(&self) -> LeaseSchedule {
        LeaseSchedule::new(self.lease)
    }

    fn renewed_at(&self) -> Instant {
        *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The loss, once the lease is lost.
    pub(crate) fn loss(&self) -> Option<LeaseLoss> {
        self.loss.get().cloned()
    }

    /// The loss, once [`LOST`] is raised (it is recorded before).
    pub(crate) fn loss_or_fenced(&self) -> LeaseLoss {
        self.loss().unwrap_or(LeaseLoss::Fenced {
            unrenewed_ms: 0,
            last_error: None,
        })
    }

    /// How long the lease is still proven (until the fence, counted from the last successful
    /// renewal), or why it is not. Judged here too, not only by the renewal loop, so that a
    /// renewal loop that died cannot leave the attempt writing on an unproven lease.
    pub(crate) fn remaining(&self) -> Result<Duration, LeaseLoss> {
        if let Some(loss) = self.loss() {
            return Err(loss);
        }
        let renewed_at = self.renewed_at();
        let left = self
            .schedule()
            .fence_at(renewed_at)
            .saturating_duration_since(Instant::now());
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

/// Resolves when the lease of `shared`'s attempt is lost (a conflict, or the fence).
pub(crate) async fn lost(shared: &Shared) -> LeaseLoss {
    shared.until(LOST).await;
    shared.lease.loss_or_fenced()
}

/// The renewal loop, one of the two loops of the attempt's keeper: renews until the lease is
/// lost (then raises [`LOST`]) or the keeper is stopped.
pub(crate) async fn keep_lease(shared: &Shared) {
    let state = &shared.lease;
    let lease_ms = u64::try_from(state.lease.as_millis()).unwrap_or(u64::MAX);
    let mut last_error: Option<StoreError> = None;
    loop {
        let renewed_at = state.renewed_at();
        let schedule = state.schedule();
        let (fence_at, next) = (
            schedule.fence_at(renewed_at),
            schedule.next_renewal(renewed_at, last_error.is_some()),
        );
        tokio::time::sleep_until(next).await;
        if Instant::now() >= fence_at {
            return fence(shared, renewed_at, last_error);
        }
        let sent = Instant::now();
        let renewal = Renewal {
            now_ms: shared.clock.now_ms(),
            lease_ms,
        };
        let renewal = shared.store.renew_lease(&shared.owned, renewal);
        // Boxed, with its timer: needed once per renewal, not in the keeper's idle state.
        match Box::pin(tokio::time::timeout_at(fence_at, renewal)).await {
            Ok(Ok(renewed)) => {
                if renewed.cancel_requested && shared.raised(CANCEL_REQUESTED) == 0 {
                    tracing::info!(attempt = %shared.owned.key, "cancellation requested");
                    shared.raise(CANCEL_REQUESTED);
                }
                if last_error.take().is_some() {
                    tracing::info!(attempt = %shared.owned.key, "lease renewed again");
                }
                *state
                    .renewed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = sent;
            }
            Ok(Err(error)) if error.is_conflict() => {
                return lose(shared, LeaseLoss::Conflict(error));
            }
            Ok(Err(error)) => {
                tracing::warn!(attempt = %shared.owned.key, %error, "lease renewal failed; retrying");
                shared
                    .observer
                    .lease_renewal_failed(&shared.owned.key, &error);
                last_error = Some(error);
            }
            // The renewal hung until the fence: the next turn fences.
            Err(_elapsed) => {}
        }
    }
}

fn lose(shared: &Shared, loss: LeaseLoss) {
    let _ = shared.lease.loss.set(loss);
    shared.raise(LOST);
}

fn fence(shared: &Shared, renewed_at: Instant, last_error: Option<StoreError>) {
    let unrenewed = Instant::now().saturating_duration_since(renewed_at);
    let unrenewed_ms = u64::try_from(unrenewed.as_millis()).unwrap_or(u64::MAX);
    tracing::error!(
        attempt = %shared.owned.key,
        unrenewed_ms,
        "no lease renewal succeeded for two thirds of the lease: stopping the attempt and \
         leaving it to recovery"
    );
    lose(
        shared,
        LeaseLoss::Fenced {
            unrenewed_ms,
            last_error,
        },
    );
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
