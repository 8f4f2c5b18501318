//! The loop of one [`Worker::run`](crate::Worker::run): it claims up to its free slots, runs each
//! task as a tokio task of its own, and reacts to renewals, ended tasks, wake-ups and shutdown.
//!
//! A slot whose task is settling (its outcome decided, its compute over, its terminal write under
//! way) is free: a claim for it overlaps the write's round trip, and the next task starts while
//! the write waits for its commit, whose flush it may then share with that task's begin. At most
//! `concurrency` tasks compute at once, and at most as many more settle: beyond that, claimed
//! tasks wait in `ready` (held by the same renewals as running tasks, given back on shutdown).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use stint_domain::{TaskError, TaskId};
use stint_ports::{Claim, Completion, StoreError, TaskEnd, Wakeups};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;

use crate::claim::{self, Claimed};
use crate::keeper::{KeeperReport, Renewal};
use crate::options::{Shutdown, WorkerError, WorkerReport};
use crate::task::{self, Settled, Stop};
use crate::worker::Inner;

/// One task this worker runs.
struct Running {
    stop: Stop,
    abort: AbortHandle,
    claimed_at: Instant,
}

/// How far a shutdown has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    No,
    /// Draining: running tasks may finish until the deadline.
    Until(Instant),
    /// Every running task was told to stop and give its task back.
    GaveBack,
}

/// The state of one [`Worker::run`](crate::Worker::run).
pub(crate) struct Loop {
    inner: Arc<Inner>,
    wakeups: Option<Arc<dyn Wakeups>>,
    set: JoinSet<(TaskId, Settled)>,
    running: HashMap<TaskId, Running>,
    /// Claimed for slots still settling: started, in claim order, as those slots free.
    ready: VecDeque<(Claimed, Instant)>,
    ids: HashMap<tokio::task::Id, TaskId>,
    report: WorkerReport,
    claim_now: bool,
    /// The claims in flight, at most [`CLAIMS_IN_FLIGHT`] (aborted when the loop drops them: a
    /// claim committed meanwhile is given back by the next renewal, as a claim no running task
    /// holds, and an attempt it began is marked abandoned by recovery once its lease expires). The loop goes on (tasks end, renewals come back) while they
    /// wait for the store; the slots freed meanwhile go into the next claim, all at once.
    claiming: JoinSet<Result<Vec<Claimed>, StoreError>>,
    /// The slots each claim in flight was made for.
    reserved: HashMap<tokio::task::Id, usize>,
    stopping: Stopping,
}

/// The most claims in flight at once. A claim's round trip takes longer than running a no-op
/// task, so one claim at a time would leave the slots it was not made for idle meanwhile.
const CLAIMS_IN_FLIGHT: usize = 2;

impl Loop {
    pub(crate) fn new(inner: Arc<Inner>, wakeups: Option<Arc<dyn Wakeups>>) -> Self {
        Self {
            inner,
            wakeups,
            set: JoinSet::new(),
            running: HashMap::new(),
            ready: VecDeque::new(),
            ids: HashMap::new(),
            report: WorkerReport::default(),
            claim_now: true,
            claiming: JoinSet::new(),
            reserved: HashMap::new(),
            stopping: Stopping::No,
        }
    }

