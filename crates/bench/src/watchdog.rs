//! Benchmark 3: how late the heartbeat watchdog fires. 1,000 concurrent attempts on the memory
//! store with a 50 ms heartbeat timeout never heartbeat; for each, the delay from its deadline
//! (`started_at + 50 ms`) to the recorded `TaskHeartbeatTimeout` event (whole milliseconds, as
//! stored), and to the moment the compute saw its cancellation (microseconds, wall clock).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use stint_adapters_memory::MemoryStore;
use stint_domain::{AttemptKey, EventKind, NodeKey, TaskDescriptor};
use stint_engine::{CancellationToken, TaskContext, TaskFailure};
use stint_ports::{EventPage, HistoryStore};
use tokio::task::JoinSet;

use crate::Settings;
use crate::lifecycle::engine_on;
use crate::report::Row;
use crate::stats::{Spread, quantile};

const TIMEOUT_MS: u64 = 50;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One repetition: (event delays in ms, observed delays in ms with µs resolution).
async fn once(attempts: usize, rep: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let store = Arc::new(MemoryStore::new());
    let engine = Arc::new(engine_on(store.clone()));
    let run_id = format!("watchdog{rep}");
    let observed: Arc<Mutex<HashMap<AttemptKey, u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for i in 0..attempts {
        let (engine, observed) = (engine.clone(), observed.clone());
        let mut desc = TaskDescriptor::new(NodeKey::new(run_id.clone(), format!("n{i}"), 0)?);
        desc.heartbeat_timeout_ms = Some(TIMEOUT_MS);
        tasks.spawn(async move {
            let compute = move |ctx: TaskContext| async move {
                ctx.cancel.cancelled().await;
                let at = now_us();
                observed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(ctx.key.clone(), at);
                Err::<serde_json::Value, _>(TaskFailure::retryable("stopped by the watchdog"))
            };
            engine
                .run_attempt(&desc, compute, &CancellationToken::new())
                .await
        });
    }
    let mut started = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("an attempt panicked")??;
        started.insert(outcome.key.clone(), outcome.started_at_ms);
    }
    let events = store.read_events(&EventPage::new(&run_id)).await?;
    let mut recorded = Vec::new();
    for record in events {
        let event = record.event;
        if let EventKind::TaskHeartbeatTimeout { .. } = event.kind {
            let key =
                NodeKey::new(event.run_id, event.node_id, event.iteration)?.attempt(event.attempt);
            let start = started
                .get(&key)
                .context("an event of an unknown attempt")?;
            let deadline = start + TIMEOUT_MS;
            recorded.push(event.timestamp_ms as f64 - deadline as f64);
        }
    }
    ensure!(
        recorded.len() == attempts,
        "{} of {attempts} attempts recorded a heartbeat timeout",
        recorded.len()
    );
    let observed = std::mem::take(&mut *observed.lock().unwrap_or_else(PoisonError::into_inner));
    let seen = observed
        .iter()
        .filter_map(|(key, at)| {
            let deadline_us = (started.get(key)? + TIMEOUT_MS) * 1000;
            Some((*at as f64 - deadline_us as f64) / 1000.0)
        })
        .collect();
    Ok((recorded, seen))
}

/// The rows of benchmark 3.
pub(crate) async fn run(settings: &Settings) -> Result<Vec<Row>> {
    crate::progress("3: watchdog precision");
    let attempts = if settings.quick { 200 } else { 1_000 };
    let (mut rec50, mut rec99, mut obs50, mut obs99) = (vec![], vec![], vec![], vec![]);
    for rep in 0..settings.reps {
        let (recorded, observed) = once(attempts, rep).await?;
        rec50.push(quantile(&recorded, 0.5).unwrap_or(f64::NAN));
        rec99.push(quantile(&recorded, 0.99).unwrap_or(f64::NAN));
        obs50.push(quantile(&observed, 0.5).unwrap_or(f64::NAN));
        obs99.push(quantile(&observed, 0.99).unwrap_or(f64::NAN));
    }
    let setting = format!(
        "{attempts} concurrent attempts, 50 ms heartbeat timeout, memory store, system clock"
    );
    let ms0 = |v: f64| format!("{v:.0} ms");
    let ms2 = |v: f64| format!("{v:.2} ms");
    let mut rows = Vec::new();
    let spreads = (
        Spread::of(&rec50),
        Spread::of(&rec99),
        Spread::of(&obs50),
        Spread::of(&obs99),
    );
    if let (Some(r50), Some(r99), Some(o50), Some(o99)) = spreads {
        let row = |measure: &str, spread: Spread, unit: fn(f64) -> String| {
            Row::info(3, measure, &setting, spread.show(unit))
        };
        let recorded = "deadline → recorded TaskHeartbeatTimeout (ms resolution)";
        let observed = "deadline → compute sees cancellation (µs resolution)";
        rows.push(row(&format!("{recorded}, p50"), r50, ms0));
        rows.push(
            row(&format!("{recorded}, p99"), r99, ms0)
                .with_target("p99 <= 5 ms (idle machine)", r99.median <= 5.0),
        );
        rows.push(row(&format!("{observed}, p50"), o50, ms2));
        rows.push(row(&format!("{observed}, p99"), o99, ms2));
    }
    Ok(rows)
}
