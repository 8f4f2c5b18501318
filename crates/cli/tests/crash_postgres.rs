//! The crash scenarios of `crash.rs` on PostgreSQL, one fresh schema per test.
//!
//! No libtest harness here (`harness = false`): `main` lists the tests, reported ignored with the
//! reason when nothing listens at the server's address, unless `STINT_REQUIRE_POSTGRES=1` (see
//! `stint_adapters_postgres::test_support`). They run one at a time, as in `crash.rs`: a storm
//! beside a lease-sensitive test stalls its renewals. A `#[test]` function here would never run:
//! add a test to the list in `main`.

mod common;
#[path = "crash/scenarios.rs"]
mod crash_scenarios;
#[path = "crash/orphans.rs"]
mod orphans;
#[path = "crash/storm.rs"]
mod storm;

use common::{on_postgres, scenarios};
use nix::sys::signal::Signal;
use stint_adapters_postgres::test_support;

fn kill_storm_on_postgres() {
    on_postgres(|w| {
        storm::storm(w, "postgres");
    });
}

fn zombie_cannot_finish_an_abandoned_attempt_on_postgres() {
    on_postgres(|w| {
        crash_scenarios::zombie_cannot_finish_an_abandoned_attempt(
            w,
            &crash_scenarios::impatient(w),
        );
    });
}

/// SQLite has this in `e2e_sqlite`; PostgreSQL had SIGINT only.
fn sigterm_cancels_the_process_group_on_postgres() {
    on_postgres(|w| scenarios::signal_cancels_the_process_group(w, Signal::SIGTERM));
}

fn recover_ends_an_orphaned_group_on_postgres() {
    on_postgres(|w| orphans::recovery_ends_the_orphaned_group(w, orphans::Recoverer::Recover));
}

fn run_ends_an_orphaned_group_before_running_the_node_on_postgres() {
    on_postgres(|w| orphans::recovery_ends_the_orphaned_group(w, orphans::Recoverer::Run));
}

fn second_ctrl_c_exits_at_once_on_postgres() {
    on_postgres(|w| orphans::second_ctrl_c_exits_at_once(w, None));
}

fn main() -> std::process::ExitCode {
    let tests: Vec<test_support::Test> = vec![
        named_test!(kill_storm_on_postgres),
        named_test!(zombie_cannot_finish_an_abandoned_attempt_on_postgres),
        postgres_test!(
            crash_scenarios::racing_runners_never_share_a_node,
            "_on_postgres"
        ),
        postgres_test!(
            crash_scenarios::racing_recoverers_mark_each_attempt_once,
            "_on_postgres"
        ),
        named_test!(sigterm_cancels_the_process_group_on_postgres),
        postgres_test!(
            crash_scenarios::sigterm_records_cancelled_before_exiting,
            "_on_postgres"
        ),
        named_test!(recover_ends_an_orphaned_group_on_postgres),
        named_test!(run_ends_an_orphaned_group_before_running_the_node_on_postgres),
        named_test!(second_ctrl_c_exits_at_once_on_postgres),
    ];
    test_support::run_tests_with(tests, Vec::new(), Some(1))
}
