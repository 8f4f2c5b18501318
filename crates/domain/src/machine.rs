//! The attempt state machine (SPEC section 2).
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

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, TaskError};
use crate::event::{Event, EventKind};
use crate::key::AttemptKey;
use crate::retry::RetryPolicy;

/// The state of an attempt (and of a node: its last attempt's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptState {
    /// Running.
    InProgress,
    /// Finished with valid output.
    Finished,
    /// Failed; may be followed by another attempt.
    Failed,
    /// Cancelled from outside; never retried.
    Cancelled,
}

impl AttemptState {
    /// The state as written in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::InProgress)
    }
}

impl std::fmt::Display for AttemptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AttemptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-progress" => Ok(Self::InProgress),
            "finished" => Ok(Self::Finished),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown attempt state '{other}'")),
        }
    }
}

/// A command to the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptCommand {
    /// Begin the attempt.
    Start,
    /// A heartbeat was written; `data_size_bytes` is `None` for a bare ping.
    Heartbeat {
        /// When the heartbeat was received from the task.
        received_at_ms: u64,
        /// Size of the payload, `None` for a bare ping.
        data_size_bytes: Option<u64>,
    },
    /// The compute returned valid output.
    Finish,
    /// The attempt failed.
    Fail {
        /// Why.
        error: TaskError,
        /// Whether another attempt may follow.
        retryable: bool,
        /// A delay the task asked for, overriding the backoff policy.
        retry_after_ms: Option<u64>,
        /// Random fraction in `[0, 1]` for the backoff's jitter.
        jitter: f64,
    },
    /// The watchdog found the task silent for longer than `timeout_ms`.
    HeartbeatTimedOut {
        /// The heartbeat timeout.
        timeout_ms: u64,
        /// Random fraction in `[0, 1]` for the backoff's jitter.
        jitter: f64,
    },
    /// Recovery found the attempt's lease expired: its process died.
    Abandon {
        /// When the lease expired.
        lease_expired_at_ms: u64,
    },
    /// The attempt was cancelled from outside.
    Cancel,
}

/// The kind of a command, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCommandKind {
    /// [`AttemptCommand::Start`]
    Start,
    /// [`AttemptCommand::Heartbeat`]
    Heartbeat,
    /// [`AttemptCommand::Finish`]
    Finish,
    /// [`AttemptCommand::Fail`]
    Fail,
    /// [`AttemptCommand::HeartbeatTimedOut`]
    HeartbeatTimeout,
    /// [`AttemptCommand::Abandon`]
    Abandon,
    /// [`AttemptCommand::Cancel`]
    Cancel,
}

impl std::fmt::Display for AttemptCommandKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Heartbeat => "heartbeat",
            Self::Finish => "finish",
            Self::Fail => "fail",
            Self::HeartbeatTimeout => "time out",
            Self::Abandon => "abandon",
            Self::Cancel => "cancel",
        })
    }
}

