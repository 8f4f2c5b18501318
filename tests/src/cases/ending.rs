//! Ending an attempt: what each end writes, and which writes are refused.

use serde_json::json;
use stint_domain::{AttemptState, Event, EventKind, TaskError};
use stint_ports::{AttemptEnd, EndAttempt, OwnedAttempt, Renewal, Store};

use crate::Fixture;
use crate::support::{
    accept_end, assert_conflict, attempt_record, cancellation, events_of, failed_event, failure,
    heartbeat, key, node_record, start, types,
};

/// A snapshot of everything a refused write must leave alone.
async fn snapshot(
    store: &dyn Store,
    attempt: &OwnedAttempt,
) -> (
    stint_domain::AttemptRecord,
    Option<stint_domain::NodeRecord>,
    Option<serde_json::Value>,
    Vec<stint_domain::EventRecord>,
) {
    let node = &attempt.key.node;
    (
        attempt_record(store, attempt).await,
        store.get_node(node).await.expect("get node"),
        store.read_output(node).await.expect("read output"),
        events_of(store, node.run_id()).await,
    )
}

/// Tries every write an owner can make, as `attempt`, each of which must be a conflict.
async fn assert_every_write_refused(store: &dyn Store, attempt: &OwnedAttempt, at: u64) {
    let beat = heartbeat(attempt, at, Some(json!({"zombie": true})), None);
    assert_conflict(store.record_heartbeat(attempt, beat).await, "heartbeat");
    assert_conflict(
        store
            .renew_lease(
                attempt,
                Renewal {
                    now_ms: at,
                    lease_ms: 1_000_000,
                },
            )
            .await,
        "renew lease",
    );
    let finished_event = Event::new(&attempt.key, at, EventKind::NodeFinished);
    let finish = AttemptEnd::Finished {
        output: json!({"answer": "zombie"}),
        vcs: None,
    };
    assert_conflict(
        store
            .end_attempt(
                attempt,
                EndAttempt {
                    end: finish,
                    finished_at_ms: at,
                    events: vec![finished_event],
                    task: None,
                },
            )
            .await,
        "finish",
    );
    assert_conflict(
        store
            .end_attempt(
                attempt,
                EndAttempt {
                    end: failure("zombie"),
                    finished_at_ms: at,
                    events: vec![failed_event(attempt, at, "zombie")],
                    task: None,
                },
            )
            .await,
        "fail",
    );
    let cancel = cancellation();
    assert_conflict(
        store
            .end_attempt(attempt, EndAttempt::new(cancel, at))
            .await,
        "cancel",
    );
}

/// Heartbeat, lease renewal and every end are refused for a wrong owner token (or an attempt
/// that does not exist) and change nothing, not even the event log.
pub async fn wrong_owner_writes_are_conflicts(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);
    let (_, owned) = start(&*store, &node, "rightful", 1_000).await;
    let before = snapshot(&*store, &owned).await;

    let impostor = OwnedAttempt {
        key: owned.key.clone(),
        owner: "impostor".to_owned(),
    };
    assert_every_write_refused(&*store, &impostor, 2_000).await;
    let no_such_attempt = OwnedAttempt {
        key: node.attempt(2),
        owner: "rightful".to_owned(),
    };
    assert_every_write_refused(&*store, &no_such_attempt, 2_000).await;
    // An owner token is not a prefix or a pattern.
    let near_miss = OwnedAttempt {
        key: owned.key.clone(),
        owner: "rightful ".to_owned(),
    };
    assert_every_write_refused(&*store, &near_miss, 2_000).await;

    assert_eq!(
        snapshot(&*store, &owned).await,
        before,
        "refused writes changed nothing"
    );

    // The rightful owner is still in charge.
    store
        .renew_lease(
            &owned,
            Renewal {
                now_ms: 69_000,
                lease_ms: 30_000,
            },
        )
        .await
        .expect("owner renews its lease");
    let finish = AttemptEnd::Finished {
        output: json!({"answer": 42}),
        vcs: None,
    };
    accept_end(&*store, &owned, finish, 3_000, Vec::new()).await;
    assert_eq!(
        store.read_output(&node).await.expect("read"),
        Some(json!({"answer": 42}))
    );
}

/// Once finished, failed or cancelled, an attempt accepts no further write: the first end is kept.
pub async fn terminal_states_are_absorbing(fixture: &dyn Fixture) {
    let store = fixture.store();
    let ends = [
        (
            "finished",
            AttemptEnd::Finished {
                output: json!({"first": true}),
                vcs: Some("rev-1".to_owned()),
            },
            AttemptState::Finished,
        ),
        ("failed", failure("first"), AttemptState::Failed),
        ("cancelled", cancellation(), AttemptState::Cancelled),
    ];
    for (node_id, end, state) in ends {
        let node = key("run", node_id, 0);
        let (_, owned) = start(&*store, &node, "owner", 1_000).await;
        accept_end(&*store, &owned, end, 2_000, Vec::new()).await;
        let before = snapshot(&*store, &owned).await;
        assert_eq!(before.0.state, state);

        assert_every_write_refused(&*store, &owned, 3_000).await;
        let after = snapshot(&*store, &owned).await;
        assert_eq!(after, before, "{node_id}: the first end is kept");
        assert_eq!(after.0.finished_at_ms, Some(2_000));
    }
}

