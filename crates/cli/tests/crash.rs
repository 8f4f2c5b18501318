//! Crash safety of the real `stint` binary, on a real SQLite file and on PostgreSQL: SIGKILL at
//! random instants, a stopped (zombie) runner, racing runners and recoverers, SIGTERM, and the
//! command dying with a SIGKILLed stint. PostgreSQL cases skip loudly without a server unless
//! `STINT_REQUIRE_POSTGRES=1`.

mod common;
#[path = "crash/scenarios.rs"]
mod crash_scenarios;
#[path = "crash/storm.rs"]
mod storm;

use std::sync::Mutex;

use common::{World, scenarios};
use nix::sys::signal::Signal;
use stint_adapters_postgres::test_support;

/// One storm at a time: two at once on two cores would stall leases, not test recovery.
static STORM: Mutex<()> = Mutex::new(());

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

/// A SQLite world whose database already exists.
///
/// Several processes opening a *fresh* SQLite file at once race on the first migration ("table
/// attempts already exists", STORE_INCOMPATIBLE): see
/// `first_open_of_a_fresh_sqlite_file_by_racing_processes`. Until the SQLite adapter serialises
/// its migrations, the crash tests create the schema first.
fn sqlite() -> World {
    let w = World::sqlite();
    let output = w.cmd().args(["migrate"]).output().expect("migrate");
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    w
}

/// The SQLite URL with a short busy timeout, for a recoverer that must not wait 5 s on a
/// stopped process's write lock.
fn impatient(w: &World) -> String {
    if w.db.starts_with("sqlite:") {
        format!("{}?busy_timeout_ms=300", w.db)
    } else {
        w.db.clone()
    }
}

#[test]
fn kill_storm_on_sqlite() {
    let _one = STORM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    storm::storm(&sqlite(), "sqlite");
}

#[test]
fn kill_storm_on_postgres() {
    let _one = STORM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    on_postgres(|w| {
        storm::storm(w, "postgres");
    });
}

#[test]
fn zombie_cannot_finish_an_abandoned_attempt_on_sqlite() {
    let w = sqlite();
    crash_scenarios::zombie_cannot_finish_an_abandoned_attempt(&w, &impatient(&w));
}

#[test]
fn zombie_cannot_finish_an_abandoned_attempt_on_postgres() {
    on_postgres(|w| crash_scenarios::zombie_cannot_finish_an_abandoned_attempt(w, &impatient(w)));
}

#[test]
fn racing_runners_never_share_a_node_on_sqlite() {
    crash_scenarios::racing_runners_never_share_a_node(&sqlite());
}

#[test]
fn racing_runners_never_share_a_node_on_postgres() {
    on_postgres(crash_scenarios::racing_runners_never_share_a_node);
}

#[test]
fn racing_recoverers_mark_each_attempt_once_on_sqlite() {
    crash_scenarios::racing_recoverers_mark_each_attempt_once(&sqlite());
}

#[test]
fn racing_recoverers_mark_each_attempt_once_on_postgres() {
    on_postgres(crash_scenarios::racing_recoverers_mark_each_attempt_once);
}

/// SQLite has this in `e2e_sqlite`; PostgreSQL had SIGINT only.
#[test]
fn sigterm_cancels_the_process_group_on_postgres() {
    on_postgres(|w| scenarios::signal_cancels_the_process_group(w, Signal::SIGTERM));
}

#[test]
fn sigterm_records_cancelled_before_exiting_on_sqlite() {
    crash_scenarios::sigterm_records_cancelled_before_exiting(&sqlite());
}

#[test]
fn sigterm_records_cancelled_before_exiting_on_postgres() {
    on_postgres(crash_scenarios::sigterm_records_cancelled_before_exiting);
}

/// The store plays no part: the kernel kills the command when its stint dies.
#[test]
fn a_sigkilled_stint_takes_its_command_down() {
    crash_scenarios::a_sigkilled_stint_takes_its_command_down(&sqlite());
}

/// Four `stint run`s opening a fresh SQLite file at once all get a database: the first
/// migrations race, and the loser must retry rather than fail.
#[test]
fn first_open_of_a_fresh_sqlite_file_by_racing_processes() {
    for _ in 0..5 {
        let w = World::sqlite();
        let openers: Vec<std::process::Child> = (0..4)
            .map(|_| {
                w.std_cmd()
                    .args(["-q", "runs"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn stint")
            })
            .collect();
        for opener in openers {
            let output = opener.wait_with_output().expect("runs");
            assert!(output.status.success(), "{}", common::text(&output.stderr));
        }
    }
}
