//! Unknown runs and nodes are errors, and `stint nodes` lists a run's nodes.

use super::{seen, world_with_a_run};
use crate::common::World;

#[test]
fn unknown_runs_and_nodes_are_errors() {
    let w = world_with_a_run();
    let unknown_run = "stint: UNKNOWN_RUN: no run 'nosuch' is recorded in this database \
                       (`stint runs` lists the runs)\n";
    for args in [
        &["attempts", "nosuch"][..],
        &["events", "nosuch"],
        &["nodes", "nosuch"],
        &["output", "nosuch", "n"],
    ] {
        let output = w.stint(args);
        assert_eq!(
            seen(&output),
            (Some(1), unknown_run.to_owned(), String::new()),
            "{args:?}"
        );
    }
    let output = w.stint(&["attempts", "r", "--node", "x"]);
    assert_eq!(
        seen(&output),
        (
            Some(1),
            "stint: UNKNOWN_NODE: run 'r' has no node 'x' (`stint nodes r` lists its nodes)\n"
                .to_owned(),
            String::new()
        )
    );
    let output = w.stint(&["attempts", "r", "--iteration", "5"]);
    assert_eq!(
        seen(&output),
        (
            Some(1),
            "stint: UNKNOWN_NODE: run 'r' has no node at iteration 5 (`stint nodes r` lists its \
             nodes)\n"
                .to_owned(),
            String::new()
        )
    );
    let output = w.stint(&["output", "r", "x"]);
    assert_eq!(
        seen(&output),
        (
            Some(1),
            "stint: UNKNOWN_NODE: run 'r' has no node 'x' at iteration 0 (`stint nodes r` lists \
             its nodes)\n"
                .to_owned(),
            String::new()
        )
    );
}

#[test]
fn nodes_lists_the_nodes_of_a_run_in_order() {
    let w = World::sqlite();
    for (node, iteration, script) in [
        ("build", "1", "echo 1"),
        ("build", "0", "echo 0"),
        ("a-test", "0", "exit 3"),
    ] {
        w.run("r", node, &["--iteration", iteration], script);
    }
    let output = w.stint(&["nodes", "r"]);
    let (code, stderr, stdout) = seen(&output);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().take(4).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["NODE", "ITER", "STATE", "ATTEMPT"],
            ["a-test", "0", "failed", "1"],
            ["build", "0", "finished", "1"],
            ["build", "1", "finished", "1"],
        ]
    );
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("UPDATED"))
    );
    let output = w.stint(&["nodes", "r", "--json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(nodes[0]["node_id"], "a-test");
    assert_eq!(nodes[0]["state"], "failed");
    assert_eq!(nodes[2]["iteration"], 1);
    assert_eq!(nodes[2]["last_attempt"], 1);
}
