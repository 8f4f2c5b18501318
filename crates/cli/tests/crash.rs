//! Crash safety of the real `stint` binary on a real SQLite file: SIGKILL at random instants, a
//! stopped (zombie) runner, racing runners and recoverers, SIGTERM, and the command dying with a
//! SIGKILLed stint. The same scenarios run on PostgreSQL in `crash_postgres.rs`.
//!
//! Every test here takes [`TIMING`] first, so they run one at a time: on two cores a storm
//! beside a lease-sensitive test stalls lease renewals and fails it for no fault of stint's.
//! (Test binaries run one after another, so `crash_postgres` never overlaps these.)

mod common;
#[path = "crash/scenarios.rs"]
mod crash_scenarios;
#[path = "crash/orphans.rs"]
mod orphans;
#[path = "crash/storm.rs"]
mod storm;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::World;

/// Held by every test of this binary for its whole run.
static TIMING: Mutex<()> = Mutex::new(());

/// Waits for the other tests of this binary to finish (a failed one does not block the rest).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A SQLite world whose database already exists.
///
/// Several processes opening a *fresh* SQLite file at once race on the first migration ("table
/// attempts already exists", STORE_INCOMPATIBLE): see
/// `first_open_of_a_fresh_sqlite_file_by_racing_processes`. Until the SQLite adapter serialises
/// its migrations, the crash tests create the schema first.
fn sqlite() -> World {
    let w = World::sqlite();
    let output = w.stint(&["migrate"]);
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    w
}

/// Runs `scenario` one at a time, in a SQLite world whose database exists.
fn on_sqlite(scenario: impl FnOnce(&World)) {
    let _one = one_at_a_time();
    scenario(&sqlite());
}

#[test]
fn kill_storm_on_sqlite() {
    on_sqlite(|w| {
        storm::storm(w, "sqlite");
    });
}

#[test]
fn zombie_cannot_finish_an_abandoned_attempt_on_sqlite() {
    on_sqlite(|w| {
        crash_scenarios::zombie_cannot_finish_an_abandoned_attempt(
            w,
            &crash_scenarios::impatient(w),
        );
    });
}

/// One `#[test]` per crash scenario, each through [`on_sqlite`].
macro_rules! on_sqlite {
    ($($test:ident => $scenario:path),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                on_sqlite($scenario);
            }
        )*
    };
}

on_sqlite! {
    racing_runners_never_share_a_node_on_sqlite =>
        crash_scenarios::racing_runners_never_share_a_node,
    racing_recoverers_mark_each_attempt_once_on_sqlite =>
        crash_scenarios::racing_recoverers_mark_each_attempt_once,
    sigterm_records_cancelled_before_exiting_on_sqlite =>
        crash_scenarios::sigterm_records_cancelled_before_exiting,
    // The store plays no part: the kernel kills the command when its stint dies.
    a_sigkilled_stint_takes_its_command_down =>
        crash_scenarios::a_sigkilled_stint_takes_its_command_down,
}

/// The command's own child outlives the SIGKILLed stint; `stint recover` ends it.
#[test]
fn recover_ends_an_orphaned_group_on_sqlite() {
    let _one = one_at_a_time();
    orphans::recovery_ends_the_orphaned_group(&sqlite(), orphans::Recoverer::Recover);
}

/// The same, ended by the recovery a `stint run` of the node does before its begin.
#[test]
fn run_ends_an_orphaned_group_before_running_the_node_on_sqlite() {
    let _one = one_at_a_time();
    orphans::recovery_ends_the_orphaned_group(&sqlite(), orphans::Recoverer::Run);
}

/// A second Ctrl-C while the store's write lock is held by another process exits at once.
#[test]
fn second_ctrl_c_exits_at_once_on_sqlite() {
    let _one = one_at_a_time();
    let w = sqlite();
    let db = w.path("state/stint.db");
    orphans::second_ctrl_c_exits_at_once(&w, Some(&db));
}

/// Four `stint migrate`s opening a fresh SQLite file at once all get a database: the first
/// migrations race, and the loser must retry rather than fail. (`migrate` creates the file, as
/// `run` does; reading commands never create one.)
#[test]
fn first_open_of_a_fresh_sqlite_file_by_racing_processes() {
    let _one = one_at_a_time();
    for _ in 0..5 {
        let w = World::sqlite();
        let openers: Vec<std::process::Child> = (0..4)
            .map(|_| {
                w.std_cmd()
                    .args(["-q", "migrate"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn stint")
            })
            .collect();
        for opener in openers {
            let output = opener.wait_with_output().expect("migrate");
            assert!(output.status.success(), "{}", common::text(&output.stderr));
        }
    }
}
