//! The stores measured: in memory, SQLite on a temporary file (FULL or NORMAL), PostgreSQL on a
//! fresh schema of the test server.

use std::sync::Arc;

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use stint_adapters_memory::MemoryStore;
use stint_adapters_postgres::test_support::{
    Availability, SchemaGuard, availability, server_url, try_fresh_schema_with,
};
use stint_adapters_sqlite::SqliteStore;
use stint_ports::Store;

/// A SQLite store on a file in its own temporary folder, removed on drop.
#[derive(Debug)]
pub(crate) struct SqliteBench {
    pub store: SqliteStore,
    synchronous: String,
    _dir: tempfile::TempDir,
}

impl SqliteBench {
    /// A fresh database opened through the store's URL, `synchronous` being `full` or `normal`.
    pub(crate) async fn open(synchronous: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("stint-bench-")
            .tempdir()
            .context("creating a temporary folder")?;
        let path = dir.path().join("bench.db");
        let url = format!("sqlite://{}?synchronous={synchronous}", path.display());
        let store = SqliteStore::connect(&url)
            .await
            .context("opening the SQLite store")?;
        Ok(Self {
            store,
            synchronous: synchronous.to_owned(),
            _dir: dir,
        })
    }

    /// A connection for the floor, opened as the store's writer opens its own: WAL (the file's
    /// mode already), the store's `synchronous`, its busy timeout, foreign keys on.
    pub(crate) fn floor_connection(&self) -> Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(self.store.path())
            .context("opening the floor's connection")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", &self.synchronous)?;
        Ok(conn)
    }

    pub(crate) async fn close(self) {
        self.store.close().await;
    }
}

/// A PostgreSQL store on a fresh schema, with a raw pool of the same size on that schema.
#[derive(Debug)]
pub(crate) struct PostgresBench {
    pub store: Arc<dyn Store>,
    pub raw: PgPool,
    guard: SchemaGuard,
}

impl PostgresBench {
    /// `Err` with the reason when nothing listens at the test server's address, or when it
    /// cannot be used.
    pub(crate) async fn open(connections: u32) -> Result<Self, String> {
        if let Availability::Skip(reason) = availability() {
            return Err(reason);
        }
        let params = format!("max_connections={connections}");
        let (store, guard) = try_fresh_schema_with(&params)
            .await
            .map_err(|error| format!("the PostgreSQL test server failed: {error}"))?;
        let options: sqlx::postgres::PgConnectOptions = server_url()
            .parse()
            .map_err(|error| format!("invalid PostgreSQL URL: {error}"))?;
        let raw = PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(options.options([("search_path", guard.schema())]))
            .await
            .map_err(|error| format!("raw PostgreSQL pool: {error}"))?;
        Ok(Self {
            store: Arc::new(store),
            raw,
            guard,
        })
    }

    pub(crate) async fn close(self) {
        self.raw.close().await;
        self.guard.drop_schema().await;
    }
}

/// A store of one backend for the heartbeat throughput row, with what keeps it alive.
#[derive(Debug)]
pub(crate) enum Opened {
    Memory(Arc<MemoryStore>),
    Sqlite(SqliteBench),
    Postgres(PostgresBench),
}

impl Opened {
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Memory(store) => store.clone(),
            Self::Sqlite(bench) => Arc::new(bench.store.clone()),
            Self::Postgres(bench) => bench.store.clone(),
        }
    }

    pub(crate) async fn close(self) {
        match self {
            Self::Memory(_) => {}
            Self::Sqlite(bench) => bench.close().await,
            Self::Postgres(bench) => bench.close().await,
        }
    }
}

/// The backends of the throughput row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Memory,
    SqliteFull,
    SqliteNormal,
    Postgres,
}

impl Backend {
    pub(crate) const ALL: [Self; 4] = [
        Self::Memory,
        Self::SqliteFull,
        Self::SqliteNormal,
        Self::Postgres,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::SqliteFull => "SQLite FULL",
            Self::SqliteNormal => "SQLite NORMAL",
            Self::Postgres => "PostgreSQL, 1 connection",
        }
    }

    /// Opens a fresh store; `Err` with a reason to print when it cannot be had.
    pub(crate) async fn open(self) -> Result<Opened, String> {
        match self {
            Self::Memory => Ok(Opened::Memory(Arc::new(MemoryStore::new()))),
            Self::SqliteFull | Self::SqliteNormal => {
                let sync = if matches!(self, Self::SqliteFull) {
                    "full"
                } else {
                    "normal"
                };
                SqliteBench::open(sync)
                    .await
                    .map(Opened::Sqlite)
                    .map_err(|error| format!("{error:#}"))
            }
            Self::Postgres => PostgresBench::open(1).await.map(Opened::Postgres),
        }
    }
}
