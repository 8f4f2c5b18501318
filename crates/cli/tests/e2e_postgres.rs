//! The end-to-end scenarios against PostgreSQL, one fresh schema per test.
//!
//! No libtest harness here (`harness = false`): `main` lists the tests, reported ignored with the
//! reason when nothing listens at the server's address, unless `STINT_REQUIRE_POSTGRES=1` (see
//! `stint_adapters_postgres::test_support`). A `#[test]` function here would never run: add a
//! test to the list in `main`.

mod common;

use common::{assert_exit, on_postgres, queue, scenarios, text, wakeups, workers};
use nix::sys::signal::Signal;
use stint_adapters_postgres::test_support;

fn sigint_cancels_the_process_group() {
    on_postgres(|w| scenarios::signal_cancels_the_process_group(w, Signal::SIGINT));
}

/// `url` without its user name, and that user name.
fn without_user(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("the test URL names a user");
    let user = userinfo.split(':').next().unwrap_or("").to_owned();
    (user, format!("{scheme}://{host}"))
}

fn a_url_without_a_user_connects_as_pguser_else_as_the_os_user() {
    on_postgres(|w| {
        let (user, url) = without_user(&w.db);
        let output = w
            .cmd()
            .env("PGUSER", &user)
            .args(["--db", &url, "runs"])
            .output()
            .expect("run");
        assert_exit(&output, 0);
        let os_user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .expect("id -un");
        let os_user = text(&os_user.stdout).trim().to_owned();
        let output = w
            .cmd()
            .env_remove("PGUSER")
            .args(["--db", &url, "runs"])
            .output()
            .expect("run");
        let stderr = text(&output.stderr);
        // Not sqlx's stand-in "anonymous": the OS user, as libpq connects.
        assert!(!stderr.contains("anonymous"), "{stderr}");
        // Either the OS user has a role on the server, or the refusal names it.
        let refused_as_os_user = stderr.starts_with("stint: STORE_UNAVAILABLE: PostgreSQL at ")
            && stderr.ends_with(&format!(
                " refused the login: role \"{os_user}\" does not exist\n"
            ));
        assert!(
            output.status.code() == Some(0) || refused_as_os_user,
            "{:?} {stderr}",
            output.status.code()
        );
    });
}

fn two_workers_one_killed_run_every_task_once() {
    on_postgres(|w| workers::two_workers_one_killed_run_every_task_once(w, 300));
}

fn main() -> std::process::ExitCode {
    test_support::run_tests(vec![
        postgres_test!(scenarios::success_prints_the_output),
        postgres_test!(scenarios::fails_twice_then_succeeds_with_the_checkpoint),
        postgres_test!(scenarios::output_schema_violation_is_not_retried),
        postgres_test!(scenarios::timeout_stops_a_long_command),
        named_test!(sigint_cancels_the_process_group),
        postgres_test!(scenarios::rerun_of_a_finished_node_runs_nothing),
        postgres_test!(scenarios::racing_runner_gets_a_conflict),
        postgres_test!(scenarios::json_listings_have_their_fields),
        postgres_test!(queue::submit_list_cancel_retry_round_trip),
        postgres_test!(wakeups::an_idle_worker_runs_a_task_submitted_by_another_process),
        named_test!(two_workers_one_killed_run_every_task_once),
        named_test!(a_url_without_a_user_connects_as_pguser_else_as_the_os_user),
    ])
}
