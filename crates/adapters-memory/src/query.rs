//! The query port on memory: each read sees one consistent state of the store.

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptRecord, EventRecord, NodeKey, NodeRecord, RunSummary};
use stint_ports::{AttemptFilter, EventPage, HistoryStore, StoreError};

use crate::MemoryStore;

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(self.lock().list_attempts(filter))
    }

    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.lock().get_node(node))
    }

    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        Ok(self.lock().list_runs())
    }

    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.lock().list_nodes(run_id))
    }

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        Ok(self.lock().read_output(node))
    }

    async fn read_events(&self, page: &EventPage) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self.lock().read_events(page))
    }
}
