//! One attempt, step by step: begin, race the compute against its timers, flush the heartbeats,
//! write the one terminal state the first signal decided.
//!
//! The lease is kept by the attempt's keeper task from the begin until the terminal write has
//! committed; the terminal write is retried while the lease holds; an attempt whose lease cannot
//! be proven any more is stopped and left to recovery, with nothing terminal written. The last
//! step, from the decision to the terminal write, is [`crate::settle`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::heartbeat::throttle_interval_ms;
use stint_domain::{AttemptCommand, AttemptMachine, TaskDescriptor};
use stint_ports::{BeginAttempt, BegunAttempt, OwnedAttempt, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::{ComputeOnce, ProcessRecorder, TaskContext, TaskFailure};
use crate::engine::{Engine, TaskEndFn};
use crate::error::EngineError;
use crate::heartbeat::{Heartbeat, Heartbeats, flush_heartbeats};
use crate::lease::{LeaseLoss, LeaseState};
use crate::outcome::AttemptOutcome;
use crate::output::OutputValidator;
use crate::settle::Settled;
use crate::shared::{CANCEL_REQUESTED, CONFLICT, Keeper, LOST, STALE, Shared, SharedParts};
use crate::timers::{Deadlines, Expired};
use crate::watchdog::Staleness;

/// The first signal the engine saw; it alone decides the outcome.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The compute returned a value (not yet validated).
    Output(Value),
    /// The compute failed.
    Failed(TaskFailure),
    /// The attempt ran past its timeout (ms).
    Timeout(u64),
    /// The task was silent for longer than its heartbeat timeout (ms).
    HeartbeatTimeout(u64),
    /// Cancelled from outside.
    Cancelled,
    /// Another execution owns the attempt, or the lease could not be renewed.
    Lost(LeaseLoss),
}

/// A begun attempt, with everything the later steps need.
pub(crate) struct Running {
    pub(crate) shared: Arc<Shared>,
    pub(crate) started_at_ms: u64,
    checkpoint: Option<Value>,
    keeper: Keeper,
}

impl Running {
    /// The span an attempt's steps run in. `trace_id` and `span_id` are filled in by an
    /// observer that exports spans.
    pub(crate) fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "attempt",
            attempt = %self.shared.owned.key,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        )
    }
}

/// The longest a begin may take. Every later write is bounded by the lease; the begin has no
/// lease yet, and a connection to a server that vanished without closing it would otherwise hold
/// it forever. A begin that committed but whose answer never came leaves its attempt in progress
/// with nobody renewing it: recovery marks it abandoned once its lease expires.
const BEGIN_LIMIT: Duration = Duration::from_secs(60);

