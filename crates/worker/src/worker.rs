//! The worker: what it is built from, and what one run shares with the tasks it spawned. The
//! loop of a run is in `slots.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stint_engine::Engine;
use stint_ports::{HistoryStore, QueueStore, Wakeups};
use tokio::sync::{Notify, mpsc};
use tokio_util::task::AbortOnDropHandle;

use crate::handler::Handler;
use crate::keeper::{keep_claims, sweep};
use crate::options::{
    EngineRecovery, NoopWorkerObserver, Recovery, Shutdown, WorkerError, WorkerObserver,
    WorkerOptions, WorkerReport,
};
use crate::slots::Loop;

/// Claims queued tasks and runs each as one attempt of its node through the engine.
pub struct Worker {
    engine: Arc<Engine>,
    queue: Arc<dyn QueueStore>,
    history: Arc<dyn HistoryStore>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    observer: Arc<dyn WorkerObserver>,
    recovery: Arc<dyn Recovery>,
    wakeups: Option<Arc<dyn Wakeups>>,
    wake: Arc<Notify>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a run shares with the tasks it spawned.
pub(crate) struct Inner {
    pub(crate) engine: Arc<Engine>,
    pub(crate) queue: Arc<dyn QueueStore>,
    pub(crate) history: Arc<dyn HistoryStore>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) options: WorkerOptions,
    pub(crate) observer: Arc<dyn WorkerObserver>,
    pub(crate) recovery: Arc<dyn Recovery>,
    pub(crate) wake: Arc<Notify>,
    /// Notified by a task whose terminal write began (see the module's doc).
    pub(crate) settling: Notify,
    swept: AtomicU64,
}

impl Inner {
    /// The engine's clock: the time every queue write carries.
    pub(crate) fn now_ms(&self) -> u64 {
        self.engine.ports().clock.now_ms()
    }

    pub(crate) fn swept(&self, tasks: usize) {
        let tasks = u64::try_from(tasks).unwrap_or(u64::MAX);
        self.swept.fetch_add(tasks, Ordering::Relaxed);
    }
}

impl Worker {
    /// A worker running `queue`'s tasks with `handler` through `engine`; `history` is the same
    /// database's query port, read before a task runs so that a node whose attempts already
    /// settled it (its last worker died between the two writes) is not run again.
    pub fn new(
        engine: Engine,
        queue: Arc<dyn QueueStore>,
        history: Arc<dyn HistoryStore>,
        handler: Arc<dyn Handler>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            engine: Arc::new(engine),
            queue,
            history,
            handler,
            options,
            observer: Arc::new(NoopWorkerObserver),
            recovery: Arc::new(EngineRecovery),
            wakeups: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Reports progress to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn WorkerObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Recovers abandoned attempts with `recover` instead of [`Engine::recover`].
    #[must_use]
    pub fn with_recovery(mut self, recover: Arc<dyn Recovery>) -> Self {
        self.recovery = recover;
        self
    }

    /// Also claims whenever `wakeups` fires, besides every poll interval.
    #[must_use]
    pub fn with_wakeups(mut self, wakeups: Arc<dyn Wakeups>) -> Self {
        self.wakeups = Some(wakeups);
        self
    }

    /// Makes an idle worker claim at once (for a submitter in the same process). A wake-up
    /// while the worker is busy is kept for its next wait.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims and runs tasks until `shutdown` stops it, or, with `exit_when_empty`, until a
    /// claim finds nothing while none of its own tasks runs and no task of its queues is ready,
    /// scheduled (a retry waiting out its backoff included) or running anywhere.
    ///
    /// Run one at a time per worker (the claims are held under its one owner token).
    ///
    /// `Err` only for invalid options or when the worker was fenced (see
    /// [`WorkerError::Fenced`]); store errors on the way are reported to the observer and
    /// retried. Dropping the future drops every running compute and writes nothing: the claims
    /// expire and any worker's sweep gives the tasks back.
    pub async fn run(&self, shutdown: Shutdown) -> Result<WorkerReport, WorkerError> {
        self.options.check()?;
        let inner = Arc::new(Inner {
            engine: self.engine.clone(),
            queue: self.queue.clone(),
            history: self.history.clone(),
            handler: self.handler.clone(),
            options: self.options.clone(),
            observer: self.observer.clone(),
            recovery: self.recovery.clone(),
            wake: self.wake.clone(),
            settling: Notify::new(),
            swept: AtomicU64::new(0),
        });
        let (reports, renewals) = mpsc::channel(4);
        let _keeper = AbortOnDropHandle::new(tokio::spawn(keep_claims(inner.clone(), reports)));
        let _sweeper = AbortOnDropHandle::new(tokio::spawn(sweep(inner.clone())));
        let mut state = Loop::new(inner.clone(), self.wakeups.clone());
        let mut report = state.run(shutdown, renewals).await?;
        report.swept = inner.swept.load(Ordering::Relaxed);
        Ok(report)
    }
}
