//! The conformance suite against SQLite: a fresh temp file per case.

use std::sync::Arc;

use async_trait::async_trait;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_ports::{QueueStore, Store};
use stint_tests::Fixture;
use tempfile::TempDir;

/// One database file in a temp folder kept alive by the fixture; the second handle is a second,
/// independent pool on the same file, as a second process would open it.
struct SqliteFixture {
    store: SqliteStore,
    dir: TempDir,
}

impl SqliteFixture {
    async fn second(&self) -> SqliteStore {
        SqliteStore::open(self.store.path(), SqliteOptions::default())
            .await
            .expect("second pool on the same file")
    }
}

#[async_trait]
impl Fixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn second_store(&self) -> Arc<dyn Store> {
        Arc::new(self.second().await)
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.store.clone())
    }

    async fn second_queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.second().await)
    }

    async fn teardown(self: Box<Self>) {
        self.store.close().await;
        drop(self.dir);
    }
}

async fn factory() -> Box<dyn Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("stint.db"), SqliteOptions::default())
        .await
        .expect("open sqlite store");
    Box::new(SqliteFixture { store, dir })
}

stint_tests::conformance_suite!(factory);
