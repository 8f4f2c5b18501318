//! The fixture the worker tests share: a store (memory, or a SQLite file), engines and workers
//! on it, and helpers to enqueue and inspect.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stint_adapters_memory::MemoryStore;
use stint_adapters_postgres::test_support::{SchemaGuard, fresh_schema};
use stint_adapters_postgres::{PostgresStore, WakeupOptions};
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::{AttemptRecord, AttemptState, TaskId, TaskRecord};
use stint_engine::{Engine, EngineOptions, NoVcs, Ports, SystemClock, TaskContext, TaskFailure};
use stint_ports::{AttemptFilter, Clock, NewTask, QueueStore, Store};
use stint_worker::{Handler, Handlers, Shutdown, Wakeups, Worker, WorkerOptions, WorkerReport};
use tempfile::TempDir;

/// The backends every case runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Memory,
    Sqlite,
    /// A fresh schema of the PostgreSQL test server (dropped by [`drop_schemas`]).
    Postgres,
}

thread_local! {
    /// The schemas the PostgreSQL case running on this thread made (each case's future runs
    /// on its test's own thread, under `block_on`).
    static SCHEMAS: std::cell::RefCell<Vec<SchemaGuard>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Drops the schemas the case running on this thread made.
pub(crate) async fn drop_schemas() {
    let guards: Vec<SchemaGuard> = SCHEMAS.with_borrow_mut(std::mem::take);
    for guard in guards {
        guard.drop_schema().await;
    }
}

/// One store, seen through both the attempt ports and the queue ports.
pub(crate) struct Fixture {
    pub attempts: Arc<dyn Store>,
    pub queue: Arc<dyn QueueStore>,
    dir: Option<Arc<TempDir>>,
    /// The URL of the PostgreSQL schema, for a second handle.
    schema_url: Option<String>,
    /// The store itself, for its wake-ups.
    concrete: Concrete,
}

/// The store of a fixture, as its own type.
#[derive(Clone)]
enum Concrete {
    Memory,
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Fixture {
    pub(crate) async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Memory => {
                let store = Arc::new(MemoryStore::new());
                Self {
                    attempts: store.clone(),
                    queue: store,
                    dir: None,
                    schema_url: None,
                    concrete: Concrete::Memory,
                }
            }
            Kind::Postgres => {
                let (store, guard) = fresh_schema().await;
                let concrete = Concrete::Postgres(store.clone());
                let store = Arc::new(store);
                let schema_url = Some(guard.url());
                SCHEMAS.with_borrow_mut(|schemas| schemas.push(guard));
                Self {
                    attempts: store.clone(),
                    queue: store,
                    dir: None,
                    schema_url,
                    concrete,
                }
            }
            Kind::Sqlite => {
                let dir = Arc::new(tempfile::tempdir().expect("a temporary folder"));
                let mut fixture = Self::sqlite(&dir.path().join("stint.db")).await;
                fixture.dir = Some(dir);
                fixture
            }
        }
    }

    async fn sqlite(path: &Path) -> Self {
        let store = SqliteStore::open(path, SqliteOptions::default())
            .await
            .expect("the SQLite store opens");
        let concrete = Concrete::Sqlite(store.clone());
        let store = Arc::new(store);
        Self {
            attempts: store.clone(),
            queue: store,
            dir: None,
            schema_url: None,
            concrete,
        }
    }

    /// A second, independent handle on the same SQLite file or PostgreSQL schema (as a second
    /// process would open).
    /// On the memory store: the same store again.
    pub(crate) async fn second_handle(&self) -> Self {
        if let Some(url) = &self.schema_url {
            let store = PostgresStore::connect(url).await.expect("a second pool");
            let concrete = Concrete::Postgres(store.clone());
            let store = Arc::new(store);
            return Self {
                attempts: store.clone(),
                queue: store,
                dir: None,
                schema_url: self.schema_url.clone(),
                concrete,
            };
        }
        let Some(dir) = self.dir.clone() else {
            return Self {
                attempts: self.attempts.clone(),
                queue: self.queue.clone(),
                dir: None,
                schema_url: None,
                concrete: self.concrete.clone(),
            };
        };
        let mut fixture = Self::sqlite(&dir.path().join("stint.db")).await;
        fixture.dir = Some(dir);
        fixture
    }

    /// The store's wake-ups for a worker of `queues` (`None` on the memory store, which has
    /// none); `options` for PostgreSQL's listener.
    pub(crate) async fn wakeups(
        &self,
        queues: &[String],
        options: WakeupOptions,
    ) -> Option<Arc<dyn Wakeups>> {
        match &self.concrete {
            Concrete::Memory => None,
            Concrete::Sqlite(store) => Some(Arc::new(
                store
                    .wakeups(stint_adapters_sqlite::DEFAULT_CHECK_INTERVAL)
                    .await
                    .expect("the data_version check starts"),
            )),
            Concrete::Postgres(store) => Some(Arc::new(store.wakeups_with(queues, options))),
        }
    }

    pub(crate) fn engine(&self) -> Engine {
        engine_on(self.attempts.clone())
    }

    pub(crate) fn worker(&self, handler: Arc<dyn Handler>, options: WorkerOptions) -> Worker {
        Worker::new(
            self.engine(),
            self.queue.clone(),
            self.attempts.clone(),
            handler,
            options,
        )
    }

    pub(crate) async fn enqueue(&self, tasks: Vec<NewTask>) -> Vec<TaskId> {
        let enqueued = self
            .queue
            .enqueue(tasks, now_ms())
            .await
            .expect("the tasks are enqueued");
        enqueued.into_iter().map(|e| e.id).collect()
    }

    pub(crate) async fn task(&self, id: TaskId) -> TaskRecord {
        self.queue
            .get_task(id)
            .await
            .expect("the task is read")
            .expect("the task exists")
    }

    pub(crate) async fn attempts_of(&self, run_id: &str, node_id: &str) -> Vec<AttemptRecord> {
        let filter = AttemptFilter {
            run_id: run_id.to_owned(),
            node_id: Some(node_id.to_owned()),
            iteration: Some(0),
        };
        self.attempts
            .list_attempts(&filter)
            .await
            .expect("attempts are listed")
    }

    /// The states of the node's attempts, in order.
    pub(crate) async fn attempt_states(&self, run_id: &str, node_id: &str) -> Vec<AttemptState> {
        let mut attempts = self.attempts_of(run_id, node_id).await;
        attempts.sort_by_key(|a| a.attempt);
        attempts.into_iter().map(|a| a.state).collect()
    }
}

