//! The shared state behind every handle, and every operation on it as one synchronous step.
//!
//! Each method here runs inside one critical section of the store's mutex, which is what makes it
//! a transaction: it validates everything first and mutates only once nothing can fail any more,
//! so a refused write changes nothing.

mod prune;

use std::collections::BTreeMap;

use serde_json::Value;
use stint_domain::{
    AttemptCommand, AttemptKey, AttemptMachine, AttemptRecord, AttemptState, Event, EventRecord,
    NodeKey, NodeRecord, ProcessPlace, RetryPolicy, RunSummary,
};
use stint_ports::{
    AttemptEnd, AttemptFilter, BeginAttempt, BegunAttempt, EndAttempt, EventPage, HeartbeatWrite,
    OwnedAttempt, RenewedLease, StoreError,
};

/// `(node_id, iteration)`: a node's key within its run. Ordered as `list_nodes` lists.
type NodeId = (String, u32);

/// `(node_id, iteration, attempt)`: an attempt's key within its run. Ordered as
/// `list_attempts` lists.
type AttemptId = (String, u32, u32);

/// One attempt: its record as listed, and the state machine that guards its transitions.
#[derive(Debug, Clone)]
struct StoredAttempt {
    record: AttemptRecord,
    /// Its cancellation was requested; the owner learns it at its next renewal.
    cancel_requested: bool,
    /// The domain's state machine, so the transition rules live in one place. Its retry policy is
    /// irrelevant: the store never decides retries, it only records them.
    machine: AttemptMachine,
}

/// Everything stored about one run.
#[derive(Debug, Default)]
struct Run {
    nodes: BTreeMap<NodeId, NodeRecord>,
    attempts: BTreeMap<AttemptId, StoredAttempt>,
    outputs: BTreeMap<NodeId, Value>,
    /// The run's events, in increasing `seq` order (seq is global, so there may be gaps here).
    events: Vec<EventRecord>,
}

/// The whole database.
#[derive(Debug, Default)]
pub(crate) struct State {
    runs: BTreeMap<String, Run>,
    /// The last sequence number handed out; the first event gets 1.
    last_seq: u64,
}

fn node_id(node: &NodeKey) -> NodeId {
    (node.node_id().to_owned(), node.iteration())
}

fn attempt_id(key: &AttemptKey) -> AttemptId {
    (
        key.node.node_id().to_owned(),
        key.node.iteration(),
        key.attempt,
    )
}

impl State {
    /// Number of runs, attempts and events, for `Debug`.
    pub(crate) fn counts(&self) -> (usize, usize, u64) {
        let attempts = self.runs.values().map(|run| run.attempts.len()).sum();
        (self.runs.len(), attempts, self.last_seq)
    }

    /// Appends `events` in order, giving each the next sequence number.
    pub(crate) fn append(&mut self, events: Vec<Event>) {
        for event in events {
            self.last_seq += 1;
            let record = EventRecord {
                seq: self.last_seq,
                event,
            };
            self.runs
                .entry(record.event.run_id.clone())
                .or_default()
                .events
                .push(record);
        }
    }

    pub(crate) fn read_events(&self, page: &EventPage) -> Vec<EventRecord> {
        let Some(run) = self.runs.get(&page.run_id) else {
            return Vec::new();
        };
        let start = run
            .events
            .partition_point(|record| record.seq <= page.after_seq);
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        run.events[start..].iter().take(limit).cloned().collect()
    }

