//! Attempt numbers, the one-in-progress rule, and what a new attempt inherits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use stint_domain::{AttemptState, TaskError};
use stint_ports::{AttemptEnd, Store, StoreError};

use crate::Fixture;
use crate::support::{
    accept_end, accept_heartbeat, assert_conflict, attempts_of, cancellation, events_of, fail,
    heartbeat, key, newest_payload, node_record, start, types,
};

/// Attempt numbers of a node are 1, 2, 3... with no gaps, counted per `(run, node, iteration)`.
pub async fn numbering_starts_at_one_without_gaps(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);

    let (first, a1) = start(&*store, &node, "owner-1", 1_000).await;
    assert_eq!(first.attempt, 1);
    assert_eq!(first.checkpoint, None);
    assert_eq!(first.failed_before, 0);
    fail(&*store, &a1, 1_100).await;

    let (second, a2) = start(&*store, &node, "owner-2", 2_000).await;
    assert_eq!(second.attempt, 2);
    accept_end(&*store, &a2, cancellation(), 2_100, Vec::new()).await;

    let (third, _) = start(&*store, &node, "owner-3", 3_000).await;
    assert_eq!(third.attempt, 3);

    let numbers: Vec<u32> = attempts_of(&*store, &node)
        .await
        .iter()
        .map(|record| record.attempt)
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);

    // Numbering is per key: another iteration, node or run starts again at 1.
    for other in [
        key("run", "node", 1),
        key("run", "other", 0),
        key("other-run", "node", 0),
    ] {
        let (begun, _) = start(&*store, &other, "owner-x", 4_000).await;
        assert_eq!(begun.attempt, 1, "first attempt of {other}");
    }
    let node_record = node_record(&*store, &node).await;
    assert_eq!(node_record.last_attempt, 3);
    assert_eq!(node_record.state, AttemptState::InProgress);
}

/// A node never has two attempts in progress: a second begin is a conflict that writes nothing.
pub async fn begin_refused_while_attempt_in_progress(fixture: &dyn Fixture) {
    let store = fixture.store();
    let other_handle = fixture.second_store().await;
    let node = key("run", "node", 0);
    let (_, running) = start(&*store, &node, "first", 1_000).await;

    for handle in [&store, &other_handle] {
        let refused = handle
            .begin_attempt(crate::support::begin_at(&node, "second", 1_500))
            .await;
        assert_conflict(refused, "begin while an attempt is in progress");
    }

    let attempts = attempts_of(&*store, &node).await;
    assert_eq!(attempts.len(), 1, "the refused begin inserted nothing");
    assert_eq!(attempts[0].owner, "first");
    assert_eq!(attempts[0].started_at_ms, 1_000);
    assert_eq!(types(&events_of(&*store, "run").await), vec!["NodeStarted"]);

    // Once the running attempt ends, the next begin is accepted and numbered after it.
    fail(&*store, &running, 2_000).await;
    let (next, _) = start(&*store, &node, "second", 2_500).await;
    assert_eq!(next.attempt, 2);
}

/// The checkpoint handed to a new attempt is the newest payload any earlier attempt recorded:
/// a bare ping keeps the payload, and an attempt without heartbeats does not erase it.
pub async fn checkpoint_is_newest_recorded_payload(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);
    assert_eq!(newest_payload(&*store, &node).await, None);

    let (_, a1) = start(&*store, &node, "owner-1", 1_000).await;
    let step_one = json!({"step": 1});
    // Values that a lossy store would change: floats, big integers, unicode, deep nesting, null.
    let step_two = json!({
        "step": 2,
        "ratio": 0.1,
        "big": u64::MAX,
        "negative": -9_007_199_254_740_993_i64,
        "text": "héllo ✓ \"quoted\" \\ back",
        "nested": {"a": [1, 2, {"b": null, "c": [true, false]}]},
        "empty": {}
    });
    for (at, payload) in [
        (1_100, Some(step_one)),
        (1_200, Some(step_two.clone())),
        (1_300, None),
    ] {
        accept_heartbeat(&*store, &a1, heartbeat(&a1, at, payload, None)).await;
    }
    // The running attempt's own payload is already the node's checkpoint.
    assert_eq!(
        newest_payload(&*store, &node).await,
        Some(step_two.clone()),
        "a bare ping keeps the last payload"
    );
    fail(&*store, &a1, 1_400).await;

    let (second, a2) = start(&*store, &node, "owner-2", 2_000).await;
    assert_eq!(second.checkpoint, Some(step_two.clone()));
    fail(&*store, &a2, 2_100).await;

    let (third, a3) = start(&*store, &node, "owner-3", 3_000).await;
    assert_eq!(
        third.checkpoint,
        Some(step_two),
        "an attempt that recorded no heartbeat does not erase the checkpoint"
    );
    let step_three = json!({"step": 3});
    accept_heartbeat(
        &*store,
        &a3,
        heartbeat(&a3, 3_100, Some(step_three.clone()), None),
    )
    .await;
    assert_eq!(newest_payload(&*store, &node).await, Some(step_three));

    // Checkpoints belong to their node key only.
    let sibling = key("run", "node", 1);
    assert_eq!(newest_payload(&*store, &sibling).await, None);
    let (fresh, _) = start(&*store, &sibling, "owner-4", 4_000).await;
    assert_eq!(fresh.checkpoint, None);
}

