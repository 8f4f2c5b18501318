//! Benchmark 6, idle pickup latency (issue 17): one task submitted to an idle worker, timed from
//! just before its `enqueue` until the worker reports it ended finished, which it does once the
//! task's finished state is committed (`WorkerObserver::ended` follows the store's `complete`).
//!
//! Woken: the submitter calls `Worker::wake` after its `enqueue`, as one in the same process
//! would. Woken by the store: the submitter does not call it; the store's own wake-up does
//! (PostgreSQL's LISTEN/NOTIFY, SQLite's `data_version` check), as for a submitter in another
//! process. Polled: nothing wakes the worker; it finds the task at its next poll. Between two
//! pickups the worker idles for one poll interval and a varying part of another, so submits
//! fall all over the poll cycle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use stint_domain::TaskId;
use stint_ports::TaskEnd;
use stint_worker::{Shutdown, WorkerObserver, WorkerOptions};
use tokio::sync::mpsc;

use crate::queue::{Counts, Db, QueueBench, noop_task, now_ms};
use crate::report::Row;
use crate::stats::quantile;

/// How long one pickup may take before the benchmark gives up.
const PICKUP_LIMIT: Duration = Duration::from_secs(30);

/// Sends the id of every task that ended finished.
#[derive(Debug)]
struct Finished(mpsc::UnboundedSender<TaskId>);

impl WorkerObserver for Finished {
    fn ended(&self, task: TaskId, end: &TaskEnd) {
        if matches!(end, TaskEnd::Finished) {
            // The receiver lives as long as the measurement; after it nothing listens.
            let _ = self.0.send(task);
        }
    }
}

/// How the worker learns of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pickup {
    /// The submitter calls `Worker::wake` after its `enqueue`.
    Woken,
    /// By the store's wake-ups (LISTEN/NOTIFY, `data_version`).
    Store,
    /// Nothing wakes the worker; it finds the task at its next poll.
    Polled,
}

impl Pickup {
    /// How the worker learns of the task, in a row's setting.
    fn label(self) -> &'static str {
        match self {
            Self::Woken => "woken by `Worker::wake`",
            Self::Store => "no `Worker::wake`",
            Self::Polled => "polled",
        }
    }
}

/// The variants measured: how the worker learns of the task, and its poll interval.
const VARIANTS: [(Pickup, Duration); 4] = [
    (Pickup::Woken, Duration::from_millis(100)),
    (Pickup::Store, Duration::from_millis(100)),
    (Pickup::Polled, Duration::from_millis(100)),
    (Pickup::Polled, Duration::from_millis(10)),
];

/// A variant in a row's setting: how the worker learns of the task, its poll interval, and
/// whether that is the worker's default.
fn variant(pickup: Pickup, poll: Duration) -> String {
    let default = if poll == WorkerOptions::default().poll_interval {
        " (the default)"
    } else {
        ""
    };
    format!(
        "{}, poll interval {} ms{default}",
        pickup.label(),
        poll.as_millis()
    )
}

/// The fraction of a poll interval the `i`th pickup idles beyond a whole one: spread evenly
/// over [0, 1) whatever the count (the golden-ratio sequence).
fn offset(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_75).fract()
}

