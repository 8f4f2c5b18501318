//! The conformance suite against the in-memory store.
//!
//! A fresh store per case. The second handle is a clone: another handle on the same data, as a
//! second pool is on the same database file (the memory store's only kind of second handle).
//!
//! A memory call never suspends, so a racing task could run its whole loop before the other
//! racer's worker thread wakes up: the racing cases start their racers together (a barrier) and
//! hold each attempt across a scheduling point, and assert that some writes were refused, so a
//! race that did not happen fails instead of passing.

use async_trait::async_trait;
use stint_adapters_memory::MemoryStore;
use stint_tests::{Database, Fixture, OnDatabase};

/// The store's own memory: its clones are handles on the same data, and nothing is released.
struct Memory;

#[async_trait]
impl Database for Memory {
    type Store = MemoryStore;

    async fn second(&self, store: &MemoryStore) -> MemoryStore {
        store.clone()
    }
}

async fn factory() -> Box<dyn Fixture> {
    Box::new(OnDatabase {
        store: MemoryStore::new(),
        database: Memory,
    })
}

stint_tests::conformance_suite!(factory);
