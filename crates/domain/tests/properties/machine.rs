//! Random command sequences on one [`AttemptMachine`], checked against a model of the rules
//! written independently of the machine, and against the properties the rules imply.

use proptest::prelude::*;
use stint_domain::key::AttemptKey;
use stint_domain::{
    AttemptCommand, AttemptMachine, AttemptState, DomainError, ErrorCode, Event, EventKind,
    NodeKey, RetryPolicy, TaskError,
};

/// Any command, weighted so that sequences often get past `Start`.
pub(crate) fn command() -> impl Strategy<Value = AttemptCommand> {
    prop_oneof![
        3 => Just(AttemptCommand::Start),
        3 => (0..5_000_u64, proptest::option::of(0..2_000_000_u64)).prop_map(
            |(received_at_ms, data_size_bytes)| AttemptCommand::Heartbeat {
                received_at_ms,
                data_size_bytes,
            }
        ),
        1 => Just(AttemptCommand::Finish),
        2 => (any::<bool>(), proptest::option::of(0..500_000_u64), 0.0..=1.0_f64).prop_map(
            |(retryable, retry_after_ms, jitter)| AttemptCommand::Fail {
                error: TaskError::task_failed("boom"),
                retryable,
                retry_after_ms,
                jitter,
            }
        ),
        1 => (1..60_000_u64, 0.0..=1.0_f64)
            .prop_map(|(timeout_ms, jitter)| AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter }),
        1 => (0..5_000_u64)
            .prop_map(|lease_expired_at_ms| AttemptCommand::Abandon { lease_expired_at_ms }),
        1 => Just(AttemptCommand::Cancel),
    ]
}

/// Up to `max` commands, each with the (non-decreasing) time it is applied at.
pub(crate) fn timed_commands(max: usize) -> impl Strategy<Value = Vec<(AttemptCommand, u64)>> {
    proptest::collection::vec((command(), 0..1_000_u64), 0..max).prop_map(|steps| {
        let mut now = 1_000;
        steps
            .into_iter()
            .map(|(command, elapsed)| {
                now += elapsed;
                (command, now)
            })
            .collect()
    })
}

/// A retry policy with a small budget and the default backoff.
pub(crate) fn policy() -> impl Strategy<Value = RetryPolicy> {
    (0..5_u32).prop_map(|retries| RetryPolicy {
        retries,
        ..RetryPolicy::default()
    })
}

fn key(attempt: u32) -> AttemptKey {
    NodeKey::new("run", "node", 3)
        .expect("valid key")
        .attempt(attempt)
}

/// What one attempt does, written independently of the machine: `Start` once, then one ending
/// (finish, fail, heartbeat timeout, abandon, cancel), heartbeats in between; each step's events;
/// a retry when the failure is retryable and within the budget.
struct Model {
    key: AttemptKey,
    policy: RetryPolicy,
    failures_before: u32,
    state: Option<AttemptState>,
    started_at_ms: u64,
    last_heartbeat_at_ms: Option<u64>,
    last_written_at_ms: Option<u64>,
}

impl Model {
    fn step(&mut self, command: &AttemptCommand, now: u64) -> Result<Vec<Event>, DomainError> {
        let kind = command.kind();
        let is_start = matches!(command, AttemptCommand::Start);
        match self.state {
            None if is_start => {
                self.state = Some(AttemptState::InProgress);
                self.started_at_ms = now;
                return Ok(vec![self.event(now, EventKind::NodeStarted)]);
            }
            None => return Err(DomainError::NotStarted { command: kind }),
            Some(state) if state != AttemptState::InProgress || is_start => {
                return Err(DomainError::InvalidTransition {
                    state,
                    command: kind,
                });
            }
            Some(_) => {}
        }
        Ok(self.step_in_progress(command, now))
    }

    /// A command other than `Start`, to an attempt in progress.
    fn step_in_progress(&mut self, command: &AttemptCommand, now: u64) -> Vec<Event> {
        match command {
            AttemptCommand::Start => unreachable!("`step` refuses Start once started"),
            AttemptCommand::Finish => {
                self.state = Some(AttemptState::Finished);
                vec![self.event(now, EventKind::NodeFinished)]
            }
            AttemptCommand::Heartbeat {
                received_at_ms,
                data_size_bytes,
            } => self.heartbeat(now, *received_at_ms, *data_size_bytes),
            AttemptCommand::Cancel => {
                self.state = Some(AttemptState::Cancelled);
                let reason = "aborted".to_owned();
                vec![self.event(now, EventKind::NodeCancelled { reason })]
            }
            AttemptCommand::Abandon {
                lease_expired_at_ms,
            } => {
                self.state = Some(AttemptState::Failed);
                let error = TaskError::abandoned(*lease_expired_at_ms);
                vec![self.event(now, EventKind::NodeFailed { error })]
            }
            AttemptCommand::Fail {
                error,
                retryable,
                retry_after_ms,
                jitter,
            } => self.fail(
                now,
                Vec::new(),
                error.clone(),
                *retryable,
                *retry_after_ms,
                *jitter,
            ),
            AttemptCommand::HeartbeatTimedOut { timeout_ms, jitter } => {
                self.time_out(now, *timeout_ms, *jitter)
            }
        }
    }

