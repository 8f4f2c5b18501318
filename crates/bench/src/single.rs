//! Benchmark 1's latency rows (issue 18, targets 2 and 3): one attempt from its start to its
//! durable finish, in process on SQLite FULL; and `stint run` of a trivial command as a whole
//! process, from spawn to exit.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use stint_domain::{NodeKey, TaskDescriptor};
use stint_engine::{CancellationToken, TaskContext, TaskFailure};
use stint_ports::Store;

use crate::Settings;
use crate::backend::SqliteBench;
use crate::lifecycle::engine_on;
use crate::report::Row;
use crate::stats::{Spread, quantile};

/// Milliseconds since `start`.
fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// p50 and p99 of each repetition's samples, as spreads across the repetitions.
fn p50_p99(reps: &[Vec<f64>]) -> Option<(Spread, Spread)> {
    let of = |q: f64| -> Vec<f64> {
        reps.iter()
            .filter_map(|samples| quantile(samples, q))
            .collect()
    };
    Some((Spread::of(&of(0.5))?, Spread::of(&of(0.99))?))
}

fn shown(p50: Spread, p99: Spread) -> String {
    format!(
        "{} / {}",
        p50.show(|v| format!("{v:.2} ms")),
        p99.show(|v| format!("{v:.2} ms"))
    )
}

/// One repetition: `count` attempts of a compute that returns at once, one after the other,
/// each timed around `run_attempt` (which returns once the end is committed).
async fn attempts(count: usize, rep: usize) -> Result<Vec<f64>> {
    let bench = SqliteBench::open("full").await?;
    let store: Arc<dyn Store> = Arc::new(bench.store.clone());
    let engine = engine_on(store);
    let cancel = CancellationToken::new();
    let mut samples = Vec::with_capacity(count);
    // The first attempts warm the connection's statement cache; they are not counted.
    for i in 0..count + 20 {
        let desc = TaskDescriptor::new(NodeKey::new(format!("latency{rep}"), format!("n{i}"), 0)?);
        let compute = |_ctx: TaskContext| async { Ok::<_, TaskFailure>(json!({"ok": true})) };
        let start = Instant::now();
        engine.run_attempt(&desc, compute, &cancel).await?;
        if i >= 20 {
            samples.push(ms_since(start));
        }
    }
    bench.close().await;
    Ok(samples)
}

/// Target 2 of issue 18: one in-process attempt from start to durable finish.
pub(crate) async fn attempt_latency(settings: &Settings) -> Result<Row> {
    crate::progress("1: one attempt, start to durable finish, SQLite FULL");
    let count = if settings.quick { 100 } else { 1_000 };
    let mut reps = Vec::new();
    for rep in 0..settings.reps {
        reps.push(attempts(count, rep).await?);
    }
    let (p50, p99) = p50_p99(&reps).context("no samples")?;
    Ok(Row::info(
        1,
        "one attempt, start → durable finish (`run_attempt`), p50 / p99",
        &format!(
            "SQLite synchronous=FULL, a compute that returns at once, one at a time, \
             {count} attempts per repetition"
        ),
        shown(p50, p99),
    )
    .with_target("p50 <= 2 ms", p50.median <= 2.0))
}

/// The `stint` binary beside this one (`cargo xtask bench` builds both).
fn stint_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let stint = exe.with_file_name("stint");
    ensure!(
        stint.exists(),
        "no `stint` binary beside {} (build it: cargo build --release -p stint-cli)",
        exe.display()
    );
    Ok(stint)
}

/// One repetition: `count` runs of `stint run -- true`, each a node of its own on one fresh
/// SQLite file, timed from spawn to exit.
fn processes(stint: &PathBuf, count: usize) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("stint.db").display());
    let mut samples = Vec::with_capacity(count);
    // The first run creates the file and migrates it: not what a run costs after that.
    for i in 0..=count {
        let node = format!("n{i}");
        let start = Instant::now();
        let status = Command::new(stint)
            .args([
                "-q",
                "run",
                "--db",
                &db,
                "--run-id",
                "latency",
                "--node-id",
                &node,
            ])
            .args(["--", "true"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running stint")?;
        let elapsed = ms_since(start);
        ensure!(status.success(), "`stint run -- true` exited with {status}");
        if i > 0 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

/// Target 3 of issue 18: `stint run` of a trivial command as a whole process.
pub(crate) async fn whole_process(settings: &Settings) -> Result<Row> {
    crate::progress("1: `stint run -- true` as a whole process, SQLite FULL");
    let count = if settings.quick { 10 } else { 50 };
    let stint = stint_binary()?;
    let reps = settings.reps;
    let reps = tokio::task::spawn_blocking(move || {
        (0..reps)
            .map(|_| processes(&stint, count))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let (p50, p99) = p50_p99(&reps).context("no samples")?;
    Ok(Row::info(
        1,
        "`stint run -- true` as a whole process, spawn → exit, p50 / p99",
        &format!(
            "SQLite synchronous=FULL (the default), one file, a node per run, {count} runs per \
             repetition after one that migrates the file"
        ),
        shown(p50, p99),
    )
    .with_target("p50 <= 15 ms", p50.median <= 15.0))
}
