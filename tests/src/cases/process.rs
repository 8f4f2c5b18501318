//! What reaches an attempt's process from outside: where its process group lives (written by
//! its owner, read back by recovery), and a request to cancel it (read at its lease renewals).

use stint_domain::{AttemptState, ProcessPlace};
use stint_ports::{OwnedAttempt, Renewal};

use crate::Fixture;
use crate::support::{
    accept_end, assert_conflict, attempt_record, begin_leased, cancellation, fail, key, start,
};

/// When recovery runs in these cases.
const NOW: u64 = 10_000;

fn place(pgid: u32) -> ProcessPlace {
    ProcessPlace {
        host: "build-01".to_owned(),
        boot_id: Some("6f1c2d3e-0000-4000-8000-000000000001".to_owned()),
        pgid,
        started: 123_456_789,
    }
}

/// The place is stored and read back (a later call replaces it); it is written only by the
/// attempt's owner while the attempt is in progress, and stays on the attempt once it ended.
pub async fn process_place_is_recorded_and_owner_checked(fixture: &dyn Fixture) {
    let store = fixture.store();
    let node = key("run", "spawns", 0);
    let (_, owned) = start(&*store, &node, "owner", 1_000).await;
    assert_eq!(attempt_record(&*store, &owned).await.process, None);

    store
        .record_process(&owned, place(4_000))
        .await
        .expect("record");
    store
        .record_process(&owned, place(4_242))
        .await
        .expect("record again");
    assert_eq!(
        attempt_record(&*store, &owned).await.process,
        Some(place(4_242))
    );

    let intruder = OwnedAttempt {
        owner: "someone else".to_owned(),
        ..owned.clone()
    };
    assert_conflict(
        store.record_process(&intruder, place(1)).await,
        "record_process by another owner",
    );
    fail(&*store, &owned, 2_000).await;
    assert_conflict(
        store.record_process(&owned, place(2)).await,
        "record_process after the end",
    );
    let record = attempt_record(&*store, &owned).await;
    assert_eq!(record.state, AttemptState::Failed);
    assert_eq!(
        record.process,
        Some(place(4_242)),
        "refused writes change nothing"
    );
}

/// `expired_attempts` lists, with their places, exactly the attempts `recover_abandoned` would
/// mark at the same time, and writes nothing.
pub async fn expired_attempts_are_what_recovery_marks(fixture: &dyn Fixture) {
    let store = fixture.store();
    let dead = begin_leased(&*store, &key("run", "dead", 0), 2_000).await;
    store
        .record_process(&dead, place(77))
        .await
        .expect("record");
    let silent = begin_leased(&*store, &key("run", "silent", 0), 3_000).await;
    let live = begin_leased(&*store, &key("run", "live", 0), NOW + 1).await;
    let boundary = begin_leased(&*store, &key("run", "boundary", 0), NOW).await;

    let expired = store.expired_attempts(NOW).await.expect("expired");
    let listed: Vec<(u32, &str, Option<&ProcessPlace>)> = expired
        .iter()
        .map(|r| (r.attempt, r.node_id.as_str(), r.process.as_ref()))
        .collect();
    assert_eq!(
        listed,
        vec![(1, "dead", Some(&place(77))), (1, "silent", None)]
    );
    for owned in [&dead, &silent, &live, &boundary] {
        let record = attempt_record(&*store, owned).await;
        assert_eq!(
            record.state,
            AttemptState::InProgress,
            "listing writes nothing"
        );
    }

    let marked = store.recover_abandoned(NOW).await.expect("recover");
    assert_eq!(marked, vec![dead.key.clone(), silent.key.clone()]);
    assert!(
        store
            .expired_attempts(NOW)
            .await
            .expect("expired")
            .is_empty(),
        "a marked attempt is no longer in progress"
    );
}

/// `request_cancel` flags the run's attempts in progress, and only those: each owner's next
/// renewal reports it; an attempt of another run, or one that ended, is not asked.
pub async fn cancel_request_reaches_the_owner_at_its_next_renewal(fixture: &dyn Fixture) {
    let store = fixture.store();
    let renewal = |now_ms| Renewal {
        now_ms,
        lease_ms: 30_000,
    };
    let (_, running_a) = start(&*store, &key("run", "a", 0), "owner-a", 1_000).await;
    let (_, running_b) = start(&*store, &key("run", "b", 2), "owner-b", 1_000).await;
    let (_, ended) = start(&*store, &key("run", "c", 0), "owner-c", 1_000).await;
    accept_end(&*store, &ended, cancellation(), 1_500, Vec::new()).await;
    let (_, other_run) = start(&*store, &key("other", "a", 0), "owner-o", 1_000).await;

    let before = store
        .renew_lease(&running_a, renewal(2_000))
        .await
        .expect("owner renews");
    assert!(!before.cancel_requested, "nobody asked yet");

    let asked = store.request_cancel("run").await.expect("request cancel");
    assert_eq!(asked, vec![running_a.key.clone(), running_b.key.clone()]);
    for owned in [&running_a, &running_b] {
        let renewed = store
            .renew_lease(owned, renewal(3_000))
            .await
            .expect("the lease still holds");
        assert!(renewed.cancel_requested, "{} was asked", owned.key);
    }
    let untouched = store
        .renew_lease(&other_run, renewal(3_000))
        .await
        .expect("owner renews");
    assert!(!untouched.cancel_requested, "another run is not asked");
    assert_eq!(
        store.request_cancel("run").await.expect("ask again"),
        asked,
        "asking twice is harmless"
    );
    assert_eq!(
        store.request_cancel("no-such-run").await.expect("ask"),
        Vec::new()
    );
}