    pub(crate) fn begin_attempt(
        &mut self,
        begin: BeginAttempt,
    ) -> Result<BegunAttempt, StoreError> {
        let node = begin.node.clone();
        let id = node_id(&node);
        let run = self.runs.get(node.run_id());
        let previous = run.and_then(|run| run.nodes.get(&id));
        if let Some(previous) = previous
            && previous.state == AttemptState::InProgress
        {
            return Err(StoreError::attempt_in_progress(
                &node,
                previous.last_attempt,
            ));
        }
        let last_attempt = previous.map_or(0, |previous| previous.last_attempt);
        let attempt = last_attempt
            .checked_add(1)
            .ok_or_else(|| StoreError::attempt_numbers_exhausted(&node))?;
        let (checkpoint, failed_before) = run.map_or((None, 0), |run| history_of(run, &id));

        let key = node.attempt(attempt);
        let mut machine = AttemptMachine::new(key.clone(), RetryPolicy::default(), failed_before);
        let started_at_ms = begin.started_at_ms;
        let events = machine
            .apply(AttemptCommand::Start, started_at_ms)
            .map_err(|error| StoreError::conflict(error.to_string()))?;
        let (record, node_record) = new_rows(attempt, begin);
        let run = self.runs.entry(node.run_id().to_owned()).or_default();
        run.attempts.insert(
            attempt_id(&key),
            StoredAttempt {
                record,
                cancel_requested: false,
                machine,
            },
        );
        run.nodes.insert(id, node_record);
        self.append(events);
        tracing::debug!(attempt = %key, failed_before, "attempt begun");
        Ok(BegunAttempt {
            attempt,
            checkpoint,
            failed_before,
        })
    }

    pub(crate) fn record_heartbeat(
        &mut self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        let stored = self.owned_in_progress(attempt)?;
        let data_size_bytes = heartbeat
            .payload
            .as_ref()
            .map(|payload| payload.to_string().len() as u64);
        stored
            .machine
            .apply(
                AttemptCommand::Heartbeat {
                    received_at_ms: heartbeat.received_at_ms,
                    data_size_bytes,
                },
                heartbeat.received_at_ms,
            )
            .map_err(|error| StoreError::conflict(error.to_string()))?;
        // As SQLite's MAX and PostgreSQL's GREATEST: a late write never moves the time back.
        let last = stored.record.last_heartbeat_at_ms.unwrap_or(0);
        stored.record.last_heartbeat_at_ms = Some(last.max(heartbeat.received_at_ms));
        // A bare ping proves liveness only: the checkpoint it would otherwise erase is kept.
        if let Some(payload) = heartbeat.payload {
            stored.record.heartbeat = Some(payload);
        }
        self.append(vec![heartbeat.event]);
        Ok(())
    }

    pub(crate) fn renew_lease(
        &mut self,
        attempt: &OwnedAttempt,
        lease_expires_at_ms: u64,
    ) -> Result<RenewedLease, StoreError> {
        let stored = self.owned_in_progress(attempt)?;
        stored.record.lease_expires_at_ms = lease_expires_at_ms;
        Ok(RenewedLease {
            cancel_requested: stored.cancel_requested,
        })
    }

    pub(crate) fn request_cancel(&mut self, run_id: &str) -> Vec<AttemptKey> {
        let Some(run) = self.runs.get_mut(run_id) else {
            return Vec::new();
        };
        // The map is in key order.
        run.attempts
            .values_mut()
            .filter(|stored| stored.record.state == AttemptState::InProgress)
            .map(|stored| {
                stored.cancel_requested = true;
                stored.machine.key().clone()
            })
            .collect()
    }

