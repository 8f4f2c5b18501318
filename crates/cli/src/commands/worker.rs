//! `stint worker`: claims queued command tasks and runs each as `stint run` would, through the
//! `stint-worker` crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptKey, NodeKey, TaskDescriptor, TaskId};
use stint_engine::{
    Engine, EngineError, EngineOptions, NoopObserver, Observer, Ports, TaskContext, TaskFailure,
};
use stint_ports::{ClaimedTask, QueueStore, Store, StoreError, TaskEnd};
use stint_telemetry::{MetricsServer, QueueDepth, SpanObserver, WorkerObservers, WorkerTelemetry};
use stint_worker::{
    Handler, Recovery, Shutdown, Worker, WorkerError, WorkerObserver, WorkerOptions, WorkerReport,
};
use tokio_util::task::AbortOnDropHandle;

use crate::args::WorkerArgs;
use crate::exit::{self, CliError};
use crate::process::{self, Console};
use crate::signals::{self, Request};
use crate::task_spec::CommandSpec;
use crate::telemetry::{Exporting, exporting_around};
use crate::vcs::JjOrGit;

/// How long the engine waits for a cancelled command: each task's own grace is enforced by the
/// runner (SIGTERM, then SIGKILL after it), so this only bounds a runner that does not return.
const CANCEL_LIMIT: Duration = Duration::from_secs(600);

