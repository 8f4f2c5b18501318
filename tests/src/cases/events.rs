//! The event log, and heartbeats (which write both the attempt and the log).

use serde_json::json;
use stint_domain::{AttemptState, Event, EventKind, EventRecord, NodeKey, TaskError};
use stint_ports::{AttemptEnd, EventPage, OwnedAttempt, Renewal, Store};

use crate::Fixture;
use crate::support::{
    accept_end, accept_heartbeat, attempt_record, cancellation, events_of, failure, heartbeat, key,
    start, types,
};

/// Writes, through the write port, one event of every kind about `run_id` (three attempts of
/// one node, at times from `at`), one call per step; returns the events each step appended.
fn steps_of_every_kind(run_id: &str, at: u64) -> Vec<Step> {
    let node = key(run_id, "node", 0);
    let attempt = |n: u32| node.attempt(n);
    let event = |n: u32, offset: u64, kind: EventKind| Event::new(&attempt(n), at + offset, kind);
    vec![
        Step::Begin(node.clone(), at),
        Step::Heartbeat(1, Some(json!({"done": 1})), None),
        Step::Heartbeat(1, None, Some(500)),
        Step::End(
            1,
            failure("silent"),
            vec![
                event(
                    1,
                    3,
                    EventKind::TaskHeartbeatTimeout {
                        last_heartbeat_at_ms: Some(at + 2),
                        timeout_ms: 5_000,
                    },
                ),
                event(
                    1,
                    3,
                    EventKind::NodeFailed {
                        error: TaskError::heartbeat_timeout(6_000, 5_000, Some(at + 2)),
                    },
                ),
                event(1, 3, EventKind::NodeRetrying { delay_ms: 2_000 }),
            ],
        ),
        Step::Begin(node.clone(), at + 4),
        Step::End(
            2,
            cancellation(),
            vec![event(
                2,
                5,
                EventKind::NodeCancelled {
                    reason: "aborted".to_owned(),
                },
            )],
        ),
        Step::Begin(node.clone(), at + 6),
        Step::End(
            3,
            AttemptEnd::Finished {
                output: json!({"ok": true}),
                vcs: None,
            },
            vec![event(3, 7, EventKind::NodeFinished)],
        ),
    ]
}

/// One write of [`steps_of_every_kind`].
enum Step {
    Begin(NodeKey, u64),
    Heartbeat(u32, Option<serde_json::Value>, Option<u64>),
    End(u32, AttemptEnd, Vec<Event>),
}

/// Applies `step` (with the owner `owner`); returns the events it appended.
async fn apply(store: &dyn Store, owner: &str, step: Step, node: &NodeKey) -> Vec<Event> {
    let owned = |n: u32| OwnedAttempt {
        key: node.attempt(n),
        owner: owner.to_owned(),
    };
    match step {
        Step::Begin(node, at) => {
            let (begun, _) = start(store, &node, owner, at).await;
            vec![Event::new(
                &node.attempt(begun.attempt),
                at,
                EventKind::NodeStarted,
            )]
        }
        Step::Heartbeat(n, payload, interval) => {
            let attempt = owned(n);
            let at = events_of(store, node.run_id())
                .await
                .last()
                .map_or(0, |record| record.event.timestamp_ms + 1);
            let write = heartbeat(&attempt, at, payload, interval);
            let event = write.event.clone();
            accept_heartbeat(store, &attempt, write).await;
            vec![event]
        }
        Step::End(n, end, events) => {
            let at = events.last().map_or(0, |event| event.timestamp_ms);
            accept_end(store, &owned(n), end, at, events.clone()).await;
            events
        }
    }
}

fn without_seq(records: &[EventRecord]) -> Vec<Event> {
    records.iter().map(|record| record.event.clone()).collect()
}