    fn heartbeat(
        &mut self,
        now: u64,
        received_at_ms: u64,
        data_size_bytes: Option<u64>,
    ) -> Vec<Event> {
        let interval_ms = self.last_written_at_ms.map(|last| now - last);
        self.last_written_at_ms = Some(now);
        let latest = self.last_heartbeat_at_ms.unwrap_or(0).max(received_at_ms);
        self.last_heartbeat_at_ms = Some(latest);
        vec![self.event(
            now,
            EventKind::TaskHeartbeat {
                has_data: data_size_bytes.is_some(),
                data_size_bytes: data_size_bytes.unwrap_or(0),
                interval_ms,
            },
        )]
    }

    fn time_out(&mut self, now: u64, timeout_ms: u64, jitter: f64) -> Vec<Event> {
        let sign_of_life = self
            .last_heartbeat_at_ms
            .map_or(self.started_at_ms, |hb| hb.max(self.started_at_ms));
        let stale_for = now.saturating_sub(sign_of_life);
        let first = vec![self.event(
            now,
            EventKind::TaskHeartbeatTimeout {
                last_heartbeat_at_ms: self.last_heartbeat_at_ms,
                timeout_ms,
            },
        )];
        let error = TaskError::heartbeat_timeout(stale_for, timeout_ms, self.last_heartbeat_at_ms);
        self.fail(now, first, error, true, None, jitter)
    }

    fn fail(
        &mut self,
        now: u64,
        mut events: Vec<Event>,
        error: TaskError,
        retryable: bool,
        retry_after_ms: Option<u64>,
        jitter: f64,
    ) -> Vec<Event> {
        self.state = Some(AttemptState::Failed);
        events.push(self.event(now, EventKind::NodeFailed { error }));
        let failed_so_far = self.failures_before + 1;
        if retryable && failed_so_far <= self.policy.retries {
            let delay_ms = self
                .policy
                .backoff
                .delay_ms(failed_so_far, jitter, retry_after_ms);
            let next = self.key.node.attempt(self.key.attempt + 1);
            events.push(Event::new(&next, now, EventKind::NodeRetrying { delay_ms }));
        }
        events
    }

