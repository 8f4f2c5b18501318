//! The engine and the node loop: attempts until one finishes, one is cancelled, or retries run
//! out, sleeping the backoff in between (cancellable).

use crate::watchdog::Watchdog;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use stint_domain::{AttemptKey, AttemptState, TaskDescriptor, TaskError};
use stint_ports::Completion;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::{Compute, ComputeOnce};
use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::options::EngineOptions;
use crate::outcome::{AttemptOutcome, NodeOutcome};
use crate::output::OutputValidator;
use crate::ports::Ports;

/// How a queue task ends, given the outcome of the attempt that ran it (see
/// [`Engine::run_task_attempt`]); `None` leaves the task to its caller.
pub type TaskEndFn<'a> = Box<dyn FnOnce(&AttemptOutcome) -> Option<Completion> + Send + 'a>;

/// Runs attempts of tasks against a set of ports.
pub struct Engine {
    pub(crate) ports: Ports,
    pub(crate) options: EngineOptions,
    pub(crate) metrics: Metrics,
    /// The staleness deadlines of the attempts running on this engine.
    pub(crate) watchdog: Watchdog,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("ports", &self.ports)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with default options.
    pub fn new(ports: Ports) -> Self {
        Self::with_options(ports, EngineOptions::default())
    }

    /// An engine with `options`. Metric instruments are taken from the global meter provider
    /// installed at this point.
    pub fn with_options(ports: Ports, options: EngineOptions) -> Self {
        Self {
            ports,
            options,
            metrics: Metrics::from_global(),
            watchdog: Watchdog::default(),
        }
    }

