//! `--peers-json`: stint's rows of the peer comparison (issue 18), on exactly the workload the
//! peer binaries of `bench/peers` run, printed as the same JSON lines, so `cargo xtask bench
//! --peers` puts them in one table measured in one run. One run per figure, as for the peers:
//! N no-op tasks submitted one `enqueue` call each, then one `Worker` at concurrency 1, 8 and
//! 64 (a fresh store each); and idle pickup, woken and polled at the default 100 ms interval.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use stint_worker::WorkerOptions;

use crate::cpu::CpuPerJob;
use crate::queue::{Db, Processed, process_on};
use crate::queue_pickup::{Pickup, pickups};
use crate::stats::quantile;

/// The concurrencies of the comparison.
const CONCURRENCY: [usize; 3] = [1, 8, 64];

fn backend(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "SQLite",
        Db::Postgres => "PostgreSQL",
    }
}

fn emit(line: &serde_json::Value) {
    println!("{line}");
}

fn error(db: Db, what: &str, error: &anyhow::Error) {
    emit(&json!({
        "kind": "error", "peer": "stint", "backend": backend(db), "what": what,
        "error": format!("{error:#}"),
    }));
}

async fn throughput(db: Db, jobs: usize, concurrency: usize) -> Result<()> {
    let bench = db.open().await?;
    let result = process_on(&bench, jobs, concurrency).await;
    let durability = bench.durability().await;
    bench.close().await;
    let Processed {
        submitted,
        processed,
        cpu,
    } = result?;
    emit(&json!({
        "kind": "throughput",
        "peer": "stint",
        "backend": backend(db),
        "concurrency": concurrency,
        "jobs": jobs,
        "submit_seconds": jobs as f64 / submitted,
        "submit_jobs_per_s": submitted,
        "seconds": jobs as f64 / processed,
        "jobs_per_s": processed,
        "cpu_ms_per_job": CpuPerJob::json(cpu),
        "durability": durability?,
        "defaults": "store and WorkerOptions defaults, concurrency C, exit_when_empty",
    }));
    Ok(())
}

async fn pickup(db: Db, pickup: Pickup, count: usize) -> Result<()> {
    let bench = db.open().await?;
    let poll = WorkerOptions::default().poll_interval;
    let result = pickups(&bench, pickup, poll, count).await;
    let durability = bench.durability().await;
    bench.close().await;
    let latencies = result?;
    let how = match pickup {
        Pickup::Woken => "woken by `Worker::wake` after enqueue",
        Pickup::Store => "woken by the store (LISTEN/NOTIFY, data_version)",
        Pickup::Polled => "polled",
    };
    emit(&json!({
        "kind": "pickup",
        "peer": "stint",
        "backend": backend(db),
        "variant": how,
        "pickups": latencies.len(),
        "p50_ms": quantile(&latencies, 0.5),
        "p95_ms": quantile(&latencies, 0.95),
        "max_ms": quantile(&latencies, 1.0),
        "durability": durability?,
        "defaults": format!(
            "WorkerOptions defaults (poll interval {} ms), concurrency 1",
            poll.as_millis()
        ),
    }));
    Ok(())
}

/// Which rows to run (`None`: all), for profiling one of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Only {
    pub(crate) backend: Option<Db>,
    /// One concurrency's throughput row, and no pickup rows.
    pub(crate) concurrency: Option<usize>,
}

/// Every stint row of the comparison (or those `only` names); a failed row is an `error`
/// line, the others go on.
pub(crate) async fn run(quick: bool, only: Only) -> Result<()> {
    let (jobs, count) = if quick { (200, 5) } else { (2_000, 30) };
    let backends = Db::BOTH
        .into_iter()
        .filter(|db| only.backend.is_none_or(|only| only == *db));
    for db in backends {
        if let Some(why) = db.skip_reason() {
            error(db, "all", &anyhow::anyhow!(why));
            continue;
        }
        let concurrencies = only.concurrency.map_or(CONCURRENCY.to_vec(), |c| vec![c]);
        for concurrency in concurrencies {
            crate::progress(&format!(
                "peers: stint, {}, {jobs} tasks at concurrency {concurrency}",
                backend(db)
            ));
            if let Err(e) = throughput(db, jobs, concurrency).await {
                error(db, &format!("concurrency {concurrency}"), &e);
            }
        }
        let pickups = if only.concurrency.is_some() {
            Vec::new()
        } else {
            vec![Pickup::Woken, Pickup::Store, Pickup::Polled]
        };
        for kind in pickups {
            crate::progress(&format!("peers: stint, {}, idle pickup", backend(db)));
            if let Err(e) = pickup(db, kind, count).await {
                error(db, "pickup", &e);
            }
        }
        // Let the next backend start on a quiet machine.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
