//! The background tasks of a worker: the claim keeper, which renews every claim of the worker in
//! one call and fences the worker when it cannot, and the sweeper.
//!
//! **Fencing** follows the engine's lease keeper (`crates/engine/src/lease.rs`): renewals every
//! quarter of the claim lease, a failed one retried after a twentieth, and when none succeeded
//! for two thirds of the lease (on the monotonic clock) the worker is fenced: it drops its
//! computes and writes nothing more for their tasks, since another worker's sweep may already
//! have given them back.

use std::sync::Arc;

use stint_engine::LeaseSchedule;
use stint_ports::{RenewedClaims, StoreError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::options::WorkerError;
use crate::worker::Inner;

/// One successful renewal, with when it was sent: a claim taken before then must be in it.
#[derive(Debug)]
pub(crate) struct Renewal {
    pub(crate) sent: Instant,
    pub(crate) claims: RenewedClaims,
}

/// What the keeper reports to the worker's loop.
#[derive(Debug)]
pub(crate) enum KeeperReport {
    Renewed(Renewal),
    Fenced(WorkerError),
}

/// Renews the worker's claims until the receiver is dropped or the worker is fenced.
pub(crate) async fn keep_claims(inner: Arc<Inner>, reports: mpsc::Sender<KeeperReport>) {
    let lease = inner.options.claim_lease;
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let schedule = LeaseSchedule::new(lease);
    let mut renewed_at = Instant::now();
    let mut last_error: Option<StoreError> = None;
    loop {
        let fence_at = schedule.fence_at(renewed_at);
        tokio::time::sleep_until(schedule.next_renewal(renewed_at, last_error.is_some())).await;
        if Instant::now() >= fence_at {
            let unrenewed = Instant::now().saturating_duration_since(renewed_at);
            let fenced = WorkerError::Fenced {
                unrenewed_ms: u64::try_from(unrenewed.as_millis()).unwrap_or(u64::MAX),
                last_error,
            };
            tracing::error!(error = %fenced, "worker fenced");
            let _ = reports.send(KeeperReport::Fenced(fenced)).await;
            return;
        }
        let sent = Instant::now();
        let renewal = inner.queue.renew_claims(
            &inner.options.owner,
            stint_ports::Renewal {
                now_ms: inner.now_ms(),
                lease_ms,
            },
        );
        match tokio::time::timeout_at(fence_at, renewal).await {
            Ok(Ok(claims)) => {
                renewed_at = sent;
                last_error = None;
                let report = KeeperReport::Renewed(Renewal { sent, claims });
                if reports.send(report).await.is_err() {
                    return;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "claim renewal failed; retrying");
                inner.observer.store_error("renewing claims", &error);
                last_error = Some(error);
            }
            // The renewal hung until the fence: the next turn fences.
            Err(_elapsed) => {}
        }
    }
}

/// Every sweep interval (and once at the start): recovery, then the expired claims of every
/// worker back to the queue. Adds what it took back to `swept`.
pub(crate) async fn sweep(inner: Arc<Inner>) {
    loop {
        let attempts = match inner.recovery.recover(&inner.engine).await {
            Ok(attempts) => attempts,
            Err(error) => {
                tracing::warn!(%error, "recovery failed");
                Vec::new()
            }
        };
        match inner.queue.sweep_expired(inner.now_ms()).await {
            Ok(tasks) => {
                if !tasks.is_empty() || !attempts.is_empty() {
                    tracing::info!(tasks = tasks.len(), attempts = attempts.len(), "swept");
                    inner.observer.swept(&attempts, &tasks);
                    inner.swept(tasks.len());
                    // Tasks just came back: claim them now rather than at the next poll.
                    inner.wake.notify_one();
                }
            }
            Err(error) => inner
                .observer
                .store_error("sweeping expired claims", &error),
        }
        tokio::time::sleep(inner.options.sweep_interval).await;
    }
}
