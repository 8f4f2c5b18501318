//! The timers raced against the compute: the timeout and the heartbeat watchdog, on one timer
//! that sleeps to the exact earlier deadline and never polls. (The lease is renewed by the
//! attempt's keeper: see `shared` and `lease`.)

use std::time::Duration;

use stint_ports::Clock;
use tokio::time::Instant;

use crate::heartbeat::LastReceived;
use crate::watchdog::Staleness;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The attempt ran past its timeout.
    Timeout,
    /// The task was silent for longer than its heartbeat timeout.
    HeartbeatTimeout,
}

/// An attempt's deadlines: its timeout, counted on tokio's clock from when the race began, and
/// its heartbeat timeout, counted on the injected clock from the start or the latest heartbeat
/// (the rule the engine's watchdog applies too: [`Staleness::deadline`]).
pub(crate) struct Deadlines<'a> {
    /// When the timeout passes, if the attempt has one.
    pub(crate) timeout_at: Option<Instant>,
    pub(crate) staleness: &'a Staleness,
    pub(crate) received: &'a LastReceived,
    pub(crate) clock: &'a dyn Clock,
}

impl Deadlines<'_> {
    /// Resolves with the first deadline to pass; never when there is none. When both have
    /// passed, the timeout.
    ///
    /// One timer sleeps until the earlier deadline. When it wakes and a heartbeat has moved the
    /// staleness deadline, it is reset to the new one: it wakes at most once per deadline, never
    /// polls, and a heartbeat never has to wake it.
    pub(crate) async fn expired(&self) -> Expired {
        let first = match self.next_wake() {
            Ok(Some(at)) => at,
            Ok(None) => std::future::pending().await,
            Err(expired) => return expired,
        };
        let sleep = tokio::time::sleep_until(first);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            match self.next_wake() {
                Ok(Some(at)) => sleep.as_mut().reset(at),
                Ok(None) => std::future::pending().await,
                Err(expired) => return expired,
            }
        }
    }

    /// The deadline that passed, or when the timer is to wake next (`None`: never).
    fn next_wake(&self) -> Result<Option<Instant>, Expired> {
        let now = Instant::now();
        if self.timeout_at.is_some_and(|at| now >= at) {
            return Err(Expired::Timeout);
        }
        let stale_at = match self.staleness.deadline(self.received) {
            Some(deadline_ms) => {
                let now_ms = self.clock.now_ms();
                if now_ms >= deadline_ms {
                    return Err(Expired::HeartbeatTimeout);
                }
                Some(now + Duration::from_millis(deadline_ms - now_ms))
            }
            None => None,
        };
        Ok(match (self.timeout_at, stale_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
