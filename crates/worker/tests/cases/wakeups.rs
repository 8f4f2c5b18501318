//! Wake-ups from the store: a worker that polls only every 30 s runs a task submitted through
//! another handle (as another process would) within seconds, woken by PostgreSQL's NOTIFY or
//! SQLite's `data_version` check. Nothing to check on the memory store, which has no wake-ups.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stint_adapters_postgres::WakeupOptions;
use stint_domain::TaskState;
use stint_worker::{Handlers, Shutdown, WorkerOptions};

use crate::common::Kind;
use crate::common::{Fixture, eventually, options, task};

/// Far longer than `eventually`'s 10 s: a task that ran in time was not found by a poll.
const LONG: Duration = Duration::from_secs(30);

/// An idle worker polling every 30 s, with `wakeups` from the fixture's store.
pub(crate) fn idle_options() -> WorkerOptions {
    WorkerOptions {
        poll_interval: LONG,
        sweep_interval: LONG,
        exit_when_empty: false,
        ..options()
    }
}

/// Runs an idle worker on `fixture` with its store's wake-ups (`listener` for PostgreSQL),
/// submits one task through a second handle, and waits for it to finish.
pub(crate) async fn woken_by_the_store(fixture: &Fixture, listener: WakeupOptions, what: &str) {
    let idle = idle_options();
    let Some(wakeups) = fixture.wakeups(&idle.queues, listener).await else {
        return;
    };
    let handlers = Arc::new(Handlers::new().register("echo", |a, _| async move { Ok(a) }));
    let worker = Arc::new(fixture.worker(handlers, idle).with_wakeups(wakeups));
    let shutdown = Shutdown::default();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });
    // The claim the worker makes as it starts finds nothing; it is idle after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitter = fixture.second_handle().await;
    let id = submitter
        .enqueue(vec![task("run", "a", "echo", json!(null), json!({}))])
        .await[0];
    eventually(what, || async {
        fixture.task(id).await.state == TaskState::Finished
    })
    .await;
    shutdown.drain.cancel();
    let report = running.await.expect("joins").expect("runs");
    assert_eq!(report.finished, 1);
}

pub(crate) async fn a_task_submitted_elsewhere_wakes_an_idle_worker(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    woken_by_the_store(
        &fixture,
        WakeupOptions::default(),
        "an idle worker woken by the store",
    )
    .await;
}
