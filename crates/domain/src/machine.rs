//! The attempt state machine: an attempt starts once, is in progress, and ends exactly once,
//! finished, failed or cancelled.
//!
//! ```text
//!              start                 finish (output valid)
//!   (none) ──────────────▶ in-progress ───────────────────▶ finished
//!                             │  └─ fail / heartbeat timeout / abandon ─▶ failed
//!                             └──── cancel ───────────────────────────▶ cancelled
//! ```
//!
//! An [`AttemptMachine`] holds one attempt's state privately; the only way to change it is
//! [`AttemptMachine::apply`], which returns the events the transition produces or an error value
//! naming the state and the refused command. Terminal states are absorbing.

mod command;
mod state;

pub use command::{AttemptCommand, AttemptCommandKind};
pub use state::AttemptState;

use crate::error::{DomainError, TaskError};
use crate::event::{Event, EventKind};
use crate::heartbeat::stale_for_ms;
use crate::key::AttemptKey;
use crate::retry::RetryPolicy;

/// What follows a failed attempt that will be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPlan {
    /// The number of the next attempt.
    pub next_attempt: u32,
    /// How long to wait before it.
    pub delay_ms: u64,
}

/// One attempt's state machine.
#[derive(Debug, Clone)]
pub struct AttemptMachine {
    key: AttemptKey,
    policy: RetryPolicy,
    failures_before: u32,
    /// `None` until `Start`.
    state: Option<AttemptState>,
    /// When `Start` was applied; 0, and never read, before.
    started_at_ms: u64,
    last_heartbeat_at_ms: Option<u64>,
    last_heartbeat_written_at_ms: Option<u64>,
    error: Option<TaskError>,
    retryable: Option<bool>,
    retry: Option<RetryPlan>,
}

/// A failure to record: why, whether another attempt may follow, and how long to wait for it.
#[derive(Debug)]
struct Failure {
    error: TaskError,
    retryable: bool,
    retry_after_ms: Option<u64>,
    jitter: f64,
}

impl AttemptMachine {
    /// A machine for attempt `key`, not yet started. `failures_before` is the number of failed
    /// attempts of the node before this one (they count toward `policy.retries`).
    pub fn new(key: AttemptKey, policy: RetryPolicy, failures_before: u32) -> Self {
        Self {
            key,
            policy,
            failures_before,
            state: None,
            started_at_ms: 0,
            last_heartbeat_at_ms: None,
            last_heartbeat_written_at_ms: None,
            error: None,
            retryable: None,
            retry: None,
        }
    }

    /// The attempt's key.
    pub fn key(&self) -> &AttemptKey {
        &self.key
    }

    /// The current state; `None` before `Start`.
    pub fn state(&self) -> Option<AttemptState> {
        self.state
    }

    /// When the attempt started; `None` before `Start`.
    pub fn started_at_ms(&self) -> Option<u64> {
        self.state.map(|_| self.started_at_ms)
    }

    /// When the last heartbeat was received.
    pub fn last_heartbeat_at_ms(&self) -> Option<u64> {
        self.last_heartbeat_at_ms
    }

    /// The error of a failed or cancelled attempt.
    pub fn error(&self) -> Option<&TaskError> {
        self.error.as_ref()
    }

    /// For a failed attempt, whether the failure was retryable (as `AttemptRecord::retryable`
    /// stores it); `None` in every other state.
    pub fn retryable(&self) -> Option<bool> {
        self.retryable
    }

    /// The retry that follows a failure, if the policy allows one.
    pub fn retry_plan(&self) -> Option<RetryPlan> {
        self.retry
    }

