//! What every peer binary shares: its command line, the completion counter its handlers bump,
//! the throughput run and the idle-pickup loop every peer goes through, and the JSON lines it
//! prints. Included with `#[path]` by each package (the packages cannot share a Cargo graph, so
//! they share this file instead).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::cpu::{CpuMark, CpuPerJob};

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

/// How a peer's result lines name it and its setup.
#[derive(Debug)]
pub struct About {
    /// The peer and its version.
    pub name: &'static str,
    /// The store it runs on (`SQLite` or `PostgreSQL`).
    pub backend: &'static str,
    /// How it is set up for the throughput runs (C is the concurrency).
    pub throughput: &'static str,
    /// How it is set up for the idle pickups.
    pub pickup: &'static str,
}

/// One peer on one fresh store, as [`throughput`] and [`pickup`] drive it: what differs
/// between the peers is how a job is enqueued, how a worker starts and stops, and how the
/// store is asked whether the jobs are done. Its handlers bump the [`Progress`] it was opened
/// with.
pub trait Peer: Sized {
    /// A started worker, until [`Peer::stop`].
    type Worker;

    /// How the result lines name the peer and its setup.
    fn about(&self) -> &'static About;

    /// Enqueues the `i`th no-op job, one call.
    async fn enqueue(&self, i: usize) -> Result<()>;

    /// Starts a worker at `concurrency`.
    async fn start(&self, concurrency: usize) -> Result<Self::Worker>;

    /// Starts the worker of the idle pickups: at concurrency 1 unless the peer needs more set.
    async fn start_idle(&self) -> Result<Self::Worker> {
        self.start(1).await
    }

    /// Whether the store says at least `n` jobs are done.
    async fn done(&self, n: usize) -> Result<bool>;

    /// One idle pickup: enqueues the `i`th job, then waits for its handler (on `progress`) and
    /// polls the store every [`DONE_POLL`] until it says the job is done.
    async fn pick_up(&self, progress: &Progress, i: usize) -> Result<()> {
        self.enqueue(i).await?;
        progress.wait_for(i + 1).await;
        while !self.done(i + 1).await? {
            tokio::time::sleep(DONE_POLL).await;
        }
        Ok(())
    }

    /// What the peer checks of its worker once a throughput run of `jobs` is done; nothing
    /// unless it says otherwise.
    fn check(&self, _worker: &Self::Worker, _jobs: usize) -> Result<()> {
        Ok(())
    }

    /// Stops the worker.
    async fn stop(&self, worker: Self::Worker) -> Result<()>;

    /// What the store says about its durability, read before it is closed.
    async fn close(self) -> Result<String>;
}

/// One measurement of a peer, on a store of its own.
#[derive(Debug, Clone, Copy)]
pub enum Measurement {
    /// `jobs` jobs enqueued one call each, then processed by one worker at `concurrency`.
    Throughput {
        /// How many jobs.
        jobs: usize,
        /// The worker's concurrency.
        concurrency: usize,
    },
    /// `count` idle pickups timed, after one untimed.
    Pickup {
        /// How many pickups are timed.
        count: usize,
    },
}

/// Sets up the peer `open` makes (handing it the counter its handlers are to bump), takes
/// `measurement` of it, and prints the result line.
pub async fn run<P, O, OF>(open: O, measurement: Measurement) -> Result<()>
where
    P: Peer,
    O: FnOnce(Arc<Progress>) -> OF,
    OF: Future<Output = Result<P>>,
{
    let progress = Progress::new();
    let peer = open(progress.clone()).await?;
    match measurement {
        Measurement::Throughput { jobs, concurrency } => {
            throughput(peer, &progress, jobs, concurrency).await
        }
        Measurement::Pickup { count } => pickup(peer, &progress, count).await,
    }
}

