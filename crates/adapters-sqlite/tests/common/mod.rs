//! Helpers shared by this crate's integration tests.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset; unwrap fails the test

use std::path::Path;

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

/// Number of rows in `table`.
pub(crate) async fn count(store: &SqliteStore, table: &str) -> i64 {
    let sql = match table {
        "events" => "SELECT COUNT(*) FROM events",
        "outputs" => "SELECT COUNT(*) FROM outputs",
        "attempts" => "SELECT COUNT(*) FROM attempts",
        "nodes" => "SELECT COUNT(*) FROM nodes",
        other => panic!("unknown table {other}"),
    };
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}
