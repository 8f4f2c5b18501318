//! The end-to-end scenarios against PostgreSQL, one fresh schema per test.
//!
//! No libtest harness here (`harness = false`): `main` lists the tests, reported ignored with the
//! reason when nothing listens at the server's address, unless `STINT_REQUIRE_POSTGRES=1` (see
//! `stint_adapters_postgres::test_support`). A `#[test]` function here would never run: add a
//! test to the list in `main`.

mod common;

use common::{World, scenarios};
use nix::sys::signal::Signal;
use stint_adapters_postgres::test_support;

fn on_postgres(scenario: impl FnOnce(&World)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (store, guard) = runtime.block_on(test_support::fresh_schema());
    runtime.block_on(store.close());
    let world = World::with_db(guard.url());
    scenario(&world);
    runtime.block_on(guard.drop_schema());
}

fn success_prints_the_output() {
    on_postgres(scenarios::success_prints_the_output);
}

fn fails_twice_then_succeeds_with_the_checkpoint() {
    on_postgres(scenarios::fails_twice_then_succeeds_with_the_checkpoint);
}

fn output_schema_violation_is_not_retried() {
    on_postgres(scenarios::output_schema_violation_is_not_retried);
}

fn timeout_stops_a_long_command() {
    on_postgres(scenarios::timeout_stops_a_long_command);
}

fn sigint_cancels_the_process_group() {
    on_postgres(|w| scenarios::signal_cancels_the_process_group(w, Signal::SIGINT));
}

fn rerun_of_a_finished_node_runs_nothing() {
    on_postgres(scenarios::rerun_of_a_finished_node_runs_nothing);
}

fn racing_runner_gets_a_conflict() {
    on_postgres(scenarios::racing_runner_gets_a_conflict);
}

fn json_listings_have_their_fields() {
    on_postgres(scenarios::json_listings_have_their_fields);
}

fn main() -> std::process::ExitCode {
    test_support::run_tests(vec![
        ("success_prints_the_output", success_prints_the_output),
        (
            "fails_twice_then_succeeds_with_the_checkpoint",
            fails_twice_then_succeeds_with_the_checkpoint,
        ),
        (
            "output_schema_violation_is_not_retried",
            output_schema_violation_is_not_retried,
        ),
        ("timeout_stops_a_long_command", timeout_stops_a_long_command),
        (
            "sigint_cancels_the_process_group",
            sigint_cancels_the_process_group,
        ),
        (
            "rerun_of_a_finished_node_runs_nothing",
            rerun_of_a_finished_node_runs_nothing,
        ),
        (
            "racing_runner_gets_a_conflict",
            racing_runner_gets_a_conflict,
        ),
        (
            "json_listings_have_their_fields",
            json_listings_have_their_fields,
        ),
    ])
}
