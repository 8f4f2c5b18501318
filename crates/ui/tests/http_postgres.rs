//! Every endpoint of the dashboard on a seeded PostgreSQL schema (reported ignored, with the
//! reason, when no server listens; `STINT_REQUIRE_POSTGRES=1` makes that a failure).

mod common;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use stint_adapters_postgres::test_support::{self, block_on, fresh_schema};

use common::AnyStore;
use common::checks;

/// Runs `check` on a fresh schema, dropped afterwards.
fn on_postgres<F: Future<Output = ()>>(check: fn(Arc<dyn AnyStore>) -> F) {
    block_on(async move {
        let (store, guard) = fresh_schema().await;
        check(Arc::new(store)).await;
        guard.drop_schema().await;
    });
}

fn main() -> ExitCode {
    test_support::run_tests(vec![
        ("runs_are_listed_filtered_and_paged", || {
            on_postgres(checks::runs_are_listed_filtered_and_paged)
        }),
        ("run_page_draws_the_timeline", || {
            on_postgres(checks::run_page_draws_the_timeline)
        }),
        ("attempt_page_shows_everything_escaped", || {
            on_postgres(checks::attempt_page_shows_everything_escaped)
        }),
        ("queues_are_counted_and_listed", || {
            on_postgres(checks::queues_are_counted_and_listed)
        }),
        ("live_stream_tails_the_event_log", || {
            on_postgres(checks::live_stream_tails_the_event_log)
        }),
        ("token_and_actions_are_enforced", || {
            on_postgres(checks::token_and_actions_are_enforced)
        }),
    ])
}