/// An engine on `attempts`, with a short cancel grace.
pub(crate) fn engine_on(attempts: Arc<dyn Store>) -> Engine {
    let options = EngineOptions {
        cancel_grace: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    Engine::with_options(Ports::new(attempts, Arc::new(NoVcs)), options)
}

/// Options for tests: short leases, fast polls, exit when empty. The claim lease is 2 s: a
/// worker fences itself when no renewal succeeded for two thirds of it, and on a shared machine
/// a PostgreSQL checkpoint syncing thousands of files held a renewal's commit past 400 ms (two
/// tests fenced at once with a 600 ms lease). Tests of the lease's own timing set theirs.
pub(crate) fn options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        claim_lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(20),
        sweep_interval: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(5),
        exit_when_empty: true,
        ..WorkerOptions::default()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A task of node `node` in run `run`, of handler kind `kind`, with `options`.
pub(crate) fn task(run: &str, node: &str, kind: &str, args: Value, options: Value) -> NewTask {
    NewTask::new(
        run,
        node,
        now_ms(),
        json!({ "kind": kind, "args": args, "options": options }),
    )
}

/// Runs `worker` until it returns, failing the test after 20 s.
pub(crate) async fn run_to_end(worker: &Worker, shutdown: Shutdown) -> WorkerReport {
    tokio::time::timeout(Duration::from_secs(20), worker.run(shutdown))
        .await
        .expect("the worker returns in time")
        .expect("the worker runs")
}

/// Waits (up to 10 s) until `check` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Handlers that run `run` for tasks of `kind`, each call given its own clone of `shared` (the
/// logs and gauges a case reads afterwards).
pub(crate) fn sharing<S, F, Fut>(kind: &str, shared: S, run: F) -> Handlers
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Value, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
{
    Handlers::new().register(kind, move |args, ctx| run(shared.clone(), args, ctx))
}

/// A shared log of what handlers saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Log<T>(pub Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub(crate) fn push(&self, item: T) {
        self.0.lock().expect("the log's lock").push(item);
    }
    pub(crate) fn items(&self) -> Vec<T> {
        self.0.lock().expect("the log's lock").clone()
    }
}

/// How many handlers run at once, and the most that ever did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Peak {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Peak {
    /// Counts one more running until the guard is dropped.
    pub(crate) fn enter(&self) -> Running {
        let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(running, Ordering::SeqCst);
        Running(self.now.clone())
    }

    /// The most that ever ran at once.
    pub(crate) fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

/// One running handler of a [`Peak`].
#[derive(Debug)]
pub(crate) struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
