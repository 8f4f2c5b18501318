//! Every worker case on PostgreSQL, each on a fresh schema.
//!
//! No libtest harness here (`harness = false`), as in the PostgreSQL adapter's tests: `main`
//! lists the cases, reported ignored when nothing listens at the test server's address.

use std::process::ExitCode;
use std::time::Duration;

use stint_adapters_postgres::WakeupOptions;

use stint_adapters_postgres::test_support::{Test, block_on, run_tests};

mod cases;
mod common;

macro_rules! on_postgres {
    ($($module:ident :: $case:ident),* $(,)?) => {
        vec![$({
            fn run() {
                block_on(async {
                    cases::$module::$case(common::Kind::Postgres).await;
                    common::drop_schemas().await;
                });
            }
            (stringify!($case), run as fn())
        }),*]
    };
}

/// A listener whose notifications never arrive (as behind a transaction-pooling proxy) notices
/// it by its probe and wakes the worker by polling: the task still runs within seconds, where
/// the worker's own poll is 30 s.
fn a_deaf_listener_falls_back_to_polling() {
    block_on(async {
        let fixture = common::Fixture::new(common::Kind::Postgres).await;
        let deaf = WakeupOptions {
            probe_timeout: Duration::from_millis(300),
            fallback_poll: Duration::from_millis(200),
            deaf: true,
            ..WakeupOptions::default()
        };
        cases::wakeups::woken_by_the_store(&fixture, deaf, "woken by the fallback poll").await;
        common::drop_schemas().await;
    });
}

fn main() -> ExitCode {
    let mut tests: Vec<Test> = every_case!(on_postgres);
    tests.push((
        "a_deaf_listener_falls_back_to_polling",
        a_deaf_listener_falls_back_to_polling as fn(),
    ));
    run_tests(tests)
}
