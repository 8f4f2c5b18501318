//! The ports an engine is built from, and the clocks and VCS probe it ships with.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use stint_ports::{AttemptStore, Clock, VcsProbe};

/// Everything the engine talks to.
#[derive(Clone, Debug)]
pub struct Ports {
    /// The write port: begin, heartbeats, lease renewals, terminal states, recovery.
    pub store: Arc<dyn AttemptStore>,
    /// Where the code stood, read on success.
    pub vcs: Arc<dyn VcsProbe>,
    /// Wall time, in milliseconds since the epoch.
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// Ports on `store`, on the system clock.
    pub fn new(store: Arc<dyn AttemptStore>, vcs: Arc<dyn VcsProbe>) -> Self {
        Self {
            store,
            vcs,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same ports on another clock (tests use [`TokioClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as the epoch rather than failing every attempt.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that reads a fixed epoch plus the time elapsed on tokio's clock.
///
/// Under `#[tokio::test(start_paused = true)]` it advances exactly as tokio's timers do, so the
/// watchdog and the throttle can be tested to the millisecond without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `epoch_ms` now.
    pub fn at(epoch_ms: u64) -> Self {
        Self {
            epoch_ms,
            start: tokio::time::Instant::now(),
        }
    }

    /// A clock reading the system's wall time now.
    pub fn new() -> Self {
        Self::at(SystemClock.now_ms())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_ms.saturating_add(elapsed)
    }
}

/// A VCS probe that never finds a repository.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVcs;

#[async_trait]
impl VcsProbe for NoVcs {
    async fn revision(&self, _dir: &Path) -> Option<String> {
        None
    }
}