impl AttemptCommand {
    /// The kind of this command.
    pub fn kind(&self) -> AttemptCommandKind {
        match self {
            Self::Start => AttemptCommandKind::Start,
            Self::Heartbeat { .. } => AttemptCommandKind::Heartbeat,
            Self::Finish => AttemptCommandKind::Finish,
            Self::Fail { .. } => AttemptCommandKind::Fail,
            Self::HeartbeatTimedOut { .. } => AttemptCommandKind::HeartbeatTimeout,
            Self::Abandon { .. } => AttemptCommandKind::Abandon,
            Self::Cancel => AttemptCommandKind::Cancel,
        }
    }
}

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
    state: Option<AttemptState>,
    started_at_ms: Option<u64>,
    last_heartbeat_at_ms: Option<u64>,
    last_heartbeat_written_at_ms: Option<u64>,
    error: Option<TaskError>,
    retryable: Option<bool>,
    retry: Option<RetryPlan>,
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
            started_at_ms: None,
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

    /// When the attempt started.
    pub fn started_at_ms(&self) -> Option<u64> {
        self.started_at_ms
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
    pub fn apply(
        &mut self,
        command: AttemptCommand,
        now_ms: u64,
    ) -> Result<Vec<Event>, DomainError> {
        let kind = command.kind();
        let state = match (self.state, &command) {
            (None, AttemptCommand::Start) => None,
            (None, _) => return Err(DomainError::NotStarted { command: kind }),
            (Some(AttemptState::InProgress), AttemptCommand::Start)
            | (Some(_), AttemptCommand::Start) => {
                return Err(self.refuse(kind));
            }
            (Some(AttemptState::InProgress), _) => Some(AttemptState::InProgress),
            (Some(_), _) => return Err(self.refuse(kind)),
        };
        debug_assert!(state.is_none() || state == Some(AttemptState::InProgress));
        let event = |kind: EventKind| Event::new(&self.key, now_ms, kind);
        let events = match command {
            AttemptCommand::Start => {
                self.state = Some(AttemptState::InProgress);
                self.started_at_ms = Some(now_ms);
                vec![event(EventKind::NodeStarted)]
            }
            AttemptCommand::Heartbeat {
                received_at_ms,
                data_size_bytes,
            } => {
                let interval_ms = self
                    .last_heartbeat_written_at_ms
                    .map(|previous| now_ms.saturating_sub(previous));
                let events = vec![event(EventKind::TaskHeartbeat {
                    has_data: data_size_bytes.is_some(),
                    data_size_bytes: data_size_bytes.unwrap_or(0),
                    interval_ms,
                })];
                self.last_heartbeat_written_at_ms = Some(now_ms);
                self.last_heartbeat_at_ms = Some(
                    self.last_heartbeat_at_ms
                        .map_or(received_at_ms, |last| last.max(received_at_ms)),
                );
                events
            }
            AttemptCommand::Finish => {
                self.state = Some(AttemptState::Finished);
                vec![event(EventKind::NodeFinished)]
            }
            AttemptCommand::Cancel => {
                self.state = Some(AttemptState::Cancelled);
                self.error = Some(TaskError::aborted());
                vec![event(EventKind::NodeCancelled {
                    reason: "aborted".to_owned(),
                })]
            }
            AttemptCommand::Fail {
                error,
                retryable,
                retry_after_ms,
                jitter,
            } => self.fail(error, retryable, retry_after_ms, jitter, now_ms, Vec::new()),
            AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter } => {
                let started = self.started_at_ms.unwrap_or(now_ms);
                let stale_for =
                    crate::heartbeat::stale_for_ms(now_ms, started, self.last_heartbeat_at_ms);
                let first = vec![event(EventKind::TaskHeartbeatTimeout {
                    last_heartbeat_at_ms: self.last_heartbeat_at_ms,
                    timeout_ms,
                })];
                let error =
                    TaskError::heartbeat_timeout(stale_for, timeout_ms, self.last_heartbeat_at_ms);
                self.fail(error, true, None, jitter, now_ms, first)
            }
            AttemptCommand::Abandon {
                lease_expired_at_ms,
            } => {
                // Retryable and counted toward `retries`, but recovery only marks the attempt: no
                // `NodeRetrying`, since no attempt follows until the node is run again.
                self.state = Some(AttemptState::Failed);
                self.retryable = Some(true);
                let error = TaskError::abandoned(lease_expired_at_ms);
                self.error = Some(error.clone());
                vec![event(EventKind::NodeFailed { error })]
            }
        };
        Ok(events)
    }

    fn fail(
        &mut self,
        error: TaskError,
        retryable: bool,
        retry_after_ms: Option<u64>,
        jitter: f64,
        now_ms: u64,
        mut events: Vec<Event>,
    ) -> Vec<Event> {
        self.state = Some(AttemptState::Failed);
        self.retryable = Some(retryable);
        self.error = Some(error.clone());
        events.push(Event::new(
            &self.key,
            now_ms,
            EventKind::NodeFailed { error },
        ));
        let failed_so_far = self.failures_before.saturating_add(1);
        // The last attempt number has no successor: retrying it would duplicate it.
        let next_attempt = self.key.attempt.checked_add(1);
        if let Some(next_attempt) =
            next_attempt.filter(|_| self.policy.should_retry(retryable, failed_so_far))
        {
            let plan = RetryPlan {
                next_attempt,
                delay_ms: self
                    .policy
                    .backoff
                    .delay_ms(failed_so_far, jitter, retry_after_ms),
            };
            self.retry = Some(plan);
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

    fn refuse(&self, command: AttemptCommandKind) -> DomainError {
        match self.state {
            Some(state) => DomainError::InvalidTransition { state, command },
            None => DomainError::NotStarted { command },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::key::NodeKey;

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
        let mut m = machine(1, 0);
        m.apply(AttemptCommand::Start, 0).expect("start");
        let events = m
            .apply(
                AttemptCommand::Fail {
                    error: TaskError::task_failed("boom"),
                    retryable: true,
                    retry_after_ms: None,
                    jitter: 0.0,
                },
                5,
            )
            .expect("fail");
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
        let events = m
            .apply(
                AttemptCommand::Fail {
                    error: TaskError::task_failed("boom"),
                    retryable: true,
                    retry_after_ms: None,
                    jitter: 0.0,
                },
                5,
            )
            .expect("fail");
        assert_eq!(
            events.len(),
            1,
            "no NodeRetrying for an attempt {}",
            u32::MAX
        );
        assert_eq!(m.retry_plan(), None);
    }

    #[test]
    fn heartbeat_timeout_reports_staleness() {
        let mut m = machine(0, 0);
        m.apply(AttemptCommand::Start, 100).expect("start");
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