/// Events come back per run, in the order written, with increasing sequence numbers, every
/// field intact; `after_seq` and `limit` page through them without loss or repeats.
pub async fn events_are_ordered_and_paged(fixture: &dyn Fixture) {
    let store = fixture.store();
    let (mine_node, theirs_node) = (key("mine", "node", 0), key("theirs", "node", 0));
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    // Interleave the two runs' writes, one step each in turn.
    let steps = steps_of_every_kind("mine", 1_000)
        .into_iter()
        .zip(steps_of_every_kind("theirs", 2_000));
    for (my_step, their_step) in steps {
        mine.extend(apply(&*store, "me", my_step, &mine_node).await);
        theirs.extend(apply(&*store, "them", their_step, &theirs_node).await);
    }
    let kinds: std::collections::BTreeSet<&str> =
        mine.iter().map(|event| event.kind.type_name()).collect();
    assert_eq!(kinds.len(), 7, "every kind of event is written: {kinds:?}");

    let all_mine = events_of(&*store, "mine").await;
    assert_eq!(
        without_seq(&all_mine),
        mine,
        "only this run's events, in order, intact"
    );
    let all_theirs = events_of(&*store, "theirs").await;
    assert_eq!(without_seq(&all_theirs), theirs);
    assert!(all_mine.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(all_mine[0].seq >= 1);
    let mut seqs: Vec<u64> = all_mine.iter().chain(&all_theirs).map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        mine.len() + theirs.len(),
        "sequence numbers are unique per database"
    );

    // Page through in threes.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_events(&EventPage::new("mine").after(after).limit(3))
            .await
            .expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all_mine);

    let from_middle = store
        .read_events(&EventPage::new("mine").after(all_mine[4].seq).limit(100))
        .await
        .expect("read");
    assert_eq!(from_middle, all_mine[5..].to_vec());
    let last_seq = all_mine.last().map_or(0, |record| record.seq);
    // Nothing after the last event, nothing in a page of none, nothing of an unknown run.
    for (run_id, after, limit) in [("mine", last_seq, 100), ("mine", 0, 0), ("nobody", 0, 100)] {
        let page = store
            .read_events(&EventPage::new(run_id).after(after).limit(limit))
            .await
            .expect("read");
        assert!(
            page.is_empty(),
            "{run_id} after {after}, {limit} at most: {page:?}"
        );
    }
}

/// A heartbeat writes its received-at time and payload (a bare ping keeps the payload), appends
/// its event, and leaves the attempt in progress; a lease renewal moves the lease.
pub async fn heartbeat_appends_event_and_updates_times(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);
    let (_, owned) = start(&*store, &node, "owner", 1_000).await;
    let fresh = attempt_record(&*store, &owned).await;
    assert_eq!(fresh.heartbeat, None);
    assert_eq!(fresh.last_heartbeat_at_ms, None);

    let payload = json!({"done": 10, "of": 100});
    let first = heartbeat(&owned, 1_200, Some(payload.clone()), None);
    accept_heartbeat(&*store, &owned, first.clone()).await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.heartbeat, Some(payload.clone()));
    assert_eq!(record.last_heartbeat_at_ms, Some(1_200));

    let ping = heartbeat(&owned, 1_900, None, Some(700));
    accept_heartbeat(&*store, &owned, ping.clone()).await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(
        record.heartbeat,
        Some(payload),
        "a bare ping keeps the payload"
    );
    assert_eq!(record.last_heartbeat_at_ms, Some(1_900));
    assert_eq!(record.state, AttemptState::InProgress);

    let events = events_of(&*store, "run").await;
    assert_eq!(
        types(&events),
        vec!["NodeStarted", "TaskHeartbeat", "TaskHeartbeat"]
    );
    assert_eq!(events[1].event, first.event);
    assert_eq!(events[2].event, ping.event);

    store
        .renew_lease(
            &owned,
            Renewal {
                now_ms: 31_000,
                lease_ms: 30_000,
            },
        )
        .await
        .expect("renew");
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.lease_expires_at_ms, 61_000);
    assert_eq!(record.state, AttemptState::InProgress);
    // Heartbeats and renewals keep the attempt alive: recovery before the new lease ends leaves it.
    assert!(
        store
            .recover_abandoned(60_000)
            .await
            .expect("recover")
            .is_empty()
    );
}

/// A heartbeat received out of order (a write that waited behind a later one) never moves the
/// last heartbeat time back: the watchdog and recovery judge staleness by it.
pub async fn heartbeat_time_never_goes_back(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "node", 0);
    let (_, owned) = start(&*store, &node, "owner", 1_000).await;
    let later = heartbeat(&owned, 1_900, Some(json!({"done": 2})), None);
    accept_heartbeat(&*store, &owned, later).await;
    let earlier = heartbeat(&owned, 1_200, None, None);
    accept_heartbeat(&*store, &owned, earlier).await;
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(
        record.last_heartbeat_at_ms,
        Some(1_900),
        "the last heartbeat time went back"
    );
    assert_eq!(record.heartbeat, Some(json!({"done": 2})));
    let events = events_of(&*store, "run").await;
    assert_eq!(
        types(&events),
        vec!["NodeStarted", "TaskHeartbeat", "TaskHeartbeat"],
        "the late heartbeat is still logged"
    );
}
