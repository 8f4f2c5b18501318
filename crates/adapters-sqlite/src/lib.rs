//! SQLite storage adapter of stint: the embedded default.
//!
//! [`SqliteStore`] implements the write port ([`AttemptStore`](stint_ports::AttemptStore)) and the query
//! port ([`HistoryStore`](stint_ports::HistoryStore)), and the queue's ports
//! ([`TaskQueue`](stint_ports::TaskQueue), [`QueueHistory`](stint_ports::QueueHistory)), on one
//! SQLite file in
//! WAL mode, with foreign keys on, a busy timeout and `synchronous=FULL` unless the user opts for
//! `NORMAL`. Every write is applied by one writer thread per store, on a connection of its own
//! (`rusqlite`, called directly), in a `BEGIN IMMEDIATE` transaction that carries whatever other
//! writes are waiting (group commit: one fsync for all of them), a failing write rolled back
//! alone; a caller is answered once that transaction committed. So a crash at any instant leaves each
//! write wholly done or not at all, and two processes on one file queue instead of deadlocking.
//! Reads and the migrations go through an sqlx connection pool; under WAL they never wait for
//! the writer.
//! The schema is embedded and migrated on open; a file written by a newer stint is refused.
//! [`SqliteWakeups`] wakes a worker when another connection committed (`PRAGMA data_version`).
//!
//! Invariants, stated as absences: no SQL here is assembled from values (every value is bound),
//! nothing here needs a database at compile time, and nothing here decides a retry or a state
//! transition: the store records what the engine decided.
#![deny(missing_docs)]

mod connect;
mod error;
mod options;
mod prune;
mod query;
mod queue;
mod queue_history;
mod recovery;
mod wakeups;
mod write;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use connect::Create;
use sqlx::sqlite::SqlitePool;
use stint_ports::StoreError;
use writer::Writer;

pub use options::{SqliteOptions, Synchronous};
pub use wakeups::{DEFAULT_CHECK_INTERVAL, SqliteWakeups};

/// A stint store on one SQLite file. Cloning shares the connection pool and the writer.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: Arc<PathBuf>,
    writer: Writer,
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
        let pool = connect::open_pool(path, &options, Create::IfMissing).await?;
        Self::with_pool(pool, path, &options).await
    }

    /// As [`SqliteStore::connect`], but only when the database file exists: `Ok(None)` when
    /// there is no file at the URL's path, and then nothing is created, neither the file nor its
    /// folder. For readers, to whom a missing file means "nothing was recorded here".
    pub async fn connect_existing(url: &str) -> Result<Option<Self>, StoreError> {
        let parsed = options::parse_url(url)?;
        Self::open_existing(&parsed.path, parsed.options).await
    }

    /// As [`SqliteStore::open`], but only when the file at `path` exists (`Ok(None)` otherwise,
    /// creating nothing). An existing file is opened read-write and its schema brought up to
    /// date, as `open` does.
    pub async fn open_existing(
        path: &Path,
        options: SqliteOptions,
    ) -> Result<Option<Self>, StoreError> {
        match tokio::fs::metadata(path).await {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Anything else (a folder, no permission) is for SQLite to report, naming the path.
            _ => {}
        }
        let pool = connect::open_pool(path, &options, Create::Never).await?;
        Self::with_pool(pool, path, &options).await.map(Some)
    }

    /// The database file a `sqlite:` URL names; checks the URL, opens nothing.
    pub fn url_path(url: &str) -> Result<PathBuf, StoreError> {
        Ok(options::parse_url(url)?.path)
    }

    /// The store on `pool`'s file, once its writer's connection is open.
    async fn with_pool(
        pool: SqlitePool,
        path: &Path,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let writer = match Writer::start(path, options).await {
            Ok(writer) => writer,
            Err(error) => {
                pool.close().await;
                return Err(error);
            }
        };
        Ok(Self {
            writer,
            pool,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Applies `write` through the store's writer (group commit, see `writer.rs`): on the
    /// writer thread, in a transaction it may share with other writes, and again from the start
    /// if that transaction is replayed (a neighbour failed).
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(write).await
    }

    /// Runs `inspect` on the writer's connection, on the writer thread, inside a write of its
    /// own (once, even if the writer replays its transaction). For tests that watch the writer
    /// through SQLite's hooks (its commits, its row changes); not part of the store's interface.
    #[doc(hidden)]
    pub async fn with_writer_connection<F>(&self, inspect: F) -> Result<(), StoreError>
    where
        F: FnOnce(&rusqlite::Connection) + Send + 'static,
    {
        let mut inspect = Some(inspect);
        self.write(move |conn| {
            if let Some(inspect) = inspect.take() {
                inspect(conn);
            }
            Ok(())
        })
        .await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for tools (and tests) that need SQL this adapter does not offer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stops the writer once the writes handed to it are answered (later ones are refused) and
    /// closes its connection, then closes every connection of the pool, waiting for those in use
    /// to come back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
