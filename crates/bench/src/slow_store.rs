//! A memory store whose heartbeat writes take 10 ms, as a slow disk or a far database would.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use stint_adapters_memory::MemoryStore;
use stint_domain::{
    AttemptKey, AttemptRecord, Event, EventRecord, NodeKey, NodeRecord, RunSummary,
};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, EventLog, HeartbeatWrite,
    OwnedAttempt, StoreError,
};

/// [`MemoryStore`] with `record_heartbeat` delayed by [`SlowStore::DELAY`].
#[derive(Debug, Default)]
pub struct SlowStore {
    inner: MemoryStore,
}

impl SlowStore {
    pub const DELAY: Duration = Duration::from_millis(10);
}

#[async_trait]
impl AttemptStore for SlowStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.inner.begin_attempt(begin).await
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        tokio::time::sleep(Self::DELAY).await;
        self.inner.record_heartbeat(attempt, heartbeat).await
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        lease_expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.renew_lease(attempt, lease_expires_at_ms).await
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: AttemptEnd,
        finished_at_ms: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        self.inner
            .end_attempt(attempt, end, finished_at_ms, events)
            .await
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        self.inner.recover_abandoned(now_ms).await
    }

    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.list_attempts(filter).await
    }

    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        self.inner.get_node(node).await
    }

    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.list_nodes(run_id).await
    }

    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.list_runs().await
    }

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.inner.read_output(node).await
    }

    async fn previous_checkpoint(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.inner.previous_checkpoint(node).await
    }
}

#[async_trait]
impl EventLog for SlowStore {
    async fn append(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append(events).await
    }

    async fn read_events(
        &self,
        run_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_events(run_id, after_seq, limit).await
    }
}
