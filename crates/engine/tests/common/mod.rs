//! Test helpers: an engine on the in-memory store and tokio's paused clock (or on a SQLite file
//! and the real clock), a store wrapper that counts (and optionally slows) heartbeat writes, and
//! [`scenarios!`](crate::scenarios), which runs one scenario function on both stores.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use std::path::Path;

use stint_adapters_memory::MemoryStore;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::{
    AttemptKey, AttemptRecord, Event, EventRecord, NodeKey, NodeRecord, RunSummary, TaskDescriptor,
};
use stint_engine::{Engine, EngineOptions, Ports, TokioClock};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, EventLog, HeartbeatWrite,
    OwnedAttempt, Store, StoreError, VcsProbe,
};

/// The epoch the test clock starts at.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// The revision [`FakeVcs`] reports.
pub const FAKE_REVISION: &str = "fake-revision-1";

/// A VCS probe that always finds [`FAKE_REVISION`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeVcs;

#[async_trait]
impl VcsProbe for FakeVcs {
    async fn revision(&self, _dir: &Path) -> Option<String> {
        Some(FAKE_REVISION.to_owned())
    }
}

/// A store (in-memory by default) that counts heartbeat writes and can make each one take
/// `write_delay`.
#[derive(Debug, Clone)]
pub struct CountingStore {
    pub inner: Arc<dyn Store>,
    pub heartbeat_writes: Arc<AtomicU64>,
    pub write_delay: Option<Duration>,
}

impl Default for CountingStore {
    fn default() -> Self {
        Self::wrapping(Arc::new(MemoryStore::default()))
    }
}

impl CountingStore {
    /// Counts the heartbeat writes of `inner`.
    pub fn wrapping(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            heartbeat_writes: Arc::default(),
            write_delay: None,
        }
    }

    pub fn writes(&self) -> u64 {
        self.heartbeat_writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AttemptStore for CountingStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.inner.begin_attempt(begin).await
    }
    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        self.heartbeat_writes.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.write_delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.record_heartbeat(attempt, heartbeat).await
    }
    async fn renew_lease(&self, attempt: &OwnedAttempt, at: u64) -> Result<(), StoreError> {
        self.inner.renew_lease(attempt, at).await
    }
    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: AttemptEnd,
        finished_at_ms: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        self.inner
            .end_attempt(attempt, end, finished_at_ms, events)
            .await
    }
    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        self.inner.recover_abandoned(now_ms).await
    }
    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.list_attempts(filter).await
    }
    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        self.inner.get_node(node).await
    }
    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.list_nodes(run_id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.list_runs().await
    }
    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.inner.read_output(node).await
    }
    async fn previous_checkpoint(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.inner.previous_checkpoint(node).await
    }
}

#[async_trait]
impl EventLog for CountingStore {
    async fn append(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append(events).await
    }
    async fn read_events(
        &self,
        run_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_events(run_id, after_seq, limit).await
    }
}

/// Options with no jitter and a short grace period.
pub fn options() -> EngineOptions {
    EngineOptions {
        jitter: Arc::new(|| 0.0),
        cancel_grace: Duration::from_millis(100),
        ..EngineOptions::default()
    }
}

/// An engine on `store`, [`FakeVcs`] and a tokio clock reading [`EPOCH_MS`] now (paused or
/// not: unpaused, it follows the real clock from there).
pub fn engine_on(store: CountingStore) -> Engine {
    let ports = Ports::new(Arc::new(store), Arc::new(FakeVcs))
        .with_clock(Arc::new(TokioClock::at(EPOCH_MS)));
    Engine::with_options(ports, options())
}

/// A fresh store and an engine on it.
pub fn setup() -> (CountingStore, Engine) {
    let store = CountingStore::default();
    (store.clone(), engine_on(store))
}

/// What a scenario runs against: a fresh store, an engine on it, and whether tokio's clock is
/// paused (only then may a scenario assert exact times; on the real clock it asserts order and
/// lower bounds).
#[derive(Debug)]
pub struct Harness {
    pub store: CountingStore,
    pub engine: Engine,
    pub paused: bool,
    /// Keeps the SQLite file's folder until the scenario ends.
    pub dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// The in-memory store, for a test on tokio's paused clock.
    pub fn memory() -> Self {
        let (store, engine) = setup();
        Self {
            store,
            engine,
            paused: true,
            dir: None,
        }
    }

    /// A fresh SQLite file in a temp folder, for a test on the real clock.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = SqliteStore::open(&dir.path().join("stint.db"), SqliteOptions::default())
            .await
            .expect("open sqlite");
        let store = CountingStore::wrapping(Arc::new(sqlite));
        Self {
            engine: engine_on(store.clone()),
            store,
            paused: false,
            dir: Some(dir),
        }
    }
}

/// Declares the scenarios of a test file as tests: `both` on the in-memory store under tokio's
/// paused clock (module `memory`) and on a SQLite file under the real clock (module `sqlite`);
/// `memory_only` (scenarios that assert exact times or count tokio tasks) only on the former.
/// Each scenario is an `async fn(Harness)` at the root of the file.
#[macro_export]
macro_rules! scenarios {
    (
        both: [$($both:ident),* $(,)?],
        memory_only: [$($memory:ident),* $(,)?] $(,)?
    ) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $both() {
                    Box::pin(super::$both(super::common::Harness::memory())).await;
                }
            )*
            $(
                #[tokio::test(start_paused = true)]
                async fn $memory() {
                    Box::pin(super::$memory(super::common::Harness::memory())).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    let harness = super::common::Harness::sqlite().await;
                    Box::pin(super::$both(harness)).await;
                }
            )*
        }
    };
}

/// A descriptor for node `n` of run `r`.
pub fn desc() -> TaskDescriptor {
    TaskDescriptor::new(NodeKey::new("r", "n", 0).expect("valid key"))
}

/// Every event of run `r`, as `(type, attempt)` pairs.
pub async fn event_types(store: &CountingStore) -> Vec<(String, u32)> {
    events(store)
        .await
        .into_iter()
        .map(|e| (e.event.kind.type_name().to_owned(), e.event.attempt))
        .collect()
}

/// Every event of run `r`.
pub async fn events(store: &CountingStore) -> Vec<EventRecord> {
    store.read_events("r", 0, 10_000).await.expect("events")
}

/// Every attempt of run `r`.
pub async fn attempts(store: &CountingStore) -> Vec<AttemptRecord> {
    store
        .list_attempts(&AttemptFilter {
            run_id: "r".to_owned(),
            ..AttemptFilter::default()
        })
        .await
        .expect("attempts")
}

/// Names of the types in `events` (helper for assertions).
pub fn names(events: &[(String, u32)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}
