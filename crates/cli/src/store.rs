//! Opening the store `--db` names: the only place that knows which adapters exist.

use std::path::Path;
use std::sync::Arc;

use stint_adapters_postgres::PostgresStore;
use stint_adapters_sqlite::SqliteStore;
use stint_ports::{QueueStore, Store, StoreError, Wakeups};

use crate::exit::{CliCode, CliError};

/// Which adapter a URL picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `sqlite:` URLs, and plain paths (as `sqlite://PATH`).
    Sqlite(String),
    /// `postgres://` and `postgresql://` URLs.
    Postgres(String),
}

/// Picks the adapter for `url`; an empty URL or an unknown scheme is a wrong store configuration
/// (STORE_INVALID_CONFIG, exit 2), as a wrong option in a known scheme is.
pub(crate) fn backend(url: &str) -> Result<Backend, CliError> {
    let invalid = |message: String| CliError::from(StoreError::invalid_config(message));
    let url = url.trim();
    if url.is_empty() {
        return Err(invalid("--db is empty".to_owned()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Backend::Postgres(url.to_owned()));
    }
    if url.starts_with("sqlite:") {
        return Ok(Backend::Sqlite(url.to_owned()));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(invalid(format!(
            "--db scheme '{scheme}' is not supported (use sqlite://PATH or postgres://...)"
        )));
    }
    Ok(Backend::Sqlite(format!("sqlite://{url}")))
}

/// Every port the CLI uses: the attempt store and history, and the queue's two ports (each real
/// adapter serves them all).
pub(crate) trait AnyStore: Store + QueueStore {}

impl<T: Store + QueueStore + ?Sized> AnyStore for T {}

/// Opens (creating and migrating as needed) the store `url` names: for commands that write.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn Store>, CliError> {
    Ok(open_queue(url).await?)
}

/// Opens the store `url` names only if it exists: for commands that read (see
/// [`open_queue_existing`]).
pub(crate) async fn open_existing(url: &str) -> Result<Arc<dyn Store>, CliError> {
    Ok(open_queue_existing(url).await?)
}

/// [`open`], with the queue's ports too: for commands that enqueue or change tasks.
pub(crate) async fn open_queue(url: &str) -> Result<Arc<dyn AnyStore>, CliError> {
    let store: Arc<dyn AnyStore> = match backend(url)? {
        Backend::Sqlite(url) => Arc::new(SqliteStore::connect(&url).await?),
        Backend::Postgres(url) => Arc::new(PostgresStore::connect(&url).await?),
    };
    Ok(store)
}

/// [`open_queue`], with the store's wake-ups for a worker of `queues`: LISTEN/NOTIFY on
/// PostgreSQL, the `data_version` check on SQLite.
pub(crate) async fn open_worker(
    url: &str,
    queues: &[String],
) -> Result<(Arc<dyn AnyStore>, Arc<dyn Wakeups>), CliError> {
    Ok(match backend(url)? {
        Backend::Sqlite(url) => {
            let store = SqliteStore::connect(&url).await?;
            let wakeups = store
                .wakeups(stint_adapters_sqlite::DEFAULT_CHECK_INTERVAL)
                .await?;
            (Arc::new(store), Arc::new(wakeups))
        }
        Backend::Postgres(url) => {
            let store = PostgresStore::connect(&url).await?;
            let wakeups = store.wakeups(queues);
            (Arc::new(store), Arc::new(wakeups))
        }
    })
}

/// Opens the store `url` names only if it exists: for commands that read. A missing SQLite
/// file is [`CliCode::NoDatabase`] and nothing is created (a typo in `--db` must not look like
/// an empty history). A PostgreSQL database exists or not on its server, which says so.
pub(crate) async fn open_queue_existing(url: &str) -> Result<Arc<dyn AnyStore>, CliError> {
    let store: Arc<dyn AnyStore> = match backend(url)? {
        Backend::Sqlite(url) => match SqliteStore::connect_existing(&url).await? {
            Some(store) => Arc::new(store),
            None => return Err(no_database(&SqliteStore::url_path(&url)?)),
        },
        Backend::Postgres(url) => Arc::new(PostgresStore::connect(&url).await?),
    };
    Ok(store)
}

fn no_database(path: &Path) -> CliError {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    CliError::new(
        CliCode::NoDatabase,
        format!(
            "no database at {}: no runs were recorded there (the first `stint run` creates it; \
             --db or STINT_DB names another)",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_adapter() {
        assert_eq!(
            backend("sqlite://.stint/stint.db"),
            Ok(Backend::Sqlite("sqlite://.stint/stint.db".to_owned()))
        );
        assert_eq!(
            backend("x.db"),
            Ok(Backend::Sqlite("sqlite://x.db".to_owned()))
        );
        assert!(matches!(
            backend("postgres://u@h/d"),
            Ok(Backend::Postgres(_))
        ));
        let refused = backend("mysql://h").expect_err("unsupported");
        assert_eq!(refused.code.as_str(), "STORE_INVALID_CONFIG");
        assert_eq!(refused.exit(), crate::exit::USAGE);
    }
}
