//! A zero timeout, heartbeat timeout or lease is refused as bad input before anything runs.

mod common;

use common::{World, text};

#[test]
fn zero_durations_are_refused_before_the_command_runs() {
    let w = World::sqlite();
    for flag in ["--timeout", "--heartbeat-timeout", "--lease"] {
        let output = w.run("r", "n", &[flag, "0s"], "echo ran > ran; echo '{}'");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        assert!(stderr.contains("must be longer than"), "{flag}: {stderr}");
        assert!(!w.path("ran").exists(), "{flag}: the command never ran");
    }
}
