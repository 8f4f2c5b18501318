//! A node's attempts: random command sequences on [`NodeHistory`], and the retry decision of
//! SPEC section 2 for every `(retries, failures, retryable)` triple.

use proptest::prelude::*;
use stint_domain::{
    AttemptCommand, AttemptMachine, AttemptState, EventKind, NodeHistory, NodeKey, RetryPolicy,
    TaskError,
};

use crate::machine::{policy, timed_commands};

fn node_key() -> NodeKey {
    NodeKey::new("run", "node", 0).expect("valid key")
}

fn fail(retryable: bool) -> AttemptCommand {
    AttemptCommand::Fail {
        error: TaskError::task_failed("boom"),
        retryable,
        retry_after_ms: None,
        jitter: 0.0,
    }
}

/// The SPEC's words: retried when retryable and the failed attempts so far, this one included,
/// number at most `retries`.
fn spec_retries(retries: u32, failed_so_far: u64, retryable: bool) -> bool {
    retryable && failed_so_far <= u64::from(retries)
}

/// Runs one attempt, failing it; returns whether a `NodeRetrying` followed.
fn retried_by_machine(retries: u32, failures_before: u32, retryable: bool) -> bool {
    let policy = RetryPolicy {
        retries,
        ..RetryPolicy::default()
    };
    let key = node_key().attempt(failures_before.saturating_add(1));
    let mut machine = AttemptMachine::new(key, policy, failures_before);
    machine.apply(AttemptCommand::Start, 0).expect("start");
    let events = machine.apply(fail(retryable), 1).expect("fail");
    let retried = events
        .iter()
        .any(|event| matches!(event.kind, EventKind::NodeRetrying { .. }));
    assert_eq!(retried, machine.retry_plan().is_some());
    retried
}

#[test]
fn the_retry_decision_matches_the_spec_for_every_small_triple() {
    for retries in 0..=12_u32 {
        for failed_so_far in 0..=14_u32 {
            for retryable in [false, true] {
                let policy = RetryPolicy {
                    retries,
                    ..RetryPolicy::default()
                };
                let expected = spec_retries(retries, u64::from(failed_so_far), retryable);
                assert_eq!(
                    policy.should_retry(retryable, failed_so_far),
                    expected,
                    "retries {retries}, failed so far {failed_so_far}, retryable {retryable}"
                );
                if let Some(failures_before) = failed_so_far.checked_sub(1) {
                    assert_eq!(
                        retried_by_machine(retries, failures_before, retryable),
                        expected,
                        "machine: retries {retries}, failures before {failures_before}"
                    );
                }
            }
        }
    }
}

/// `retries` is the number of extra attempts after the first failure: a node whose attempts
/// always fail retryably runs `retries + 1` attempts; one that fails non-retryably runs one.
#[test]
fn retries_counts_extra_attempts_after_the_first_failure() {
    for retries in 0..=6_u32 {
        for retryable in [false, true] {
            let policy = RetryPolicy {
                retries,
                ..RetryPolicy::default()
            };
            let mut node = NodeHistory::new(node_key(), policy);
            // Bounded, so a broken budget fails the test instead of hanging it.
            for now in (0..u64::from(retries) + 3).map(|step| step * 2) {
                node.apply(AttemptCommand::Start, now).expect("start");
                node.apply(fail(retryable), now + 1).expect("fail");
                if node.retry_plan().is_none() {
                    break;
                }
            }
            let expected = if retryable { retries + 1 } else { 1 };
            assert_eq!(
                node.last_attempt(),
                expected,
                "retries {retries}, retryable {retryable}"
            );
        }
    }
}