/// `failed_before` counts the earlier failed attempts of the node, and nothing else.
pub async fn failed_before_counts_earlier_failures(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);

    let (_, a1) = start(&*store, &node, "owner-1", 1_000).await;
    fail(&*store, &a1, 1_100).await;
    let (second, a2) = start(&*store, &node, "owner-2", 2_000).await;
    assert_eq!(second.failed_before, 1);
    accept_end(&*store, &a2, cancellation(), 2_100, Vec::new()).await;
    let (third, a3) = start(&*store, &node, "owner-3", 3_000).await;
    assert_eq!(
        third.failed_before, 1,
        "a cancelled attempt is not a failure"
    );
    let not_retryable = AttemptEnd::Failed {
        error: TaskError::task_failed("bad output"),
        retryable: false,
    };
    accept_end(&*store, &a3, not_retryable, 3_100, Vec::new()).await;
    let (fourth, _) = start(&*store, &node, "owner-4", 4_000).await;
    assert_eq!(
        fourth.failed_before, 2,
        "every failure counts, retryable or not"
    );

    let (other, _) = start(&*store, &key("run", "node", 1), "owner-5", 5_000).await;
    assert_eq!(
        other.failed_before, 0,
        "failures of another iteration do not count"
    );
}

/// Two handles racing to begin and fail attempts of one node get the numbers 1, 2, 3... each
/// once, and the race really happened: some begins were refused because the other handle's
/// attempt was in progress.
///
/// Each racer holds its attempt in progress for a millisecond (as a store that talks to a
/// database does between two statements), and starts only when the other one is ready. A racer
/// that reaches its quota before any begin was refused goes on until one is: on a loaded machine
/// one racer's thread may run its whole loop before the other's is scheduled at all.
pub async fn racing_begins_get_distinct_numbers(fixture: &dyn Fixture) {
    let node = key("race", "node", 0);
    let race = Arc::new(Race {
        ready: tokio::sync::Barrier::new(2),
        refused: AtomicU32::new(0),
    });
    let racers = [("a", fixture.store()), ("b", fixture.second_store().await)];
    let mut tasks = Vec::new();
    for (name, store) in racers {
        let (node, race) = (node.clone(), race.clone());
        tasks.push(tokio::spawn(
            async move { race.run(name, &*store, &node).await },
        ));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.expect("racer finished"));
    }
    let refused = race.refused.load(Ordering::SeqCst);
    assert!(refused > 0, "the racers never met: no begin was refused");

    won.sort_unstable();
    let total = u32::try_from(won.len()).expect("few attempts");
    assert!(total >= 2 * Race::QUOTA, "{total} attempts");
    assert_eq!(won, (1..=total).collect::<Vec<_>>());
    let store = fixture.store();
    let attempts = attempts_of(&*store, &node).await;
    let numbers: Vec<u32> = attempts.iter().map(|record| record.attempt).collect();
    assert_eq!(numbers, (1..=total).collect::<Vec<_>>());
    assert!(
        attempts
            .iter()
            .all(|record| record.state == AttemptState::Failed)
    );
    let node_record = node_record(&*store, &node).await;
    assert_eq!(node_record.last_attempt, total);
    assert_eq!(node_record.state, AttemptState::Failed);
    let started = types(&events_of(&*store, "race").await)
        .into_iter()
        .filter(|kind| *kind == "NodeStarted")
        .count();
    assert_eq!(
        started, total as usize,
        "one NodeStarted per attempt, none from a refused begin"
    );
}

/// What two racers share.
struct Race {
    ready: tokio::sync::Barrier,
    /// Begins refused with a conflict, both racers together.
    refused: AtomicU32,
}

impl Race {
    /// Attempts each racer begins and fails, at least.
    const QUOTA: u32 = 25;
    /// Attempts a racer may win while waiting for the other one to show up.
    const LIMIT: u32 = 20 * Self::QUOTA;

    /// Begins and fails attempts of `node`, retrying each begin the other racer's attempt
    /// blocks; returns the numbers won.
    async fn run(&self, name: &str, store: &dyn Store, node: &stint_domain::NodeKey) -> Vec<u32> {
        self.ready.wait().await;
        let mut won = Vec::new();
        let mut tries = 0_u64;
        loop {
            let met = self.refused.load(Ordering::SeqCst) > 0;
            let count = u32::try_from(won.len()).expect("few attempts");
            if (count >= Self::QUOTA && met) || count >= Self::LIMIT {
                return won;
            }
            tries += 1;
            assert!(tries < 1_000_000, "racer {name} starved");
            let owner = format!("{name}-{count}");
            let at = 1_000 + tries;
            match store
                .begin_attempt(crate::support::begin_at(node, &owner, at))
                .await
            {
                Ok(begun) => {
                    // Every earlier attempt failed, so the count handed back must match.
                    assert_eq!(begun.failed_before, begun.attempt - 1, "racer {name}");
                    // Held for a moment, not just a yield: SQLite serialises the two handles'
                    // writes, and a yield alone let one racer win 500 times in a row.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    let owned = stint_ports::OwnedAttempt {
                        key: node.attempt(begun.attempt),
                        owner,
                    };
                    fail(store, &owned, at + 1).await;
                    won.push(begun.attempt);
                }
                Err(StoreError::Conflict { .. }) => {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
                Err(other) => panic!("racer {name}: {other}"),
            }
        }
    }
}
