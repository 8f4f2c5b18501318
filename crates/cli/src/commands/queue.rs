//! `stint tasks`, `queues`, `cancel`, `retry`, `prune` and `queue limit`: the operator's view of
//! the queue and the changes it makes by hand.

use std::time::Duration;

use stint_domain::{NodeKey, QueueStats, TaskId, TaskRecord, TaskState};
use stint_ports::{CancelOutcome, CancelTarget, TaskFilter};

use super::inspect::{print_listing, timestamp};
use crate::args::{
    CancelArgs, ListedState, PruneArgs, QueueCommand, QueueLimitArgs, QueuesArgs, RetryArgs,
    TasksArgs,
};
use crate::exit::{self, CliCode, CliError};
use crate::stdout;

/// The time now, in milliseconds since the epoch (due times are the caller's clock).
pub(super) fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::task_spec::millis(since)
}

/// No task `id` is stored.
pub(super) fn unknown_task(id: TaskId) -> CliError {
    CliError::new(
        CliCode::UnknownTask,
        format!("no {id} is queued (never submitted, or pruned)"),
    )
}

/// `stint tasks`.
pub(super) async fn tasks(db: &str, args: &TasksArgs) -> Result<u8, CliError> {
    let store = crate::store::open_queue_existing(db).await?;
    let now = now_ms();
    // Ready and scheduled are one stored state: split after reading, then cut to the limit.
    let split = matches!(
        args.state,
        Some(ListedState::Ready | ListedState::Scheduled)
    );
    let filter = TaskFilter {
        queue: args.queue.clone(),
        state: args.state.map(ListedState::stored),
        limit: if split { u32::MAX } else { args.limit },
    };
    let mut tasks = store.list_tasks(&filter).await?;
    if split {
        let wanted = if args.state == Some(ListedState::Ready) {
            "ready"
        } else {
            "scheduled"
        };
        tasks.retain(|task| task.listed_state(now) == wanted);
        tasks.truncate(usize::try_from(args.limit).unwrap_or(usize::MAX));
    }
    print_listing(
        args.json,
        &tasks,
        [
            "ID", "QUEUE", "STATE", "PRIORITY", "RUN", "NODE", "CLAIMS", "DUE",
        ],
        |task| task_row(task, now),
    )
}

fn task_row(task: &TaskRecord, now: u64) -> Vec<String> {
    vec![
        task.id.0.to_string(),
        task.queue.clone(),
        task.listed_state(now).to_owned(),
        task.priority.to_string(),
        task.run_id.clone(),
        task.node_id.clone(),
        task.claims.to_string(),
        timestamp(task.run_at_ms),
    ]
}

/// `stint queues`.
pub(super) async fn queues(db: &str, args: &QueuesArgs) -> Result<u8, CliError> {
    let store = crate::store::open_queue_existing(db).await?;
    let stats = store.queue_stats(now_ms()).await?;
    print_listing(
        args.json,
        &stats,
        [
            "QUEUE",
            "READY",
            "SCHEDULED",
            "RUNNING",
            "FAILED",
            "OLDEST READY",
            "LIMIT",
        ],
        queue_row,
    )
}

fn queue_row(stats: &QueueStats) -> Vec<String> {
    let age = stats.oldest_ready_age_ms.map_or_else(
        || "-".to_owned(),
        // Whole seconds: the milliseconds of a wait are noise in a table.
        |ms| humantime::format_duration(Duration::from_secs(ms / 1000)).to_string(),
    );
    vec![
        stats.queue.clone(),
        stats.ready.to_string(),
        stats.scheduled.to_string(),
        stats.running.to_string(),
        stats.failed.to_string(),
        age,
        stats
            .max_running
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
    ]
}