    pub(crate) async fn run(
        &mut self,
        shutdown: Shutdown,
        mut renewals: mpsc::Receiver<KeeperReport>,
    ) -> Result<WorkerReport, WorkerError> {
        loop {
            if self.stopping == Stopping::No
                && self.claim_now
                && self.claiming.len() < CLAIMS_IN_FLIGHT
                && self.free() > 0
            {
                self.claim_now = false;
                self.claim();
            }
            if self.stopping != Stopping::No && self.running.is_empty() && self.claiming.is_empty()
            {
                return Ok(self.report);
            }
            let drain_deadline = match self.stopping {
                Stopping::Until(deadline) => Some(deadline),
                _ => None,
            };
            let wakeups = self.wakeups.clone();
            tokio::select! {
                biased;
                Some(report) = renewals.recv() => match report {
                    KeeperReport::Renewed(renewal) => self.renewed(renewal).await,
                    KeeperReport::Fenced(fenced) => {
                        self.set.shutdown().await;
                        return Err(fenced);
                    }
                },
                () = shutdown.abort.cancelled(), if self.stopping != Stopping::GaveBack => {
                    self.give_back_all().await;
                }
                () = shutdown.drain.cancelled(), if self.stopping == Stopping::No => {
                    let deadline = Instant::now() + self.inner.options.drain_timeout;
                    self.stopping = Stopping::Until(deadline);
                    self.release_ready().await;
                    self.inner.observer.draining(self.running.len());
                }
                () = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                    self.give_back_all().await;
                }
                Some(claimed) = self.claiming.join_next_with_id() => {
                    let claimed = self.claimed(claimed).await;
                    if claimed == Some(0)
                        && self.claiming.is_empty()
                        && self.running.is_empty()
                        && self.ready.is_empty()
                        && self.nothing_left().await
                    {
                        return Ok(self.report);
                    }
                }
                Some(joined) = self.set.join_next_with_id() => self.joined(joined).await,
                () = self.inner.wake.notified() => self.claim_now = true,
                () = self.inner.settling.notified() => {
                    self.claim_now = true;
                    if self.stopping == Stopping::No {
                        self.start_ready();
                    }
                }
                () = next_wakeup(wakeups) => self.claim_now = true,
                () = tokio::time::sleep(self.inner.options.poll_interval),
                    if !self.claim_now && self.stopping == Stopping::No => self.claim_now = true,
            }
        }
    }

    /// The tasks whose compute runs: those not settling.
    fn computing(&self) -> usize {
        self.running
            .values()
            .filter(|running| !running.stop.settling.load(Ordering::SeqCst))
            .count()
    }

    /// How many more tasks may start now: free slots (a settling task's slot is free), within
    /// `concurrency` settling tasks besides.
    fn startable(&self) -> usize {
        let concurrency = self.inner.options.concurrency;
        let slots = concurrency.saturating_sub(self.computing());
        let settling_room = concurrency
            .saturating_mul(2)
            .saturating_sub(self.running.len());
        slots.min(settling_room)
    }

    /// The slots a claim may fill: those that may start a task, less the tasks already waiting
    /// for one and the slots of the claims in flight.
    fn free(&self) -> usize {
        self.startable()
            .saturating_sub(self.ready.len())
            .saturating_sub(self.reserved.values().sum())
    }

    /// Starts a claim of up to the free slots, to run beside the loop.
    fn claim(&mut self) {
        let slots = self.free();
        let options = &self.inner.options;
        let claim = Claim {
            queues: options.queues.clone(),
            owner: options.owner.clone(),
            max: u32::try_from(slots).unwrap_or(u32::MAX),
            now_ms: self.inner.now_ms(),
            lease_ms: u64::try_from(options.claim_lease.as_millis()).unwrap_or(u64::MAX),
        };
        let handle = self.claiming.spawn(claim::claim(self.inner.clone(), claim));
        self.reserved.insert(handle.id(), slots);
    }

    /// A claim came back: starts each task (or, once stopping, gives it back); how many, or
    /// `None` when the claim failed.
    async fn claimed(
        &mut self,
        claimed: Result<(tokio::task::Id, Result<Vec<Claimed>, StoreError>), JoinError>,
    ) -> Option<usize> {
        let claimed = match claimed {
            Ok((id, claimed)) => {
                self.reserved.remove(&id);
                claimed
            }
            Err(error) => {
                self.reserved.remove(&error.id());
                Err(StoreError::unavailable(format!(
                    "the claim did not return: {error}"
                )))
            }
        };
        let tasks = match claimed {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(%error, "claim failed");
                self.inner.observer.store_error("claiming tasks", &error);
                return None;
            }
        };
        let claimed_at = Instant::now();
        let count = tasks.len();
        for claimed in tasks {
            if self.stopping == Stopping::No {
                self.ready.push_back((claimed, claimed_at));
                self.start_ready();
            } else {
                // Claimed as the shutdown began: back to the queue.
                self.give_back_unstarted(claimed, claimed_at).await;
            }
        }
        Some(count)
    }

    /// Starts the tasks waiting in `ready` while slots are free.
    fn start_ready(&mut self) {
        while self.startable() > 0 {
            let Some((claimed, claimed_at)) = self.ready.pop_front() else {
                return;
            };
            self.start(claimed, claimed_at);
        }
    }

    /// Gives back the tasks claimed that never started.
    async fn release_ready(&mut self) {
        while let Some((claimed, claimed_at)) = self.ready.pop_front() {
            self.give_back_unstarted(claimed, claimed_at).await;
        }
    }

    /// Gives back a task that did not start: untouched, or, when its claim began its attempt,
    /// through that attempt, recorded cancelled (as a running task given back is).
    async fn give_back_unstarted(&mut self, claimed: Claimed, claimed_at: Instant) {
        if claimed.began() {
            let stop = Stop::default();
            stop.give_back();
            self.start_with(claimed, claimed_at, stop);
        } else {
            self.end_here(claimed.id(), TaskEnd::Release).await;
        }
    }

    fn start(&mut self, claimed: Claimed, claimed_at: Instant) {
        self.start_with(claimed, claimed_at, Stop::default());
    }

    /// Runs `claimed` as a task of its own, stopped by `stop`.
    fn start_with(&mut self, claimed: Claimed, claimed_at: Instant, stop: Stop) {
        let Claimed {
            task: claimed,
            begun,
        } = claimed;
        let id = claimed.task.id;
        tracing::debug!(task = %id, "claimed");
        self.inner.observer.claimed(&claimed);
        let run = task::run(self.inner.clone(), claimed, begun, stop.clone());
        let abort = self.set.spawn(async move { (id, run.await) });
        self.ids.insert(abort.id(), id);
        let running = Running {
            stop,
            abort,
            claimed_at,
        };
        self.running.insert(id, running);
    }

    /// Whether no task of the worker's queues is ready, scheduled or running.
    async fn nothing_left(&self) -> bool {
        if !self.inner.options.exit_when_empty {
            return false;
        }
        match self.inner.queue.queue_stats(self.inner.now_ms()).await {
            Ok(stats) => stats
                .iter()
                .filter(|stats| self.inner.options.queues.contains(&stats.queue))
                .all(|stats| stats.ready + stats.scheduled + stats.running == 0),
            Err(error) => {
                self.inner
                    .observer
                    .store_error("reading queue counts", &error);
                false
            }
        }
    }

    async fn give_back_all(&mut self) {
        self.stopping = Stopping::GaveBack;
        self.release_ready().await;
        for running in self.running.values() {
            running.stop.give_back();
        }
        self.inner.observer.draining(self.running.len());
    }

    /// A task's tokio task ended: count its end.
    async fn joined(&mut self, joined: Result<(tokio::task::Id, (TaskId, Settled)), JoinError>) {
        let (id, settled) = match joined {
            Ok((_, ended)) => ended,
            Err(error) => {
                let Some(id) = self.ids.remove(&error.id()) else {
                    return;
                };
                self.running.remove(&id);
                if error.is_panic() {
                    self.panicked(id).await;
                }
                if self.stopping == Stopping::No {
                    self.start_ready();
                }
                return;
            }
        };
        if let Some(running) = self.running.remove(&id) {
            self.ids.remove(&running.abort.id());
        }
        if self.stopping == Stopping::No {
            self.start_ready();
        }
        if let Settled::Ended(end) = &settled {
            self.count(end);
            // A task given back (its node still busy) is not claimed again at once.
            self.claim_now |= !matches!(end, TaskEnd::Release);
        }
        if self.stopping != Stopping::No {
            self.inner.observer.draining(self.running.len());
        }
    }

    fn count(&mut self, end: &TaskEnd) {
        let counter = match end {
            TaskEnd::Finished => &mut self.report.finished,
            TaskEnd::Failed { .. } => &mut self.report.failed,
            TaskEnd::Cancelled { .. } => &mut self.report.cancelled,
            TaskEnd::Retry { .. } => &mut self.report.retried,
            TaskEnd::Release => &mut self.report.released,
        };
        *counter += 1;
    }

    /// The handler panicked: the task ends failed (running it again would panic again); its
    /// attempt, left in progress, is marked abandoned by recovery once its lease expires.
    async fn panicked(&mut self, id: TaskId) {
        tracing::error!(task = %id, "the handler panicked");
        let error = TaskError::task_failed("the handler panicked");
        let end = TaskEnd::Failed {
            error: task::to_json(&error),
        };
        self.end_here(id, end).await;
    }

    /// Writes `end` for a task this loop holds no running future for.
    async fn end_here(&mut self, id: TaskId, end: TaskEnd) {
        let inner = &self.inner;
        let now_ms = inner.now_ms();
        match inner
            .queue
            .complete(Completion::new(
                id,
                inner.options.owner.clone(),
                end.clone(),
                now_ms,
            ))
            .await
        {
            Ok(()) => {
                inner.observer.ended(id, &end);
                self.count(&end);
            }
            // Already ended or taken back meanwhile: nothing to give back.
            Err(error) if error.is_conflict() => {}
            Err(error) => inner.observer.store_error("completing a task", &error),
        }
    }

    /// A renewal came back: stop the tasks whose cancellation was asked for, drop those whose
    /// claim was lost, give back the claims no running task holds.
    async fn renewed(&mut self, renewal: Renewal) {
        self.renewed_ready(&renewal).await;
        let claims = renewal.claims;
        for id in &claims.cancel_requested {
            if let Some(running) = self.running.get(id) {
                tracing::info!(task = %id, "cancellation requested");
                running.stop.cancel.cancel();
            }
        }
        for (id, running) in &self.running {
            let settling = running.stop.settling.load(Ordering::SeqCst);
            if running.claimed_at <= renewal.sent
                && !settling
                && claims.renewed.binary_search(id).is_err()
            {
                // Swept or ended by someone else: another worker may run it now.
                tracing::warn!(task = %id, "claim lost; dropping the task");
                running.abort.abort();
            }
        }
        if !self.claiming.is_empty() {
            // A claim in flight may hold claims the renewal lists; real orphans are still
            // listed by the next renewal.
            return;
        }
        let orphans: Vec<TaskId> = claims
            .renewed
            .iter()
            .filter(|id| {
                !self.running.contains_key(id) && !self.ready.iter().any(|(c, _)| c.id() == **id)
            })
            .copied()
            .collect();
        for id in orphans {
            // Its attempt's end was not recorded: the task goes back to the queue.
            self.end_here(id, TaskEnd::Release).await;
        }
    }
}

