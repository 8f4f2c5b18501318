//! Benchmarks 2 and 5: what one heartbeat call costs while the store is slow, and how many
//! heartbeats per second each backend absorbs with coalescing (the engine's path) and without
//! (every heartbeat written through the store port).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use stint_adapters_memory::MemoryStore;
use stint_domain::{AttemptKey, Event, EventKind, NodeKey, TaskDescriptor};
use stint_engine::{
    CancellationToken, Engine, EngineOptions, NoVcs, Observer, Ports, TaskContext, TaskFailure,
};
use stint_ports::{BeginAttempt, HeartbeatWrite, InstrumentedStore, OwnedAttempt, Store, WriteOp};

use crate::Settings;
use crate::backend::Backend;
use crate::report::Row;
use crate::stats::{Spread, quantile, rate};

/// Counts the heartbeats the engine wrote (after coalescing).
#[derive(Debug, Default)]
struct WriteCounter(AtomicU64);

impl Observer for WriteCounter {
    fn heartbeat(&self, _key: &AttemptKey, _payload: Option<&Value>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn engine_counting(store: Arc<dyn Store>) -> (Engine, Arc<WriteCounter>) {
    let counter = Arc::new(WriteCounter::default());
    let options = EngineOptions {
        observer: counter.clone(),
        ..EngineOptions::default()
    };
    let engine = Engine::with_options(Ports::new(store, Arc::new(NoVcs)), options);
    (engine, counter)
}

/// A payload of 16 fields whose JSON is just over 1 KiB.
fn kib_payload() -> Value {
    let mut map = serde_json::Map::new();
    for i in 0..16 {
        map.insert(
            format!("field_{i:02}"),
            json!(format!("{i:02}-{}", "x".repeat(48))),
        );
    }
    Value::Object(map)
}

/// The median cost of reading the clock twice, which every sample below includes.
fn timer_overhead_ns() -> f64 {
    let samples: Vec<f64> = (0..10_000)
        .map(|_| {
            let start = Instant::now();
            start.elapsed().as_nanos() as f64
        })
        .collect();
    quantile(&samples, 0.5).unwrap_or(0.0)
}

/// One repetition of benchmark 2: per-call times in ns, and the writes issued meanwhile.
async fn call_cost_once(calls: usize, payload: &Value) -> Result<(Vec<f64>, u64)> {
    // Heartbeat writes take 10 ms, as on a slow disk or a far database.
    let slow = InstrumentedStore::new(Arc::new(MemoryStore::new()));
    slow.set_delay(WriteOp::Heartbeat, Duration::from_millis(10));
    let (engine, writes) = engine_counting(Arc::new(slow));
    let mut desc = TaskDescriptor::new(NodeKey::new("hbcost", "n", 0)?);
    // A 12 ms heartbeat timeout makes the throttle interval 9 ms, shorter than one 10 ms write:
    // the writer is busy with the slow store for the whole loop.
    desc.heartbeat_timeout_ms = Some(12);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (out, payload) = (samples.clone(), payload.clone());
    let compute = move |ctx: TaskContext| async move {
        let mut local = Vec::with_capacity(calls);
        for i in 0..calls {
            let value = payload.clone();
            let start = Instant::now();
            ctx.heartbeat.beat(value)?;
            local.push(start.elapsed().as_nanos() as f64);
            if i % 512 == 511 {
                tokio::task::yield_now().await;
            }
        }
        *out.lock().unwrap_or_else(PoisonError::into_inner) = local;
        Ok::<_, TaskFailure>(json!({}))
    };
    engine
        .run_attempt(&desc, compute, &CancellationToken::new())
        .await?;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    ensure!(
        samples.len() == calls,
        "the compute did not finish its calls"
    );
    Ok((samples, writes.0.load(Ordering::Relaxed)))
}

/// Benchmark 2: median and p99 of one `beat` with a 1 KiB payload while writes take 10 ms.
pub(crate) async fn call_cost(settings: &Settings) -> Result<Vec<Row>> {
    crate::progress("2: heartbeat call cost");
    let calls = if settings.quick { 20_000 } else { 100_000 };
    let payload = kib_payload();
    let size = payload.to_string().len();
    let (mut p50, mut p99, mut max, mut writes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..settings.reps {
        let (samples, written) = call_cost_once(calls, &payload).await?;
        p50.push(quantile(&samples, 0.5).unwrap_or(f64::NAN) / 1000.0);
        p99.push(quantile(&samples, 0.99).unwrap_or(f64::NAN) / 1000.0);
        max.push(quantile(&samples, 1.0).unwrap_or(f64::NAN) / 1000.0);
        writes.push(written as f64);
    }
    let micros = |v: f64| format!("{v:.2} µs");
    let setting = format!(
        "{size}-byte payload, {calls} calls per repetition, store writes sleep 10 ms \
         ({} writes in flight per repetition; clock read pair {:.0} ns, included)",
        Spread::of(&writes).map_or(0.0, |s| s.median),
        timer_overhead_ns()
    );
    let mut rows = Vec::new();
    if let (Some(p50), Some(p99), Some(max)) =
        (Spread::of(&p50), Spread::of(&p99), Spread::of(&max))
    {
        let row =
            |measure: &str, spread: Spread| Row::info(2, measure, &setting, spread.show(micros));
        rows.push(
            row("heartbeat call, median", p50).with_target("median <= 1 µs", p50.median <= 1.0),
        );
        rows.push(row("heartbeat call, p99", p99));
        rows.push(row(
            "heartbeat call, slowest of the repetition (includes preemption)",
            max,
        ));
    }
    Ok(rows)
}

/// Coalescing on: one attempt beating as fast as it can for `window`; (beats/s, writes/s).
async fn coalesced_once(store: Arc<dyn Store>, window: Duration, rep: usize) -> Result<(f64, f64)> {
    let (engine, writes) = engine_counting(store);
    let desc = TaskDescriptor::new(NodeKey::new("hbon", format!("n{rep}"), 0)?);
    let beats = Arc::new(AtomicU64::new(0));
    let counted = beats.clone();
    let start = Instant::now();
    let compute = move |ctx: TaskContext| async move {
        let mut i = 0_u64;
        while start.elapsed() < window {
            ctx.heartbeat.beat(json!({"step": i}))?;
            i += 1;
            if i.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
        }
        counted.store(i, Ordering::Relaxed);
        Ok::<_, TaskFailure>(json!({"beats": i}))
    };
    engine
        .run_attempt(&desc, compute, &CancellationToken::new())
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        beats.load(Ordering::Relaxed) as f64 / elapsed,
        writes.0.load(Ordering::Relaxed) as f64 / elapsed,
    ))
}

/// Coalescing off: `record_heartbeat` through the port in a loop for `window` (at most `cap`).
async fn direct_once(store: Arc<dyn Store>, window: Duration, cap: u64, rep: usize) -> Result<f64> {
    let node = NodeKey::new("hboff", format!("n{rep}"), 0)?;
    let owner = uuid::Uuid::new_v4().to_string();
    let now = stint_engine::SystemClock;
    let now_ms = || stint_ports::Clock::now_ms(&now);
    let begun = store
        .begin_attempt(BeginAttempt {
            node: node.clone(),
            owner: owner.clone(),
            started_at_ms: now_ms(),
            lease_ms: 60_000,
            metadata: json!({}),
            working_dir: None,
            label: None,
            output_table: None,
        })
        .await?;
    let owned = OwnedAttempt {
        key: node.attempt(begun.attempt),
        owner,
    };
    let start = Instant::now();
    let mut done = 0_u64;
    while start.elapsed() < window && done < cap {
        let payload = json!({"step": done});
        let kind = EventKind::TaskHeartbeat {
            has_data: true,
            data_size_bytes: payload.to_string().len() as u64,
            interval_ms: None,
        };
        let at = now_ms();
        let write = HeartbeatWrite {
            received_at_ms: at,
            payload: Some(payload),
            event: Event::new(&owned.key, at, kind),
        };
        store.record_heartbeat(&owned, write).await?;
        done += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Benchmark 5: heartbeats absorbed per second. Coalescing on, once: no heartbeat call waits on
/// the store, so the figure does not depend on the backend (measured on SQLite FULL, whose
/// writes are the slowest). Coalescing off, per backend: every heartbeat is a write.
pub(crate) async fn throughput(settings: &Settings) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let on_measure = "heartbeats accepted/s, coalescing on (engine path; store writes/s)";
    let off_measure = "heartbeats written/s, coalescing off (record_heartbeat loop)";
    let on_setting = "any backend (no call waits on the store; measured on SQLite FULL)";
    crate::progress("5: heartbeat throughput, coalescing on");
    match Backend::SqliteFull.open().await {
        Ok(opened) => {
            let store = opened.store();
            let (mut beats, mut writes) = (Vec::new(), Vec::new());
            for rep in 0..settings.reps {
                let (b, w) = coalesced_once(store.clone(), settings.window, rep).await?;
                beats.push(b);
                writes.push(w);
            }
            opened.close().await;
            if let (Some(b), Some(w)) = (Spread::of(&beats), Spread::of(&writes)) {
                rows.push(Row::info(
                    5,
                    on_measure,
                    on_setting,
                    format!("{} ({} writes/s)", b.show(rate), rate(w.median)),
                ));
            }
        }
        Err(why) => rows.push(Row::skipped(5, on_measure, on_setting, &why)),
    }
    let cap = if settings.quick { 20_000 } else { 100_000 };
    for backend in Backend::ALL {
        crate::progress(&format!("5: heartbeat throughput, {}", backend.label()));
        let opened = match backend.open().await {
            Ok(opened) => opened,
            Err(why) => {
                rows.push(Row::skipped(5, off_measure, backend.label(), &why));
                continue;
            }
        };
        let store = opened.store();
        let mut direct = Vec::new();
        for rep in 0..settings.reps {
            direct.push(direct_once(store.clone(), settings.window, cap, rep).await?);
        }
        opened.close().await;
        if let Some(d) = Spread::of(&direct) {
            rows.push(Row::info(5, off_measure, backend.label(), d.show(rate)));
        }
    }
    Ok(rows)
}
