//! The conformance suite against the in-memory store.
//!
//! A fresh store per case. The second handle is a clone: another handle on the same data, as a
//! second pool is on the same database file (the memory store's only kind of second handle).
//!
//! A memory call never suspends, so a racing task could run its whole loop before the other
//! racer's worker thread wakes up: the racing cases start their racers together (a barrier) and
//! hold each attempt across a scheduling point, and assert that some writes were refused, so a
//! race that did not happen fails instead of passing.

use stint_adapters_memory::MemoryStore;
use stint_tests::{Fixture, SharedStore};

async fn factory() -> Box<dyn Fixture> {
    Box::new(SharedStore(MemoryStore::new()))
}

stint_tests::conformance_suite!(factory);