impl Engine {
    /// Runs one attempt of `desc` to its recorded end.
    pub(crate) async fn attempt<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        compute: C,
        cancel: &CancellationToken,
        task_end: Option<TaskEndFn<'_>>,
    ) -> Result<AttemptOutcome, EngineError> {
        let running = self.begin(desc).await?;
        let span = running.span();
        self.drive(desc, validator, running, compute, cancel, task_end)
            .instrument(span)
            .await
    }

    /// Allocates the attempt with a fresh owner token, reads its checkpoint, starts the lease.
    async fn begin(&self, desc: &TaskDescriptor) -> Result<Running, EngineError> {
        let (begin, begun_at) = self.begin_request(desc);
        let (owner, started_at_ms) = (begin.owner.clone(), begin.started_at_ms);
        let begun = tokio::time::timeout(BEGIN_LIMIT, self.ports.store.begin_attempt(begin))
            .await
            .map_err(|_| {
                StoreError::unavailable(format!(
                    "beginning an attempt of {} took longer than {} s (if it was written, \
                     recovery marks it ATTEMPT_ABANDONED once its lease expires)",
                    desc.key,
                    BEGIN_LIMIT.as_secs()
                ))
            })??;
        self.started(desc, owner, started_at_ms, begun_at, begun)
    }

    /// What the begin of an attempt of `desc` writes, under a fresh owner token, and the instant
    /// before any store could read its clock for the lease (the fence counts from there).
    pub(crate) fn begin_request(&self, desc: &TaskDescriptor) -> (BeginAttempt, Instant) {
        let begun_at = Instant::now();
        let begin = BeginAttempt {
            node: desc.key.clone(),
            owner: uuid::Uuid::new_v4().to_string(),
            started_at_ms: self.ports.clock.now_ms(),
            lease_ms: desc.lease_ms,
            metadata: serde_json::to_value(&desc.metadata).unwrap_or(Value::Null),
            working_dir: self.working_dir().map(|dir| dir.display().to_string()),
            label: desc.label.clone(),
            output_table: desc.output_table.clone(),
        };
        (begin, begun_at)
    }

    /// The attempt a begin of `desc` by `owner` at `started_at_ms` began (`begun`, as the store
    /// answered it): its state machine, its shared state and its keeper, which holds the lease
    /// from now on.
    pub(crate) fn started(
        &self,
        desc: &TaskDescriptor,
        owner: String,
        started_at_ms: u64,
        begun_at: Instant,
        begun: BegunAttempt,
    ) -> Result<Running, EngineError> {
        let key = desc.key.attempt(begun.attempt);
        let mut machine = AttemptMachine::new(key.clone(), desc.retry, begun.failed_before);
        // The store appended `NodeStarted` with the attempt row; the machine's copy is dropped.
        machine.apply(AttemptCommand::Start, started_at_ms)?;
        let shared = Arc::new(Shared::new(SharedParts {
            owned: OwnedAttempt { key, owner },
            store: self.ports.store.clone(),
            clock: self.ports.clock.clone(),
            observer: self.options.observer.clone(),
            machine,
            heartbeats: Heartbeats::new(self.metrics.heartbeats.clone()),
            lease: LeaseState::new(desc.lease_ms, begun_at),
            staleness: Staleness::new(started_at_ms, desc.heartbeat_timeout_ms),
        }));
        let throttle_ms = throttle_interval_ms(desc.heartbeat_timeout_ms);
        Ok(Running {
            keeper: Keeper::start(shared.clone(), throttle_ms),
            shared,
            started_at_ms,
            checkpoint: begun.checkpoint,
        })
    }

    /// Everything after the begin: the race, then the steps that end the attempt.
    pub(crate) async fn drive<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        running: Running,
        compute: C,
        cancel: &CancellationToken,
        task_end: Option<TaskEndFn<'_>>,
    ) -> Result<AttemptOutcome, EngineError> {
        self.options
            .observer
            .attempt_started(&running.shared.owned.key, running.checkpoint.as_ref());
        let (decision, decided_at_ms) = if cancel.is_cancelled() {
            (Decision::Cancelled, self.ports.clock.now_ms())
        } else {
            self.race(desc, &running, compute, cancel).await
        };
        // Other attempts whose deadlines passed are found stale now, before this one's ending
        // steps: under a burst of deadlines, none waits for the others' endings to be found.
        self.watchdog.sweep(self.ports.clock.now_ms());
        tracing::debug!(?decision, "outcome decided");
        let settled = Settled {
            decision,
            decided_at_ms,
            task_end,
        };
        // Boxed: the ending steps are the attempt's largest state, and they are needed only at
        // its end, not while it runs.
        Box::pin(self.conclude(desc, validator, running, settled)).await
    }

    /// Flushes the heartbeats and writes the terminal state (nothing when the lease was lost),
    /// then stops the keeper, so nothing of the attempt outlives it.
    async fn conclude(
        &self,
        desc: &TaskDescriptor,
        validator: &OutputValidator,
        running: Running,
        settled: Settled<'_>,
    ) -> Result<AttemptOutcome, EngineError> {
        let ended = match settled.decision {
            Decision::Lost(loss) => Err(loss.into()),
            _ => match self.flush(&running.shared).await {
                Ok(()) => self.settle(desc, validator, &running, settled).await,
                Err(error) => Err(error),
            },
        };
        running.keeper.stop().await;
        ended
    }

    /// Runs the compute against the timeout, the watchdog, cancellation and the lease. When
    /// something other than the compute decides, the compute is cancelled and given the grace
    /// period to clean up, then dropped; when the lease is lost it is dropped at once (for a
    /// command: its process group is killed), since the attempt may be run again elsewhere.
    /// Returns the decision and when it was made.
    async fn race<C: ComputeOnce>(
        &self,
        desc: &TaskDescriptor,
        running: &Running,
        compute: C,
        cancel: &CancellationToken,
    ) -> (Decision, u64) {
        let shared = &running.shared;
        let task_cancel = CancellationToken::new();
        let compute = compute(TaskContext {
            key: shared.owned.key.clone(),
            cancel: task_cancel.clone(),
            checkpoint: running.checkpoint.clone(),
            heartbeat: Heartbeat::new(shared.clone()),
            process: ProcessRecorder::new(shared.clone()),
        });
        tokio::pin!(compute);
        let timeout_at = desc
            .timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        // The deadlines live in this block only: the grace period does not hold them.
        let decision = {
            let _watch = self.watchdog.watch(shared);
            let deadlines = Deadlines {
                timeout_at,
                staleness: &shared.staleness,
                received: &shared.heartbeats.received,
                clock: self.ports.clock.as_ref(),
            };
            tokio::select! {
            // Ties go to the compute's own result: it is the outcome the user asked for.
            biased;
            result = &mut compute => match result {
                Ok(value) => Decision::Output(value),
                Err(failure) => Decision::Failed(failure),
            },
            // The lease's loss before a heartbeat's conflict before a cancellation request.
            raised = shared.until(LOST | CONFLICT | CANCEL_REQUESTED) => match raised {
                r if r & LOST != 0 => Decision::Lost(shared.lease.loss_or_fenced()),
                r if r & CONFLICT != 0 => Decision::Lost(LeaseLoss::Conflict(
                    shared.conflict().unwrap_or_else(|| StoreError::conflict("attempt lost")),
                )),
                _ => Decision::Cancelled,
            },
            () = cancel.cancelled() => Decision::Cancelled,
            expired = deadlines.expired() => match expired {
                Expired::Timeout => Decision::Timeout(desc.timeout_ms.unwrap_or(0)),
                Expired::HeartbeatTimeout => {
                    // This one and every other attempt whose deadline passed, found now.
                    self.watchdog.sweep(self.ports.clock.now_ms());
                    Decision::HeartbeatTimeout(desc.heartbeat_timeout_ms.unwrap_or(0))
                }
            },
            // Found stale by another attempt's sweep.
            _ = shared.until(STALE) => {
                Decision::HeartbeatTimeout(desc.heartbeat_timeout_ms.unwrap_or(0))
            }
            }
        };
        let decided_at_ms = match decision {
            Decision::HeartbeatTimeout(_) => shared.staleness.found_at_ms(),
            _ => None,
        }
        .unwrap_or_else(|| self.ports.clock.now_ms());
        shared.heartbeats.stop_accepting(decided_at_ms);
        if matches!(decision, Decision::Output(_) | Decision::Failed(_)) {
            return (decision, decided_at_ms);
        }
        task_cancel.cancel();
        if !matches!(decision, Decision::Lost(_)) {
            self.grace(&mut compute, shared).await;
        }
        (decision, decided_at_ms)
    }

    /// Gives a cancelled compute the grace period to stop, unless the lease is lost meanwhile.
    async fn grace<Fut: Future>(&self, compute: &mut std::pin::Pin<&mut Fut>, shared: &Shared) {
        let grace = self.options.cancel_grace;
        tokio::select! {
            stopped = tokio::time::timeout(grace, compute) => if stopped.is_err() {
                tracing::warn!(?grace, "compute did not stop within its grace period; dropped");
            },
            _ = shared.until(LOST) => {
                tracing::warn!("the lease was lost during the grace period; compute dropped");
            }
        }
    }

    /// Stops the heartbeat writer after it wrote what is pending, within what is left of the
    /// lease.
    async fn flush(&self, shared: &Shared) -> Result<(), EngineError> {
        let lease = &shared.lease;
        let left = lease.remaining()?;
        match tokio::time::timeout(left, flush_heartbeats(shared)).await {
            Ok(None) => Ok(()),
            Ok(Some(conflict)) => Err(EngineError::Store(conflict)),
            Err(_elapsed) => Err(lease.remaining().err().unwrap_or(LeaseLoss::Fenced {
                unrenewed_ms: 0,
                last_error: None,
            }))?,
        }
    }
}