/// Finishing writes the output, marks attempt and node finished with their fields, and appends
/// the given events in the same step.
pub async fn finish_writes_output_node_and_events(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 3);
    let (_, owned) = start(&*store, &node, "owner", 1_000).await;
    assert_eq!(
        store.read_output(&node).await.expect("read"),
        None,
        "no output before finishing"
    );

    let output = json!({"summary": "done ✓", "score": 0.25, "items": [1, 2, 3]});
    let finish = AttemptEnd::Finished {
        output: output.clone(),
        vcs: Some("git:0123abcd+dirty".to_owned()),
    };
    let finished_event = Event::new(&owned.key, 1_500, EventKind::NodeFinished);
    accept_end(&*store, &owned, finish, 1_500, vec![finished_event.clone()]).await;

    assert_eq!(store.read_output(&node).await.expect("read"), Some(output));
    let node_record = node_record(&*store, &node).await;
    assert_eq!(node_record.run_id, "run");
    assert_eq!(node_record.node_id, "node");
    assert_eq!(node_record.iteration, 3);
    assert_eq!(node_record.state, AttemptState::Finished);
    assert_eq!(node_record.last_attempt, 1);
    assert_eq!(node_record.updated_at_ms, 1_500);
    assert_eq!(node_record.label.as_deref(), Some("label of node"));
    assert_eq!(node_record.output_table.as_deref(), Some("outputs_v1"));

    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.state, AttemptState::Finished);
    assert_eq!(record.started_at_ms, 1_000);
    assert_eq!(record.finished_at_ms, Some(1_500));
    assert_eq!(record.vcs.as_deref(), Some("git:0123abcd+dirty"));
    assert_eq!(record.error, None);
    assert_eq!(record.retryable, None);
    assert_eq!(record.owner, "owner");
    assert_eq!(record.lease_expires_at_ms, 1_000 + crate::support::LEASE_MS);
    assert_eq!(
        record.metadata,
        json!({"prompt": "summarise", "needs_approval": false})
    );
    assert_eq!(record.working_dir.as_deref(), Some("/srv/project"));

    let events = events_of(&*store, "run").await;
    assert_eq!(types(&events), vec!["NodeStarted", "NodeFinished"]);
    assert_eq!(events[0].event.timestamp_ms, 1_000);
    assert_eq!(events[0].event.attempt, 1);
    assert_eq!(events[0].event.iteration, 3);
    assert_eq!(events[1].event, finished_event);
}

/// Failing records the error JSON and the retryable flag; cancelling records the error and no
/// flag; neither writes an output; the events given are appended in order.
pub async fn fail_and_cancel_record_error_and_retryable(fixture: &dyn Fixture) {
    let store = fixture.store();

    let permanent = key("run", "permanent", 0);
    let (_, owned) = start(&*store, &permanent, "owner", 1_000).await;
    let error = TaskError::invalid_output(vec![
        ("/score".to_owned(), "must be a number".to_owned()),
        ("".to_owned(), "missing 'summary'".to_owned()),
    ]);
    let end = AttemptEnd::Failed {
        error: error.clone(),
        retryable: false,
    };
    let failed = Event::new(
        &owned.key,
        1_100,
        EventKind::NodeFailed {
            error: error.clone(),
        },
    );
    accept_end(&*store, &owned, end, 1_100, vec![failed.clone()]).await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.state, AttemptState::Failed);
    assert_eq!(
        record.error,
        Some(error),
        "the error JSON round-trips, details included"
    );
    assert_eq!(record.retryable, Some(false));
    assert_eq!(record.finished_at_ms, Some(1_100));
    assert_eq!(store.read_output(&permanent).await.expect("read"), None);
    let node = node_record(&*store, &permanent).await;
    assert_eq!(node.state, AttemptState::Failed);

    let transient = key("run", "transient", 0);
    let (_, owned) = start(&*store, &transient, "owner", 2_000).await;
    let error = TaskError::timeout(500);
    let end = AttemptEnd::Failed {
        error: error.clone(),
        retryable: true,
    };
    let events = vec![
        Event::new(
            &owned.key,
            2_500,
            EventKind::NodeFailed {
                error: error.clone(),
            },
        ),
        Event::new(
            &transient.attempt(2),
            2_500,
            EventKind::NodeRetrying { delay_ms: 1_000 },
        ),
    ];
    accept_end(&*store, &owned, end, 2_500, events.clone()).await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.error, Some(error));
    assert_eq!(record.retryable, Some(true));

    let cancelled = key("run", "cancelled", 0);
    let (_, owned) = start(&*store, &cancelled, "owner", 3_000).await;
    let cancel_event = Event::new(
        &owned.key,
        3_100,
        EventKind::NodeCancelled {
            reason: "aborted".to_owned(),
        },
    );
    accept_end(
        &*store,
        &owned,
        cancellation(),
        3_100,
        vec![cancel_event.clone()],
    )
    .await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.state, AttemptState::Cancelled);
    assert_eq!(record.error, Some(TaskError::aborted()));
    assert_eq!(
        record.retryable, None,
        "only failures carry a retryable flag"
    );
    assert_eq!(record.finished_at_ms, Some(3_100));
    let node = node_record(&*store, &cancelled).await;
    assert_eq!(node.state, AttemptState::Cancelled);
    assert_eq!(node.updated_at_ms, 3_100);

    let logged: Vec<Event> = events_of(&*store, "run")
        .await
        .into_iter()
        .map(|record| record.event)
        .filter(|event| event.kind != EventKind::NodeStarted)
        .collect();
    assert_eq!(
        logged,
        vec![failed, events[0].clone(), events[1].clone(), cancel_event]
    );
    assert_eq!(
        logged[2].attempt, 2,
        "NodeRetrying names the attempt to come"
    );
}
