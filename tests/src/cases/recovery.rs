//! Recovery of attempts whose process died (their lease expired).

use std::collections::HashSet;

use serde_json::json;
use stint_domain::{AttemptKey, AttemptState, ErrorCode, Event, EventKind};
use stint_ports::{AttemptEnd, EndAttempt, Renewal, StoreError};

use crate::Fixture;
use crate::support::{
    accept_heartbeat, assert_conflict, attempt_record, begin_leased, events_of, heartbeat, key,
};

/// When recovery runs in these cases.
const NOW: u64 = 10_000;

/// Every in-progress attempt with an expired lease is marked failed with `ATTEMPT_ABANDONED`
/// (retryable) exactly once, even with two recoverers on two handles at once; live attempts
/// (including one whose lease ends exactly now) are left alone.
pub async fn recovery_marks_each_expired_attempt_once(fixture: &dyn Fixture) {
    let store = fixture.store();
    let other = fixture.second_store().await;
    let mut dead = Vec::new();
    for i in 0..20 {
        let node = key("run", &format!("dead-{i:02}"), 0);
        dead.push(begin_leased(&*store, &node, 2_000 + i).await);
    }
    let live = begin_leased(&*store, &key("run", "live", 0), NOW + 1).await;
    let boundary = begin_leased(&*store, &key("run", "boundary", 0), NOW).await;

    let (first, second) = tokio::join!(store.recover_abandoned(NOW), other.recover_abandoned(NOW));
    let (first, second) = (first.expect("recover"), second.expect("recover"));
    let mut marked: Vec<AttemptKey> = first.into_iter().chain(second).collect();
    assert_eq!(
        marked.len(),
        20,
        "each expired attempt is marked by exactly one recoverer"
    );
    let unique: HashSet<AttemptKey> = marked.iter().cloned().collect();
    let expected: HashSet<AttemptKey> = dead.iter().map(|owned| owned.key.clone()).collect();
    assert_eq!(unique, expected);
    marked.clear();

    for (i, owned) in dead.iter().enumerate() {
        let record = attempt_record(&*store, owned).await;
        assert_eq!(record.state, AttemptState::Failed);
        let error = record.error.expect("an abandoned attempt has an error");
        assert_eq!(error.code, ErrorCode::AttemptAbandoned);
        assert_eq!(
            error.details["lease_expired_at_ms"],
            json!(2_000 + i as u64)
        );
        assert_eq!(record.retryable, Some(true), "abandonment is retryable");
        assert_eq!(record.finished_at_ms, Some(NOW));
        let node = store
            .get_node(&owned.key.node)
            .await
            .expect("get")
            .expect("node");
        assert_eq!(node.state, AttemptState::Failed);
        assert_eq!(node.updated_at_ms, NOW);
    }
    for owned in [&live, &boundary] {
        let record = attempt_record(&*store, owned).await;
        assert_eq!(
            record.state,
            AttemptState::InProgress,
            "{} is alive",
            owned.key
        );
        assert_eq!(record.error, None);
    }

    let failures: Vec<Event> = events_of(&*store, "run")
        .await
        .into_iter()
        .map(|record| record.event)
        .filter(|event| matches!(event.kind, EventKind::NodeFailed { .. }))
        .collect();
    assert_eq!(failures.len(), 20, "one NodeFailed per abandoned attempt");
    let failed_nodes: HashSet<&str> = failures
        .iter()
        .map(|event| event.node_id.as_str())
        .collect();
    assert_eq!(failed_nodes.len(), 20);
    for event in &failures {
        let EventKind::NodeFailed { error } = &event.kind else {
            unreachable!("filtered on NodeFailed")
        };
        assert_eq!(error.code, ErrorCode::AttemptAbandoned);
        assert_eq!(event.attempt, 1);
    }

    assert!(
        store
            .recover_abandoned(NOW)
            .await
            .expect("recover")
            .is_empty(),
        "nothing is marked twice"
    );
    assert_eq!(events_of(&*store, "run").await.len(), 22 + 20);

    // The dead process, if it was only a zombie, can write nothing any more.
    let zombie = &dead[0];
    let beat = heartbeat(zombie, NOW + 1, Some(json!({"late": true})), None);
    assert_conflict(
        store.record_heartbeat(zombie, beat).await,
        "zombie heartbeat",
    );
    assert_conflict(
        store
            .renew_lease(
                zombie,
                Renewal {
                    now_ms: NOW,
                    lease_ms: 50_000,
                },
            )
            .await,
        "zombie renewal",
    );
    let finish = AttemptEnd::Finished {
        output: json!({"late": true}),
        vcs: None,
    };
    assert_conflict(
        store
            .end_attempt(zombie, EndAttempt::new(finish, NOW + 1))
            .await,
        "zombie finish",
    );
    assert_eq!(
        store.read_output(&zombie.key.node).await.expect("read"),
        None
    );
}

