//! `stint worker`: claims queued command tasks and runs each as `stint run` would, through the
//! `stint-worker` crate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptKey, NodeKey, TaskDescriptor, TaskId};
use stint_engine::{Engine, EngineError, EngineOptions, Ports, TaskContext, TaskFailure};
use stint_ports::{ClaimedTask, QueueStore, Store, StoreError, TaskEnd};
use stint_worker::{
    Handler, Recovery, Shutdown, Worker, WorkerError, WorkerObserver, WorkerOptions, WorkerReport,
};
use tokio_util::task::AbortOnDropHandle;

use crate::args::WorkerArgs;
use crate::exit::{self, CliError};
use crate::output::Notes;
use crate::process::{self, Console};
use crate::signals::{self, Request};
use crate::task_spec::CommandSpec;
use crate::vcs::JjOrGit;

/// How long the engine waits for a cancelled command: each task's own grace is enforced by the
/// runner (SIGTERM, then SIGKILL after it), so this only bounds a runner that does not return.
const CANCEL_LIMIT: Duration = Duration::from_secs(600);

/// Runs a worker against the store at `db` until it is stopped (or, with `--exit-when-empty`,
/// until its queues are empty).
pub(super) async fn worker(db: &str, quiet: bool, args: WorkerArgs) -> Result<u8, CliError> {
    let any = crate::store::open_queue(db).await?;
    let store: Arc<dyn Store> = any.clone();
    let queue: Arc<dyn QueueStore> = any;
    let engine = Engine::with_options(
        Ports::new(store.clone(), Arc::new(JjOrGit)),
        EngineOptions {
            working_dir: std::env::current_dir().ok(),
            cancel_grace: CANCEL_LIMIT,
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
    let notes = Notes { quiet };
    let progress = Arc::new(Progress { notes });
    let tasks = Arc::new(CommandTasks { notes });
    let worker = Worker::new(engine, queue, store.clone(), tasks, options)
        .with_observer(progress.clone())
        .with_recovery(Arc::new(CliRecovery { store, notes }));
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

/// Runs command tasks: the spec `stint submit` stored, as `stint run` runs a command.
#[derive(Debug)]
struct CommandTasks {
    notes: Notes,
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
        });
        let console: Arc<dyn Console> = Arc::new(TaskConsole {
            task: task.task.id,
            notes: self.notes,
        });
        process::run(command, ctx, console).await
    }
}

/// What a task's command says: its stderr (and stdout that is not its output) passed through,
/// stint's own lines naming the task.
struct TaskConsole {
    task: TaskId,
    notes: Notes,
}

impl Console for TaskConsole {
    fn stderr(&self, bytes: &[u8]) {
        crate::output::passthrough(bytes);
    }

    fn stdout(&self, bytes: &[u8]) {
        crate::output::passthrough(bytes);
    }

    fn note(&self, text: &str) {
        self.notes.note(&format!("{}: {text}", self.task));
    }
}

/// Recovery as `stint recover` does it: orphaned process groups on this host are ended before
/// their attempts are marked abandoned.
#[derive(Debug)]
struct CliRecovery {
    store: Arc<dyn Store>,
    notes: Notes,
}

#[async_trait]
impl Recovery for CliRecovery {
    async fn recover(&self, engine: &Engine) -> Result<Vec<AttemptKey>, EngineError> {
        let notes = self.notes;
        crate::recovery::recover(&self.store, engine, &|text| notes.note(text))
            .await
            .map_err(|error| EngineError::Store(StoreError::unavailable(error.message)))
    }
}

/// The worker's progress on stderr, one line per event (none with `-q`).
#[derive(Debug)]
struct Progress {
    notes: Notes,
}

impl Progress {
    fn report(&self, report: &WorkerReport) {
        self.notes.note(&format!(
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
        self.notes.note(&format!(
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
        self.notes.note(&format!("{task} {how}"));
    }

    fn dropped(&self, task: TaskId, error: &EngineError) {
        self.notes.note(&format!(
            "{task}: nothing recorded ({error}); left to the sweep"
        ));
    }

    fn draining(&self, running: usize) {
        self.notes
            .note(&format!("draining: {running} task(s) still running"));
    }

    fn swept(&self, attempts: &[AttemptKey], tasks: &[TaskId]) {
        if !attempts.is_empty() || !tasks.is_empty() {
            self.notes.note(&format!(
                "swept: {} abandoned attempt(s) marked, {} task(s) back in the queue",
                attempts.len(),
                tasks.len()
            ));
        }
    }

    fn store_error(&self, during: &str, error: &StoreError) {
        self.notes
            .note(&format!("{during}: {error} (trying again)"));
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
