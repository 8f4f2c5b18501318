//! A node's attempts as the engine runs them (one [`AttemptMachine`] per attempt, the store
//! counting earlier failures): the retry decision for every `(retries, failures, retryable)`
//! triple, and the retry budget [`RetryPolicy::attempts_left`] against runs of machines.

use proptest::prelude::*;
use stint_domain::{AttemptCommand, AttemptMachine, EventKind, NodeKey, RetryPolicy, TaskError};

use crate::machine::policy;

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

/// The rule in its own words: retried when retryable and the failed attempts so far, this one
/// included, number at most `retries`.
fn rule_retries(retries: u32, failed_so_far: u64, retryable: bool) -> bool {
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
fn the_retry_decision_matches_the_rule_for_every_small_triple() {
    for retries in 0..=12_u32 {
        for failed_so_far in 0..=14_u32 {
            for retryable in [false, true] {
                let policy = RetryPolicy {
                    retries,
                    ..RetryPolicy::default()
                };
                let expected = rule_retries(retries, u64::from(failed_so_far), retryable);
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
        let policy = RetryPolicy {
            retries,
            ..RetryPolicy::default()
        };
        assert_eq!(run(policy, 0, 0, &[Ending::Fail]), retries + 1);
        assert_eq!(run(policy, 0, 0, &[Ending::FailForGood]), 1);
    }
}

/// How an attempt of a simulated run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// A retryable failure.
    Fail,
    /// The watchdog's heartbeat timeout (retryable).
    TimeOut,
    /// A failure that is not retryable.
    FailForGood,
}

impl Ending {
    fn command(self) -> AttemptCommand {
        match self {
            Self::Fail => fail(true),
            Self::TimeOut => AttemptCommand::HeartbeatTimedOut {
                timeout_ms: 10,
                jitter: 0.5,
            },
            Self::FailForGood => fail(false),
        }
    }
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::Fail),
        Just(Ending::TimeOut),
        Just(Ending::FailForGood)
    ]
}

/// Runs the node the way the engine does, `earlier` attempts (`failures_before` of them failed)
/// already stored: one machine per attempt, numbered on, attempt `n` ending as `endings[n]` says
/// (the last ending repeats), until the machine plans no retry. Returns the attempts started.
fn run(policy: RetryPolicy, earlier: u32, failures_before: u32, endings: &[Ending]) -> u32 {
    let mut started = 0;
    loop {
        let attempt = earlier + started + 1;
        let key = node_key().attempt(attempt);
        let mut machine = AttemptMachine::new(key, policy, failures_before + started);
        machine.apply(AttemptCommand::Start, 0).expect("start");
        let ending = endings[(started as usize).min(endings.len() - 1)];
        let events = machine.apply(ending.command(), 1).expect("fail");
        started += 1;
        let Some(plan) = machine.retry_plan() else {
            return started;
        };
        assert_eq!(plan.next_attempt, attempt + 1, "attempts are numbered on");
        let retrying = events.last().map(|event| (&event.kind, event.attempt));
        assert!(
            matches!(retrying, Some((EventKind::NodeRetrying { .. }, next)) if next == attempt + 1)
        );
        // Bounded, so a broken budget fails the test instead of hanging it.
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
        let endings = [Ending::Fail, Ending::TimeOut];
        let started = run(policy, earlier, failures_before, &endings);
        prop_assert_eq!(policy.attempts_left(failures_before), started);
        prop_assert_eq!(policy.planned_attempts(earlier, failures_before), earlier + started);
    }

    /// However its attempts end, a run starts at most `attempts_left`, and exactly that many
    /// unless a failure that is not retryable ends it first.
    #[test]
    fn a_run_starts_at_most_attempts_left(
        policy in policy(),
        failures_before in 0..8_u32,
        endings in proptest::collection::vec(ending(), 1..12),
    ) {
        let left = policy.attempts_left(failures_before);
        let started = run(policy, failures_before, failures_before, &endings);
        // The index of the attempt a non-retryable failure ends, if one of the first `left` does.
        let stop = endings
            .iter()
            .position(|&ending| ending == Ending::FailForGood)
            .filter(|&stop| stop < left as usize);
        match stop {
            Some(stop) => prop_assert_eq!(started as usize, stop + 1),
            None => prop_assert_eq!(started, left),
        }
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
    fn the_retry_decision_matches_the_rule(
        retries in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        failed_so_far in prop_oneof![0..16_u32, any::<u32>(), Just(u32::MAX)],
        retryable in any::<bool>(),
    ) {
        let policy = RetryPolicy { retries, ..RetryPolicy::default() };
        prop_assert_eq!(
            policy.should_retry(retryable, failed_so_far),
            rule_retries(retries, u64::from(failed_so_far), retryable)
        );
    }
}