/// `stint cancel`: one line per task of the target saying what became of it.
pub(super) async fn cancel(db: &str, args: &CancelArgs) -> Result<u8, CliError> {
    let store = crate::store::open_queue_existing(db).await?;
    let target = match (&args.task, &args.run) {
        (Some(id), _) => CancelTarget::Task(TaskId(*id)),
        (None, Some(run)) => CancelTarget::Run(run.clone()),
        (None, None) => return Err(CliError::usage("give a TASK or --run RUN")),
    };
    let outcomes = store.cancel(target.clone(), now_ms()).await?;
    // A run's attempts in progress are asked too, whoever runs them: a worker, or a plain
    // `stint run` that is no task at all.
    let asked = match &target {
        CancelTarget::Run(run) => store.request_cancel(run).await?,
        CancelTarget::Task(_) => Vec::new(),
    };
    if outcomes.is_empty() && asked.is_empty() {
        return Err(match target {
            CancelTarget::Task(id) => unknown_task(id),
            CancelTarget::Run(run) => CliError::new(
                CliCode::UnknownRun,
                format!("run '{run}' has no queued task and no attempt in progress"),
            ),
        });
    }
    for outcome in outcomes {
        stdout::line(&match outcome {
            CancelOutcome::Cancelled(id) => format!("{id} cancelled"),
            CancelOutcome::Requested(id) => format!(
                "{id} is running: cancellation requested (its worker stops it when it next \
                 renews its lease)"
            ),
            CancelOutcome::AlreadyEnded(id, state) => format!("{id} already {state}: unchanged"),
        })?;
    }
    for attempt in asked {
        stdout::line(&format!(
            "attempt {attempt} is in progress: cancellation requested (its runner stops it when \
             it next renews its lease)"
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// `stint retry`: the task ready again, its node's failed attempts so far no longer counted.
pub(super) async fn retry(db: &str, args: &RetryArgs) -> Result<u8, CliError> {
    let store = crate::store::open_queue_existing(db).await?;
    let id = TaskId(args.task);
    let Some(task) = store.get_task(id).await? else {
        return Err(unknown_task(id));
    };
    if !matches!(task.state, TaskState::Failed | TaskState::Cancelled) {
        return Err(CliError::invalid_input(format!(
            "{id} is {}: only a failed or cancelled task can be retried",
            task.listed_state(now_ms())
        )));
    }
    let key = NodeKey::new(task.run_id.clone(), task.node_id.clone(), 0)
        .map_err(|error| CliError::internal(format!("{id} names an invalid node: {error}")))?;
    let (_, failed) = super::run::earlier_attempts(store.as_ref(), &key).await?;
    store.retry(id, failed, now_ms()).await?;
    stdout::line(&format!(
        "{id} ready again ({failed} earlier failed attempt(s) no longer count toward its retries)"
    ))?;
    Ok(exit::SUCCESS)
}

/// `stint prune`: bounded batches until none is left; prints the total.
pub(super) async fn prune(db: &str, quiet: bool, args: &PruneArgs) -> Result<u8, CliError> {
    let store = crate::store::open_queue_existing(db).await?;
    let cutoff = now_ms().saturating_sub(crate::task_spec::millis(args.ended_before));
    let mut total: u64 = 0;
    loop {
        let deleted = store.prune(cutoff, args.batch).await?;
        total += deleted;
        if !quiet && deleted > 0 {
            crate::output::note(&format!("pruned {total} ended task(s) so far"));
        }
        if deleted < u64::from(args.batch) {
            break;
        }
    }
    stdout::line(&total.to_string())?;
    Ok(exit::SUCCESS)
}

/// `stint queue ...`.
pub(super) async fn queue(db: &str, command: &QueueCommand) -> Result<u8, CliError> {
    match command {
        QueueCommand::Limit(args) => limit(db, args).await,
    }
}

async fn limit(db: &str, args: &QueueLimitArgs) -> Result<u8, CliError> {
    if args.queue.is_empty() {
        return Err(CliError::invalid_input("the queue name is empty"));
    }
    let store = crate::store::open_queue(db).await?;
    store.set_queue_limit(&args.queue, args.limit.0).await?;
    stdout::line(&match args.limit.0 {
        Some(n) => format!("queue {}: at most {n} running task(s)", args.queue),
        None => format!("queue {}: no limit", args.queue),
    })?;
    Ok(exit::SUCCESS)
}