/// How often the queues' depth is sampled for the metrics.
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Runs a worker against the store at `db` until it is stopped (or, with `--exit-when-empty`,
/// until its queues are empty), exporting spans and metrics when asked to.
pub(super) async fn worker(db: &str, quiet: bool, args: WorkerArgs) -> Result<u8, CliError> {
    let exporting = Exporting::start(&args.telemetry, args.metrics_addr)?;
    exporting_around(exporting, async |exporting| {
        run_worker(db, quiet, args, exporting).await
    })
    .await
}

/// The worker loop, with the metrics endpoint and the queue-depth sampler when asked for.
async fn run_worker(
    db: &str,
    quiet: bool,
    args: WorkerArgs,
    exporting: Option<&Exporting>,
) -> Result<u8, CliError> {
    let (any, wakeups) = crate::store::open_worker(db, &args.queues).await?;
    let store: Arc<dyn Store> = any.clone();
    let queue: Arc<dyn QueueStore> = any;
    let _metrics = serve_metrics(exporting, args.metrics_addr, quiet).await?;
    let _depth =
        exporting.map(|_| QueueDepth::start(queue.clone(), args.queues.clone(), QUEUE_DEPTH_EVERY));
    let spans = exporting.and_then(|e| e.spans.clone());
    let observer: Arc<dyn Observer> = match &spans {
        Some(spans) => spans.clone(),
        None => Arc::new(NoopObserver),
    };
    let engine = Engine::with_options(
        Ports::new(store.clone(), Arc::new(JjOrGit)),
        EngineOptions {
            working_dir: std::env::current_dir().ok(),
            cancel_grace: CANCEL_LIMIT,
            observer,
            ..EngineOptions::default()
        },
    );
    let options = WorkerOptions {
        queues: args.queues,
        concurrency: args.concurrency,
        claim_lease: args.lease,
        poll_interval: args.poll,
        sweep_interval: args.lease,
        drain_timeout: args.drain_timeout,
        exit_when_empty: args.exit_when_empty,
        ..WorkerOptions::default()
    };
    let progress = Arc::new(Progress { quiet });
    let mut observers: Vec<Arc<dyn WorkerObserver>> = vec![progress.clone()];
    if exporting.is_some() {
        observers.push(Arc::new(WorkerTelemetry::new(spans.clone())));
    }
    let tasks = Arc::new(CommandTasks { quiet, spans });
    let worker = Worker::new(engine, queue, store.clone(), tasks, options)
        .with_observer(Arc::new(WorkerObservers(observers)))
        .with_recovery(Arc::new(CliRecovery { store, quiet }))
        .with_wakeups(wakeups);
    let shutdown = Shutdown::default();
    let _signals = watch_signals(shutdown.clone(), args.drain_timeout)?;
    match worker.run(shutdown).await {
        Ok(report) => {
            progress.report(&report);
            Ok(exit::SUCCESS)
        }
        Err(WorkerError::InvalidOptions(problem)) => Err(CliError::invalid_input(problem)),
        Err(error) => Err(CliError::from(StoreError::unavailable(error.to_string()))),
    }
}

/// Serves the metrics on `addr` (`--metrics-addr`), saying where unless `quiet`; a port in use
/// is bad input (exit 2).
async fn serve_metrics(
    exporting: Option<&Exporting>,
    addr: Option<SocketAddr>,
    quiet: bool,
) -> Result<Option<MetricsServer>, CliError> {
    let (Some(addr), Some(prometheus)) = (addr, exporting.and_then(Exporting::prometheus)) else {
        return Ok(None);
    };
    let server = prometheus.serve(addr).await.map_err(|error| {
        CliError::invalid_input(format!(
            "cannot serve metrics on {addr} (--metrics-addr): {error}"
        ))
    })?;
    if !quiet {
        crate::output::note(&format!(
            "metrics on http://{}/metrics",
            server.local_addr()
        ));
    }
    Ok(Some(server))
}

/// Runs command tasks: the spec `stint submit` stored, as `stint run` runs a command.
#[derive(Debug)]
struct CommandTasks {
    quiet: bool,
    /// The attempt spans, whose context each command is handed.
    spans: Option<Arc<SpanObserver>>,
}

/// The command spec of `task`; anything else is not a task this worker can run.
fn spec_of(task: &ClaimedTask) -> Result<CommandSpec, String> {
    serde_json::from_value(task.task.spec.clone())
        .map_err(|error| format!("not a command task (see `stint schema command-spec`): {error}"))
}

#[async_trait]
impl Handler for CommandTasks {
    fn descriptor(&self, task: &ClaimedTask) -> Result<TaskDescriptor, String> {
        let key = NodeKey::new(task.task.run_id.clone(), task.task.node_id.clone(), 0)
            .map_err(|error| error.to_string())?;
        spec_of(task)?
            .descriptor(key)
            .map_err(|error| error.message)
    }

    async fn run(&self, task: ClaimedTask, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let spec = spec_of(&task).map_err(TaskFailure::permanent)?;
        let command = Arc::new(process::CommandSpec {
            output_required: spec.output_schema.is_some(),
            grace: spec.grace(),
            output: spec.output,
            dir: spec.dir.map(PathBuf::from),
            argv: spec.command,
            env: crate::telemetry::command_env(self.spans.as_deref(), &ctx.key),
        });
        let console: Arc<dyn Console> = Arc::new(TaskConsole {
            task: task.task.id,
            quiet: self.quiet,
        });
        process::run(command, ctx, console).await
    }
}

/// What a task's command says: its stderr (and stdout that is not its output) passed through,
/// stint's own lines naming the task.
struct TaskConsole {
    task: TaskId,
    quiet: bool,
}

impl Console for TaskConsole {
    fn stderr(&self, bytes: &[u8]) {
        crate::output::passthrough(bytes);
    }

    fn stdout(&self, bytes: &[u8]) {
        crate::output::passthrough(bytes);
    }

    fn note(&self, text: &str) {
        if !self.quiet {
            crate::output::note(&format!("{}: {text}", self.task));
        }
    }
}

/// Recovery as `stint recover` does it: orphaned process groups on this host are ended before
/// their attempts are marked abandoned.
#[derive(Debug)]
struct CliRecovery {
    store: Arc<dyn Store>,
    quiet: bool,
}

#[async_trait]
impl Recovery for CliRecovery {
    async fn recover(&self, engine: &Engine) -> Result<Vec<AttemptKey>, EngineError> {
        let quiet = self.quiet;
        let note = move |text: &str| {
            if !quiet {
                crate::output::note(text);
            }
        };
        crate::recovery::recover(&self.store, engine, &note)
            .await
            .map_err(|error| EngineError::Store(StoreError::unavailable(error.message)))
    }
}

/// The worker's progress on stderr, one line per event (none with `-q`).
#[derive(Debug)]
struct Progress {
    quiet: bool,
}

impl Progress {
    fn say(&self, text: &str) {
        if !self.quiet {
            crate::output::note(text);
        }
    }

    fn report(&self, report: &WorkerReport) {
        self.say(&format!(
            "worker stopped: {} finished, {} failed, {} cancelled, {} retried later, {} put back, \
             {} swept",
            report.finished,
            report.failed,
            report.cancelled,
            report.retried,
            report.released,
            report.swept
        ));
    }
}

impl WorkerObserver for Progress {
    fn claimed(&self, task: &ClaimedTask) {
        let task = &task.task;
        self.say(&format!(
            "{} ({}/{}) started",
            task.id, task.run_id, task.node_id
        ));
    }

    fn ended(&self, task: TaskId, end: &TaskEnd) {
        let how = match end {
            TaskEnd::Finished => "finished".to_owned(),
            TaskEnd::Failed { error } => format!("failed: {}", error_line(error)),
            TaskEnd::Cancelled { .. } => "cancelled".to_owned(),
            TaskEnd::Retry { error, .. } => format!("failed, retried later: {}", error_line(error)),
            TaskEnd::Release => "put back in the queue".to_owned(),
        };
        self.say(&format!("{task} {how}"));
    }

    fn dropped(&self, task: TaskId, error: &EngineError) {
        self.say(&format!(
            "{task}: nothing recorded ({error}); left to the sweep"
        ));
    }

    fn draining(&self, running: usize) {
        self.say(&format!("draining: {running} task(s) still running"));
    }

    fn swept(&self, attempts: &[AttemptKey], tasks: &[TaskId]) {
        if !attempts.is_empty() || !tasks.is_empty() {
            self.say(&format!(
                "swept: {} abandoned attempt(s) marked, {} task(s) back in the queue",
                attempts.len(),
                tasks.len()
            ));
        }
    }

    fn store_error(&self, during: &str, error: &StoreError) {
        self.say(&format!("{during}: {error} (trying again)"));
    }
}

/// `CODE: message` of a stored task error.
fn error_line(error: &Value) -> String {
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => error.to_string(),
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT drain the worker; a second request aborts (running tasks
/// are cancelled and put back at once).
fn watch_signals(
    shutdown: Shutdown,
    drain_timeout: Duration,
) -> Result<AbortOnDropHandle<()>, CliError> {
    signals::watch(move |name, request| match request {
        Request::First => {
            crate::output::note(&format!(
                "{name}: draining (no new tasks; running ones get {} to finish, then are put \
                 back; signal again to put them back now)",
                humantime::format_duration(drain_timeout)
            ));
            shutdown.drain.cancel();
        }
        Request::Same => {}
        Request::Again => {
            crate::output::note(&format!(
                "{name} again: cancelling running tasks and putting them back"
            ));
            shutdown.abort.cancel();
        }
    })
}
