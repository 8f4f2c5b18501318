//! What every peer binary shares: its command line, the completion counter its handlers bump,
//! the idle-pickup loop and the JSON line it prints. Included with `#[path]` by each package
//! (the packages cannot share a Cargo graph, so they share this file instead).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// How long one throughput run or one pickup may take before the binary gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// How often a peer's own store is asked whether the jobs are done, once its handlers ran.
pub const DONE_POLL: Duration = Duration::from_millis(1);

/// The command line: `--peer NAME --jobs N --concurrency 1,8,64 --pickups P`.
#[derive(Debug, Clone)]
pub struct Args {
    /// Which peer (`all` runs each of this binary's peers).
    pub peer: String,
    /// Jobs enqueued one call each, then processed.
    pub jobs: usize,
    /// Worker concurrencies, one throughput run (on a fresh store) each.
    pub concurrency: Vec<usize>,
    /// Idle pickups timed (after one untimed); 0 skips the pickup measurement.
    pub pickups: usize,
    /// PostgreSQL server URL without a database (PostgreSQL peers only).
    pub pg_url: String,
}

impl Args {
    /// Parses `std::env::args`.
    pub fn parse() -> Result<Self> {
        let mut args = Self {
            peer: "all".to_owned(),
            jobs: 2_000,
            concurrency: vec![1, 8, 64],
            pickups: 30,
            pg_url: std::env::var("PEERS_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--peer" => args.peer = value()?,
                "--jobs" => args.jobs = value()?.parse()?,
                "--concurrency" => {
                    args.concurrency = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                }
                "--pickups" => args.pickups = value()?.parse()?,
                "--pg-url" => args.pg_url = value()?,
                other => bail!(
                    "unknown argument {other}; usage: --peer NAME|all --jobs N \
                     --concurrency 1,8,64 --pickups P [--pg-url URL]"
                ),
            }
        }
        Ok(args)
    }
}

/// Counts the jobs whose handler ran, and wakes whoever waits for a count.
#[derive(Debug, Default)]
pub struct Progress {
    ran: AtomicUsize,
    notify: Notify,
}

impl Progress {
    /// A fresh counter, shared with the handlers.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Called by a handler: one more job ran.
    pub fn hit(&self) {
        self.ran.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// How many handlers ran.
    pub fn ran(&self) -> usize {
        self.ran.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` handlers ran.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ran() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// Waits until `n` handlers ran, then asks the peer's store (`done`) every [`DONE_POLL`] until
/// it says every job is done: the time a job's completion is committed, not its handler's
/// return, is what ends a run.
pub async fn until_done<F, Fut>(progress: &Progress, n: usize, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    tokio::time::timeout(RUN_LIMIT, async {
        progress.wait_for(n).await;
        while !done().await? {
            tokio::time::sleep(DONE_POLL).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("the jobs were not all done in time")?
}

/// The fraction of a 100 ms idle period beyond a whole one before the `i`th pickup (the
/// golden-ratio sequence, as stint-bench uses), so submits fall all over a poll cycle.
pub fn idle_before(i: usize) -> Duration {
    let fraction = (i as f64 * 0.618_033_988_75).fract();
    Duration::from_millis(100) + Duration::from_millis(100).mul_f64(fraction)
}

/// Nearest-rank quantile of `values` (ms), `None` when there are none.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// Times `count` idle pickups (after one untimed): `submit` enqueues one job and returns a
/// future that resolves once that job is done in the store.
pub async fn pickups<S, Fut>(count: usize, mut submit: S) -> Result<Vec<f64>>
where
    S: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut latencies = Vec::new();
    for i in 0..=count {
        tokio::time::sleep(idle_before(i)).await;
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(30), submit(i))
            .await
            .context("a pickup took longer than 30 s")??;
        if i > 0 {
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(latencies)
}

/// One throughput result line.
#[allow(clippy::too_many_arguments)]
pub fn throughput_line(
    peer: &str,
    backend: &str,
    concurrency: usize,
    jobs: usize,
    submit_seconds: f64,
    seconds: f64,
    durability: &str,
    defaults: &str,
) -> Value {
    json!({
        "kind": "throughput",
        "peer": peer,
        "backend": backend,
        "concurrency": concurrency,
        "jobs": jobs,
        "submit_seconds": submit_seconds,
        "submit_jobs_per_s": jobs as f64 / submit_seconds,
        "seconds": seconds,
        "jobs_per_s": jobs as f64 / seconds,
        "durability": durability,
        "defaults": defaults,
    })
}

/// One idle-pickup result line.
pub fn pickup_line(
    peer: &str,
    backend: &str,
    latencies: &[f64],
    durability: &str,
    defaults: &str,
) -> Value {
    json!({
        "kind": "pickup",
        "peer": peer,
        "backend": backend,
        "pickups": latencies.len(),
        "p50_ms": quantile(latencies, 0.5),
        "p95_ms": quantile(latencies, 0.95),
        "max_ms": quantile(latencies, 1.0),
        "durability": durability,
        "defaults": defaults,
    })
}

/// A failure of one measurement, as a line (the other measurements go on).
pub fn error_line(peer: &str, backend: &str, what: &str, error: &anyhow::Error) -> Value {
    json!({
        "kind": "error",
        "peer": peer,
        "backend": backend,
        "what": what,
        "error": format!("{error:#}"),
    })
}

/// Prints one JSON line on stdout.
#[allow(clippy::print_stdout)]
pub fn emit(line: &Value) {
    println!("{line}");
}

/// Prints a progress line on stderr.
#[allow(clippy::print_stderr)]
pub fn progress(what: &str) {
    eprintln!("peers: {what}");
}
