//! One attempt, step by step (SPEC section 3): begin, race the compute against its timers,
//! flush the heartbeats, write the one terminal state the first signal decided.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use stint_domain::heartbeat::throttle_interval_ms;
use stint_domain::{AttemptCommand, AttemptMachine, AttemptState, TaskDescriptor, TaskError};
use stint_ports::{AttemptEnd, BeginAttempt, OwnedAttempt, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::compute::{AttemptOutcome, EngineError, TaskContext, TaskFailure};
use crate::heartbeat::{HeartbeatHub, WriterPorts, lock_machine};
use crate::node::Engine;
use crate::output::{OutputValidator, strip_key_columns};
use crate::watchdog::{maybe_watchdog, renew_lease, timeout};

/// The first signal the engine saw; it alone decides the outcome.
#[derive(Debug)]
enum Decision {
    /// The compute returned a value (not yet validated).
    Output(Value),
    /// The compute failed.
    Failed(TaskFailure),
    /// The attempt ran past its timeout (ms).
    Timeout(u64),
    /// The task was silent for longer than its heartbeat timeout (ms).
    HeartbeatTimeout(u64),
    /// Cancelled from outside.
    Cancelled,
    /// Another execution owns the attempt.
    Lost(StoreError),
}

/// A begun attempt, with everything the later steps need.
struct Running {
    owned: OwnedAttempt,
    machine: Arc<Mutex<AttemptMachine>>,
    started_at_ms: u64,
    checkpoint: Option<Value>,
}

impl Engine {
    /// Runs one attempt of `desc` to its recorded end.
    pub(crate) async fn attempt<F, Fut>(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        compute: F,
        cancel: &CancellationToken,
    ) -> Result<AttemptOutcome, EngineError>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send,
    {
        let running = self.begin(desc).await?;
        let span = tracing::info_span!("attempt", attempt = %running.owned.key);
        self.drive(desc, validator, running, compute, cancel)
            .instrument(span)
            .await
    }

    /// Steps 1 and 2: a fresh owner token, the attempt row, the checkpoint.
    async fn begin(&self, desc: &TaskDescriptor) -> Result<Running, EngineError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let started_at_ms = self.ports.clock.now_ms();
        let begin = BeginAttempt {
            node: desc.key.clone(),
            owner: owner.clone(),
            started_at_ms,
            lease_expires_at_ms: started_at_ms.saturating_add(desc.lease_ms),
            metadata: serde_json::to_value(&desc.metadata).unwrap_or(Value::Null),
            working_dir: self.working_dir().map(|dir| dir.display().to_string()),
            label: desc.label.clone(),
            output_table: desc.output_table.clone(),
        };
        let begun = self.ports.store.begin_attempt(begin).await?;
        let key = desc.key.attempt(begun.attempt);
        let mut machine = AttemptMachine::new(key.clone(), desc.retry, begun.failed_before);
        // The store appended `NodeStarted` with the attempt row; the machine's copy is dropped.
        machine.apply(AttemptCommand::Start, started_at_ms)?;
        Ok(Running {
            owned: OwnedAttempt { key, owner },
            machine: Arc::new(Mutex::new(machine)),
            started_at_ms,
            checkpoint: begun.checkpoint,
        })
    }

    /// Steps 3 to 9 for a begun attempt.
    async fn drive<F, Fut>(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        running: Running,
        compute: F,
        cancel: &CancellationToken,
    ) -> Result<AttemptOutcome, EngineError>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send,
    {
        let key = running.owned.key.clone();
        self.options
            .observer
            .attempt_started(&key, running.checkpoint.as_ref());
        let interval = Duration::from_millis(throttle_interval_ms(desc.heartbeat_timeout_ms));
        let hub = HeartbeatHub::start(
            key.clone(),
            self.ports.clock.clone(),
            self.metrics.clone(),
            WriterPorts {
                store: self.ports.store.clone(),
                owned: running.owned.clone(),
                machine: running.machine.clone(),
                observer: self.options.observer.clone(),
                interval,
            },
        );
        let (decision, decided_at_ms) = if cancel.is_cancelled() {
            (Decision::Cancelled, self.ports.clock.now_ms())
        } else {
            self.race(desc, &hub, &running, compute, cancel).await
        };
        tracing::debug!(?decision, "outcome decided");
        // Step 9 and the flush of steps 6-8: the writer is gone once this returns.
        if let Some(conflict) = hub.close_and_flush().await {
            return Err(EngineError::Store(conflict));
        }
        if let Decision::Lost(conflict) = decision {
            return Err(EngineError::Store(conflict));
        }
        self.settle(desc, validator, &running, decision, decided_at_ms)
            .await
    }

    /// Step 4: runs the compute against the timeout, the watchdog, cancellation and ownership
    /// loss. When something other than the compute decides, the compute is cancelled and given
    /// the grace period to clean up, then dropped. Returns the decision and when it was made.
    async fn race<F, Fut>(
        &self,
        desc: &TaskDescriptor,
        hub: &HeartbeatHub,
        running: &Running,
        compute: F,
        cancel: &CancellationToken,
    ) -> (Decision, u64)
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send,
    {
        let task_cancel = CancellationToken::new();
        let compute = compute(TaskContext {
            key: running.owned.key.clone(),
            cancel: task_cancel.clone(),
            checkpoint: running.checkpoint.clone(),
            heartbeat: hub.handle(),
        });
        tokio::pin!(compute);
        let clock = self.ports.clock.clone();
        let timeout_ms = desc.timeout_ms;
        let heartbeat_timeout_ms = desc.heartbeat_timeout_ms.unwrap_or(0);
        let decision = tokio::select! {
            // Ties go to the compute's own result: it is the outcome the user asked for.
            biased;
            result = &mut compute => {
                let decision = match result {
                    Ok(value) => Decision::Output(value),
                    Err(failure) => Decision::Failed(failure),
                };
                return (decision, self.ports.clock.now_ms());
            }
            () = cancel.cancelled() => Decision::Cancelled,
            () = timeout(timeout_ms.map(Duration::from_millis)) => {
                Decision::Timeout(timeout_ms.unwrap_or(0))
            }
            () = maybe_watchdog(hub.received(), clock.clone(), running.started_at_ms, desc.heartbeat_timeout_ms) => {
                Decision::HeartbeatTimeout(heartbeat_timeout_ms)
            }
            conflict = renew_lease(self.ports.store.clone(), running.owned.clone(), clock, desc.lease_ms) => {
                Decision::Lost(conflict)
            }
            conflict = hub.lost() => Decision::Lost(conflict),
        };
        let decided_at_ms = self.ports.clock.now_ms();
        task_cancel.cancel();
        if tokio::time::timeout(self.options.cancel_grace, &mut compute)
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.options.cancel_grace, "compute did not stop within its grace period; dropped");
        }
        (decision, decided_at_ms)
    }

    /// Steps 5 to 8: validates the output, applies the terminal command and writes it.
    async fn settle(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        running: &Running,
        decision: Decision,
        decided_at_ms: u64,
    ) -> Result<AttemptOutcome, EngineError> {
        let jitter = (self.options.jitter)();
        let mut output = None;
        let mut retryable = false;
        let (command, at_ms) = match decision {
            Decision::Output(value) => {
                let value = strip_key_columns(value);
                match validator.check(&value) {
                    Ok(()) => {
                        output = Some(value);
                        (AttemptCommand::Finish, self.ports.clock.now_ms())
                    }
                    Err(error) => (fail(error, false, None, jitter), self.ports.clock.now_ms()),
                }
            }
            Decision::Failed(failure) => {
                retryable = failure.retryable;
                let after = failure
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                (
                    fail(failure.error, failure.retryable, after, jitter),
                    self.ports.clock.now_ms(),
                )
            }
            Decision::Timeout(timeout_ms) => {
                retryable = true;
                (
                    fail(TaskError::timeout(timeout_ms), true, None, jitter),
                    decided_at_ms,
                )
            }
            Decision::HeartbeatTimeout(timeout_ms) => {
                retryable = true;
                (
                    AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter },
                    decided_at_ms,
                )
            }
            Decision::Cancelled => (AttemptCommand::Cancel, decided_at_ms),
            Decision::Lost(conflict) => return Err(EngineError::Store(conflict)),
        };
        let vcs = match output {
            Some(_) => self.vcs_revision().await,
            None => None,
        };
        let (events, state, error, retry) = {
            let mut machine = lock_machine(&running.machine);
            let events = machine.apply(command, at_ms)?;
            (
                events,
                machine.state(),
                machine.error().cloned(),
                machine.retry_plan(),
            )
        };
        let state = state.unwrap_or(AttemptState::Failed);
        let end = match (state, output.clone(), error.clone()) {
            (AttemptState::Finished, Some(output), _) => AttemptEnd::Finished { output, vcs },
            (AttemptState::Cancelled, _, error) => AttemptEnd::Cancelled {
                error: error.unwrap_or_else(TaskError::aborted),
            },
            (_, _, error) => AttemptEnd::Failed {
                error: error.unwrap_or_else(|| TaskError::task_failed("attempt failed")),
                retryable,
            },
        };
        let finished_at_ms = self.ports.clock.now_ms();
        self.ports
            .store
            .end_attempt(&running.owned, end, finished_at_ms, events)
            .await?;
        let outcome = AttemptOutcome {
            key: running.owned.key.clone(),
            state,
            output,
            error,
            retry,
            started_at_ms: running.started_at_ms,
            finished_at_ms,
        };
        self.record_end(desc, &outcome);
        Ok(outcome)
    }

    /// Metrics, logs and the observer for an ended attempt.
    fn record_end(&self, desc: &TaskDescriptor, outcome: &AttemptOutcome) {
        let duration_ms = outcome.finished_at_ms.saturating_sub(outcome.started_at_ms);
        self.metrics.attempt_ended(outcome.state, duration_ms);
        match &outcome.error {
            Some(error) => {
                tracing::info!(state = %outcome.state, code = %error.code, %error, duration_ms, label = ?desc.label, "attempt ended")
            }
            None => {
                tracing::info!(state = %outcome.state, duration_ms, label = ?desc.label, "attempt ended")
            }
        }
        self.options.observer.attempt_ended(outcome);
    }

    /// The VCS revision of the working directory (step 6, success only).
    async fn vcs_revision(&self) -> Option<String> {
        let dir = self.working_dir()?;
        self.ports.vcs.revision(&dir).await
    }
}

/// The `Fail` command.
fn fail(
    error: TaskError,
    retryable: bool,
    retry_after_ms: Option<u64>,
    jitter: f64,
) -> AttemptCommand {
    AttemptCommand::Fail {
        error,
        retryable,
        retry_after_ms,
        jitter,
    }
}