    pub(crate) fn record_process(
        &mut self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError> {
        let stored = self.owned_in_progress(attempt)?;
        stored.record.process = Some(place);
        Ok(())
    }

    pub(crate) fn end_attempt(
        &mut self,
        attempt: &OwnedAttempt,
        ending: EndAttempt,
    ) -> Result<(), StoreError> {
        let (end, finished_at_ms, events) = (ending.end, ending.finished_at_ms, ending.events);
        let stored = self.owned_in_progress(attempt)?;
        let command = match &end {
            AttemptEnd::Finished { .. } => AttemptCommand::Finish,
            AttemptEnd::Failed { error, retryable } => AttemptCommand::Fail {
                error: error.clone(),
                retryable: *retryable,
                retry_after_ms: None,
                jitter: 0.0,
            },
            AttemptEnd::Cancelled { .. } => AttemptCommand::Cancel,
        };
        // The machine's own events are not written: the engine hands over the events to append
        // (it alone knows the retry decision and the delay).
        stored
            .machine
            .apply(command, finished_at_ms)
            .map_err(|error| StoreError::conflict(error.to_string()))?;
        let record = &mut stored.record;
        record.finished_at_ms = Some(finished_at_ms);
        let output = match end {
            AttemptEnd::Finished { output, vcs } => {
                record.state = AttemptState::Finished;
                record.vcs = vcs;
                Some(output)
            }
            AttemptEnd::Failed { error, retryable } => {
                record.state = AttemptState::Failed;
                record.error = Some(error);
                record.retryable = Some(retryable);
                None
            }
            AttemptEnd::Cancelled { error } => {
                record.state = AttemptState::Cancelled;
                record.error = Some(error);
                None
            }
        };
        let state = record.state;
        let run = self
            .runs
            .get_mut(attempt.key.node.run_id())
            .ok_or_else(|| missing(&attempt.key))?;
        let id = node_id(&attempt.key.node);
        if let Some(node) = run.nodes.get_mut(&id) {
            node.state = state;
            node.updated_at_ms = finished_at_ms;
        }
        if let Some(output) = output {
            run.outputs.insert(id, output);
        }
        self.append(events);
        tracing::debug!(attempt = %attempt.key, %state, "attempt ended");
        Ok(())
    }

    /// The in-progress attempts whose lease expired before `now_ms`, in key order.
    pub(crate) fn expired_attempts(&self, now_ms: u64) -> Vec<AttemptRecord> {
        let mut expired: Vec<AttemptRecord> = self
            .runs
            .values()
            .flat_map(|run| run.attempts.values())
            .map(|stored| &stored.record)
            .filter(|r| r.state == AttemptState::InProgress && r.lease_expires_at_ms < now_ms)
            .cloned()
            .collect();
        expired.sort_by(|a, b| {
            (&a.run_id, &a.node_id, a.iteration, a.attempt).cmp(&(
                &b.run_id,
                &b.node_id,
                b.iteration,
                b.attempt,
            ))
        });
        expired
    }

    pub(crate) fn recover_abandoned(&mut self, now_ms: u64) -> Vec<AttemptKey> {
        let mut marked = Vec::new();
        let mut events = Vec::new();
        for run in self.runs.values_mut() {
            for stored in run.attempts.values_mut() {
                let record = &mut stored.record;
                if record.state != AttemptState::InProgress || record.lease_expires_at_ms >= now_ms
                {
                    continue;
                }
                let command = AttemptCommand::Abandon {
                    lease_expired_at_ms: record.lease_expires_at_ms,
                };
                // An in-progress attempt always accepts Abandon; skip rather than half-mark.
                let Ok(produced) = stored.machine.apply(command, now_ms) else {
                    continue;
                };
                record.state = AttemptState::Failed;
                record.error = stored.machine.error().cloned();
                record.retryable = Some(true);
                record.finished_at_ms = Some(now_ms);
                let key = stored.machine.key().clone();
                if let Some(node) = run.nodes.get_mut(&node_id(&key.node)) {
                    node.state = AttemptState::Failed;
                    node.updated_at_ms = now_ms;
                }
                tracing::info!(attempt = %key, "abandoned attempt marked failed");
                events.extend(produced);
                marked.push(key);
            }
        }
        self.append(events);
        marked
    }

    pub(crate) fn list_attempts(&self, filter: &AttemptFilter) -> Vec<AttemptRecord> {
        let Some(run) = self.runs.get(&filter.run_id) else {
            return Vec::new();
        };
        run.attempts
            .iter()
            .filter(|((node_id, iteration, _), _)| {
                filter
                    .node_id
                    .as_ref()
                    .is_none_or(|wanted| wanted == node_id)
                    && filter.iteration.is_none_or(|wanted| wanted == *iteration)
            })
            .map(|(_, stored)| stored.record.clone())
            .collect()
    }

    pub(crate) fn get_node(&self, node: &NodeKey) -> Option<NodeRecord> {
        self.runs
            .get(node.run_id())?
            .nodes
            .get(&node_id(node))
            .cloned()
    }

    pub(crate) fn list_nodes(&self, run_id: &str) -> Vec<NodeRecord> {
        self.runs
            .get(run_id)
            .map(|run| run.nodes.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn list_runs(&self) -> Vec<RunSummary> {
        let mut runs: Vec<RunSummary> = self
            .runs
            .iter()
            .filter(|(_, run)| !run.nodes.is_empty())
            .map(|(run_id, run)| summarise(run_id, run))
            .collect();
        runs.sort_by(|a, b| {
            b.updated_at_ms
                .cmp(&a.updated_at_ms)
                .then_with(|| a.run_id.cmp(&b.run_id))
        });
        runs
    }

    pub(crate) fn read_output(&self, node: &NodeKey) -> Option<Value> {
        self.runs
            .get(node.run_id())?
            .outputs
            .get(&node_id(node))
            .cloned()
    }

    /// The attempt `attempt` names, if it is in progress and owned by its token; otherwise the
    /// conflict the caller returns.
    fn owned_in_progress(
        &mut self,
        attempt: &OwnedAttempt,
    ) -> Result<&mut StoredAttempt, StoreError> {
        let stored = self
            .runs
            .get_mut(attempt.key.node.run_id())
            .and_then(|run| run.attempts.get_mut(&attempt_id(&attempt.key)))
            .ok_or_else(|| missing(&attempt.key))?;
        if stored.record.owner != attempt.owner {
            return Err(StoreError::not_owned(&attempt.key));
        }
        if stored.record.state != AttemptState::InProgress {
            return Err(StoreError::not_owned(&attempt.key));
        }
        Ok(stored)
    }
}

/// Every attempt of node `id` in `run`, oldest first.
fn earlier_attempts<'a>(
    run: &'a Run,
    id: &NodeId,
) -> impl DoubleEndedIterator<Item = &'a StoredAttempt> {
    let (node_id, iteration) = id.clone();
    run.attempts
        .range((node_id.clone(), iteration, 0)..=(node_id, iteration, u32::MAX))
        .map(|(_, stored)| stored)
}

fn missing(key: &AttemptKey) -> StoreError {
    StoreError::not_owned(key)
}

/// The checkpoint (newest recorded payload) and the number of failed attempts of node `id`.
fn history_of(run: &Run, id: &NodeId) -> (Option<Value>, u32) {
    let checkpoint = earlier_attempts(run, id)
        .rev()
        .find_map(|stored| stored.record.heartbeat.clone());
    let failed = earlier_attempts(run, id)
        .filter(|stored| stored.record.state == AttemptState::Failed)
        .count();
    (checkpoint, u32::try_from(failed).unwrap_or(u32::MAX))
}

/// The attempt row and the node row `begin_attempt` writes for attempt `attempt` of `node`.
fn new_rows(attempt: u32, begin: BeginAttempt) -> (AttemptRecord, NodeRecord) {
    let node = &begin.node;
    let record = AttemptRecord {
        run_id: node.run_id().to_owned(),
        node_id: node.node_id().to_owned(),
        iteration: node.iteration(),
        attempt,
        state: AttemptState::InProgress,
        error: None,
        retryable: None,
        heartbeat: None,
        last_heartbeat_at_ms: None,
        started_at_ms: begin.started_at_ms,
        finished_at_ms: None,
        vcs: None,
        metadata: begin.metadata,
        working_dir: begin.working_dir,
        owner: begin.owner,
        lease_expires_at_ms: begin.started_at_ms.saturating_add(begin.lease_ms),
        process: None,
    };
    let node_record = NodeRecord {
        run_id: node.run_id().to_owned(),
        node_id: node.node_id().to_owned(),
        iteration: node.iteration(),
        state: AttemptState::InProgress,
        last_attempt: attempt,
        updated_at_ms: begin.started_at_ms,
        output_table: begin.output_table,
        label: begin.label,
    };
    (record, node_record)
}

fn summarise(run_id: &str, run: &Run) -> RunSummary {
    let count = |state: AttemptState| {
        run.nodes
            .values()
            .filter(|node| node.state == state)
            .count() as u64
    };
    RunSummary {
        run_id: run_id.to_owned(),
        nodes: run.nodes.len() as u64,
        in_progress: count(AttemptState::InProgress),
        finished: count(AttemptState::Finished),
        failed: count(AttemptState::Failed),
        cancelled: count(AttemptState::Cancelled),
        updated_at_ms: run
            .nodes
            .values()
            .map(|node| node.updated_at_ms)
            .max()
            .unwrap_or(0),
    }
}
