//! Opening a database: connection settings, the URL, and the files that must be refused.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{WriteLock, store_in};
use sqlx::Row;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_ports::{AttemptStore, EventPage, HistoryStore, StoreError};

async fn pragma(store: &SqliteStore, name: &str) -> String {
    let sql = sqlx::AssertSqlSafe(format!("PRAGMA {name}"));
    let row = sqlx::query(sql).fetch_one(store.pool()).await.unwrap();
    // journal_mode answers with text, the others with a number.
    match row.try_get::<String, _>(0) {
        Ok(text) => text,
        Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
    }
}

#[tokio::test]
async fn defaults_are_wal_full_foreign_keys_and_a_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    assert_eq!(pragma(&store, "journal_mode").await, "wal");
    assert_eq!(pragma(&store, "synchronous").await, "2", "FULL");
    assert_eq!(pragma(&store, "foreign_keys").await, "1");
    assert_eq!(pragma(&store, "busy_timeout").await, "5000");
}

#[tokio::test]
async fn url_options_are_applied_and_folders_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/stint.db");
    let url = format!(
        "sqlite://{}?synchronous=normal&busy_timeout_ms=1234",
        path.display()
    );
    let store = SqliteStore::connect(&url).await.unwrap();
    assert!(
        path.exists(),
        "file and parent folders created on first use"
    );
    assert_eq!(pragma(&store, "synchronous").await, "1", "NORMAL");
    assert_eq!(pragma(&store, "busy_timeout").await, "1234");

    let short = SqliteStore::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(pragma(&short, "synchronous").await, "2");
}

#[tokio::test]
async fn opening_an_existing_database_only_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/stint.db");
    let url = format!("sqlite://{}", path.display());
    assert!(SqliteStore::connect_existing(&url).await.unwrap().is_none());
    assert!(!dir.path().join("missing").exists(), "not even the folder");
    assert_eq!(SqliteStore::url_path(&url).unwrap(), path);

    let created = SqliteStore::connect(&url).await.unwrap();
    created.close().await;
    let existing = SqliteStore::connect_existing(&url).await.unwrap();
    let existing = existing.expect("the file now exists");
    assert!(existing.list_runs().await.unwrap().is_empty());
    assert!(matches!(
        SqliteStore::connect_existing("sqlite:x.db?nope=1").await,
        Err(StoreError::InvalidConfig { .. })
    ));
}

#[tokio::test]
async fn unknown_url_options_are_refused() {
    let error = SqliteStore::connect("sqlite:x.db?synchronus=normal")
        .await
        .expect_err("typo refused");
    assert!(
        error.to_string().contains("unknown option 'synchronus'"),
        "{error}"
    );
}

#[tokio::test]
async fn a_schema_from_a_newer_stint_is_refused_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let error = refused_as_incompatible(store.path(), "newer schema refused").await;
    let message = error.to_string();
    assert!(
        message.contains("99990101000000") && message.contains("newer stint"),
        "{message}"
    );
}

/// Opens `path`, which must be refused as incompatible (`why`); returns the error.
async fn refused_as_incompatible(path: &std::path::Path, why: &str) -> StoreError {
    let error = SqliteStore::open(path, SqliteOptions::default())
        .await
        .expect_err(why);
    assert!(
        matches!(error, StoreError::Incompatible { .. }),
        "{error:?}"
    );
    error
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let error = refused_as_incompatible(&path, "garbage refused").await;
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    // Said once, in the user's words; SQLite's own wording stays in the error's source.
    assert_eq!(
        message,
        format!(
            "store incompatible: {} is not a SQLite database",
            path.display()
        )
    );
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        source.is_some_and(|source| source.contains("file is not a database")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_path_that_cannot_be_created_is_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let path = blocker.join("stint.db");
    let error = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect_err("cannot create under a file");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&path, options).await.unwrap();
    let other = WriteLock::take(&path).await;
    let node = common::node();
    let error = store
        .begin_attempt(common::begin(&node, "owner", 1))
        .await
        .expect_err("the write lock is held elsewhere");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    other.release().await;
    store
        .begin_attempt(common::begin(&node, "owner", 1))
        .await
        .expect("free again");
}

/// Several processes opening a fresh file at once race on the first migration; every one of
/// them must end up with a usable store, not a "table already exists" error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_opens_of_a_fresh_file_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let opens = (0..6).map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path, SqliteOptions::default()).await })
        });
        for open in opens.collect::<Vec<_>>() {
            let store = open.await.unwrap().expect("every racing open succeeds");
            store
                .read_events(&EventPage::new("r").limit(10))
                .await
                .unwrap();
        }
    }
}

/// The database itself refuses a second in-progress attempt of one node, even from a writer
/// that bypasses `begin_attempt`'s check.
#[tokio::test]
async fn the_schema_refuses_two_in_progress_attempts_of_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let insert = |attempt: i64| {
        sqlx::query(
            "INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner, \
             lease_expires_at_ms, started_at_ms, metadata) \
             VALUES ('r', 'n', 0, ?, 'in-progress', 'o', 0, 0, '{}')",
        )
        .bind(attempt)
    };
    insert(1).execute(store.pool()).await.unwrap();
    let error = insert(2).execute(store.pool()).await.expect_err("refused");
    assert!(error.to_string().contains("UNIQUE"), "{error}");
}
