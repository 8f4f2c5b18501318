//! Test helpers: an engine on the in-memory store and tokio's paused clock (or on a SQLite file
//! and the real clock), behind the ports' instrumented store (which counts, slows and fails
//! writes), and
//! [`scenarios!`](crate::scenarios), which runs one scenario function on both stores.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use std::path::Path;

use serde_json::Value;
use stint_adapters_memory::MemoryStore;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::{
    AttemptRecord, ErrorCode, EventKind, EventRecord, NodeKey, TaskDescriptor, TaskError,
};
use stint_engine::{
    AttemptOutcome, CancellationToken, Compute, ComputeOnce, Engine, EngineError, EngineOptions,
    NodeOutcome, Ports, TaskFailure, TokioClock,
};
use stint_ports::{
    AttemptFilter, EventPage, HistoryStore, InstrumentedStore, Store, VcsProbe, WriteOp,
};

/// The epoch the test clock starts at.
pub(crate) const EPOCH_MS: u64 = 1_700_000_000_000;

/// The revision [`FakeVcs`] reports.
pub(crate) const FAKE_REVISION: &str = "fake-revision-1";

/// A VCS probe that always finds [`FAKE_REVISION`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FakeVcs;

#[async_trait]
impl VcsProbe for FakeVcs {
    async fn revision(&self, _dir: &Path) -> Option<String> {
        Some(FAKE_REVISION.to_owned())
    }
}

/// The store every test runs on: the in-memory store or a SQLite file, behind the ports'
/// [`InstrumentedStore`], which counts (and can slow or fail) the engine's writes.
pub(crate) type TestStore = Arc<InstrumentedStore<dyn Store>>;

/// `inner` behind an [`InstrumentedStore`].
pub(crate) fn instrumented(inner: Arc<dyn Store>) -> TestStore {
    Arc::new(InstrumentedStore::new(inner))
}

/// A fresh in-memory store behind an [`InstrumentedStore`].
pub(crate) fn memory_store() -> TestStore {
    instrumented(Arc::new(MemoryStore::default()))
}

/// How many heartbeat writes reached (or were attempted on) `store`.
pub(crate) fn heartbeat_writes(store: &TestStore) -> u64 {
    store.calls(WriteOp::Heartbeat)
}

/// Options with no jitter and a short grace period.
pub(crate) fn options() -> EngineOptions {
    EngineOptions {
        jitter: Arc::new(|| 0.0),
        cancel_grace: Duration::from_millis(100),
        ..EngineOptions::default()
    }
}

/// An engine on `store`, [`FakeVcs`] and a tokio clock reading [`EPOCH_MS`] now (paused or
/// not: unpaused, it follows the real clock from there).
pub(crate) fn engine_on(store: TestStore) -> Engine {
    let ports = Ports::new(store, Arc::new(FakeVcs)).with_clock(Arc::new(TokioClock::at(EPOCH_MS)));
    Engine::with_options(ports, options())
}

/// An engine on `store` like [`engine_on`], whose computes get `grace` to stop once cancelled.
pub(crate) fn engine_with_grace(store: TestStore, grace: Duration) -> Engine {
    let ports = Ports::new(store, Arc::new(FakeVcs)).with_clock(Arc::new(TokioClock::at(EPOCH_MS)));
    let options = EngineOptions {
        cancel_grace: grace,
        ..options()
    };
    Engine::with_options(ports, options)
}

/// A fresh store and an engine on it.
pub(crate) fn setup() -> (TestStore, Engine) {
    let store = memory_store();
    (store.clone(), engine_on(store))
}

/// What a scenario runs against: a fresh store, an engine on it, and whether tokio's clock is
/// paused (only then may a scenario assert exact times; on the real clock it asserts order and
/// lower bounds).
#[derive(Debug)]
pub(crate) struct Harness {
    pub store: TestStore,
    pub engine: Engine,
    pub paused: bool,
    /// Keeps the SQLite file's folder until the scenario ends.
    pub dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// The in-memory store, for a test on tokio's paused clock.
    pub(crate) fn memory() -> Self {
        let (store, engine) = setup();
        Self {
            store,
            engine,
            paused: true,
            dir: None,
        }
    }

