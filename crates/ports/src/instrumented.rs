//! [`InstrumentedStore`]: a store that counts, slows and fails the writes of the one it wraps.
//!
//! Shipped beside the port (as object_store ships `throttle.rs` beside its trait) so that tests
//! and benchmarks share one wrapper instead of each writing a forwarding store of its own.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{
    AttemptKey, AttemptRecord, EventRecord, NodeKey, NodeRecord, ProcessPlace, RunSummary,
};

use crate::{
    AttemptEnded, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, EventPage,
    HeartbeatWrite, HistoryStore, OwnedAttempt, Renewal, RenewedLease, RunListing, RunQuery,
    StoreError,
};

/// One operation of the write port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOp {
    /// [`AttemptStore::begin_attempt`].
    Begin,
    /// [`AttemptStore::record_heartbeat`].
    Heartbeat,
    /// [`AttemptStore::renew_lease`].
    RenewLease,
    /// [`AttemptStore::record_process`].
    RecordProcess,
    /// [`AttemptStore::end_attempt`].
    End,
    /// [`AttemptStore::recover_abandoned`].
    Recover,
    /// [`AttemptStore::request_cancel`].
    RequestCancel,
}

impl WriteOp {
    const ALL: [Self; 7] = [
        Self::Begin,
        Self::Heartbeat,
        Self::RenewLease,
        Self::RecordProcess,
        Self::End,
        Self::Recover,
        Self::RequestCancel,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The failures injected into one operation.
#[derive(Debug, Default)]
struct Failures {
    /// Returned by the next calls, one each, before `always` is considered.
    queued: VecDeque<StoreError>,
    /// Returned by every call while set (an outage).
    always: Option<StoreError>,
}

/// What the wrapper does to one operation.
#[derive(Debug, Default)]
struct Control {
    calls: AtomicU64,
    delay_us: AtomicU64,
    failures: Mutex<Failures>,
}

impl Control {
    fn failures(&self) -> MutexGuard<'_, Failures> {
        // Every statement leaves the queue whole, so a poisoned lock still holds valid data.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A store that counts each write operation of `inner`, can delay it, and can fail it.
///
/// The write port's operations are instrumented; the query port is passed through unchanged.
/// A delayed call sleeps on tokio's clock before it reaches `inner`, so under a paused clock the
/// delay is exact. An injected failure is returned after the delay, without calling `inner`.
pub struct InstrumentedStore<S: ?Sized> {
    inner: Arc<S>,
    controls: [Control; WriteOp::ALL.len()],
}

impl<S: ?Sized> InstrumentedStore<S> {
    /// Wraps `inner`; until told otherwise every call goes straight through.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            controls: Default::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    fn control(&self, op: WriteOp) -> &Control {
        &self.controls[op.index()]
    }

    /// How many times `op` was called (including calls that failed).
    pub fn calls(&self, op: WriteOp) -> u64 {
        self.control(op).calls.load(Ordering::SeqCst)
    }

    /// Makes every later call of `op` take `delay` before it reaches the store.
    pub fn set_delay(&self, op: WriteOp, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.control(op).delay_us.store(micros, Ordering::SeqCst);
    }

    /// Makes the next call of `op` fail with `error` (queued after earlier injected failures).
    pub fn fail_next(&self, op: WriteOp, error: StoreError) {
        self.control(op).failures().queued.push_back(error);
    }

    /// Makes every call of `op` fail with `error` until [`InstrumentedStore::heal`]: an outage.
    pub fn fail_always(&self, op: WriteOp, error: StoreError) {
        self.control(op).failures().always = Some(error);
    }

    /// Makes every write operation fail with `error` until healed: the store is unreachable.
    pub fn fail_all(&self, error: &StoreError) {
        for op in WriteOp::ALL {
            self.fail_always(op, error.clone());
        }
    }

    /// Ends every outage and drops every queued failure.
    pub fn heal(&self) {
        for op in WriteOp::ALL {
            *self.control(op).failures() = Failures::default();
        }
    }

    /// Counts the call, waits its delay, and returns the failure to inject, if any.
    async fn enter(&self, op: WriteOp) -> Result<(), StoreError> {
        let control = self.control(op);
        control.calls.fetch_add(1, Ordering::SeqCst);
        let delay_us = control.delay_us.load(Ordering::SeqCst);
        if delay_us > 0 {
            tokio::time::sleep(Duration::from_micros(delay_us)).await;
        }
        let mut failures = control.failures();
        match failures.queued.pop_front() {
            Some(error) => Err(error),
            None => failures.always.clone().map_or(Ok(()), Err),
        }
    }
}

impl<S: ?Sized> fmt::Debug for InstrumentedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls: Vec<(WriteOp, u64)> = WriteOp::ALL
            .iter()
            .map(|&op| (op, self.calls(op)))
            .collect();
        f.debug_struct("InstrumentedStore")
            .field("calls", &calls)
            .finish_non_exhaustive()
    }
}

/// Implements the write port for [`InstrumentedStore`]: each listed method enters its
/// [`WriteOp`] (counted, delayed, maybe failed) and then calls the same method of `inner`.
///
/// A macro because the port's methods differ in their arguments and `async_trait` rewrites
/// each signature, which no generic function can produce.
macro_rules! instrumented_writes {
    ($($op:ident => $method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        #[async_trait]
        impl<S: AttemptStore + ?Sized> AttemptStore for InstrumentedStore<S> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                    self.enter(WriteOp::$op).await?;
                    self.inner.$method($($arg),*).await
                }
            )*

            /// A read, so neither counted nor failed: the recovery it serves is
            /// [`WriteOp::Recover`]'s.
            async fn expired_attempts(
                &self,
                now_ms: u64,
            ) -> Result<Vec<AttemptRecord>, StoreError> {
                self.inner.expired_attempts(now_ms).await
            }
        }
    };
}

instrumented_writes! {
    Begin => begin_attempt(begin: BeginAttempt) -> BegunAttempt;
    Heartbeat => record_heartbeat(attempt: &OwnedAttempt, heartbeat: HeartbeatWrite) -> ();
    RecordProcess => record_process(attempt: &OwnedAttempt, place: ProcessPlace) -> ();
    RenewLease => renew_lease(attempt: &OwnedAttempt, renewal: Renewal) -> RenewedLease;
    RequestCancel => request_cancel(run_id: &str) -> Vec<AttemptKey>;
    End => end_attempt(attempt: &OwnedAttempt, end: EndAttempt) -> AttemptEnded;
    Recover => recover_abandoned(now_ms: u64) -> Vec<AttemptKey>;
}

#[async_trait]
impl<S: HistoryStore + ?Sized> HistoryStore for InstrumentedStore<S> {
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.list_runs().await
    }

    async fn list_runs_page(&self, query: &RunQuery) -> Result<Vec<RunListing>, StoreError> {
        self.inner.list_runs_page(query).await
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

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.inner.read_output(node).await
    }

    async fn read_events(&self, page: &EventPage) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_events(page).await
    }
}