    /// Applies `command` at `now_ms`, returning the events it produces.
    ///
    /// `Start` is allowed only before the attempt started, every other command only while it is
    /// in progress; a refused command changes nothing. Each command is one step below.
    pub fn apply(
        &mut self,
        command: AttemptCommand,
        now_ms: u64,
    ) -> Result<Vec<Event>, DomainError> {
        let kind = command.kind();
        match self.state {
            None if kind == AttemptCommandKind::Start => return Ok(self.start(now_ms)),
            None => return Err(DomainError::NotStarted { command: kind }),
            Some(AttemptState::InProgress) => {}
            Some(state) => {
                return Err(DomainError::InvalidTransition {
                    state,
                    command: kind,
                });
            }
        }
        let events = match command {
            // An attempt starts once: starting it again would be a second execution of it.
            AttemptCommand::Start => {
                return Err(DomainError::InvalidTransition {
                    state: AttemptState::InProgress,
                    command: kind,
                });
            }
            AttemptCommand::Heartbeat {
                received_at_ms,
                data_size_bytes,
            } => self.heartbeat(received_at_ms, data_size_bytes, now_ms),
            AttemptCommand::Finish => self.finish(now_ms),
            AttemptCommand::Cancel => self.cancel(now_ms),
            AttemptCommand::Fail {
                error,
                retryable,
                retry_after_ms,
                jitter,
            } => {
                let failure = Failure {
                    error,
                    retryable,
                    retry_after_ms,
                    jitter,
                };
                self.fail(failure, now_ms)
            }
            AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter } => {
                self.time_out(timeout_ms, jitter, now_ms)
            }
            AttemptCommand::Abandon {
                lease_expired_at_ms,
            } => self.abandon(lease_expired_at_ms, now_ms),
        };
        Ok(events)
    }

    fn event(&self, now_ms: u64, kind: EventKind) -> Event {
        Event::new(&self.key, now_ms, kind)
    }

    fn start(&mut self, now_ms: u64) -> Vec<Event> {
        self.state = Some(AttemptState::InProgress);
        self.started_at_ms = now_ms;
        vec![self.event(now_ms, EventKind::NodeStarted)]
    }

    /// A heartbeat written at `now_ms`: its event measures the interval since the previous write,
    /// and the last sign of life never goes back (a late-written beat may be older).
    fn heartbeat(
        &mut self,
        received_at_ms: u64,
        data_size_bytes: Option<u64>,
        now_ms: u64,
    ) -> Vec<Event> {
        let interval_ms = self
            .last_heartbeat_written_at_ms
            .map(|previous| now_ms.saturating_sub(previous));
        self.last_heartbeat_written_at_ms = Some(now_ms);
        self.last_heartbeat_at_ms = Some(
            self.last_heartbeat_at_ms
                .map_or(received_at_ms, |last| last.max(received_at_ms)),
        );
        vec![self.event(
            now_ms,
            EventKind::TaskHeartbeat {
                has_data: data_size_bytes.is_some(),
                data_size_bytes: data_size_bytes.unwrap_or(0),
                interval_ms,
            },
        )]
    }

    fn finish(&mut self, now_ms: u64) -> Vec<Event> {
        self.state = Some(AttemptState::Finished);
        vec![self.event(now_ms, EventKind::NodeFinished)]
    }

    /// Cancelled from outside: never retried, recorded with `TASK_ABORTED`.
    fn cancel(&mut self, now_ms: u64) -> Vec<Event> {
        self.state = Some(AttemptState::Cancelled);
        self.error = Some(TaskError::aborted());
        vec![self.event(
            now_ms,
            EventKind::NodeCancelled {
                reason: "aborted".to_owned(),
            },
        )]
    }

    /// The watchdog's verdict: `TaskHeartbeatTimeout`, then a retryable failure saying how long
    /// the task was silent.
    fn time_out(&mut self, timeout_ms: u64, jitter: f64, now_ms: u64) -> Vec<Event> {
        let last_heartbeat_at_ms = self.last_heartbeat_at_ms;
        let stale_for = stale_for_ms(now_ms, self.started_at_ms, last_heartbeat_at_ms);
        let mut events = vec![self.event(
            now_ms,
            EventKind::TaskHeartbeatTimeout {
                last_heartbeat_at_ms,
                timeout_ms,
            },
        )];
        let failure = Failure {
            error: TaskError::heartbeat_timeout(stale_for, timeout_ms, last_heartbeat_at_ms),
            retryable: true,
            retry_after_ms: None,
            jitter,
        };
        events.extend(self.fail(failure, now_ms));
        events
    }

    /// Recovery found the lease expired. Retryable and counted toward `retries`, but recovery only
    /// marks the attempt: no `NodeRetrying`, since no attempt follows until the node is run again.
    fn abandon(&mut self, lease_expired_at_ms: u64, now_ms: u64) -> Vec<Event> {
        self.state = Some(AttemptState::Failed);
        self.retryable = Some(true);
        let error = TaskError::abandoned(lease_expired_at_ms);
        self.error = Some(error.clone());
        vec![self.event(now_ms, EventKind::NodeFailed { error })]
    }

    /// `NodeFailed`, then `NodeRetrying` for the next attempt when the policy allows a retry.
    fn fail(&mut self, failure: Failure, now_ms: u64) -> Vec<Event> {
        self.state = Some(AttemptState::Failed);
        self.retryable = Some(failure.retryable);
        self.error = Some(failure.error.clone());
        let mut events = vec![self.event(
            now_ms,
            EventKind::NodeFailed {
                error: failure.error,
            },
        )];
        self.retry = self.plan_retry(failure.retryable, failure.retry_after_ms, failure.jitter);
        if let Some(plan) = self.retry {
            let next = self.key.node.attempt(plan.next_attempt);
            events.push(Event::new(
                &next,
                now_ms,
                EventKind::NodeRetrying {
                    delay_ms: plan.delay_ms,
                },
            ));
        }
        events
    }

    /// The retry after this attempt's failure: when it is retryable, within the budget (this
    /// failure counts), and this attempt's number has a successor (retrying the last number would
    /// duplicate it).
    fn plan_retry(
        &self,
        retryable: bool,
        retry_after_ms: Option<u64>,
        jitter: f64,
    ) -> Option<RetryPlan> {
        let failed_so_far = self.failures_before.saturating_add(1);
        if !self.policy.should_retry(retryable, failed_so_far) {
            return None;
        }
        let next_attempt = self.key.attempt.checked_add(1)?;
        Some(RetryPlan {
            next_attempt,
            delay_ms: self
                .policy
                .backoff
                .delay_ms(failed_so_far, jitter, retry_after_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::key::NodeKey;

    /// A retryable failure, no `Retry-After`, no jitter.
    fn boom() -> AttemptCommand {
        AttemptCommand::Fail {
            error: TaskError::task_failed("boom"),
            retryable: true,
            retry_after_ms: None,
            jitter: 0.0,
        }
    }

    /// A first attempt with `retries` retries, started at `now`.
    fn started(retries: u32, now: u64) -> AttemptMachine {
        let mut m = machine(retries, 0);
        m.apply(AttemptCommand::Start, now).expect("start");
        m
    }

    fn machine(retries: u32, failures_before: u32) -> AttemptMachine {
        let key = NodeKey::new("r", "n", 0)
            .expect("valid")
            .attempt(failures_before + 1);
        let policy = RetryPolicy {
            retries,
            ..RetryPolicy::default()
        };
        AttemptMachine::new(key, policy, failures_before)
    }

    #[test]
    fn start_then_finish() {
        let mut m = machine(0, 0);
        let started = m.apply(AttemptCommand::Start, 10).expect("start");
        assert_eq!(started[0].kind, EventKind::NodeStarted);
        let finished = m.apply(AttemptCommand::Finish, 20).expect("finish");
        assert_eq!(finished[0].kind, EventKind::NodeFinished);
        assert_eq!(m.state(), Some(AttemptState::Finished));
        let err = m.apply(AttemptCommand::Cancel, 30).expect_err("absorbing");
        assert_eq!(err.to_string(), "cannot cancel an attempt that is finished");
    }

    #[test]
    fn retryable_failure_within_budget_emits_retrying_with_next_attempt() {
        let mut m = started(1, 0);
        let events = m.apply(boom(), 5).expect("fail");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].attempt, 2);
        assert_eq!(events[1].kind, EventKind::NodeRetrying { delay_ms: 1_000 });
    }

    #[test]
    fn the_last_attempt_number_is_never_retried_into_a_duplicate() {
        let key = NodeKey::new("r", "n", 0).expect("valid").attempt(u32::MAX);
        let policy = RetryPolicy {
            retries: u32::MAX,
            ..RetryPolicy::default()
        };
        let mut m = AttemptMachine::new(key, policy, 0);
        m.apply(AttemptCommand::Start, 0).expect("start");
        let events = m.apply(boom(), 5).expect("fail");
        assert_eq!(
            events.len(),
            1,
            "no NodeRetrying for an attempt {}",
            u32::MAX
        );
        assert_eq!(m.retry_plan(), None);
    }

    #[test]
    fn an_abandoned_attempt_is_a_retryable_failure_with_no_retry_planned() {
        let mut m = started(3, 0);
        let abandon = AttemptCommand::Abandon {
            lease_expired_at_ms: 5,
        };
        let events = m.apply(abandon, 6).expect("abandon");
        assert_eq!(events.len(), 1, "recovery plans no retry: {events:?}");
        assert_eq!(m.state(), Some(AttemptState::Failed));
        assert_eq!(m.retryable(), Some(true), "it counts toward the retries");
        assert_eq!(m.retry_plan(), None);
        let code = m.error().map(|error| error.code);
        assert_eq!(code, Some(crate::ErrorCode::AttemptAbandoned));
    }

    #[test]
    fn heartbeat_timeout_reports_staleness() {
        let mut m = started(0, 100);
        let events = m
            .apply(
                AttemptCommand::HeartbeatTimedOut {
                    timeout_ms: 50,
                    jitter: 0.0,
                },
                151,
            )
            .expect("timeout");
        assert_eq!(events[0].kind.type_name(), "TaskHeartbeatTimeout");
        let error = m.error().expect("error");
        assert_eq!(error.details["stale_for_ms"], 51);
    }
}
