//! The queue's leases on PostgreSQL follow the database's clock, not the workers' (the
//! conformance suite runs on the caller's clock, with fixed times, so it cannot show this).
//!
//! No libtest harness here (`harness = false`), as in `concurrency.rs`: `main` lists the tests.

use serde_json::json;
use stint_adapters_postgres::test_support::{Test, block_on, fresh_schema, run_tests};
use stint_ports::{Claim, NewTask, QueueHistory, Renewal, TaskQueue};

fn real_now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since_epoch.as_millis()).expect("fits")
}

fn claim(owner: &str, now_ms: u64, lease_ms: u64) -> Claim {
    Claim {
        queues: vec!["default".to_owned()],
        owner: owner.to_owned(),
        max: 1,
        now_ms,
        lease_ms,
    }
}

/// A worker whose clock runs an hour behind still gets a lease from the database's now, and a
/// sweeper whose clock runs an hour ahead does not take back a live claim; a 1 ms lease runs out
/// on the database's clock even for a sweeper an hour behind.
async fn claims_are_leased_and_swept_by_the_database_clock() {
    let (store, guard) = fresh_schema().await;
    let (now, hour) = (real_now_ms(), 3_600_000);
    let tasks = vec![
        NewTask::new("clock", "live", 0, json!({})),
        NewTask::new("clock", "short", 0, json!({})),
    ];
    store.enqueue(tasks, now).await.expect("enqueue");

    let live = store
        .claim(claim("behind", now - hour, 30_000))
        .await
        .expect("claim");
    let lease = live[0]
        .task
        .lease_expires_at_ms
        .expect("a running task is leased");
    assert!(
        lease >= now + 29_000,
        "lease {lease} is not from the database's now {now}"
    );
    let swept = store.sweep_expired(now + hour).await.expect("sweep");
    assert!(
        swept.is_empty(),
        "a 30 s claim made now is live, whatever the clients say"
    );

    let short = store
        .claim(claim("ahead", now + hour, 1))
        .await
        .expect("claim");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let renewed = store
        .renew_claims(
            "behind",
            Renewal {
                now_ms: 0,
                lease_ms: 30_000,
            },
        )
        .await
        .expect("renew");
    assert_eq!(renewed.renewed, vec![live[0].task.id]);
    let swept = store.sweep_expired(0).await.expect("sweep");
    assert_eq!(
        swept,
        vec![short[0].task.id],
        "a 1 ms lease ran out on the database's clock"
    );
    let renewed = store
        .get_task(live[0].task.id)
        .await
        .expect("get")
        .expect("exists");
    assert!(
        renewed.lease_expires_at_ms >= Some(now + 29_000),
        "renewed from the database's now"
    );
    store.close().await;
    guard.drop_schema().await;
}

fn main() -> std::process::ExitCode {
    let tests: Vec<Test> = vec![("claims_are_leased_and_swept_by_the_database_clock", || {
        block_on(claims_are_leased_and_swept_by_the_database_clock())
    })];
    run_tests(tests)
}
