//! Opening a database file: connection set-up, and the schema check and migrations run on open.

use std::collections::HashSet;
use std::path::Path;

use sqlx::Row;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use stint_ports::StoreError;

use crate::error::{map, map_open};
use crate::options::{SqliteOptions, Synchronous};

/// The schema, embedded in the binary.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Opens (creating when missing) the database at `path` and brings its schema up to date.
pub(crate) async fn open_pool(
    path: &Path,
    options: &SqliteOptions,
) -> Result<SqlitePool, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
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
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        // A writer waits on the busy timeout inside SQLite; waiting for a pooled connection on top
        // of that should not be what makes a call fail.
        .acquire_timeout(
            options
                .busy_timeout
                .saturating_mul(4)
                .max(std::time::Duration::from_secs(30)),
        )
        .connect_with(connect)
        .await
        .map_err(|error| map_open(path, error))?;
    if let Err(error) = migrate(&pool, path).await {
        pool.close().await;
        return Err(error);
    }
    tracing::debug!(path = %path.display(), synchronous = options.synchronous.as_str(), "sqlite store open");
    Ok(pool)
}

/// Refuses a schema written by a newer stint, then applies the migrations this one lacks.
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), StoreError> {
    refuse_newer_schema(pool, path).await?;
    MIGRATOR.run(pool).await.map_err(|error| match error {
        MigrateError::Execute(error) => map_open(path, error),
        MigrateError::VersionMissing(version) => newer(path, version),
        other => StoreError::incompatible(format!(
            "{}: cannot migrate the schema: {other}",
            path.display()
        )),
    })
}

/// The migrator would also refuse an unknown version, but with a message that does not say a
/// newer stint wrote the file; checking first gives the user the reason and the version.
async fn refuse_newer_schema(pool: &SqlitePool, path: &Path) -> Result<(), StoreError> {
    let has_table: bool = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await
    .map_err(|error| map_open(path, error))?
    .try_get(0)
    .map_err(map)?;
    if !has_table {
        return Ok(());
    }
    let known: HashSet<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
    let applied = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(|error| map_open(path, error))?;
    for row in applied {
        let version: i64 = row.try_get(0).map_err(map)?;
        if !known.contains(&version) {
            return Err(newer(path, version));
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
