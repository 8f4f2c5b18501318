//! How store errors and logs read: each thing said once, the reason given, no colour in a pipe.

use super::{seen, stderr_of_exit};
use crate::common::World;

#[test]
fn a_file_that_is_not_a_database_is_said_once() {
    let w = World::sqlite();
    std::fs::write(w.path("notes.txt"), vec![b'x'; 8192]).expect("write");
    let output = w.stint(&["--db", "notes.txt", "runs"]);
    assert_eq!(
        seen(&output),
        (
            Some(3),
            "stint: STORE_INCOMPATIBLE: notes.txt is not a SQLite database\n".to_owned(),
            String::new()
        )
    );
}

#[test]
fn a_bad_sslmode_says_why() {
    let w = World::sqlite();
    let url = "postgres://postgres:secret@127.0.0.1:5432/test?sslmode=bogus";
    let output = w.stint(&["--db", url, "runs"]);
    assert_eq!(
        seen(&output),
        (
            Some(2),
            "stint: STORE_INVALID_CONFIG: invalid PostgreSQL URL \
             'postgres://postgres:***@127.0.0.1:5432/test': sslmode must be one of disable, \
             allow, prefer, require, verify-ca, verify-full, not 'bogus'\n"
                .to_owned(),
            String::new()
        )
    );
}

#[test]
fn an_unsupported_scheme_and_a_bad_option_are_both_bad_store_configuration() {
    let w = World::sqlite();
    let output = w.stint(&["--db", "mysql://h/d", "runs"]);
    assert_eq!(
        seen(&output),
        (
            Some(2),
            "stint: STORE_INVALID_CONFIG: --db scheme 'mysql' is not supported (use \
             sqlite://PATH or postgres://...)\n"
                .to_owned(),
            String::new()
        )
    );
    let output = w.stint(&["--db", "sqlite://x.db?synchronus=normal", "runs"]);
    let stderr = stderr_of_exit(&output, 2);
    assert!(
        stderr.starts_with("stint: STORE_INVALID_CONFIG: "),
        "{stderr}"
    );
}

#[test]
fn logs_are_not_coloured_when_stderr_is_not_a_terminal() {
    let w = World::sqlite();
    let output = w
        .cmd()
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "debug")
        .args(["run", "--run-id", "r", "--", "sh", "-c", "echo 1"])
        .output()
        .expect("run");
    let (code, stderr, _) = seen(&output);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("DEBUG"), "logs are on: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no escape codes: {stderr:?}");
}
