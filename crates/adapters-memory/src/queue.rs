//! The queue's ports on memory: the tasks and queue limits behind one mutex of their own (each
//! call one critical section, validated before it mutates, as the attempt store's are).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{MutexGuard, PoisonError};

use async_trait::async_trait;
use stint_domain::{QueueStats, TaskId, TaskRecord, TaskState};
use stint_ports::{
    AttemptFilter, CancelOutcome, CancelTarget, Claim, ClaimedTask, Completion, Enqueued,
    HistoryStore, NewTask, NodeAttempts, QueueHistory, Renewal, RenewedClaims, StoreError,
    TaskFilter, TaskQueue, sort_claimed,
};

use crate::MemoryStore;

/// Every task and queue limit of the store.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    tasks: BTreeMap<TaskId, TaskRecord>,
    limits: BTreeMap<String, u32>,
    /// Queues named by `set_queue_limit` (with or without a limit), listed by `queue_stats`.
    known_queues: BTreeSet<String>,
    last_id: u64,
}

impl Tasks {
    /// The live task holding `key`, if any.
    fn holder(&self, key: &str) -> Option<TaskId> {
        self.tasks
            .values()
            .find(|task| {
                task.unique_key.as_deref() == Some(key)
                    && matches!(task.state, TaskState::Ready | TaskState::Running)
            })
            .map(|task| task.id)
    }

    fn insert(&mut self, task: NewTask, now_ms: u64) -> Enqueued {
        if let Some(id) = task.unique_key.as_deref().and_then(|key| self.holder(key)) {
            return Enqueued { id, existing: true };
        }
        self.last_id += 1;
        let id = TaskId(self.last_id);
        let record = TaskRecord {
            id,
            queue: task.queue,
            run_id: task.run_id,
            node_id: task.node_id,
            priority: task.priority,
            run_at_ms: task.run_at_ms,
            spec: task.spec,
            unique_key: task.unique_key,
            state: TaskState::Ready,
            claims: 0,
            owner: None,
            lease_expires_at_ms: None,
            cancel_requested: false,
            retry_base: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            ended_at_ms: None,
            last_error: None,
        };
        self.tasks.insert(id, record);
        Enqueued {
            id,
            existing: false,
        }
    }

    fn running_in(&self, queue: &str) -> u32 {
        let running = self
            .tasks
            .values()
            .filter(|task| task.queue == queue && task.state == TaskState::Running)
            .count();
        u32::try_from(running).unwrap_or(u32::MAX)
    }

    fn claim(&mut self, claim: &Claim) -> Vec<ClaimedTask> {
        let mut due: Vec<&TaskRecord> = self
            .tasks
            .values()
            .filter(|task| task.state == TaskState::Ready && task.run_at_ms <= claim.now_ms)
            .filter(|task| claim.queues.contains(&task.queue))
            .collect();
        due.sort_by_key(|task| (std::cmp::Reverse(task.priority), task.run_at_ms, task.id));
        let mut free: HashMap<&str, u32> = HashMap::new();
        let mut picked = Vec::new();
        for task in due {
            if picked.len() >= claim.max as usize {
                break;
            }
            if let Some(limit) = self.limits.get(&task.queue) {
                let slots = free
                    .entry(task.queue.as_str())
                    .or_insert_with(|| limit.saturating_sub(self.running_in(&task.queue)));
                if *slots == 0 {
                    continue;
                }
                *slots -= 1;
            }
            picked.push(task.id);
        }
        let lease = claim.now_ms.saturating_add(claim.lease_ms);
        let mut claimed = Vec::with_capacity(picked.len());
        for id in picked {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            task.state = TaskState::Running;
            task.owner = Some(claim.owner.clone());
            task.lease_expires_at_ms = Some(lease);
            task.claims += 1;
            task.updated_at_ms = claim.now_ms;
            claimed.push(ClaimedTask::new(task.clone()));
        }
        sort_claimed(&mut claimed);
        claimed
    }

