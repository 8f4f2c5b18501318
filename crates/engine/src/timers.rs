//! The timers raced against the compute: the heartbeat watchdog and the timeout. Each sleeps to
//! an exact deadline; neither polls. (The lease has a task of its own: see `lease`.)

use std::sync::Arc;
use std::time::Duration;

use stint_domain::heartbeat::stale_at_ms;
use stint_ports::Clock;

use crate::heartbeat::LastReceived;

/// Resolves when the task has been silent for longer than `timeout_ms`.
///
/// Sleeps until the exact staleness deadline of the latest heartbeat; when it wakes and a
/// heartbeat has moved the deadline, it sleeps again until the new one. So it wakes at most once
/// per deadline, never polls, and a heartbeat never has to wake it.
pub(crate) async fn heartbeat_watchdog(
    received: Arc<LastReceived>,
    clock: Arc<dyn Clock>,
    started_at_ms: u64,
    timeout_ms: u64,
) {
    loop {
        let deadline_ms = stale_at_ms(started_at_ms, received.get(), timeout_ms);
        let now_ms = clock.now_ms();
        if now_ms >= deadline_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(deadline_ms - now_ms)).await;
    }
}

/// Resolves after `timeout`, or never when there is none.
pub(crate) async fn timeout(timeout: Option<Duration>) {
    match timeout {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// The watchdog when the task has a heartbeat timeout; otherwise never resolves.
pub(crate) async fn maybe_watchdog(
    received: Arc<LastReceived>,
    clock: Arc<dyn Clock>,
    started_at_ms: u64,
    timeout_ms: Option<u64>,
) {
    match timeout_ms {
        Some(timeout_ms) => heartbeat_watchdog(received, clock, started_at_ms, timeout_ms).await,
        None => std::future::pending().await,
    }
}
