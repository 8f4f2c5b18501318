//! The conformance suite against SQLite: a fresh temp file per case.

use async_trait::async_trait;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_tests::{Database, Fixture, OnDatabase};
use tempfile::TempDir;

/// One database file in a temp folder, kept until the case ends; the second handle is a second,
/// independent pool on the same file, as a second process would open it.
struct TempFile(TempDir);

#[async_trait]
impl Database for TempFile {
    type Store = SqliteStore;

    async fn second(&self, store: &SqliteStore) -> SqliteStore {
        SqliteStore::open(store.path(), SqliteOptions::default())
            .await
            .expect("second pool on the same file")
    }

    async fn release(self, store: SqliteStore) {
        store.close().await;
        drop(self.0);
    }
}

async fn factory() -> Box<dyn Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("stint.db"), SqliteOptions::default())
        .await
        .expect("open sqlite store");
    Box::new(OnDatabase {
        store,
        database: TempFile(dir),
    })
}

stint_tests::conformance_suite!(factory);
