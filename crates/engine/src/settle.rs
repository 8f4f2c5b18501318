//! The end of an attempt: the decision made into its terminal command (the output validated,
//! the failure classified), applied to the attempt's machine, and written with its task's end,
//! retried while the lease holds.

use std::time::Duration;

use serde_json::Value;
use stint_domain::{AttemptCommand, AttemptState, DomainError, TaskDescriptor, TaskError};
use stint_ports::{AttemptEnd, AttemptEnded, EndAttempt, StoreError};

use crate::attempt::{Decision, Running};
use crate::engine::{Engine, TaskEndFn};
use crate::error::EngineError;
use crate::lease::lost;
use crate::outcome::AttemptOutcome;
use crate::output::{OutputValidator, strip_key_columns};

/// The decision, and what else the terminal write carries.
pub(crate) struct Settled<'a> {
    pub(crate) decision: Decision,
    pub(crate) decided_at_ms: u64,
    pub(crate) task_end: Option<TaskEndFn<'a>>,
}

/// What the decision makes the attempt write.
struct Settlement {
    command: AttemptCommand,
    at_ms: u64,
    output: Option<Value>,
    retryable: bool,
}

/// The pauses between tries of a terminal write that failed: doubling up to one second.
const TERMINAL_RETRY_FIRST: Duration = Duration::from_millis(50);
const TERMINAL_RETRY_MAX: Duration = Duration::from_secs(1);

impl Engine {
    /// Validates the output, applies the terminal command and writes it (with the task's end,
    /// when there is a task).
    pub(crate) async fn settle(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        running: &Running,
        settled: Settled<'_>,
    ) -> Result<AttemptOutcome, EngineError> {
        let settlement = self.settlement(validator, settled.decision, settled.decided_at_ms)?;
        let vcs = match settlement.output {
            Some(_) => self.vcs_revision().await,
            None => None,
        };
        let (events, state, error, retry) = {
            let command = settlement.command.kind();
            let mut machine = running.shared.machine();
            let events = machine.apply(settlement.command, settlement.at_ms)?;
            // A terminal command that applied leaves a state; none would be the machine's bug.
            let state = machine.state().ok_or(DomainError::NotStarted { command })?;
            (
                events,
                state,
                machine.error().cloned(),
                machine.retry_plan(),
            )
        };
        let end = match (state, settlement.output.clone(), error.clone()) {
            (AttemptState::Finished, Some(output), _) => AttemptEnd::Finished { output, vcs },
            (AttemptState::Cancelled, _, error) => AttemptEnd::Cancelled {
                error: error.unwrap_or_else(TaskError::aborted),
            },
            (_, _, error) => AttemptEnd::Failed {
                error: error.unwrap_or_else(|| TaskError::task_failed("attempt failed")),
                retryable: settlement.retryable,
            },
        };
        let mut outcome = AttemptOutcome {
            key: running.shared.owned.key.clone(),
            state,
            output: settlement.output,
            error,
            retry,
            started_at_ms: running.started_at_ms,
            finished_at_ms: self.ports.clock.now_ms(),
            task_ended: false,
        };
        let ending = EndAttempt {
            end,
            finished_at_ms: outcome.finished_at_ms,
            events,
            task: settled.task_end.and_then(|task_end| task_end(&outcome)),
        };
        outcome.task_ended = self.write_terminal(running, ending).await?.task_ended;
        self.record_end(desc, &outcome);
        Ok(outcome)
    }

    /// The terminal command a decision leads to, when it applies, and what it writes.
    fn settlement(
        &self,
        validator: &OutputValidator,
        decision: Decision,
        decided_at_ms: u64,
    ) -> Result<Settlement, EngineError> {
        let jitter = (self.options.jitter)();
        let settled = |command, at_ms, retryable| Settlement {
            command,
            at_ms,
            output: None,
            retryable,
        };
        Ok(match decision {
            Decision::Output(value) => {
                let value = strip_key_columns(value);
                let now_ms = self.ports.clock.now_ms();
                match validator.check(&value) {
                    Ok(()) => Settlement {
                        output: Some(value),
                        ..settled(AttemptCommand::Finish, now_ms, false)
                    },
                    Err(error) => settled(fail(error, false, None, jitter), now_ms, false),
                }
            }
            Decision::Failed(failure) => {
                // The error's code can veto a retry: an invalid payload or output stays invalid
                // however the task wrapped it.
                let retryable = failure.retryable && failure.error.code.retryable_by_default();
                let after = failure
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let command = fail(failure.error, retryable, after, jitter);
                settled(command, self.ports.clock.now_ms(), retryable)
            }
            Decision::Timeout(timeout_ms) => settled(
                fail(TaskError::timeout(timeout_ms), true, None, jitter),
                decided_at_ms,
                true,
            ),
            Decision::HeartbeatTimeout(timeout_ms) => settled(
                AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter },
                decided_at_ms,
                true,
            ),
            Decision::Cancelled => settled(AttemptCommand::Cancel, decided_at_ms, false),
            Decision::Lost(loss) => return Err(loss.into()),
        })
    }

    /// Writes the terminal state, retrying a failed write with backoff while the lease holds.
    /// A conflict is final; so is the loss of the lease (nothing terminal is written then).
    async fn write_terminal(
        &self,
        running: &Running,
        ending: EndAttempt,
    ) -> Result<AttemptEnded, EngineError> {
        let shared = &running.shared;
        let lease = &shared.lease;
        let mut pause = TERMINAL_RETRY_FIRST;
        loop {
            let write = self.ports.store.end_attempt(&shared.owned, ending.clone());
            let error = match tokio::time::timeout(lease.remaining()?, write).await {
                Ok(Ok(ended)) => return Ok(ended),
                Ok(Err(error)) if error.is_conflict() => return Err(error.into()),
                Ok(Err(error)) => error,
                Err(_elapsed) => StoreError::unavailable("the terminal write did not return"),
            };
            tracing::warn!(%error, retry_in = ?pause, "terminal write failed; retrying while the lease holds");
            self.options
                .observer
                .terminal_write_failed(&shared.owned.key, &error);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                loss = lost(shared) => return Err(loss.into()),
            }
            pause = (pause * 2).min(TERMINAL_RETRY_MAX);
        }
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

    /// The VCS revision of the working directory (success only).
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
