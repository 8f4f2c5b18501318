//! The conformance suite against the in-memory store.

use std::sync::Arc;

use async_trait::async_trait;
use stint_adapters_memory::MemoryStore;
use stint_ports::Store;
use stint_tests::Fixture;

/// A fresh store per case; the second handle is a clone, which shares its data.
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
}

async fn factory() -> Option<Box<dyn Fixture>> {
    Some(Box::new(MemoryFixture {
        store: MemoryStore::new(),
    }))
}

stint_tests::conformance_suite!(factory);
