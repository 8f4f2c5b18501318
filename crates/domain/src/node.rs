//! A node as the rules see it: its attempts one after another, numbered 1, 2, 3... with no gaps,
//! the failures that count toward `retries`, and its state, which is its last attempt's.
//!
//! The store is the authority on a node's attempts; [`NodeHistory`] states the same rules without
//! I/O, so they can be driven by proptest and checked against a store's behaviour.

use crate::error::DomainError;
use crate::event::Event;
use crate::key::NodeKey;
use crate::machine::{AttemptCommand, AttemptCommandKind, AttemptMachine, AttemptState, RetryPlan};
use crate::retry::RetryPolicy;

/// The attempts of one node, driven through one [`AttemptMachine`] at a time.
#[derive(Debug, Clone)]
pub struct NodeHistory {
    key: NodeKey,
    policy: RetryPolicy,
    /// The states of the attempts before the current one, attempt 1 first.
    earlier: Vec<AttemptState>,
    /// The last attempt started.
    current: Option<AttemptMachine>,
    /// Failed attempts so far, the current one included.
    failures: u32,
}

impl NodeHistory {
    /// A node with no attempts yet.
    pub fn new(key: NodeKey, policy: RetryPolicy) -> Self {
        Self {
            key,
            policy,
            earlier: Vec::new(),
            current: None,
            failures: 0,
        }
    }

    /// The node's key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// The number of the last attempt started, 0 before the first.
    pub fn last_attempt(&self) -> u32 {
        self.current
            .as_ref()
            .map_or(0, |machine| machine.key().attempt)
    }

    /// Failed attempts so far (they count toward `retries`).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The node's state: its last attempt's; `None` before the first attempt.
    pub fn state(&self) -> Option<AttemptState> {
        self.current.as_ref().and_then(AttemptMachine::state)
    }

    /// The states of every attempt started, attempt 1 first.
    pub fn attempt_states(&self) -> Vec<AttemptState> {
        self.earlier.iter().copied().chain(self.state()).collect()
    }

    /// The last attempt's machine.
    pub fn current(&self) -> Option<&AttemptMachine> {
        self.current.as_ref()
    }

    /// The retry planned after the last attempt's failure, if the policy allows one.
    pub fn retry_plan(&self) -> Option<RetryPlan> {
        self.current.as_ref().and_then(AttemptMachine::retry_plan)
    }

    /// Whether the rules let another attempt follow the last one: it failed, its failure was
    /// retryable, and the failures so far are at most `retries` (SPEC section 2). Unlike
    /// [`Self::retry_plan`] this also answers for an abandoned attempt, which recovery marks
    /// without planning its successor.
    pub fn may_retry(&self) -> bool {
        let Some(machine) = &self.current else {
            return false;
        };
        machine.state() == Some(AttemptState::Failed)
            && machine.key().attempt.checked_add(1).is_some()
            && self
                .policy
                .should_retry(machine.retryable().unwrap_or(false), self.failures)
    }

    /// Applies `command` at `now_ms`. `Start` begins a new attempt numbered one past the last,
    /// refused while an attempt is in progress; every other command goes to the last attempt.
    pub fn apply(
        &mut self,
        command: AttemptCommand,
        now_ms: u64,
    ) -> Result<Vec<Event>, DomainError> {
        if !matches!(command, AttemptCommand::Start) {
            let machine = self.current.as_mut().ok_or(DomainError::NotStarted {
                command: command.kind(),
            })?;
            let events = machine.apply(command, now_ms)?;
            if machine.state() == Some(AttemptState::Failed) {
                // The machine refuses every command after a failure, so this counts it once.
                self.failures = self.failures.saturating_add(1);
            }
            return Ok(events);
        }
        let last = self.last_attempt();
        if let Some(state) = self.state() {
            // One attempt at a time; and the last number has no successor.
            if !state.is_terminal() || last == u32::MAX {
                let command = AttemptCommandKind::Start;
                return Err(DomainError::InvalidTransition { state, command });
            }
        }
        let next = last + 1;
        let mut machine = AttemptMachine::new(self.key.attempt(next), self.policy, self.failures);
        let events = machine.apply(AttemptCommand::Start, now_ms)?;
        if let Some(previous) = self.current.replace(machine) {
            self.earlier.extend(previous.state());
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TaskError;
    use crate::event::EventKind;

    fn fail(retryable: bool) -> AttemptCommand {
        AttemptCommand::Fail {
            error: TaskError::task_failed("boom"),
            retryable,
            retry_after_ms: None,
            jitter: 0.0,
        }
    }

    #[test]
    fn attempts_are_numbered_from_one_and_failures_count_toward_retries() {
        let key = NodeKey::new("r", "n", 0).expect("valid");
        let policy = RetryPolicy {
            retries: 1,
            ..RetryPolicy::default()
        };
        let mut node = NodeHistory::new(key, policy);
        assert_eq!(node.state(), None);
        let started = node.apply(AttemptCommand::Start, 0).expect("start 1");
        assert_eq!(started[0].attempt, 1);
        assert!(
            node.apply(AttemptCommand::Start, 1).is_err(),
            "one attempt at a time"
        );

        let failed = node.apply(fail(true), 2).expect("fail 1");
        assert_eq!(failed[1].kind, EventKind::NodeRetrying { delay_ms: 1_000 });
        assert_eq!(failed[1].attempt, 2);
        assert!(node.may_retry());

        assert_eq!(
            node.apply(AttemptCommand::Start, 3).expect("start 2")[0].attempt,
            2
        );
        assert_eq!(
            node.apply(fail(true), 4).expect("fail 2").len(),
            1,
            "retries used up"
        );
        assert_eq!(node.failures(), 2);
        assert!(!node.may_retry());
        assert_eq!(node.state(), Some(AttemptState::Failed));
        assert_eq!(
            node.attempt_states(),
            [AttemptState::Failed, AttemptState::Failed]
        );
    }

    #[test]
    fn an_abandoned_attempt_may_be_retried_within_the_budget() {
        let key = NodeKey::new("r", "n", 0).expect("valid");
        let policy = RetryPolicy {
            retries: 1,
            ..RetryPolicy::default()
        };
        let mut node = NodeHistory::new(key, policy);
        node.apply(AttemptCommand::Start, 0).expect("start");
        let events = node
            .apply(
                AttemptCommand::Abandon {
                    lease_expired_at_ms: 5,
                },
                6,
            )
            .expect("abandon");
        assert_eq!(events.len(), 1, "recovery plans no retry");
        assert_eq!(node.retry_plan(), None);
        assert!(node.may_retry());
        node.apply(AttemptCommand::Start, 7).expect("start 2");
        node.apply(
            AttemptCommand::Abandon {
                lease_expired_at_ms: 8,
            },
            9,
        )
        .expect("abandon 2");
        assert!(!node.may_retry(), "two abandoned attempts use up one retry");
    }
}