    fn event(&self, now: u64, kind: EventKind) -> Event {
        Event::new(&self.key, now, kind)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every step does what the model says: same events (or the same error) and the same state.
    #[test]
    fn the_machine_follows_the_model(
        policy in policy(),
        failures_before in 0..6_u32,
        attempt in 1..8_u32,
        steps in timed_commands(16),
    ) {
        let mut machine = AttemptMachine::new(key(attempt), policy, failures_before);
        let mut model = Model {
            key: key(attempt),
            policy,
            failures_before,
            state: None,
            started_at_ms: 0,
            last_heartbeat_at_ms: None,
            last_written_at_ms: None,
        };
        for (command, now) in steps {
            let expected = model.step(&command, now);
            let actual = machine.apply(command, now);
            prop_assert_eq!(&actual, &expected);
            prop_assert_eq!(machine.state(), model.state);
            if let Ok(events) = actual {
                prop_assert!(events.iter().all(|event| event.timestamp_ms == now));
            }
        }
    }

    /// A terminal state never changes: every later command is an error naming the state and the
    /// command, and leaves the machine as it was.
    #[test]
    fn terminal_states_are_absorbing(
        policy in policy(),
        failures_before in 0..6_u32,
        steps in timed_commands(24),
    ) {
        let mut machine = AttemptMachine::new(key(1), policy, failures_before);
        let mut terminal: Option<AttemptState> = None;
        for (command, now) in steps {
            let kind = command.kind();
            let before = machine.state();
            let error_before = machine.error().cloned();
            let plan_before = machine.retry_plan();
            let result = machine.apply(command, now);
            if let Some(state) = terminal {
                let error = result.expect_err("a terminal state refuses every command");
                prop_assert_eq!(&error, &DomainError::InvalidTransition { state, command: kind });
                let message = error.to_string();
                prop_assert!(message.contains(state.as_str()), "{}", message);
                prop_assert!(message.contains(&kind.to_string()), "{}", message);
                prop_assert_eq!(machine.state(), before);
                prop_assert_eq!(machine.error().cloned(), error_before);
                prop_assert_eq!(machine.retry_plan(), plan_before);
            } else if result.is_err() {
                prop_assert_eq!(machine.state(), before, "a refused command changes nothing");
            }
            terminal = machine.state().filter(|state| state.is_terminal());
        }
    }

    /// `Start` succeeds exactly when the machine has not started.
    #[test]
    fn start_only_from_none(steps in timed_commands(16)) {
        let mut machine = AttemptMachine::new(key(1), RetryPolicy::default(), 0);
        for (command, now) in steps {
            let before = machine.state();
            let is_start = matches!(command, AttemptCommand::Start);
            let result = machine.apply(command, now);
            if is_start {
                prop_assert_eq!(result.is_ok(), before.is_none());
            }
            if before.is_none() {
                prop_assert_eq!(result.is_ok(), is_start, "nothing but Start before Start");
            }
        }
    }

    /// Each command produces its own list of events, and `NodeRetrying` (for the next attempt
    /// number) only when the failure is retryable and within the budget.
    #[test]
    fn each_command_produces_its_events(
        policy in policy(),
        failures_before in 0..6_u32,
        attempt in 1..8_u32,
        steps in timed_commands(16),
    ) {
        let mut machine = AttemptMachine::new(key(attempt), policy, failures_before);
        // The budget: the failed attempts so far, this one included, are at most `retries`.
        let failed_so_far = failures_before + 1;
        let within_budget = failed_so_far <= policy.retries;
        for (command, now) in steps {
            let summary = command_summary(&command);
            let Ok(events) = machine.apply(command, now) else { continue };
            let names: Vec<&str> = events.iter().map(|event| event.kind.type_name()).collect();
            let retry = match summary {
                Summary::Start => { prop_assert_eq!(names, ["NodeStarted"]); None }
                Summary::Heartbeat => { prop_assert_eq!(names, ["TaskHeartbeat"]); None }
                Summary::Finish => { prop_assert_eq!(names, ["NodeFinished"]); None }
                Summary::Cancel => { prop_assert_eq!(names, ["NodeCancelled"]); None }
                Summary::Abandon => {
                    prop_assert_eq!(names, ["NodeFailed"]);
                    prop_assert_eq!(failed_code(&events[0]), Some(ErrorCode::AttemptAbandoned));
                    None
                }
                Summary::Fail { retryable } => {
                    let retried = retryable && within_budget;
                    let expected: &[&str] =
                        if retried { &["NodeFailed", "NodeRetrying"] } else { &["NodeFailed"] };
                    prop_assert_eq!(names, expected);
                    Some(retried)
                }
                Summary::HeartbeatTimeout => {
                    let expected: &[&str] = if within_budget {
                        &["TaskHeartbeatTimeout", "NodeFailed", "NodeRetrying"]
                    } else {
                        &["TaskHeartbeatTimeout", "NodeFailed"]
                    };
                    prop_assert_eq!(names, expected);
                    prop_assert_eq!(failed_code(&events[1]), Some(ErrorCode::TaskHeartbeatTimeout));
                    Some(within_budget)
                }
            };
            for event in &events {
                let is_retry = matches!(event.kind, EventKind::NodeRetrying { .. });
                prop_assert_eq!(event.attempt, if is_retry { attempt + 1 } else { attempt });
                prop_assert_eq!((event.run_id.as_str(), event.node_id.as_str(), event.iteration), ("run", "node", 3));
            }
            if let Some(retried) = retry {
                prop_assert_eq!(machine.retry_plan().map(|plan| plan.next_attempt), retried.then_some(attempt + 1));
            }
        }
    }
}

/// What kind of command it was, with what decides its events.
enum Summary {
    Start,
    Heartbeat,
    Finish,
    Cancel,
    Abandon,
    Fail { retryable: bool },
    HeartbeatTimeout,
}

fn command_summary(command: &AttemptCommand) -> Summary {
    match command {
        AttemptCommand::Start => Summary::Start,
        AttemptCommand::Heartbeat { .. } => Summary::Heartbeat,
        AttemptCommand::Finish => Summary::Finish,
        AttemptCommand::Cancel => Summary::Cancel,
        AttemptCommand::Abandon { .. } => Summary::Abandon,
        AttemptCommand::Fail { retryable, .. } => Summary::Fail {
            retryable: *retryable,
        },
        AttemptCommand::HeartbeatTimedOut { .. } => Summary::HeartbeatTimeout,
    }
}

fn failed_code(event: &Event) -> Option<ErrorCode> {
    match &event.kind {
        EventKind::NodeFailed { error } => Some(error.code),
        _ => None,
    }
}
