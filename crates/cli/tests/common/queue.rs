//! The queue's commands as a user drives them: submit, list, cancel, retry, limit, prune.

use serde_json::Value;

use super::{World, assert_exit, text};

impl World {
    /// `stint submit ARGS`, which must succeed; its stdout, trimmed.
    pub(crate) fn submit(&self, args: &[&str]) -> String {
        let mut argv = vec!["submit"];
        argv.extend_from_slice(args);
        let output = self.stint(&argv);
        assert_exit(&output, 0);
        text(&output.stdout).trim().to_owned()
    }

    /// `stint tasks --json ARGS`, parsed.
    pub(crate) fn tasks(&self, args: &[&str]) -> Vec<Value> {
        self.json_array("tasks", args)
    }

    /// `stint queues --json`, parsed.
    pub(crate) fn queues(&self) -> Vec<Value> {
        self.json_array("queues", &[])
    }

    fn json_array(&self, command: &str, args: &[&str]) -> Vec<Value> {
        let mut argv = vec![command, "--json"];
        argv.extend_from_slice(args);
        let output = self.stint(&argv);
        assert_exit(&output, 0);
        match serde_json::from_slice(&output.stdout).expect("stdout is JSON") {
            Value::Array(items) => items,
            other => panic!("not an array: {other}"),
        }
    }
}

/// Two submits of one command are two tasks; `tasks` and `queues` list them; a cancelled one
/// comes back ready with `retry`, its retry budget fresh.
pub(crate) fn submit_list_cancel_retry_round_trip(w: &World) {
    let first = w.submit(&[
        "--retries",
        "2",
        "--timeout",
        "30s",
        "--",
        "sh",
        "-c",
        "echo 1",
    ]);
    let second = w.submit(&["--queue", "q2", "--", "sh", "-c", "echo 1"]);
    assert_ne!(first, second, "two submits are two tasks");
    let tasks = w.tasks(&[]);
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["id"].to_string(), first);
    assert_eq!(tasks[0]["queue"], "default");
    assert_eq!(tasks[0]["state"], "ready");
    assert_ne!(tasks[0]["node_id"], tasks[1]["node_id"]);
    assert_eq!(
        tasks[0]["run_id"], tasks[1]["run_id"],
        "one command, one run"
    );
    let spec = &tasks[0]["spec"];
    assert_eq!(spec["kind"], "command");
    assert_eq!(spec["command"], serde_json::json!(["sh", "-c", "echo 1"]));
    assert_eq!(
        (spec["retries"].as_u64(), spec["timeout_ms"].as_u64()),
        (Some(2), Some(30_000))
    );
    assert_eq!(w.tasks(&["--queue", "q2"]).len(), 1);
    let queues = w.queues();
    let names: Vec<&str> = queues.iter().filter_map(|q| q["queue"].as_str()).collect();
    assert_eq!(names, ["default", "q2"]);
    assert_eq!(queues[0]["ready"], 1);
    let table = w.stint(&["tasks"]);
    assert_exit(&table, 0);
    assert!(
        text(&table.stdout).starts_with("ID"),
        "{}",
        text(&table.stdout)
    );

    let cancelled = w.stint(&["cancel", &first]);
    assert_exit(&cancelled, 0);
    assert_eq!(text(&cancelled.stdout), format!("task {first} cancelled\n"));
    assert_eq!(w.tasks(&["--state", "cancelled"]).len(), 1);
    let retried = w.stint(&["retry", &first]);
    assert_exit(&retried, 0);
    assert!(
        text(&retried.stdout).contains("ready again"),
        "{}",
        text(&retried.stdout)
    );
    let task = &w.tasks(&["--state", "ready", "--queue", "default"])[0];
    assert_eq!(
        (task["id"].to_string(), task["retry_base"].as_u64()),
        (first, Some(0))
    );
}