/// One throughput run: `jobs` jobs enqueued one call each (timed), then one worker at
/// `concurrency` until the store says all are done (timed); prints the throughput line.
async fn throughput<P: Peer>(
    peer: P,
    progress: &Progress,
    jobs: usize,
    concurrency: usize,
) -> Result<()> {
    let start = Instant::now();
    for i in 0..jobs {
        peer.enqueue(i).await?;
    }
    let submit = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let cpu = CpuMark::now();
    let worker = peer.start(concurrency).await?;
    let result = until_done(progress, jobs, || peer.done(jobs)).await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu.and_then(|mark| mark.per_job_since(jobs));
    let checked = result.and_then(|()| peer.check(&worker, jobs));
    let stopped = peer.stop(worker).await;
    checked?;
    stopped?;
    let about = peer.about();
    let durability = peer.close().await?;
    emit(&throughput_line(
        about,
        concurrency,
        jobs,
        (submit, seconds),
        cpu,
        &durability,
    ));
    Ok(())
}

/// The idle pickups: `count` timed (after one untimed) by [`pickups`] with the worker of
/// [`Peer::start_idle`]; prints the pickup line.
async fn pickup<P: Peer>(peer: P, progress: &Progress, count: usize) -> Result<()> {
    let worker = peer.start_idle().await?;
    let result = pickups(count, |i| peer.pick_up(progress, i)).await;
    let stopped = peer.stop(worker).await;
    let latencies = result?;
    stopped?;
    let about = peer.about();
    let durability = peer.close().await?;
    emit(&pickup_line(about, &latencies, &durability));
    Ok(())
}

/// Every measurement of one peer, as `args` asks for them, each by `run`: a throughput run at
/// each concurrency, then the idle pickups. A failed measurement is printed as an error line
/// under `name` on `backend`, and the others go on.
pub async fn measure<R, RF>(args: &Args, name: &str, backend: &str, mut run: R)
where
    R: FnMut(Measurement) -> RF,
    RF: Future<Output = Result<()>>,
{
    for &concurrency in &args.concurrency {
        progress(&format!(
            "{name}: {} jobs at concurrency {concurrency}",
            args.jobs
        ));
        let jobs = args.jobs;
        if let Err(error) = run(Measurement::Throughput { jobs, concurrency }).await {
            emit(&error_line(
                name,
                backend,
                &format!("concurrency {concurrency}"),
                &error,
            ));
        }
    }
    if args.pickups > 0 {
        progress(&format!("{name}: idle pickup"));
        let count = args.pickups;
        if let Err(error) = run(Measurement::Pickup { count }).await {
            emit(&error_line(name, backend, "pickup", &error));
        }
    }
}

/// One throughput result line: `seconds` are those of the submit and of the processing, `cpu`
/// the CPU per job while processing.
pub fn throughput_line(
    about: &About,
    concurrency: usize,
    jobs: usize,
    (submit_seconds, seconds): (f64, f64),
    cpu: Option<CpuPerJob>,
    durability: &str,
) -> Value {
    json!({
        "kind": "throughput",
        "peer": about.name,
        "backend": about.backend,
        "concurrency": concurrency,
        "jobs": jobs,
        "submit_seconds": submit_seconds,
        "submit_jobs_per_s": jobs as f64 / submit_seconds,
        "seconds": seconds,
        "jobs_per_s": jobs as f64 / seconds,
        "cpu_ms_per_job": CpuPerJob::json(cpu),
        "durability": durability,
        "defaults": about.throughput,
    })
}

/// One idle-pickup result line.
pub fn pickup_line(about: &About, latencies: &[f64], durability: &str) -> Value {
    json!({
        "kind": "pickup",
        "peer": about.name,
        "backend": about.backend,
        "pickups": latencies.len(),
        "p50_ms": quantile(latencies, 0.5),
        "p95_ms": quantile(latencies, 0.95),
        "max_ms": quantile(latencies, 1.0),
        "durability": durability,
        "defaults": about.pickup,
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
