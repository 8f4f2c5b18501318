//! End-to-end tests of what a user meets first: usage errors, reading commands, resuming a run,
//! and the wording of store errors. Each asserts what the user sees: stdout, stderr and the exit
//! code of the real `stint` binary, on a real SQLite file.

mod follow;
mod limits;
mod missing_database;
mod resume;
mod stale_output;
mod unknown_ids;
mod usage;
mod words;

use std::process::Output;

use crate::common::{World, assert_exit, text};

/// The exit code, the whole stderr and the whole stdout of `output`.
pub(crate) fn seen(output: &Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        text(&output.stderr),
        text(&output.stdout),
    )
}

/// Asserts that `output` exited with `code`; returns its stderr.
pub(crate) fn stderr_of_exit(output: &Output, code: i32) -> String {
    let (exit, stderr, _) = seen(output);
    assert_eq!(exit, Some(code));
    stderr
}

/// Records run `r`, node `n`, finished with output `1`.
pub(crate) fn world_with_a_run() -> World {
    let w = World::sqlite();
    let output = w.run("r", "n", &[], "echo 1");
    assert_exit(&output, 0);
    w
}