/// After recovery the node can begin again: the next attempt is numbered after the abandoned one,
/// counts it as a failure and gets its checkpoint.
pub async fn recovered_node_resumes_from_its_checkpoint(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);
    let dead = begin_leased(&*store, &node, 2_000).await;
    let checkpoint = json!({"cursor": "page-7"});
    accept_heartbeat(
        &*store,
        &dead,
        heartbeat(&dead, 1_500, Some(checkpoint.clone()), None),
    )
    .await;

    let refused = store
        .begin_attempt(crate::support::begin_at(&node, "next", NOW))
        .await;
    assert_conflict(refused, "begin before recovery");
    assert_eq!(
        store.recover_abandoned(NOW).await.expect("recover"),
        vec![dead.key.clone()]
    );

    let begun = store
        .begin_attempt(crate::support::begin_at(&node, "next", NOW))
        .await
        .expect("begin after recovery");
    assert_eq!(begun.attempt, 2);
    assert_eq!(
        begun.failed_before, 1,
        "an abandoned attempt counts toward the retries"
    );
    assert_eq!(begun.checkpoint, Some(checkpoint));
}

/// A zombie finishing while recovery runs: for each attempt exactly one of them wins, and the
/// stored state agrees with the winner.
pub async fn recovery_and_zombie_finish_race_one_wins(fixture: &dyn Fixture) {
    let store = fixture.store();
    let other = fixture.second_store().await;
    let mut dead = Vec::new();
    for i in 0..20 {
        dead.push(begin_leased(&*store, &key("run", &format!("n{i:02}"), 0), 2_000).await);
    }

    let zombies = dead.clone();
    let finisher = tokio::spawn(async move {
        let (mut finished, mut refused) = (Vec::new(), Vec::new());
        for owned in zombies {
            let end = AttemptEnd::Finished {
                output: json!({"by": "zombie"}),
                vcs: None,
            };
            let event = Event::new(&owned.key, NOW, EventKind::NodeFinished);
            match other
                .end_attempt(
                    &owned,
                    EndAttempt {
                        end,
                        finished_at_ms: NOW,
                        events: vec![event],
                        task: None,
                    },
                )
                .await
            {
                Ok(_) => finished.push(owned.key),
                Err(StoreError::Conflict { .. }) => refused.push(owned.key),
                Err(error) => panic!("finish {}: {error}", owned.key),
            }
        }
        (finished, refused)
    });
    let recovered = store.recover_abandoned(NOW).await.expect("recover");
    let (finished, refused) = finisher.await.expect("finisher");

    let recovered: HashSet<AttemptKey> = recovered.into_iter().collect();
    let finished: HashSet<AttemptKey> = finished.into_iter().collect();
    let refused: HashSet<AttemptKey> = refused.into_iter().collect();
    assert_eq!(
        refused, recovered,
        "the zombie is refused exactly the attempts recovery took"
    );
    assert!(
        recovered.is_disjoint(&finished),
        "no attempt both recovered and finished"
    );
    assert_eq!(recovered.len() + finished.len(), 20);
    for owned in &dead {
        let record = attempt_record(&*store, owned).await;
        let output = store.read_output(&owned.key.node).await.expect("read");
        if finished.contains(&owned.key) {
            assert_eq!(record.state, AttemptState::Finished);
            assert_eq!(output, Some(json!({"by": "zombie"})));
        } else {
            assert_eq!(record.state, AttemptState::Failed);
            assert_eq!(output, None);
        }
    }
    let ends = events_of(&*store, "run")
        .await
        .into_iter()
        .filter(|record| record.event.kind != EventKind::NodeStarted)
        .count();
    assert_eq!(ends, 20, "one end event per attempt, whoever won");
}
