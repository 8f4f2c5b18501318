//! Helpers shared by this crate's integration tests.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset; unwrap fails the test

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::NodeKey;
use stint_ports::{BeginAttempt, OwnedAttempt};

/// A store on a fresh file in `dir`.
pub(crate) async fn store_in(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("stint.db"), SqliteOptions::default())
        .await
        .expect("open store")
}

/// The node most tests use.
pub(crate) fn node() -> NodeKey {
    NodeKey::new("run", "node", 0).expect("valid key")
}

/// A begin request for `node` owned by `owner` at time `at`, leased for 30 s.
pub(crate) fn begin(node: &NodeKey, owner: &str, at: u64) -> BeginAttempt {
    BeginAttempt::new(node.clone(), owner, at, 30_000)
}

/// The owned handle of attempt `attempt` of `node`.
pub(crate) fn owned(node: &NodeKey, attempt: u32, owner: &str) -> OwnedAttempt {
    OwnedAttempt {
        key: node.attempt(attempt),
        owner: owner.to_owned(),
    }
}

/// Another connection to the database at `path`, holding its write lock until released.
pub(crate) struct WriteLock(SqliteConnection);

impl WriteLock {
    /// Connects and takes the write lock (`BEGIN IMMEDIATE`).
    pub(crate) async fn take(path: &Path) -> Self {
        let url = format!("sqlite://{}", path.display());
        let mut connection = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .unwrap();
        Self(connection)
    }

    /// Gives the lock back (`ROLLBACK`).
    pub(crate) async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

/// Number of rows in `table`.
pub(crate) async fn count(store: &SqliteStore, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}
