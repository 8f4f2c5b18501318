//! The event log, and heartbeats (which write both the attempt and the log).

use serde_json::json;
use stint_domain::{AttemptState, Event, EventKind, EventRecord, TaskError};

use crate::Fixture;
use crate::support::{attempt_record, events_of, heartbeat, key, start, types};

/// One event of every kind, about `run_id`, at times from `at`.
fn every_kind(run_id: &str, at: u64) -> Vec<Event> {
    let attempt = key(run_id, "node", 0).attempt(1);
    let kinds = vec![
        EventKind::NodeStarted,
        EventKind::TaskHeartbeat {
            has_data: true,
            data_size_bytes: 17,
            interval_ms: None,
        },
        EventKind::TaskHeartbeat {
            has_data: false,
            data_size_bytes: 0,
            interval_ms: Some(500),
        },
        EventKind::TaskHeartbeatTimeout {
            last_heartbeat_at_ms: None,
            timeout_ms: 5_000,
        },
        EventKind::NodeFailed {
            error: TaskError::heartbeat_timeout(6_000, 5_000, Some(3)),
        },
        EventKind::NodeRetrying { delay_ms: 2_000 },
        EventKind::NodeCancelled {
            reason: "aborted".to_owned(),
        },
        EventKind::NodeFinished,
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event::new(&attempt, at + i as u64, kind))
        .collect()
}

fn without_seq(records: &[EventRecord]) -> Vec<Event> {
    records.iter().map(|record| record.event.clone()).collect()
}

/// Events come back per run, in the order appended, with increasing sequence numbers, every
/// field intact; `after_seq` and `limit` page through them without loss or repeats.
pub async fn events_are_ordered_and_paged(fixture: &dyn Fixture) {
    let store = fixture.store();
    let mine = every_kind("mine", 1_000);
    let theirs = every_kind("theirs", 2_000);

    // Interleave the runs, in one append and across appends.
    let mut mixed = Vec::new();
    for (a, b) in mine[..4].iter().zip(&theirs[..4]) {
        mixed.push(a.clone());
        mixed.push(b.clone());
    }
    store.append(mixed).await.expect("append mixed");
    store.append(mine[4..].to_vec()).await.expect("append mine");
    store
        .append(theirs[4..].to_vec())
        .await
        .expect("append theirs");
    store
        .append(Vec::new())
        .await
        .expect("an empty append is fine");

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
        let page = store.read_events("mine", after, 3).await.expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all_mine);

    let from_middle = store
        .read_events("mine", all_mine[4].seq, 100)
        .await
        .expect("read");
    assert_eq!(from_middle, all_mine[5..].to_vec());
    let last_seq = all_mine.last().map_or(0, |record| record.seq);
    assert!(
        store
            .read_events("mine", last_seq, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_events("mine", 0, 0)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_events("nobody", 0, 100)
            .await
            .expect("read")
            .is_empty()
    );
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
    store
        .record_heartbeat(&owned, first.clone())
        .await
        .expect("heartbeat");
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.heartbeat, Some(payload.clone()));
    assert_eq!(record.last_heartbeat_at_ms, Some(1_200));

    let ping = heartbeat(&owned, 1_900, None, Some(700));
    store
        .record_heartbeat(&owned, ping.clone())
        .await
        .expect("bare ping");
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

    store.renew_lease(&owned, 61_000).await.expect("renew");
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
