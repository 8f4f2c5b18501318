//! Benchmark 4: resident memory per in-flight attempt. Each repetition runs in a fresh child
//! process (this binary, with a hidden flag), so pages freed by earlier benchmarks and kept by
//! the allocator cannot hide the growth: the child reads `VmRSS` before and after starting
//! 10,000 attempts whose computes all wait on one shared token.
//!
//! A second child begins the same number of attempts directly in the memory store, without the
//! engine: the store's own rows, which any backend keeps somewhere, measured apart.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use stint_adapters_memory::MemoryStore;
use stint_domain::{NodeKey, TaskDescriptor, TaskMetadata};
use stint_engine::{CancellationToken, TaskContext};
use stint_ports::{AttemptStore, BeginAttempt};

use crate::Settings;
use crate::lifecycle::engine_on;
use crate::report::Row;
use crate::stats::Spread;

/// Resident memory of this process, in KiB.
fn rss_kib() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("an empty VmRSS line")?
        .parse()
        .context("VmRSS is not a number")
}

/// What the child measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Probe {
    /// Attempts in flight through the engine.
    Engine,
    /// Attempt rows begun in the memory store alone.
    Store,
}

/// The child's work: prints `<rss before, KiB> <rss after, KiB> <future bytes>`.
pub(crate) async fn probe(kind: Probe, count: usize) -> Result<String> {
    let (before, after) = match kind {
        Probe::Engine => engine_probe(count).await?,
        Probe::Store => store_probe(count).await?,
    };
    Ok(format!("{before} {after} {}", attempt_future_bytes()))
}

/// The size of one `run_attempt` future of the probe's compute, without running it: the part
/// of an attempt's memory that is the engine's state machine itself.
fn attempt_future_bytes() -> usize {
    let engine = engine_on(Arc::new(MemoryStore::new()));
    let Ok(node) = NodeKey::new("size", "n", 0) else {
        return 0;
    };
    let desc = TaskDescriptor::new(node);
    let cancel = CancellationToken::new();
    let release = CancellationToken::new();
    let future = engine.run_attempt(
        &desc,
        move |_ctx: TaskContext| async move {
            release.cancelled().await;
            Ok::<_, stint_engine::TaskFailure>(json!({"ok": true}))
        },
        &cancel,
    );
    std::mem::size_of_val(&future)
}

async fn engine_probe(count: usize) -> Result<(u64, u64)> {
    let engine = Arc::new(engine_on(Arc::new(MemoryStore::new())));
    let started = Arc::new(AtomicUsize::new(0));
    // A few attempts run to their end first: lazy statics, thread-local caches and the
    // runtime's first allocations are not the attempts' cost.
    let released = CancellationToken::new();
    released.cancel();
    for task in start(&engine, &started, "warm", 100, released) {
        task.await??;
    }
    started.store(0, Ordering::SeqCst);
    let before = rss_kib()?;
    let release = CancellationToken::new();
    let tasks = start(&engine, &started, "idle", count, release.clone());
    while started.load(Ordering::SeqCst) < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = rss_kib()?;
    release.cancel();
    for task in tasks {
        task.await??;
    }
    Ok((before, after))
}

type Attempt = tokio::task::JoinHandle<Result<(), stint_engine::EngineError>>;

/// Starts `count` attempts of run `run`, whose computes wait for `release`.
fn start(
    engine: &Arc<stint_engine::Engine>,
    started: &Arc<AtomicUsize>,
    run: &str,
    count: usize,
    release: CancellationToken,
) -> Vec<Attempt> {
    (0..count)
        .filter_map(|i| NodeKey::new(run, format!("n{i}"), 0).ok())
        .map(|node| {
            let (engine, started, release) = (engine.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                let desc = TaskDescriptor::new(node);
                let compute = move |_ctx: TaskContext| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    release.cancelled().await;
                    Ok::<_, stint_engine::TaskFailure>(json!({"ok": true}))
                };
                engine
                    .run_attempt(&desc, compute, &CancellationToken::new())
                    .await
                    .map(drop)
            })
        })
        .collect()
}

async fn store_probe(count: usize) -> Result<(u64, u64)> {
    let store = MemoryStore::new();
    let metadata = serde_json::to_value(TaskMetadata::default())?;
    let working_dir = std::env::current_dir()
        .ok()
        .map(|dir| dir.display().to_string());
    let begin = |run: &str, i: usize| -> Result<BeginAttempt> {
        Ok(BeginAttempt {
            node: NodeKey::new(run, format!("n{i}"), 0)?,
            owner: uuid::Uuid::new_v4().to_string(),
            started_at_ms: 1,
            lease_ms: 30_000,
            metadata: metadata.clone(),
            working_dir: working_dir.clone(),
            label: None,
            output_table: None,
        })
    };
    for i in 0..100 {
        store.begin_attempt(begin("warm", i)?).await?;
    }
    let before = rss_kib()?;
    for i in 0..count {
        store.begin_attempt(begin("idle", i)?).await?;
    }
    let after = rss_kib()?;
    Ok((before, after))
}

/// Runs one child and returns its growth per attempt and the attempt future's size, in bytes.
fn child(kind: Probe, count: usize) -> Result<(f64, usize)> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let kind = match kind {
        Probe::Engine => "engine",
        Probe::Store => "store",
    };
    let output = Command::new(exe)
        .args(["--memory-probe", kind, "--probe-count", &count.to_string()])
        .output()
        .context("running the memory probe")?;
    if !output.status.success() {
        bail!(
            "the memory probe failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(before)), Some(Ok(after)), Some(Ok(future))) =
        (numbers.next(), numbers.next(), numbers.next())
    else {
        bail!("the memory probe printed {text:?}");
    };
    let per_attempt = after.saturating_sub(before) as f64 * 1024.0 / count as f64;
    Ok((per_attempt, usize::try_from(future).unwrap_or(0)))
}

/// The rows of benchmark 4.
pub(crate) async fn run(settings: &Settings) -> Result<Vec<Row>> {
    crate::progress("4: memory per in-flight attempt");
    let count = if settings.quick { 2_000 } else { 10_000 };
    let (mut total, mut store, mut future) = (Vec::new(), Vec::new(), 0);
    for _ in 0..settings.reps {
        let (bytes, size) =
            tokio::task::spawn_blocking(move || child(Probe::Engine, count)).await??;
        total.push(bytes);
        future = size;
        let (bytes, _) = tokio::task::spawn_blocking(move || child(Probe::Store, count)).await??;
        store.push(bytes);
    }
    let engine_only: Vec<f64> = total.iter().zip(&store).map(|(t, s)| t - s).collect();
    let kib = |bytes: f64| format!("{:.2} KiB", bytes / 1024.0);
    let setting = format!("{count} idle attempts at once, memory store, VmRSS growth / count");
    let mut rows = Vec::new();
    if let (Some(t), Some(s), Some(e)) = (
        Spread::of(&total),
        Spread::of(&store),
        Spread::of(&engine_only),
    ) {
        let row = |measure: &str, setting: &str, spread: Spread| {
            Row::info(4, measure, setting, spread.show(kib))
        };
        // Issue 18's target is the engine's own memory; the store's rows are any backend's.
        rows.push(row("resident memory per in-flight attempt", &setting, t));
        rows.push(row(
            "of which: the store's attempt and node rows",
            &setting,
            s,
        ));
        rows.push(
            row(
                "of which: engine (attempt task, keeper task, shared state)",
                &format!("{setting}; the run_attempt future alone is {future} bytes"),
                e,
            )
            .with_target("<= 4 KiB", e.median <= 4096.0),
        );
    }
    Ok(rows)
}
