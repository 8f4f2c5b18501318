//! Reading commands never create a database: a missing SQLite file is an error naming it.

use super::{seen, stderr_of_exit};
use crate::common::World;

#[test]
fn reading_commands_never_create_a_database() {
    let w = World::sqlite();
    let missing = w.path("nope/x.db");
    let url = format!("sqlite://{}", missing.display());
    let expected = format!(
        "stint: NO_DATABASE: no database at {}: no runs were recorded there (the first `stint \
         run` creates it; --db or STINT_DB names another)\n",
        missing.display()
    );
    for args in [
        &["runs"][..],
        &["attempts", "r"],
        &["events", "r"],
        &["events", "r", "--follow"],
        &["output", "r", "n"],
        &["nodes", "r"],
        &["recover"],
    ] {
        let output = w
            .cmd()
            .args(["--db", &url])
            .args(args)
            .output()
            .expect("run");
        assert_eq!(
            seen(&output),
            (Some(1), expected.clone(), String::new()),
            "{args:?}"
        );
    }
    assert!(!w.path("nope").exists(), "the folder is not created");
}

#[test]
fn the_default_database_is_not_created_by_a_read() {
    let w = World::sqlite();
    let output = w.cmd().env_remove("STINT_DB").arg("runs").output();
    let stderr = stderr_of_exit(&output.expect("run"), 1);
    assert!(
        stderr.starts_with("stint: NO_DATABASE: no database at ")
            && stderr.contains("/.stint/stint.db: no runs were recorded there"),
        "{stderr}"
    );
    assert!(!w.path(".stint").exists());
}