impl Loop {
    /// A renewal, for the tasks waiting for a slot: one whose cancellation was asked for ends
    /// cancelled without running; one whose claim was lost is dropped.
    async fn renewed_ready(&mut self, renewal: &Renewal) {
        let claims = &renewal.claims;
        let mut kept = VecDeque::with_capacity(self.ready.len());
        for (claimed, claimed_at) in std::mem::take(&mut self.ready) {
            let id = claimed.id();
            if claims.cancel_requested.contains(&id) && claimed.began() {
                // Its attempt began: it ends through it, recorded cancelled.
                let stop = Stop::default();
                stop.cancel.cancel();
                self.start_with(claimed, claimed_at, stop);
            } else if claims.cancel_requested.contains(&id) {
                let end = TaskEnd::Cancelled {
                    error: task::to_json(&TaskError::aborted()),
                };
                self.end_here(id, end).await;
            } else if claimed_at <= renewal.sent && claims.renewed.binary_search(&id).is_err() {
                // An attempt its claim began stays in progress, unrenewed: recovery marks it
                // abandoned once its lease expires, as it would had this worker died.
                tracing::warn!(task = %id, "claim lost before the task started; dropping it");
            } else {
                kept.push_back((claimed, claimed_at));
            }
        }
        self.ready = kept;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn next_wakeup(wakeups: Option<Arc<dyn Wakeups>>) {
    match wakeups {
        Some(wakeups) => wakeups.next().await,
        None => std::future::pending().await,
    }
}
