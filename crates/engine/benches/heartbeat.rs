//! Cost of one `Heartbeat::beat` call with a 1 KiB payload, against a store whose heartbeat
//! writes each take 10 ms: the call must not wait for them.
//!
//! Run with `cargo bench -p stint-engine --bench heartbeat`. Prints figures; never fails on speed.
#![allow(clippy::print_stdout)] // a benchmark's output is its figures

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use stint_adapters_memory::MemoryStore;
use stint_domain::{
    AttemptKey, AttemptRecord, Event, EventRecord, NodeKey, NodeRecord, RunSummary, TaskDescriptor,
};
use stint_engine::{CancellationToken, Engine, NoVcs, Ports, TaskContext, TaskFailure};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, EventLog, HeartbeatWrite,
    OwnedAttempt, StoreError,
};

const CALLS: usize = 20_000;

/// A memory store whose heartbeat writes take 10 ms, like a busy database.
#[derive(Debug, Clone, Default)]
struct SlowStore(MemoryStore);

#[async_trait]
impl AttemptStore for SlowStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.0.begin_attempt(begin).await
    }
    async fn record_heartbeat(
        &self,
        a: &OwnedAttempt,
        h: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.0.record_heartbeat(a, h).await
    }
    async fn renew_lease(&self, a: &OwnedAttempt, at: u64) -> Result<(), StoreError> {
        self.0.renew_lease(a, at).await
    }
    async fn end_attempt(
        &self,
        a: &OwnedAttempt,
        end: AttemptEnd,
        at: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        self.0.end_attempt(a, end, at, events).await
    }
    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        self.0.recover_abandoned(now_ms).await
    }
    async fn list_attempts(&self, f: &AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        self.0.list_attempts(f).await
    }
    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        self.0.get_node(node).await
    }
    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        self.0.list_nodes(run_id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.0.list_runs().await
    }
    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.0.read_output(node).await
    }
    async fn previous_checkpoint(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.0.previous_checkpoint(node).await
    }
}

#[async_trait]
impl EventLog for SlowStore {
    async fn append(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.0.append(events).await
    }
    async fn read_events(
        &self,
        run: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.0.read_events(run, after, limit).await
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let engine = Engine::new(Ports::new(Arc::new(SlowStore::default()), Arc::new(NoVcs)));
    let desc = TaskDescriptor::new(NodeKey::new("bench", "heartbeat", 0)?);
    // About 1 KiB as JSON.
    let payload = json!({ "progress": 0.5, "note": "x".repeat(1_000) });
    let compute = |ctx: TaskContext| async move {
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let value = payload.clone();
            let start = Instant::now();
            ctx.heartbeat.beat(value)?;
            samples.push(start.elapsed());
            tokio::task::yield_now().await;
        }
        samples.sort_unstable();
        println!(
            "heartbeat.beat(1 KiB), store writes 10 ms, {CALLS} calls: median {:?}, p99 {:?}, max {:?}",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples[samples.len() - 1],
        );
        Ok::<_, TaskFailure>(json!({}))
    };
    let outcome =
        runtime.block_on(engine.run_attempt(&desc, compute, &CancellationToken::new()))?;
    println!("attempt {}: {}", outcome.key.attempt, outcome.state);
    Ok(())
}
