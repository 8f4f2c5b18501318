//! The end-to-end scenarios against PostgreSQL, one fresh schema per test. Skipped loudly
//! without a server unless `STINT_REQUIRE_POSTGRES=1`.

mod common;

use common::{World, scenarios};
use nix::sys::signal::Signal;
use stint_adapters_postgres::test_support;

fn on_postgres(scenario: impl FnOnce(&World)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some((store, guard)) = runtime.block_on(test_support::fresh_schema()) else {
        return;
    };
    runtime.block_on(store.close());
    let world = World::with_db(guard.url());
    scenario(&world);
    runtime.block_on(guard.drop_schema());
}

#[test]
fn success_prints_the_output() {
    on_postgres(scenarios::success_prints_the_output);
}

#[test]
fn fails_twice_then_succeeds_with_the_checkpoint() {
    on_postgres(scenarios::fails_twice_then_succeeds_with_the_checkpoint);
}

#[test]
fn output_schema_violation_is_not_retried() {
    on_postgres(scenarios::output_schema_violation_is_not_retried);
}

#[test]
fn timeout_stops_a_long_command() {
    on_postgres(scenarios::timeout_stops_a_long_command);
}

#[test]
fn sigint_cancels_the_process_group() {
    on_postgres(|w| scenarios::signal_cancels_the_process_group(w, Signal::SIGINT));
}

#[test]
fn rerun_of_a_finished_node_runs_nothing() {
    on_postgres(scenarios::rerun_of_a_finished_node_runs_nothing);
}

#[test]
fn racing_runner_gets_a_conflict() {
    on_postgres(scenarios::racing_runner_gets_a_conflict);
}

#[test]
fn json_listings_have_their_fields() {
    on_postgres(scenarios::json_listings_have_their_fields);
}
