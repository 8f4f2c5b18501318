//! End-to-end tests of the real `stint` binary on a real SQLite file.

mod common;
mod ux;

use common::{World, assert_exit, scenarios, stint_lines, text};

/// One `#[test]` per shared scenario, named as it, each in a fresh SQLite world.
macro_rules! on_sqlite {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                scenarios::$scenario(&World::sqlite());
            }
        )*
    };
}

on_sqlite!(
    success_prints_the_output,
    fails_twice_then_succeeds_with_the_checkpoint,
    output_schema_violation_is_not_retried,
    silent_command_hits_the_heartbeat_timeout,
    timeout_stops_a_long_command,
    sigterm_ignorer_is_killed_after_the_grace,
    rerun_of_a_finished_node_runs_nothing,
    racing_runner_gets_a_conflict,
    directives_and_the_heartbeat_command,
    json_listings_have_their_fields,
);

cancelled_by_signal!(
    sigint_cancels_the_process_group: SIGINT,
    sigterm_cancels_the_process_group: SIGTERM,
);

/// One line on stderr, `stint: CODE: ...`, and `code` as the exit code.
fn assert_one_line(output: &std::process::Output, code: i32, prefix: &str) {
    assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with(prefix), "{stderr}");
    assert_eq!(stint_lines(output).len(), 1);
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    let w = World::sqlite();
    let output = w.stint(&["run", "--retries", "many", "--", "true"]);
    assert_one_line(&output, 2, "stint: USAGE: ");
    let output = w.stint(&["run", "--timeout", "soon", "--", "true"]);
    assert_one_line(&output, 2, "stint: USAGE: ");
    let output = w.stint(&["frobnicate"]);
    assert_one_line(&output, 2, "stint: USAGE: ");
    // The backoff rule is the domain's (`BackoffPolicy::new`); the message is the flag's.
    let output = w.stint(&["run", "--backoff-factor", "0.5", "--", "true"]);
    assert_one_line(
        &output,
        2,
        "stint: INVALID_INPUT: --backoff-factor must be a number of at least 1",
    );
}

#[test]
fn a_missing_schema_file_is_one_line_and_exit_2() {
    let w = World::sqlite();
    let output = w.run("r", "n", &["--output-schema", "nope.json"], "echo 1");
    assert_one_line(&output, 2, "stint: INVALID_INPUT: ");
    assert!(text(&output.stderr).contains("nope.json"));
}

#[test]
fn an_unreadable_db_is_one_line_and_exit_3() {
    let w = World::sqlite();
    std::fs::create_dir(w.path("a-directory")).expect("mkdir");
    let output = w.stint(&["--db", "sqlite://a-directory", "runs"]);
    assert_one_line(&output, 3, "stint: STORE_");
    std::fs::write(w.path("garbage.db"), vec![b'x'; 8192]).expect("write");
    let output = w.stint(&["--db", "sqlite://garbage.db", "runs"]);
    assert_one_line(&output, 3, "stint: STORE_");
    let refused = "postgres://nobody@127.0.0.1:1/none";
    let output = w.stint(&["--db", refused, "runs"]);
    assert_one_line(&output, 3, "stint: STORE_UNAVAILABLE: ");
    let output = w.stint(&["--db", "mysql://h/d", "runs"]);
    assert_one_line(&output, 2, "stint: STORE_INVALID_CONFIG: ");
}

#[test]
fn a_wrong_option_in_the_db_url_is_bad_input_exit_2() {
    let w = World::sqlite();
    for url in [
        "sqlite://x.db?synchronus=normal",
        "postgres://postgres@127.0.0.1:5432/test?max_connections=many",
    ] {
        let output = w.stint(&["--db", url, "runs"]);
        assert_one_line(&output, 2, "stint: STORE_INVALID_CONFIG: ");
    }
    assert!(
        !w.path("x.db").exists(),
        "nothing created for a refused URL"
    );
}

#[test]
fn heartbeat_outside_a_task_is_exit_2() {
    let w = World::sqlite();
    let output = w.stint(&["heartbeat", "{}"]);
    assert_one_line(&output, 2, "stint: USAGE: STINT_HEARTBEAT_FD");
}

#[test]
fn the_default_database_is_created_under_the_working_directory() {
    let w = World::sqlite();
    let mut cmd = w.cmd();
    cmd.env_remove("STINT_DB")
        .args(["run", "--", "sh", "-c", "echo 7"]);
    let output = cmd.output().expect("run");
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout).trim(), "7");
    assert!(w.path(".stint/stint.db").exists());
    assert!(
        text(&output.stderr).contains("stint: run id "),
        "a fresh run id is printed"
    );
}

#[test]
fn the_command_inherits_only_descriptors_0_to_3() {
    let w = World::sqlite();
    let script = r#"ls /proc/self/fd | sort -n | tr '\n' ' ' >&2; echo >&2; echo null"#;
    let output = w.run("r", "n", &[], script);
    assert_eq!(output.status.code(), Some(0));
    // `ls` itself opens one descriptor for the directory it lists.
    let fds: Vec<u32> = text(&output.stderr)
        .lines()
        .find(|l| !l.starts_with("stint: "))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert!(fds.starts_with(&[0, 1, 2, 3]) && fds.len() <= 5, "{fds:?}");
}