    fn complete(&mut self, completion: &Completion) -> Result<(), StoreError> {
        let (id, owner, end, now_ms) = completion.parts();
        let task = self
            .tasks
            .get_mut(&id)
            .filter(|task| task.state == TaskState::Running)
            .filter(|task| task.owner.as_deref() == Some(owner))
            .ok_or_else(|| StoreError::task_not_owned(id))?;
        // A task whose cancellation was asked for does not go back to the queue: it ends
        // cancelled.
        task.state = match end.state() {
            TaskState::Ready if task.cancel_requested => TaskState::Cancelled,
            state => state,
        };
        if let Some(run_at_ms) = end.run_at_ms() {
            task.run_at_ms = run_at_ms;
        }
        if let Some(error) = end.error() {
            task.last_error = Some(error.clone());
        }
        task.ended_at_ms = task.state.is_ended().then_some(now_ms);
        task.owner = None;
        task.lease_expires_at_ms = None;
        task.updated_at_ms = now_ms;
        Ok(())
    }

    fn sweep_expired(&mut self, now_ms: u64) -> Vec<TaskId> {
        let mut swept = Vec::new();
        for task in self.tasks.values_mut() {
            let expired = task.lease_expires_at_ms.is_some_and(|lease| lease < now_ms);
            if task.state != TaskState::Running || !expired {
                continue;
            }
            if task.cancel_requested {
                task.state = TaskState::Cancelled;
                task.ended_at_ms = Some(now_ms);
            } else {
                task.state = TaskState::Ready;
            }
            task.owner = None;
            task.lease_expires_at_ms = None;
            task.updated_at_ms = now_ms;
            swept.push(task.id);
        }
        swept
    }

    fn cancel(&mut self, target: &CancelTarget, now_ms: u64) -> Vec<CancelOutcome> {
        let targeted = |task: &TaskRecord| match target {
            CancelTarget::Task(id) => task.id == *id,
            CancelTarget::Run(run_id) => task.run_id == *run_id,
        };
        let mut outcomes = Vec::new();
        for task in self.tasks.values_mut().filter(|task| targeted(task)) {
            outcomes.push(CancelOutcome::of(task.id, task.state));
            match task.state {
                TaskState::Ready => {
                    task.state = TaskState::Cancelled;
                    task.ended_at_ms = Some(now_ms);
                }
                TaskState::Running => task.cancel_requested = true,
                _ => continue,
            }
            task.updated_at_ms = now_ms;
        }
        outcomes
    }

    fn retry(&mut self, id: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| StoreError::task_not_retryable(id, None))?;
        if !matches!(task.state, TaskState::Failed | TaskState::Cancelled) {
            return Err(StoreError::task_not_retryable(id, Some(task.state)));
        }
        if let Some(key) = task.unique_key.as_deref()
            && let Some(holder) = self.holder(key)
        {
            return Err(StoreError::unique_key_held(id, key, holder));
        }
        let Some(task) = self.tasks.get_mut(&id) else {
            return Err(StoreError::task_not_retryable(id, None));
        };
        task.state = TaskState::Ready;
        task.retry_base = retry_base;
        task.cancel_requested = false;
        task.run_at_ms = now_ms;
        task.ended_at_ms = None;
        task.updated_at_ms = now_ms;
        Ok(())
    }

    /// Deletes the tasks `prune` takes; returns the (run, node) of each.
    fn prune(&mut self, ended_before_ms: u64, batch: u32) -> Vec<(String, String)> {
        let mut ended: Vec<(u64, TaskId)> = self
            .tasks
            .values()
            .filter(|task| task.state.is_ended())
            .filter_map(|task| task.ended_at_ms.map(|at| (at, task.id)))
            .filter(|(at, _)| *at < ended_before_ms)
            .collect();
        ended.sort_unstable();
        ended.truncate(batch as usize);
        ended
            .iter()
            .filter_map(|(_, id)| self.tasks.remove(id))
            .map(|task| (task.run_id, task.node_id))
            .collect()
    }

    /// Whether a task names `node_id` of `run_id`.
    fn names(&self, run_id: &str, node_id: &str) -> bool {
        self.tasks
            .values()
            .any(|task| task.run_id == run_id && task.node_id == node_id)
    }

    fn stats(&self, now_ms: u64) -> Vec<QueueStats> {
        let mut stats: BTreeMap<&str, QueueStats> = BTreeMap::new();
        let names = self.tasks.values().map(|task| task.queue.as_str());
        for name in names.chain(self.known_queues.iter().map(String::as_str)) {
            stats.entry(name).or_insert_with(|| QueueStats {
                queue: name.to_owned(),
                max_running: self.limits.get(name).copied(),
                ..QueueStats::default()
            });
        }
        for task in self.tasks.values() {
            let Some(entry) = stats.get_mut(task.queue.as_str()) else {
                continue;
            };
            let counter = match (task.state, task.run_at_ms <= now_ms) {
                (TaskState::Ready, true) => {
                    let age = now_ms - task.run_at_ms;
                    entry.oldest_ready_age_ms = entry.oldest_ready_age_ms.max(Some(age));
                    &mut entry.ready
                }
                (TaskState::Ready, false) => &mut entry.scheduled,
                (TaskState::Running, _) => &mut entry.running,
                (TaskState::Finished, _) => &mut entry.finished,
                (TaskState::Failed, _) => &mut entry.failed,
                (TaskState::Cancelled, _) => &mut entry.cancelled,
            };
            *counter += 1;
        }
        stats.into_values().collect()
    }
}

