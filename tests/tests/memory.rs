//! The conformance suite against the in-memory store.

use std::sync::Arc;

use async_trait::async_trait;
use stint_adapters_memory::MemoryStore;
use stint_ports::{QueueStore, Store};
use stint_tests::Fixture;

/// A fresh store per case. The second handle is a clone: another handle on the same data, as a
/// second pool is on the same database file (the memory store's only kind of second handle).
///
/// A memory call never suspends, so a racing task could run its whole loop before the other
/// racer's worker thread wakes up: the racing cases start their racers together (a barrier) and
/// hold each attempt across a scheduling point, and assert that some writes were refused, so a
/// race that did not happen fails instead of passing.
struct MemoryFixture {
    store: MemoryStore,
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn second_store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.store.clone())
    }

    async fn second_queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.store.clone())
    }
}

async fn factory() -> Box<dyn Fixture> {
    Box::new(MemoryFixture {
        store: MemoryStore::new(),
    })
}

stint_tests::conformance_suite!(factory);
