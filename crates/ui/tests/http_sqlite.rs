//! Every endpoint of the dashboard on a seeded SQLite file.

mod common;

use std::sync::Arc;

use stint_adapters_sqlite::SqliteStore;

use common::AnyStore;
use common::checks;

/// A fresh SQLite file store; the folder lives as long as the test.
async fn store() -> (Arc<dyn AnyStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("stint.db").display());
    let store = SqliteStore::connect(&url).await.expect("sqlite store");
    (Arc::new(store), dir)
}

macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (store, _dir) = store().await;
            checks::$name(store).await;
        }
    )*};
}

on_sqlite!(
    runs_are_listed_filtered_and_paged,
    run_page_draws_the_timeline,
    attempt_page_shows_everything_escaped,
    queues_are_counted_and_listed,
    live_stream_tails_the_event_log,
    token_and_actions_are_enforced,
);
