//! The write port on memory: each call is one critical section of the store's mutex.

use async_trait::async_trait;
use stint_domain::{AttemptKey, AttemptRecord, Event, ProcessPlace};
use stint_ports::{
    AttemptEnd, AttemptStore, BeginAttempt, BegunAttempt, HeartbeatWrite, OwnedAttempt, StoreError,
};

use crate::MemoryStore;

#[async_trait]
impl AttemptStore for MemoryStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.lock().begin_attempt(begin)
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        self.lock().record_heartbeat(attempt, heartbeat)
    }

    async fn record_process(
        &self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError> {
        self.lock().record_process(attempt, place)
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<(), StoreError> {
        self.lock()
            .renew_lease(attempt, now_ms.saturating_add(lease_ms))
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: AttemptEnd,
        finished_at_ms: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        self.lock()
            .end_attempt(attempt, end, finished_at_ms, events)
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        Ok(self.lock().recover_abandoned(now_ms))
    }

    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(self.lock().expired_attempts(now_ms))
    }
}