/// Runs the node the way the engine does, `earlier` attempts (`failures_before` of them failed)
/// already stored: one machine per attempt, numbered on, every attempt failing retryably, until
/// the machine plans no retry. Returns the number of attempts started.
fn attempts_of_a_failing_run(policy: RetryPolicy, earlier: u32, failures_before: u32) -> u32 {
    let mut started = 0;
    loop {
        let key = node_key().attempt(earlier + started + 1);
        let mut machine = AttemptMachine::new(key, policy, failures_before + started);
        machine.apply(AttemptCommand::Start, 0).expect("start");
        machine.apply(fail(true), 1).expect("fail");
        started += 1;
        if machine.retry_plan().is_none() {
            return started;
        }
        assert!(started <= policy.retries, "more retries than the budget");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The budget the CLI shows is the number of attempts the machine lets a failing run start.
    #[test]
    fn attempts_left_is_what_a_failing_run_starts(
        retries in 0..16_u32,
        failures_before in 0..20_u32,
        others in 0..5_u32,
    ) {
        let policy = RetryPolicy { retries, ..RetryPolicy::default() };
        let earlier = failures_before + others;
        let started = attempts_of_a_failing_run(policy, earlier, failures_before);
        prop_assert_eq!(policy.attempts_left(failures_before), started);
        prop_assert_eq!(policy.planned_attempts(earlier, failures_before), earlier + started);
    }

    /// At least one attempt, at most `retries + 1`, fewer as failures grow; never overflows.
    #[test]
    fn attempts_left_is_between_one_and_the_whole_budget(
        retries in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        failures_before in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        earlier in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
    ) {
        let policy = RetryPolicy { retries, ..RetryPolicy::default() };
        let left = policy.attempts_left(failures_before);
        prop_assert!(left >= 1);
        prop_assert!(u64::from(left) <= u64::from(retries) + 1);
        prop_assert!(policy.attempts_left(failures_before.saturating_add(1)) <= left);
        // Computed in u64; the answer saturates at `u32::MAX`, the last attempt number.
        let expected = (u64::from(retries) + 1)
            .saturating_sub(u64::from(failures_before))
            .clamp(1, u64::from(u32::MAX));
        prop_assert_eq!(u64::from(left), expected);
        let planned = u64::from(earlier) + u64::from(left);
        prop_assert_eq!(u64::from(policy.planned_attempts(earlier, failures_before)), planned.min(u64::from(u32::MAX)));
    }

    #[test]
    fn the_retry_decision_matches_the_spec(
        retries in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        failed_so_far in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        retryable in any::<bool>(),
    ) {
        let policy = RetryPolicy { retries, ..RetryPolicy::default() };
        prop_assert_eq!(
            policy.should_retry(retryable, failed_so_far),
            spec_retries(retries, u64::from(failed_so_far), retryable)
        );
    }

    /// Driving a node through random commands: attempt numbers have no gaps, the node's state is
    /// its last attempt's, failures are counted, and every retry decision matches the SPEC.
    #[test]
    fn a_node_numbers_its_attempts_and_takes_its_last_attempts_state(
        policy in policy(),
        steps in timed_commands(40),
    ) {
        let mut node = NodeHistory::new(node_key(), policy);
        // The state of each attempt as the events tell it, attempt 1 first.
        let mut states: Vec<AttemptState> = Vec::new();
        let mut failed_events = 0_u32;
        for (command, now) in steps {
            let before = (node.state(), node.last_attempt(), node.failures());
            // For a failure: whether it is retryable, and whether the machine plans the retry
            // (recovery's abandonment is retryable, but only marks the attempt).
            let failure = match &command {
                AttemptCommand::Fail { retryable, .. } => Some((*retryable, true)),
                AttemptCommand::HeartbeatTimedOut { .. } => Some((true, true)),
                AttemptCommand::Abandon { .. } => Some((true, false)),
                _ => None,
            };
            let Ok(events) = node.apply(command, now) else {
                prop_assert_eq!((node.state(), node.last_attempt(), node.failures()), before);
                continue;
            };
            let mut retried = None;
            for event in &events {
                match &event.kind {
                    EventKind::NodeStarted => {
                        prop_assert_eq!(event.attempt as usize, states.len() + 1, "no gaps");
                        states.push(AttemptState::InProgress);
                    }
                    EventKind::NodeFinished => set_last(&mut states, event.attempt, AttemptState::Finished),
                    EventKind::NodeCancelled { .. } => set_last(&mut states, event.attempt, AttemptState::Cancelled),
                    EventKind::NodeFailed { .. } => {
                        set_last(&mut states, event.attempt, AttemptState::Failed);
                        failed_events += 1;
                    }
                    EventKind::NodeRetrying { .. } => retried = Some(event.attempt),
                    EventKind::TaskHeartbeat { .. } | EventKind::TaskHeartbeatTimeout { .. } => {
                        prop_assert_eq!(event.attempt as usize, states.len());
                    }
                }
            }
            prop_assert_eq!(node.state(), states.last().copied(), "the node's state is its last attempt's");
            prop_assert_eq!(node.attempt_states(), states.clone());
            prop_assert_eq!(node.last_attempt() as usize, states.len());
            prop_assert_eq!(node.failures(), failed_events);
            if let Some((retryable, planned)) = failure {
                let expected = spec_retries(policy.retries, u64::from(failed_events), retryable);
                let next = node.last_attempt() + 1;
                prop_assert_eq!(retried, (expected && planned).then_some(next));
                prop_assert_eq!(node.may_retry(), expected);
                prop_assert_eq!(node.retry_plan().map(|plan| plan.next_attempt), retried);
            }
        }
    }

    /// Retries with the model of SPEC section 3: a new attempt starts only when the last one
    /// asked for a retry, so the node runs at most `retries + 1` attempts.
    #[test]
    fn a_node_that_retries_only_when_told_stays_within_its_budget(
        policy in policy(),
        outcomes in proptest::collection::vec(0..4_u8, 1..12),
    ) {
        let mut node = NodeHistory::new(node_key(), policy);
        let mut now = 0;
        for outcome in outcomes {
            node.apply(AttemptCommand::Start, now).expect("start after a retry decision");
            let command = match outcome {
                0 => fail(true),
                1 => AttemptCommand::HeartbeatTimedOut { timeout_ms: 10, jitter: 0.5 },
                2 => AttemptCommand::Abandon { lease_expired_at_ms: now },
                _ => fail(false),
            };
            node.apply(command, now + 20).expect("fail");
            now += 100;
            if !node.may_retry() {
                break;
            }
        }
        prop_assert!(node.last_attempt() <= policy.retries + 1);
        prop_assert_eq!(node.failures(), node.last_attempt());
    }
}

fn set_last(states: &mut [AttemptState], attempt: u32, state: AttemptState) {
    assert_eq!(
        attempt as usize,
        states.len(),
        "only the last attempt changes"
    );
    if let Some(last) = states.last_mut() {
        *last = state;
    }
}
