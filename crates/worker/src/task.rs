//! One claimed task, run as one attempt of its node, and the end its outcome writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use stint_domain::{AttemptState, TaskDescriptor, TaskError, TaskId};
use stint_engine::{AttemptOutcome, CancellationToken, EngineError, TaskEndFn};
use stint_ports::{AttemptFilter, ClaimedTask, Completion, NodeAttempts, TaskEnd};

use crate::claim::ClaimBegun;
use crate::worker::Inner;

/// The pauses between tries of a task's end that failed to be written: doubling up to 1 s,
/// for as long as a claim lease.
const COMPLETE_RETRY_FIRST: Duration = Duration::from_millis(50);
const COMPLETE_RETRY_MAX: Duration = Duration::from_secs(1);

/// How the worker stops one running task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    /// The engine's cancellation of the attempt.
    pub(crate) cancel: CancellationToken,
    /// Set before `cancel` when the worker itself stops the task (drain, abort): its
    /// cancellation then gives the task back instead of ending it.
    pub(crate) give_back: Arc<AtomicBool>,
    /// Set once the attempt's outcome is decided and its terminal write (which ends the task
    /// too) is under way: the compute is over, so a renewal that no longer lists the task has
    /// nothing left to stop (the write is owner-checked), and must not abort it mid-write.
    pub(crate) settling: Arc<AtomicBool>,
}

impl Stop {
    /// Cancels the task and gives it back.
    pub(crate) fn give_back(&self) {
        self.give_back.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

/// What became of one task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settled {
    /// `end` was written.
    Ended(TaskEnd),
    /// Nothing was written (the engine could not record the attempt's end, or the end could not
    /// be written); the claim is given back by the next renewal or expires.
    Dropped,
}

/// How a task ends, and whether that end was already written with its attempt's.
struct Ending {
    end: TaskEnd,
    written: bool,
}

impl Ending {
    /// An end still to be written.
    fn unwritten(end: TaskEnd) -> Self {
        Self {
            end,
            written: false,
        }
    }
}

/// Runs `claimed` to a written end, from the attempt its claim began when it began one.
pub(crate) async fn run(
    inner: Arc<Inner>,
    claimed: ClaimedTask,
    begun: Option<ClaimBegun>,
    stop: Stop,
) -> Settled {
    let id = claimed.task.id;
    let Ending { end, written } = match attempt(&inner, &claimed, begun, &stop).await {
        Ok(ending) => ending,
        Err(error) => {
            tracing::warn!(task = %id, %error, "the attempt's end was not recorded; the task goes back");
            inner.observer.dropped(id, &error);
            return Settled::Dropped;
        }
    };
    if written || complete(&inner, id, end.clone()).await {
        inner.observer.ended(id, &end);
        Settled::Ended(end)
    } else {
        Settled::Dropped
    }
}

/// Runs the attempt (recovering once when the node's last attempt is still in progress) and
/// says how the task ends. The attempt's terminal write ends the task too, in one commit, when
/// the task is still this worker's.
///
/// The attempt is the one the claim began, when it began one; a begin the claim saw refused
/// (the node's last attempt still in progress) is handled as the engine's own would be.
async fn attempt(
    inner: &Arc<Inner>,
    claimed: &ClaimedTask,
    begun: Option<ClaimBegun>,
    stop: &Stop,
) -> Result<Ending, EngineError> {
    let (mut begun, mut refused) = match begun.map(|begun| (begun.prepared, begun.answer)) {
        None => (None, false),
        Some((prepared, Ok(begun))) => (Some((prepared, begun)), false),
        Some((_, Err(error))) if error.is_conflict() => (None, true),
        Some((_, Err(error))) => return Err(EngineError::Store(error)),
    };
    let mut desc = None;
    let mut recovered = false;
    loop {
        if std::mem::take(&mut refused)
            && let Some(ending) = recover_once(inner, &mut recovered).await
        {
            return Ok(ending);
        }
        let started = Arc::new(AtomicBool::new(false));
        let compute = {
            let (handler, task, started) =
                (inner.handler.clone(), claimed.clone(), started.clone());
            move |ctx| {
                started.store(true, Ordering::SeqCst);
                async move { handler.run(task, ctx).await }
            }
        };
        // The end handed to the terminal write, kept to be reported as written.
        let handed = Mutex::new(None);
        let task_end: TaskEndFn<'_> = Box::new(|outcome| {
            stop.settling.store(true, Ordering::SeqCst);
            // Its slot frees once this write returns: the loop may claim for it meanwhile.
            inner.settling.notify_one();
            let end = end_of(inner, outcome, stop);
            *handed.lock().unwrap_or_else(PoisonError::into_inner) = Some(end.clone());
            let owner = inner.options.owner.clone();
            Some(Completion::new(claimed.task.id, owner, end, inner.now_ms()))
        });
        let ran = if let Some((prepared, begun)) = begun.take() {
            let run = inner.engine.run_begun_task_attempt(
                prepared,
                begun,
                compute,
                &stop.cancel,
                task_end,
            );
            run.await
        } else {
            let desc = match &mut desc {
                Some(desc) => desc,
                None => match descriptor(inner, claimed).await? {
                    Ok(made) => desc.insert(made),
                    Err(end) => return Ok(Ending::unwritten(end)),
                },
            };
            let run = inner
                .engine
                .run_task_attempt(desc, compute, &stop.cancel, task_end);
            run.await
        };
        let handed = handed.into_inner().unwrap_or_else(PoisonError::into_inner);
        match ending_of(inner, ran, handed, started.load(Ordering::SeqCst), stop)? {
            Some(ending) => return Ok(ending),
            None => refused = true,
        }
    }
}

