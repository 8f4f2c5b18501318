//! Opening a database file: connection set-up, and the schema check and migrations run on open.

use std::collections::HashSet;
use std::path::Path;

use sqlx::Row;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use stint_ports::StoreError;

use crate::error::{is_busy, map, map_open};
use crate::options::{SqliteOptions, Synchronous};

/// The schema, embedded in the binary.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Whether opening may create the database file (and its folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Create the file and its folder when missing.
    IfMissing,
    /// Open an existing file only.
    Never,
}

/// Opens the database at `path` (creating it when missing, if `create` says so) and brings its
/// schema up to date.
pub(crate) async fn open_pool(
    path: &Path,
    options: &SqliteOptions,
    create: Create,
) -> Result<SqlitePool, StoreError> {
    if create == Create::IfMissing
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(parent).await.map_err(|error| {
            StoreError::unavailable(format!(
                "{}: cannot create the folder {}: {error}",
                path.display(),
                parent.display()
            ))
        })?;
    }
    let synchronous = match options.synchronous {
        Synchronous::Full => SqliteSynchronous::Full,
        Synchronous::Normal => SqliteSynchronous::Normal,
    };
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create == Create::IfMissing)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let pool_options = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        // A writer waits on the busy timeout inside SQLite; waiting for a pooled connection on top
        // of that should not be what makes a call fail.
        .acquire_timeout(
            options
                .busy_timeout
                .saturating_mul(4)
                .max(std::time::Duration::from_secs(30)),
        );
    let mut attempt = 1;
    loop {
        match open_once(path, pool_options.clone(), connect.clone()).await {
            Ok(pool) => {
                tracing::debug!(path = %path.display(), synchronous = options.synchronous.as_str(), "sqlite store open");
                return Ok(pool);
            }
            Err(OpenFailure::Raced(error)) if attempt < OPEN_ATTEMPTS => {
                tracing::debug!(path = %path.display(), %error, attempt, "opening raced another process; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(OpenFailure::Raced(error)) => return Err(map_open(path, error)),
            Err(OpenFailure::Final(error)) => return Err(error),
        }
    }
}

/// How many times opening retries after losing a race with another process opening the same
/// file (setting up WAL, creating the schema).
const OPEN_ATTEMPTS: u32 = 8;

/// Why one try at opening failed.
enum OpenFailure {
    /// Another process was setting up the same file at the same moment: worth another try.
    Raced(sqlx::Error),
    /// Anything else.
    Final(StoreError),
}

impl OpenFailure {
    fn classify(path: &Path, error: sqlx::Error) -> Self {
        if is_busy(&error) {
            Self::Raced(error)
        } else {
            Self::Final(map_open(path, error))
        }
    }
}

/// Connects, refuses a schema from a newer stint, and applies the migrations this one lacks.
///
/// SQLite has no lock the migrator can take, so two processes opening a fresh file at once both
/// see the schema missing, and the slower one fails on `CREATE TABLE` once the faster one has
/// committed. Each migration commits together with its row in `_sqlx_migrations`, so the next
/// try sees the winner's work and applies only what is still missing.
async fn open_once(
    path: &Path,
    pool_options: SqlitePoolOptions,
    connect: SqliteConnectOptions,
) -> Result<SqlitePool, OpenFailure> {
    let pool = pool_options
        .connect_with(connect)
        .await
        .map_err(|error| OpenFailure::classify(path, error))?;
    let result = match refuse_newer_schema(&pool, path).await {
        Err(failure) => Err(failure),
        Ok(()) => MIGRATOR.run(&pool).await.map_err(|error| match error {
            MigrateError::VersionMissing(version) => OpenFailure::Final(newer(path, version)),
            // The loser of a race on a fresh file fails on `CREATE TABLE` (or finds the file
            // locked); the next try sees the winner's committed migration.
            MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _) => {
                OpenFailure::Raced(error)
            }
            other => OpenFailure::Final(StoreError::incompatible(format!(
                "{}: cannot migrate the schema: {other}",
                path.display()
            ))),
        }),
    };
    match result {
        Ok(()) => Ok(pool),
        Err(failure) => {
            pool.close().await;
            Err(failure)
        }
    }
}

/// The migrator would also refuse an unknown version, but with a message that does not say a
/// newer stint wrote the file; checking first gives the user the reason and the version.
async fn refuse_newer_schema(pool: &SqlitePool, path: &Path) -> Result<(), OpenFailure> {
    let has_table: bool = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await
    .map_err(|error| OpenFailure::classify(path, error))?
    .try_get(0)
    .map_err(|error| OpenFailure::Final(map(error)))?;
    if !has_table {
        return Ok(());
    }
    let known: HashSet<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
    let applied = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(|error| OpenFailure::classify(path, error))?;
    for row in applied {
        let version: i64 = row
            .try_get(0)
            .map_err(|error| OpenFailure::Final(map(error)))?;
        if !known.contains(&version) {
            return Err(OpenFailure::Final(newer(path, version)));
        }
    }
    Ok(())
}

fn newer(path: &Path, version: i64) -> StoreError {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    StoreError::incompatible(format!(
        "{}: schema version {version} was written by a newer stint (this one knows up to {latest}); upgrade stint",
        path.display()
    ))
}
