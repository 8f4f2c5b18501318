//! In-memory storage adapter of stint.
//!
//! [`MemoryStore`] implements the write port ([`AttemptStore`](stint_ports::AttemptStore)) and
//! the query port ([`HistoryStore`](stint_ports::HistoryStore)), and the queue's ports
//! ([`TaskQueue`](stint_ports::TaskQueue), [`QueueHistory`](stint_ports::QueueHistory)), with the same semantics as the
//! SQLite and PostgreSQL adapters (it passes the same conformance suite, `stint-tests`), keeping
//! everything in process memory. It is meant for tests, examples and short-lived embedded use:
//! nothing survives the process.
//!
//! Every operation takes one mutex for its whole duration, which plays the part of a transaction:
//! each multi-row change is all-or-nothing and concurrent handles see it whole or not at all. The
//! mutex is never held across an `.await`.
//!
//! Invariants, stated as absences: nothing here performs I/O, reads a clock, or spawns a task.
#![deny(missing_docs)]

mod query;
mod queue;
mod state;
mod write;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::state::State;

/// A store held in memory.
///
/// Cloning gives another handle on the same data, as a second connection pool on the same
/// database would: two clones racing see each other's writes, and the store's rules (one attempt
/// in progress per node, each abandoned attempt recovered once) hold across them.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    /// The queue's tasks: a mutex of their own, as they share no transaction with attempts.
    queue: Arc<Mutex<queue::Tasks>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state for one operation.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside a critical section cannot leave half a write: every operation validates
        // before it mutates, and mutations themselves do not panic. So the data of a poisoned lock
        // is still consistent and later calls may use it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents could be large; a summary is what a log line needs.
        let (runs, attempts, last_seq) = self.lock().counts();
        f.debug_struct("MemoryStore")
            .field("runs", &runs)
            .field("attempts", &attempts)
            .field("last_seq", &last_seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use stint_domain::{AttemptState, EventKind, NodeKey, TaskError};
    use stint_ports::{
        AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, EndAttempt, EventPage, HistoryStore,
        OwnedAttempt, StoreError,
    };

    use super::*;

    fn node(node_id: &str) -> NodeKey {
        NodeKey::new("run", node_id, 0).expect("valid key")
    }

    fn begin(node: &NodeKey, owner: &str, at: u64) -> BeginAttempt {
        BeginAttempt {
            label: Some("label".to_owned()),
            ..BeginAttempt::new(node.clone(), owner, at, 30_000)
        }
    }

    /// A store in which `owner` began an attempt of node `n` at `at`.
    async fn with_one_attempt(owner: &str, at: u64) -> MemoryStore {
        let store = MemoryStore::new();
        store
            .begin_attempt(begin(&node("n"), owner, at))
            .await
            .expect("begin");
        store
    }

    #[tokio::test]
    async fn a_clone_is_another_handle_on_the_same_data() {
        let first = MemoryStore::new();
        let second = first.clone();
        let key = node("n");
        first
            .begin_attempt(begin(&key, "a", 10))
            .await
            .expect("begin");
        let refused = second.begin_attempt(begin(&key, "b", 11)).await;
        assert!(matches!(refused, Err(StoreError::Conflict { .. })));
        let node = second
            .get_node(&key)
            .await
            .expect("read")
            .expect("node exists");
        assert_eq!(node.state, AttemptState::InProgress);
        assert_eq!(node.label.as_deref(), Some("label"));
    }

    #[tokio::test]
    async fn separate_stores_share_nothing() {
        let _first = with_one_attempt("a", 10).await;
        let other = MemoryStore::default();
        assert!(other.list_runs().await.expect("runs").is_empty());
        assert!(
            other
                .read_events(&EventPage::new("run").limit(10))
                .await
                .expect("events")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn begin_appends_node_started_at_the_start_time() {
        let store = with_one_attempt("a", 42).await;
        let events = store
            .read_events(&EventPage::new("run").limit(10))
            .await
            .expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].seq, 1);
        assert_eq!(events[0].event.kind, EventKind::NodeStarted);
        assert_eq!(events[0].event.timestamp_ms, 42);
        assert_eq!(events[0].event.attempt, 1);
    }

    #[tokio::test]
    async fn cancelled_attempt_keeps_its_error_and_no_retryable_flag() {
        let store = with_one_attempt("a", 0).await;
        let key = node("n");
        let owned = OwnedAttempt {
            key: key.attempt(1),
            owner: "a".to_owned(),
        };
        let end = AttemptEnd::Cancelled {
            error: TaskError::aborted(),
        };
        store
            .end_attempt(&owned, EndAttempt::new(end, 5))
            .await
            .expect("cancel");
        let filter = AttemptFilter::run("run");
        let attempts = store.list_attempts(&filter).await.expect("list");
        assert_eq!(attempts[0].state, AttemptState::Cancelled);
        assert_eq!(attempts[0].retryable, None);
        assert_eq!(attempts[0].error, Some(TaskError::aborted()));
        assert_eq!(store.read_output(&key).await.expect("read"), None);
    }

    #[tokio::test]
    async fn debug_shows_a_summary_not_the_contents() {
        let store = with_one_attempt("secret-owner", 0).await;
        let shown = format!("{store:?}");
        assert_eq!(shown, "MemoryStore { runs: 1, attempts: 1, last_seq: 1 }");
    }

    #[tokio::test]
    async fn sequence_numbers_are_one_two_three_across_runs() {
        let store = MemoryStore::new();
        for (run_id, at) in [("a", 1), ("b", 2), ("a", 3), ("b", 4)] {
            let key = NodeKey::new(run_id, format!("n{at}"), 0).expect("valid key");
            store
                .begin_attempt(begin(&key, "owner", at))
                .await
                .expect("begin");
        }
        let seqs = async |page: EventPage| -> Vec<u64> {
            let records = store.read_events(&page).await.expect("read");
            records.iter().map(|r| r.seq).collect()
        };
        assert_eq!(seqs(EventPage::new("a").limit(10)).await, vec![1, 3]);
        assert_eq!(seqs(EventPage::new("b").limit(10)).await, vec![2, 4]);
        assert_eq!(seqs(EventPage::new("b").after(2).limit(10)).await, vec![4]);
    }
}