/// After a begin was refused because the node's last attempt is still in progress (its worker
/// died): recovery frees it once its lease expired, so it runs once. How the task ends when that
/// cannot help: the begin was refused again after it, or it failed. Until then the task goes
/// back.
async fn recover_once(inner: &Inner, recovered: &mut bool) -> Option<Ending> {
    if std::mem::replace(recovered, true) {
        return Some(Ending::unwritten(TaskEnd::Release));
    }
    if let Err(error) = inner.recovery.recover(&inner.engine).await {
        tracing::warn!(%error, "recovery failed");
        return Some(Ending::unwritten(TaskEnd::Release));
    }
    None
}

/// How an attempt's run ends the task: the end handed to its terminal write when there was one;
/// `None` when its begin was refused before the compute started (recover and try again).
fn ending_of(
    inner: &Inner,
    ran: Result<AttemptOutcome, EngineError>,
    handed: Option<TaskEnd>,
    started: bool,
    stop: &Stop,
) -> Result<Option<Ending>, EngineError> {
    match ran {
        Ok(outcome) => Ok(Some(Ending {
            end: handed.unwrap_or_else(|| end_of(inner, &outcome, stop)),
            written: outcome.task_ended,
        })),
        Err(EngineError::Store(error)) if error.is_conflict() && !started => Ok(None),
        Err(error @ (EngineError::Store(_) | EngineError::Fenced { .. })) => Err(error),
        // The descriptor cannot be run: no attempt began, and no retry would change that.
        Err(error) => {
            let error = TaskError::new(error.code(), error.to_string());
            Ok(Some(Ending::unwritten(TaskEnd::Failed {
                error: to_json(&error),
            })))
        }
    }
}

/// The descriptor of `claimed`'s attempt, or how the task ends without one: its spec makes no
/// descriptor, or its node's attempts (as the claim read them, else read now) already settled
/// it.
async fn descriptor(
    inner: &Inner,
    claimed: &ClaimedTask,
) -> Result<Result<TaskDescriptor, TaskEnd>, EngineError> {
    let desc = match handler_descriptor(inner, claimed) {
        Ok(desc) => desc,
        Err(reason) => {
            let error = TaskError::task_failed(format!("invalid task spec: {reason}"))
                .with_details(json!({ "invalid_spec": reason }));
            return Ok(Err(TaskEnd::Failed {
                error: to_json(&error),
            }));
        }
    };
    let settled = already_settled(inner, &desc, claimed).await?;
    Ok(settled.map_or(Ok(desc), Err))
}

/// How the task ends without a new attempt when its node's attempts already settled it: a
/// worker wrote the attempt's end and died before the task's, so the claim expired and the
/// task came back. A finished node is not run again (as `stint run` does not), nor is a node
/// whose last attempt failed for good (not retryable, or its retries spent) after the last
/// `stint retry` (which set `retry_base` failures aside). An abandoned attempt is retryable: its
/// task runs again.
async fn already_settled(
    inner: &Inner,
    desc: &TaskDescriptor,
    claimed: &ClaimedTask,
) -> Result<Option<TaskEnd>, EngineError> {
    let read;
    let attempts = match read_by_claim(desc, claimed) {
        Some(attempts) => attempts,
        None => {
            let key = &desc.key;
            let filter = AttemptFilter {
                run_id: key.run_id().to_owned(),
                node_id: Some(key.node_id().to_owned()),
                iteration: Some(key.iteration()),
            };
            read = NodeAttempts::of(&inner.history.list_attempts(&filter).await?);
            &read
        }
    };
    Ok(settled_end(attempts, claimed.task.retry_base))
}