impl MemoryStore {
    /// Ends `completion`'s task if its claim is still the completion's owner's; whether it did.
    pub(crate) fn end_claimed(&self, completion: &Completion) -> bool {
        self.tasks().complete(completion).is_ok()
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        // As with the attempts: every operation validates before it mutates, so a poisoned
        // lock's data is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TaskQueue for MemoryStore {
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
        // Every task is checked before any is stored: the batch is all or nothing.
        for (position, task) in tasks.iter().enumerate() {
            task.check(position)?;
        }
        let mut state = self.tasks();
        Ok(tasks
            .into_iter()
            .map(|task| state.insert(task, now_ms))
            .collect())
    }

    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        let mut claimed = self.tasks().claim(&claim);
        for claimed in &mut claimed {
            let filter = AttemptFilter {
                run_id: claimed.task.run_id.clone(),
                node_id: Some(claimed.task.node_id.clone()),
                iteration: Some(0),
            };
            let attempts = self.list_attempts(&filter).await?;
            claimed.attempts = Some(NodeAttempts::of(&attempts));
        }
        Ok(claimed)
    }

    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError> {
        let mut state = self.tasks();
        let mut rows = Vec::new();
        for task in state.tasks.values_mut() {
            if task.state == TaskState::Running && task.owner.as_deref() == Some(owner) {
                task.lease_expires_at_ms = Some(renewal.expires_at_ms());
                rows.push((task.id, task.cancel_requested));
            }
        }
        Ok(RenewedClaims::from_rows(rows))
    }

    async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        self.tasks().complete(&completion)
    }

    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
        Ok(self.tasks().sweep_expired(now_ms))
    }

    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError> {
        Ok(self.tasks().cancel(&target, now_ms))
    }

    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        self.tasks().retry(task, retry_base, now_ms)
    }

    async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut state = self.tasks();
        state.known_queues.insert(queue.to_owned());
        match max_running {
            Some(max) => state.limits.insert(queue.to_owned(), max),
            None => state.limits.remove(queue),
        };
        Ok(())
    }

    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
        // The attempts' lock first, as an attempt's end takes them: nobody sees a task gone
        // with its history still there.
        let mut history = self.lock();
        let mut tasks = self.tasks();
        let pruned = tasks.prune(ended_before_ms, batch);
        let nodes: BTreeSet<&(String, String)> = pruned.iter().collect();
        for (run_id, node_id) in nodes {
            if !tasks.names(run_id, node_id) {
                history.forget_node(run_id, node_id);
            }
        }
        Ok(pruned.len() as u64)
    }
}

#[async_trait]
impl QueueHistory for MemoryStore {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.tasks().tasks.get(&id).cloned())
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let state = self.tasks();
        Ok(state
            .tasks
            .values()
            .filter(|task| {
                filter
                    .queue
                    .as_ref()
                    .is_none_or(|queue| task.queue == *queue)
            })
            .filter(|task| filter.state.is_none_or(|wanted| task.state == wanted))
            .take(filter.limit as usize)
            .cloned()
            .collect())
    }

    async fn queue_stats(&self, now_ms: u64) -> Result<Vec<QueueStats>, StoreError> {
        Ok(self.tasks().stats(now_ms))
    }
}