/// `count` pickup latencies, in ms, of one idle worker (after one untimed warm-up pickup).
pub(crate) async fn pickups(
    bench: &QueueBench,
    pickup: Pickup,
    poll: Duration,
    count: usize,
) -> Result<Vec<f64>> {
    let (sender, mut ended) = mpsc::unbounded_channel();
    let mut worker = bench
        .worker(WorkerOptions {
            poll_interval: poll,
            ..WorkerOptions::default()
        })
        .with_observer(Arc::new(Finished(sender)));
    if pickup == Pickup::Store
        && let Some(wakeups) = bench.wakeups().await?
    {
        worker = worker.with_wakeups(wakeups);
    }
    let worker = Arc::new(worker);
    let shutdown = Shutdown::default();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });
    let mut latencies = Vec::new();
    for i in 0..=count {
        tokio::time::sleep(poll + poll.mul_f64(offset(i))).await;
        let start = Instant::now();
        let enqueued = bench
            .queue
            .enqueue(vec![noop_task(&format!("p{i}"))], now_ms())
            .await?;
        if pickup == Pickup::Woken {
            worker.wake();
        }
        let id = tokio::time::timeout(PICKUP_LIMIT, ended.recv())
            .await
            .context("a pickup took longer than 30 s")?
            .context("the worker stopped")?;
        let elapsed = start.elapsed();
        ensure!(
            enqueued.first().map(|e| e.id) == Some(id),
            "task {id} ended, not the one submitted"
        );
        if i > 0 {
            latencies.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    shutdown.drain.cancel();
    running.await.context("the worker panicked")??;
    Ok(latencies)
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

/// The p50 target of the issue, and the peers' figures.
fn target(db: Db) -> (f64, &'static str) {
    match db {
        Db::Sqlite => (20.0, "p50 <= 20 ms (peer: effectum 4.4 ms)"),
        Db::Postgres => (
            5.0,
            "p50 <= 5 ms (peers: apalis 7.8-10.8 ms at a 10 ms poll, awa 35-43 ms)",
        ),
    }
}

/// The pickup rows of one backend: one per variant.
pub(crate) async fn rows(db: Db, counts: Counts) -> Result<Vec<Row>> {
    let measure = format!(
        "idle pickup latency, submit → finish durable: p50 / p95 ({} pickups; max)",
        counts.pickups
    );
    let mut rows = Vec::new();
    let (goal, label) = target(db);
    for (pickup, poll) in VARIANTS {
        let variant = variant(pickup, poll);
        let setting = match pickup {
            Pickup::Store => format!("{}, woken by {}, {variant}", db.label(), db.wakeup()),
            _ => format!("{}, {variant}", db.label()),
        };
        if let Some(why) = db.skip_reason() {
            rows.push(Row::skipped(6, &measure, &setting, &why));
            continue;
        }
        crate::progress(&format!("6: idle pickup, {setting}"));
        let bench = db.open().await?;
        let latencies = pickups(&bench, pickup, poll, counts.pickups).await;
        bench.close().await;
        let latencies = latencies?;
        let (Some(p50), Some(p95), Some(max)) = (
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.95),
            quantile(&latencies, 1.0),
        ) else {
            rows.push(Row::skipped(6, &measure, &setting, "no pickups"));
            continue;
        };
        let cell = format!("{} / {} (max {})", ms(p50), ms(p95), ms(max));
        rows.push(Row::info(6, &measure, &setting, cell).with_target(label, p50 <= goal));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_offsets_spread_over_one_poll_interval() {
        let offsets: Vec<f64> = (0..30).map(offset).collect();
        assert!(offsets.iter().all(|o| (0.0..1.0).contains(o)));
        assert!(offsets.iter().any(|&o| o < 0.1) && offsets.iter().any(|&o| o > 0.9));
    }

    #[test]
    fn a_variant_names_how_the_worker_learns_and_its_poll_interval() {
        let settings: Vec<String> = VARIANTS
            .into_iter()
            .map(|(p, poll)| variant(p, poll))
            .collect();
        assert_eq!(
            settings,
            [
                "woken by `Worker::wake`, poll interval 100 ms (the default)",
                "no `Worker::wake`, poll interval 100 ms (the default)",
                "polled, poll interval 100 ms (the default)",
                "polled, poll interval 10 ms",
            ]
        );
    }

    #[tokio::test]
    async fn a_woken_and_a_polled_pickup_are_timed() {
        let bench = crate::queue::tests::memory();
        for pickup in [Pickup::Woken, Pickup::Store, Pickup::Polled] {
            let latencies = pickups(&bench, pickup, Duration::from_millis(10), 2)
                .await
                .expect("two pickups");
            assert_eq!(latencies.len(), 2);
        }
        bench.close().await;
    }
}