/// The node's attempts as the claim read them: those of `desc`'s node when the descriptor runs
/// the task as iteration 0 of the task's own run and node.
fn read_by_claim<'a>(desc: &TaskDescriptor, claimed: &'a ClaimedTask) -> Option<&'a NodeAttempts> {
    let (key, task) = (&desc.key, &claimed.task);
    let same_node =
        key.run_id() == task.run_id && key.node_id() == task.node_id && key.iteration() == 0;
    claimed.attempts.as_ref().filter(|_| same_node)
}

/// The descriptor the handler makes of `claimed`'s spec, with the failed attempts `stint retry`
/// set aside (`retry_base`) not counted toward its retries.
fn handler_descriptor(inner: &Inner, claimed: &ClaimedTask) -> Result<TaskDescriptor, String> {
    let mut desc = inner.handler.descriptor(claimed)?;
    desc.retry.retries = desc.retry.retries.saturating_add(claimed.task.retry_base);
    Ok(desc)
}

/// The descriptor of `claimed`'s attempt when a claim may begin it at once: the handler makes
/// one, and the node's attempts, as the claim read them, did not settle the task. `None` leaves
/// the task to [`attempt`]'s own steps, which say how it ends otherwise.
pub(crate) fn runnable_descriptor(inner: &Inner, claimed: &ClaimedTask) -> Option<TaskDescriptor> {
    let desc = handler_descriptor(inner, claimed).ok()?;
    let attempts = read_by_claim(&desc, claimed)?;
    settled_end(attempts, claimed.task.retry_base)
        .is_none()
        .then_some(desc)
}

/// The rule of [`already_settled`], on what the node's attempts say.
fn settled_end(attempts: &NodeAttempts, retry_base: u32) -> Option<TaskEnd> {
    let last = attempts.last.as_ref()?;
    let error = || {
        to_json(
            &last
                .error
                .clone()
                .unwrap_or_else(|| TaskError::task_failed("failed")),
        )
    };
    match last.state {
        AttemptState::Finished => Some(TaskEnd::Finished),
        AttemptState::Failed if last.retryable == Some(false) && attempts.failed > retry_base => {
            Some(TaskEnd::Failed { error: error() })
        }
        _ => None,
    }
}

/// The end an attempt's outcome writes for its task.
fn end_of(inner: &Inner, outcome: &AttemptOutcome, stop: &Stop) -> TaskEnd {
    let error = || to_json(&outcome.error.clone().unwrap_or_else(TaskError::aborted));
    match (outcome.state, outcome.retry) {
        (AttemptState::Finished, _) => TaskEnd::Finished,
        (AttemptState::Cancelled, _) if stop.give_back.load(Ordering::SeqCst) => TaskEnd::Release,
        (AttemptState::Cancelled, _) => TaskEnd::Cancelled { error: error() },
        (_, Some(plan)) => TaskEnd::Retry {
            run_at_ms: inner.now_ms().saturating_add(plan.delay_ms),
            error: error(),
        },
        (_, None) => TaskEnd::Failed { error: error() },
    }
}

/// Writes `end`, retrying a write that failed for up to a claim lease; a conflict (the task is
/// no longer this worker's) is final. Whether it was written.
async fn complete(inner: &Inner, id: TaskId, end: TaskEnd) -> bool {
    let give_up_at = tokio::time::Instant::now() + inner.options.claim_lease;
    let mut pause = COMPLETE_RETRY_FIRST;
    loop {
        let write = inner.queue.complete(Completion::new(
            id,
            inner.options.owner.clone(),
            end.clone(),
            inner.now_ms(),
        ));
        let error = match write.await {
            Ok(()) => return true,
            Err(error) => error,
        };
        inner.observer.store_error("completing a task", &error);
        if error.is_conflict() || tokio::time::Instant::now() + pause > give_up_at {
            tracing::warn!(task = %id, %error, "the task's end was not written");
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(COMPLETE_RETRY_MAX);
    }
}

/// The error as the task's `last_error` holds it.
pub(crate) fn to_json(error: &TaskError) -> Value {
    serde_json::to_value(error).unwrap_or(Value::Null)
}
