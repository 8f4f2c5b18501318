//! A limit that ends an attempt says how long it was, in the units the user gave, and which
//! flag set it.

use super::stderr_of_exit;
use crate::common::World;

/// `stint -q run` of a silent `sleep 5` with `flag VALUE`; checks it failed (exit 1) and
/// returns its stderr.
fn limited(flag: &str, value: &str) -> String {
    let w = World::sqlite();
    let output = w
        .cmd()
        .args([
            "-q",
            "run",
            "--run-id",
            "r",
            "--node-id",
            "n",
            "--retries",
            "0",
        ])
        .args([flag, value, "--grace", "100ms", "--", "sleep", "5"])
        .output()
        .expect("stint run");
    stderr_of_exit(&output, 1)
}

#[test]
fn a_timeout_names_its_length_and_its_flag() {
    let stderr = limited("--timeout", "300ms");
    assert_eq!(
        stderr,
        "stint: TASK_TIMEOUT: timed out after 300 ms (--timeout) (r/n#0, attempt 1)\n"
    );
}

#[test]
fn a_heartbeat_timeout_names_its_length_and_its_flag() {
    let stderr = limited("--heartbeat-timeout", "1.5s");
    assert!(
        stderr.starts_with("stint: TASK_HEARTBEAT_TIMEOUT: no heartbeat for 1.5"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(" s (heartbeat timeout 1.5 s) (--heartbeat-timeout) (r/n#0, attempt 1)\n"),
        "{stderr}"
    );
}
