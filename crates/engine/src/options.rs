//! How the engine runs attempts, and the hooks a progress display observes them through.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::{AttemptKey, TaskDescriptor};
use stint_ports::StoreError;

use crate::error::EngineError;
use crate::outcome::{AttemptOutcome, NodeOutcome};

/// Hooks for progress displays; every method has an empty default.
///
/// Called synchronously from the engine: keep them short and never block.
pub trait Observer: Send + Sync {
    /// [`Engine::run_node`](crate::Engine::run_node) began `desc`, before its first attempt.
    /// Called inside the node's `tracing` span.
    fn node_started(&self, _desc: &TaskDescriptor) {}
    /// [`Engine::run_node`](crate::Engine::run_node) ended `desc`: with its outcome, or with
    /// the error that stopped it (its last attempt's end was then not recorded).
    fn node_ended(&self, _desc: &TaskDescriptor, _outcome: Result<&NodeOutcome, &EngineError>) {}
    /// An attempt began; `checkpoint` is what it was handed. Called inside the attempt's
    /// `tracing` span, before the compute starts.
    fn attempt_started(&self, _key: &AttemptKey, _checkpoint: Option<&Value>) {}
    /// A heartbeat was written (after coalescing); `payload` is `None` for a bare ping.
    fn heartbeat(&self, _key: &AttemptKey, _payload: Option<&Value>) {}
    /// A heartbeat write failed; the payload stays pending and is written later.
    fn heartbeat_write_failed(&self, _key: &AttemptKey, _error: &StoreError) {}
    /// A lease renewal failed; it is retried promptly, and the attempt fences itself when no
    /// renewal succeeds for two thirds of the lease.
    fn lease_renewal_failed(&self, _key: &AttemptKey, _error: &StoreError) {}
    /// The terminal write failed and is being retried while the lease holds.
    fn terminal_write_failed(&self, _key: &AttemptKey, _error: &StoreError) {}
    /// An attempt reached its terminal state.
    fn attempt_ended(&self, _outcome: &AttemptOutcome) {}
    /// Attempt `next_attempt` will start after `delay`.
    fn retry_scheduled(&self, _next_attempt: u32, _delay: Duration) {}
}

/// An [`Observer`] that observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// How the engine runs attempts.
#[derive(Clone)]
pub struct EngineOptions {
    /// The directory the VCS revision is read in; the current directory when `None`.
    pub working_dir: Option<PathBuf>,
    /// How long a compute may keep running after its token was cancelled, to clean up.
    pub cancel_grace: Duration,
    /// A random fraction in `[0, 1]` for the backoff's jitter.
    pub jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// Progress hooks.
    pub observer: Arc<dyn Observer>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            working_dir: None,
            cancel_grace: Duration::from_secs(10),
            jitter: Arc::new(rand::random::<f64>),
            observer: Arc::new(NoopObserver),
        }
    }
}

impl fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineOptions")
            .field("working_dir", &self.working_dir)
            .field("cancel_grace", &self.cancel_grace)
            .finish_non_exhaustive()
    }
}
