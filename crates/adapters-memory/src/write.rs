//! The write port on memory: each call is one critical section of the store's mutex.

use async_trait::async_trait;
use stint_domain::{AttemptKey, AttemptRecord, ProcessPlace};
use stint_ports::{
    AttemptEnded, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, HeartbeatWrite,
    OwnedAttempt, Renewal, RenewedLease, StoreError,
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
        renewal: Renewal,
    ) -> Result<RenewedLease, StoreError> {
        self.lock().renew_lease(attempt, renewal.expires_at_ms())
    }

    async fn request_cancel(&self, run_id: &str) -> Result<Vec<AttemptKey>, StoreError> {
        Ok(self.lock().request_cancel(run_id))
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        mut end: EndAttempt,
    ) -> Result<AttemptEnded, StoreError> {
        let task = end.task.take();
        // The attempt's lock is held while the task is ended: nobody sees one without the other.
        let mut state = self.lock();
        state.end_attempt(attempt, end)?;
        let task_ended = task.is_some_and(|task| self.end_claimed(&task));
        drop(state);
        Ok(AttemptEnded { task_ended })
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        Ok(self.lock().recover_abandoned(now_ms))
    }

    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(self.lock().expired_attempts(now_ms))
    }
}
