//! SQLite storage adapter of stint: the embedded default.
//!
//! [`SqliteStore`] implements the ports' [`AttemptStore`] and [`EventLog`] on one SQLite file in
//! WAL mode, with foreign keys on, a busy timeout and `synchronous=FULL` unless the user opts for
//! `NORMAL`. Every write is one `BEGIN IMMEDIATE` transaction, so a crash at any instant leaves
//! a step wholly done or not at all, and two processes on one file queue instead of deadlocking.
//! The schema is embedded and migrated on open; a file written by a newer stint is refused.
//!
//! Invariants, stated as absences: no SQL here is assembled from values (every value is bound),
//! nothing here needs a database at compile time, and nothing here decides a retry or a state
//! transition: the store records what the engine decided.
#![deny(missing_docs)]

mod connect;
mod error;
mod options;
mod read;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqlitePool;
use stint_domain::{
    AttemptKey, AttemptRecord, Event, EventRecord, NodeKey, NodeRecord, RunSummary,
};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, EventLog, HeartbeatWrite,
    OwnedAttempt, StoreError,
};

pub use options::{SqliteOptions, Synchronous};

/// A stint store on one SQLite file. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: Arc<PathBuf>,
}

impl SqliteStore {
    /// Opens the store a `sqlite:` URL names: `sqlite://path/to/file.db` or `sqlite:path`, with
    /// optional `?synchronous=normal|full` (default full) and `?busy_timeout_ms=N` (default
    /// 5000). Unknown options are refused.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let parsed = options::parse_url(url)?;
        Self::open(&parsed.path, parsed.options).await
    }

    /// Opens (creating the file and its folder when missing) the database at `path`, and brings
    /// its schema up to date.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let pool = connect::open_pool(path, &options).await?;
        Ok(Self {
            pool,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for tools (and tests) that need SQL this adapter does not offer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection of the pool, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        write::begin_attempt(&self.pool, begin).await
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        write::record_heartbeat(&self.pool, attempt, heartbeat).await
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        lease_expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        write::renew_lease(&self.pool, attempt, lease_expires_at_ms).await
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: AttemptEnd,
        finished_at_ms: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        write::end_attempt(&self.pool, attempt, end, finished_at_ms, events).await
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        write::recover_abandoned(&self.pool, now_ms).await
    }

    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        read::list_attempts(&self.pool, filter).await
    }

    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        read::get_node(&self.pool, node).await
    }

    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        read::list_nodes(&self.pool, run_id).await
    }

    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        read::list_runs(&self.pool).await
    }

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        read::read_output(&self.pool, node).await
    }

    async fn previous_checkpoint(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        read::previous_checkpoint(&self.pool, node).await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, events: Vec<Event>) -> Result<(), StoreError> {
        write::append(&self.pool, events).await
    }

    async fn read_events(
        &self,
        run_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        read::read_events(&self.pool, run_id, after_seq, limit).await
    }
}
