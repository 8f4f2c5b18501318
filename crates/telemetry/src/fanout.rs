//! One observer made of several: the progress display and the telemetry both observe.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::{AttemptKey, TaskDescriptor, TaskId};
use stint_engine::{AttemptOutcome, EngineError, NodeOutcome, Observer};
use stint_ports::{ClaimedTask, StoreError, TaskEnd};
use stint_worker::WorkerObserver;

/// Engine observers called in order.
#[derive(Clone)]
pub struct Observers(pub Vec<Arc<dyn Observer>>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Observers").field(&self.0.len()).finish()
    }
}

impl Observer for Observers {
    fn node_started(&self, desc: &TaskDescriptor) {
        self.0.iter().for_each(|o| o.node_started(desc));
    }
    fn node_ended(&self, desc: &TaskDescriptor, outcome: Result<&NodeOutcome, &EngineError>) {
        self.0.iter().for_each(|o| o.node_ended(desc, outcome));
    }
    fn attempt_started(&self, key: &AttemptKey, checkpoint: Option<&Value>) {
        self.0
            .iter()
            .for_each(|o| o.attempt_started(key, checkpoint));
    }
    fn heartbeat(&self, key: &AttemptKey, payload: Option<&Value>) {
        self.0.iter().for_each(|o| o.heartbeat(key, payload));
    }
    fn heartbeat_write_failed(&self, key: &AttemptKey, error: &StoreError) {
        self.0
            .iter()
            .for_each(|o| o.heartbeat_write_failed(key, error));
    }
    fn lease_renewal_failed(&self, key: &AttemptKey, error: &StoreError) {
        self.0
            .iter()
            .for_each(|o| o.lease_renewal_failed(key, error));
    }
    fn terminal_write_failed(&self, key: &AttemptKey, error: &StoreError) {
        self.0
            .iter()
            .for_each(|o| o.terminal_write_failed(key, error));
    }
    fn attempt_ended(&self, outcome: &AttemptOutcome) {
        self.0.iter().for_each(|o| o.attempt_ended(outcome));
    }
    fn retry_scheduled(&self, next_attempt: u32, delay: Duration) {
        self.0
            .iter()
            .for_each(|o| o.retry_scheduled(next_attempt, delay));
    }
}

/// Worker observers called in order.
#[derive(Debug, Clone)]
pub struct WorkerObservers(pub Vec<Arc<dyn WorkerObserver>>);

impl WorkerObserver for WorkerObservers {
    fn claimed(&self, task: &ClaimedTask) {
        self.0.iter().for_each(|o| o.claimed(task));
    }
    fn ended(&self, task: TaskId, end: &TaskEnd) {
        self.0.iter().for_each(|o| o.ended(task, end));
    }
    fn dropped(&self, task: TaskId, error: &EngineError) {
        self.0.iter().for_each(|o| o.dropped(task, error));
    }
    fn draining(&self, running: usize) {
        self.0.iter().for_each(|o| o.draining(running));
    }
    fn swept(&self, attempts: &[AttemptKey], tasks: &[TaskId]) {
        self.0.iter().for_each(|o| o.swept(attempts, tasks));
    }
    fn store_error(&self, during: &str, error: &StoreError) {
        self.0.iter().for_each(|o| o.store_error(during, error));
    }
}