    /// The ports this engine uses.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Runs one attempt of `desc`: begins it (taking the last checkpoint), races the compute
    /// against its timeout, heartbeat timeout, cancellation and the lease, then writes the one
    /// terminal state the first of those decided. Returns how it ended.
    ///
    /// `Err` means the end could not be recorded: a store failure, or a `STORE_CONFLICT` when
    /// another execution owns the attempt (the compute was stopped, nothing terminal written).
    pub async fn run_attempt<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        compute: C,
        cancel: &CancellationToken,
    ) -> Result<AttemptOutcome, EngineError> {
        self.checked_attempt(desc, compute, cancel, None).await
    }

    /// As [`Engine::run_attempt`], for an attempt that runs a queue task: `task_end` says, from
    /// the attempt's outcome, how the task ends, and that end is written in the attempt's
    /// terminal transaction (one commit for both; no crash leaves one ended and the other
    /// running). The outcome's `task_ended` says whether it was: `false` when the task's claim
    /// was no longer `task_end`'s owner's, and then the attempt's end was written alone.
    pub async fn run_task_attempt<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        compute: C,
        cancel: &CancellationToken,
        task_end: TaskEndFn<'_>,
    ) -> Result<AttemptOutcome, EngineError> {
        self.checked_attempt(desc, compute, cancel, Some(task_end))
            .await
    }

    /// One attempt of a descriptor that passed [`check_descriptor`], with its output schema
    /// compiled.
    async fn checked_attempt<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        compute: C,
        cancel: &CancellationToken,
        task_end: Option<TaskEndFn<'_>>,
    ) -> Result<AttemptOutcome, EngineError> {
        let validator = checked(desc)?;
        self.attempt(desc, &validator, compute, cancel, task_end)
            .await
    }

    /// Runs attempts of `desc` until one finishes, one is cancelled, or retries run out.
    ///
    /// It always starts a new attempt: it does not recover abandoned attempts first (call
    /// [`Engine::recover`]; an attempt of this node still in progress makes the begin a
    /// `STORE_CONFLICT`), and it does not return the stored output of a node that already
    /// finished (read it through the query port, `HistoryStore::read_output`). The `stint run`
    /// command does both before it calls this.
    ///
    /// A cancellation during the backoff between attempts ends the node `Cancelled` with
    /// `TASK_ABORTED` without starting another attempt; the last attempt stays `failed`.
    pub async fn run_node<C: Compute>(
        &self,
        desc: &TaskDescriptor,
        compute: C,
        cancel: &CancellationToken,
    ) -> Result<NodeOutcome, EngineError> {
        let validator = checked(desc)?;
        // `trace_id` and `span_id` are filled in by an observer that exports spans.
        let span = tracing::info_span!(
            "node",
            node = %desc.key,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        );
        let ended = self
            .node_loop(desc, &validator, compute, cancel)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.options.observer.node_ended(desc, ended.as_ref()));
        ended
    }

    async fn node_loop<C: Compute>(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        compute: C,
        cancel: &CancellationToken,
    ) -> Result<NodeOutcome, EngineError> {
        let started_at_ms = self.ports.clock.now_ms();
        self.options.observer.node_started(desc);
        let mut attempts: Vec<AttemptOutcome> = Vec::new();
        let outcome = loop {
            let attempt = self
                .attempt(desc, validator, &compute, cancel, None)
                .await?;
            let retry = attempt.retry;
            attempts.push(attempt);
            let Some(plan) = retry else {
                break node_outcome_of_last(attempts);
            };
            let delay = Duration::from_millis(plan.delay_ms);
            self.options
                .observer
                .retry_scheduled(plan.next_attempt, delay);
            tracing::info!(
                next_attempt = plan.next_attempt,
                delay_ms = plan.delay_ms,
                "retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => {
                    break NodeOutcome {
                        state: AttemptState::Cancelled,
                        output: None,
                        error: Some(TaskError::aborted()),
                        attempts,
                    };
                }
            }
        };
        let duration_ms = self.ports.clock.now_ms().saturating_sub(started_at_ms);
        self.metrics.node_ended(outcome.state, duration_ms);
        Ok(outcome)
    }

    /// Marks every attempt whose lease expired `failed` with `ATTEMPT_ABANDONED`.
    pub async fn recover(&self) -> Result<Vec<AttemptKey>, EngineError> {
        let now_ms = self.ports.clock.now_ms();
        let recovered = self.ports.store.recover_abandoned(now_ms).await?;
        if !recovered.is_empty() {
            tracing::info!(count = recovered.len(), "recovered abandoned attempts");
        }
        Ok(recovered)
    }

    /// The directory the VCS revision is read in.
    pub(crate) fn working_dir(&self) -> Option<PathBuf> {
        self.options
            .working_dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
    }
}

/// Refuses what must not or cannot be run: a task that is not eligible, a zero timeout or heartbeat timeout would fail every attempt at
/// once (no timeout is `None`, not zero), and a zero lease could never be held.
fn check_descriptor(desc: &TaskDescriptor) -> Result<(), EngineError> {
    desc.eligibility.check()?;
    let zero = [
        ("timeout", desc.timeout_ms),
        ("heartbeat timeout", desc.heartbeat_timeout_ms),
        ("lease", Some(desc.lease_ms)),
    ]
    .into_iter()
    .find(|(_, value)| *value == Some(0));
    match zero {
        Some((what, _)) => Err(EngineError::InvalidDescriptor(format!(
            "the {what} must be longer than zero"
        ))),
        None => Ok(()),
    }
}

/// The output validator of a descriptor that passed [`check_descriptor`]: what every attempt
/// of it needs before it begins.
pub(crate) fn checked(desc: &TaskDescriptor) -> Result<OutputValidator, EngineError> {
    check_descriptor(desc)?;
    OutputValidator::compile(desc.output_schema.as_ref())
}

/// The node's outcome is its last attempt's.
fn node_outcome_of_last(attempts: Vec<AttemptOutcome>) -> NodeOutcome {
    let last = attempts.last();
    NodeOutcome {
        state: last.map_or(AttemptState::Failed, |a| a.state),
        output: last.and_then(|a| a.output.clone()),
        error: last.and_then(|a| a.error.clone()),
        attempts,
    }
}
