//! What a worker is told (options, shutdown), what it tells (observer, report, error), and the
//! hook it calls (recovery).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use stint_domain::{AttemptKey, TaskId};
use stint_engine::{CancellationToken, Engine, EngineError};
use stint_ports::{ClaimedTask, DEFAULT_QUEUE, StoreError, TaskEnd};

/// How a worker claims and runs tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The queues it claims from (not empty).
    pub queues: Vec<String>,
    /// At most this many tasks run at once (at least 1). A task whose compute is over and whose
    /// end is being written does not count (at most this many of those wait besides): the next
    /// task starts meanwhile.
    pub concurrency: usize,
    /// How long a claim lasts unless renewed; renewed every quarter of it.
    pub claim_lease: Duration,
    /// How often an idle worker asks for tasks when nothing wakes it.
    pub poll_interval: Duration,
    /// How often it recovers abandoned attempts and takes back expired claims.
    pub sweep_interval: Duration,
    /// How long a drain waits for running tasks before it gives them back.
    pub drain_timeout: Duration,
    /// Return once there is no work left (see [`Worker::run`](crate::Worker::run)).
    pub exit_when_empty: bool,
    /// The token its claims are held under. It must be unique per running worker: a renewal
    /// covers every claim of the owner, and the worker gives back those of its claims it runs
    /// no task for, so two workers sharing an owner would give back each other's tasks.
    pub owner: String,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            queues: vec![DEFAULT_QUEUE.to_owned()],
            concurrency: 1,
            claim_lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            sweep_interval: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            exit_when_empty: false,
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }
}

impl WorkerOptions {
    /// Refuses options no worker can run with.
    pub(crate) fn check(&self) -> Result<(), WorkerError> {
        let problem = if self.queues.is_empty() || self.queues.iter().any(String::is_empty) {
            Some("the queues must be named")
        } else if self.concurrency == 0 {
            Some("the concurrency must be at least 1")
        } else if self.claim_lease.as_millis() < 4 {
            Some("the claim lease must be at least 4 ms")
        } else if self.poll_interval.is_zero() || self.sweep_interval.is_zero() {
            Some("the poll and sweep intervals must be longer than zero")
        } else if self.owner.is_empty() {
            Some("the owner must not be empty")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(WorkerError::InvalidOptions(problem.to_owned())),
            None => Ok(()),
        }
    }
}

/// How a running worker is asked to stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop claiming; let running tasks finish for up to the drain timeout, then cancel them and
    /// give them back (`TaskEnd::Release`).
    pub drain: CancellationToken,
    /// Cancel running tasks at once and give them back.
    pub abort: CancellationToken,
}

/// What a worker did, counted from the start of [`Worker::run`](crate::Worker::run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerReport {
    /// Tasks that ended finished.
    pub finished: u64,
    /// Tasks that ended failed.
    pub failed: u64,
    /// Tasks that ended cancelled.
    pub cancelled: u64,
    /// Tasks given back for a later attempt (`TaskEnd::Retry`).
    pub retried: u64,
    /// Tasks given back unfinished (`TaskEnd::Release`).
    pub released: u64,
    /// Expired claims this worker's sweeps took back (from any worker).
    pub swept: u64,
}

/// Why a worker stopped without being asked to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The options cannot be run with; nothing was claimed.
    #[error("invalid worker options: {0}")]
    InvalidOptions(String),
    /// No claim renewal succeeded for two thirds of the claim lease: the running computes were
    /// dropped and nothing was written for their tasks (their claims expire and a sweep gives
    /// them back; their attempts are left to recovery).
    #[error(
        "the claims could not be renewed for {unrenewed_ms} ms{}: running tasks were dropped and \
         are left to the sweep",
        last_error.as_ref().map(|error| format!(" ({error})")).unwrap_or_default()
    )]
    Fenced {
        /// How long no renewal had succeeded.
        unrenewed_ms: u64,
        /// The last renewal error, when renewals failed rather than hung.
        last_error: Option<StoreError>,
    },
}

/// Progress a worker reports (for the CLI to print). Every method does nothing by default.
pub trait WorkerObserver: Send + Sync + Debug + 'static {
    /// `task` was claimed and is about to run.
    fn claimed(&self, task: &ClaimedTask) {
        let _ = task;
    }
    /// `task` ended, or was given back, with `end`.
    fn ended(&self, task: TaskId, end: &TaskEnd) {
        let _ = (task, end);
    }
    /// Nothing was written for `task`: its end could not be recorded (the engine's `error`);
    /// the claim goes back to the queue.
    fn dropped(&self, task: TaskId, error: &EngineError) {
        let _ = (task, error);
    }
    /// A drain or abort began, or progressed: `running` tasks are left.
    fn draining(&self, running: usize) {
        let _ = running;
    }
    /// A sweep recovered `attempts` and took back `tasks`.
    fn swept(&self, attempts: &[AttemptKey], tasks: &[TaskId]) {
        let _ = (attempts, tasks);
    }
    /// A queue write or read failed; the worker goes on (`during` names the step).
    fn store_error(&self, during: &str, error: &StoreError) {
        let _ = (during, error);
    }
}

/// The observer that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopWorkerObserver;

impl WorkerObserver for NoopWorkerObserver {}

/// How a worker recovers abandoned attempts before it sweeps expired claims, and when a begin
/// finds the node's last attempt still in progress.
#[async_trait]
pub trait Recovery: Send + Sync + Debug + 'static {
    /// Marks the attempts whose lease expired abandoned (and ends what they left running);
    /// returns them.
    async fn recover(&self, engine: &Engine) -> Result<Vec<AttemptKey>, EngineError>;
}

/// The default recovery: [`Engine::recover`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineRecovery;

#[async_trait]
impl Recovery for EngineRecovery {
    async fn recover(&self, engine: &Engine) -> Result<Vec<AttemptKey>, EngineError> {
        engine.recover().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_no_worker_can_run_with_are_refused() {
        assert_eq!(WorkerOptions::default().check(), Ok(()));
        let refused = [
            WorkerOptions {
                queues: Vec::new(),
                ..WorkerOptions::default()
            },
            WorkerOptions {
                queues: vec![String::new()],
                ..WorkerOptions::default()
            },
            WorkerOptions {
                concurrency: 0,
                ..WorkerOptions::default()
            },
            WorkerOptions {
                claim_lease: Duration::from_millis(3),
                ..WorkerOptions::default()
            },
            WorkerOptions {
                poll_interval: Duration::ZERO,
                ..WorkerOptions::default()
            },
            WorkerOptions {
                owner: String::new(),
                ..WorkerOptions::default()
            },
        ];
        for options in refused {
            let error = options.check().expect_err("refused");
            assert!(matches!(error, WorkerError::InvalidOptions(_)), "{error}");
        }
    }

    #[test]
    fn each_default_worker_has_its_own_owner() {
        assert_ne!(
            WorkerOptions::default().owner,
            WorkerOptions::default().owner
        );
    }
}
