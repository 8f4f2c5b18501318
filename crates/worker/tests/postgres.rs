//! Every worker case on PostgreSQL, each on a fresh schema.
//!
//! No libtest harness here (`harness = false`), as in the PostgreSQL adapter's tests: `main`
//! lists the cases, reported ignored when nothing listens at the test server's address.

use std::process::ExitCode;

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

fn main() -> ExitCode {
    let tests: Vec<Test> = every_case!(on_postgres);
    run_tests(tests)
}
