//! The revision recorded with a finished attempt.

use std::process::Command;

use crate::common::{World, assert_exit};
use crate::skip;

/// `git status` failing (a corrupt index) is not a clean tree: `+unknown`.
#[test]
fn an_unknown_tree_state_is_recorded_as_unknown() {
    let w = World::sqlite();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(w.dir.path())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !git(&["init", "-q"]) {
        skip("an_unknown_tree_state_is_recorded_as_unknown", "no git");
        return;
    }
    std::fs::write(w.path("a"), "1").expect("write");
    assert!(git(&["add", "a"]) && git(&["commit", "-qm", "x"]));
    std::fs::write(w.path(".git/index"), "garbage").expect("corrupt the index");
    assert!(!git(&["status", "--porcelain"]), "git status should fail");
    let output = w.run("r", "n", &[], "echo null");
    assert_exit(&output, 0);
    let vcs = w.attempts("r")[0]["vcs"].clone();
    let vcs = vcs.as_str().unwrap_or_default();
    assert!(vcs.ends_with("+unknown") && vcs.len() == 48, "{vcs}");
}