    /// A fresh SQLite file in a temp folder, for a test on the real clock.
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = SqliteStore::open(&dir.path().join("stint.db"), SqliteOptions::default())
            .await
            .expect("open sqlite");
        let store = instrumented(Arc::new(sqlite));
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
pub(crate) fn desc() -> TaskDescriptor {
    TaskDescriptor::new(NodeKey::new("r", "n", 0).expect("valid key"))
}

/// [`desc`] with a lease of `lease_ms`.
pub(crate) fn desc_with_lease(lease_ms: u64) -> TaskDescriptor {
    let mut d = desc();
    d.lease_ms = lease_ms;
    d
}

/// [`desc`] with `retries` retries (and the default backoff).
pub(crate) fn desc_with_retries(retries: u32) -> TaskDescriptor {
    let mut d = desc();
    d.retry.retries = retries;
    d
}

/// The body of a compute that works for `work` (on tokio's clock), then returns `output`.
pub(crate) async fn works_for(work: Duration, output: Value) -> Result<Value, TaskFailure> {
    tokio::time::sleep(work).await;
    Ok(output)
}

/// `field` of every attempt of run `r`, by attempt number.
pub(crate) async fn by_attempt<T>(
    store: &TestStore,
    field: impl Fn(AttemptRecord) -> T,
) -> Vec<(u32, T)> {
    attempts(store)
        .await
        .into_iter()
        .map(|a| (a.attempt, field(a)))
        .collect()
}

/// `field(has_data, interval_ms)` of every `TaskHeartbeat` event of run `r`, in order.
pub(crate) async fn heartbeat_events<T>(
    store: &TestStore,
    field: impl Fn(bool, Option<u64>) -> T,
) -> Vec<T> {
    events(store)
        .await
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::TaskHeartbeat {
                has_data,
                interval_ms,
                ..
            } => Some(field(has_data, interval_ms)),
            _ => None,
        })
        .collect()
}

/// Every event of run `r`, as `(type, attempt)` pairs.
pub(crate) async fn event_types(store: &TestStore) -> Vec<(String, u32)> {
    events(store)
        .await
        .into_iter()
        .map(|e| (e.event.kind.type_name().to_owned(), e.event.attempt))
        .collect()
}

/// Every event of run `r`.
pub(crate) async fn events(store: &TestStore) -> Vec<EventRecord> {
    store
        .read_events(&EventPage::new("r").limit(10_000))
        .await
        .expect("events")
}

/// Every attempt of run `r`.
pub(crate) async fn attempts(store: &TestStore) -> Vec<AttemptRecord> {
    store
        .list_attempts(&AttemptFilter::run("r"))
        .await
        .expect("attempts")
}

/// Names of the types in `events` (helper for assertions).
pub(crate) fn names(events: &[(String, u32)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// One attempt of `desc` that nobody cancels, run to its outcome; an engine error fails the test.
pub(crate) async fn attempt_outcome(
    engine: &Engine,
    desc: &TaskDescriptor,
    compute: impl ComputeOnce,
) -> AttemptOutcome {
    engine
        .run_attempt(desc, compute, &CancellationToken::new())
        .await
        .expect("run")
}

/// The engine error that ends one attempt of `desc` that nobody cancels; `expected` names it in
/// the failure when the attempt ends with an outcome instead.
pub(crate) async fn attempt_error(
    engine: &Engine,
    desc: &TaskDescriptor,
    compute: impl ComputeOnce,
    expected: &str,
) -> EngineError {
    let never = CancellationToken::new();
    engine
        .run_attempt(desc, compute, &never)
        .await
        .expect_err(expected)
}

/// The node loop of `desc`, which nobody cancels, run to its outcome; an engine error fails the
/// test.
pub(crate) async fn node_outcome(
    engine: &Engine,
    desc: &TaskDescriptor,
    compute: impl Compute,
) -> NodeOutcome {
    let never = CancellationToken::new();
    engine.run_node(desc, compute, &never).await.expect("run")
}

/// The code of an attempt's error, if it failed.
pub(crate) fn code(error: &Option<TaskError>) -> Option<ErrorCode> {
    error.as_ref().map(|e| e.code)
}

/// Asserts the types of run `r`'s events, in order.
pub(crate) async fn assert_event_names(store: &TestStore, expected: &[&str]) {
    assert_eq!(names(&event_types(store).await), expected);
}
