//! How a command's output is taken: `$STINT_OUTPUT`, else stdout when it is one JSON value,
//! else `null` with stdout shown live; `--output`, `--output-schema`, and invalid outputs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{World, stint_lines, text, wait_for_file};
use crate::{finish, spawn_run};

/// Runs `script`; returns the exit code, what stint printed on stdout, and its stderr.
fn run(w: &World, run: &str, flags: &[&str], script: &str) -> (Option<i32>, String, String) {
    let output = w.run(run, "n", flags, script);
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// The state, error code and output of the node's only attempt.
fn recorded(w: &World, run: &str) -> (String, Value, Value) {
    let attempts = w.attempts(run);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let stored = w.stint(&["output", run, "n"]);
    let output = serde_json::from_slice(&stored.stdout).unwrap_or(Value::Null);
    (
        attempts[0]["state"].as_str().unwrap_or("").to_owned(),
        attempts[0]["error"]["code"].clone(),
        output,
    )
}

#[test]
fn a_command_that_prints_nothing_finishes_with_null() {
    let w = World::sqlite();
    let (code, stdout, stderr) = run(&w, "r", &[], "true");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "null");
    assert_eq!(
        recorded(&w, "r"),
        ("finished".to_owned(), Value::Null, Value::Null)
    );
}

#[test]
fn logs_on_stdout_are_shown_and_the_output_is_null() {
    let w = World::sqlite();
    let script = "echo 'building x'; echo '[2/2] linking'; echo '{\"not\":\"alone\"}'";
    let (code, stdout, stderr) = run(&w, "r", &[], script);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "null", "stint's stdout is the output only");
    assert!(
        stderr.contains("building x\n[2/2] linking\n{\"not\":\"alone\"}\n"),
        "{stderr}"
    );
    assert_eq!(recorded(&w, "r").2, Value::Null);
}

/// The command's stdout logs reach stderr while it runs, not at its end.
#[test]
fn stdout_logs_are_shown_live() {
    let w = World::sqlite();
    let script = "echo 'compiling step 1'; while [ ! -e go ]; do sleep 0.02; done";
    let (child, stderr) = spawn_run(&w, "r", &[], script);
    let seen = stderr.wait_for("compiling step 1", Duration::from_secs(10));
    std::fs::write(w.path("go"), "").expect("go");
    let (code, all) = finish(child, &stderr, Duration::from_secs(20));
    assert!(seen, "stdout was not shown while the command ran: {all}");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn one_json_value_on_stdout_is_the_output() {
    let w = World::sqlite();
    let (code, stdout, stderr) = run(&w, "r", &[], "echo ' {\"a\": [1, 2]}'; echo >&2 noise");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).ok(),
        Some(json!({"a": [1, 2]}))
    );
    assert!(!stderr.contains("\"a\""), "the output is not shown as logs");
}

#[test]
fn the_output_file_wins_over_stdout_and_is_removed() {
    let w = World::sqlite();
    let script =
        r#"echo "$STINT_OUTPUT" > where; echo '{"from":"file"}' > "$STINT_OUTPUT"; echo 42"#;
    let (code, stdout, stderr) = run(&w, "r", &[], script);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).ok(),
        Some(json!({"from": "file"}))
    );
    assert!(stderr.contains("42\n"), "stdout is shown: {stderr}");
    let file = wait_for_file(&w.path("where"));
    assert!(!file.is_empty(), "STINT_OUTPUT is set");
    assert!(
        !std::path::Path::new(&file).exists(),
        "{file} was left behind"
    );
    assert_eq!(recorded(&w, "r").2, json!({"from": "file"}));
}

/// Never stored with U+FFFD, never retried: the same command would print the same bytes.
#[test]
fn invalid_utf8_or_json_is_invalid_output() {
    let w = World::sqlite();
    let cases = [
        (
            "file-utf8",
            r#"printf '{"a":"\377"}' > "$STINT_OUTPUT""#,
            "not UTF-8",
        ),
        ("stdout-utf8", r#"printf '{"a":"\377"}'"#, "not UTF-8"),
        (
            "file-json",
            r#"echo 'done: 3' > "$STINT_OUTPUT""#,
            "not one JSON value",
        ),
    ];
    for (run_id, script, reason) in cases {
        let flags = ["--retries", "2", "--backoff-initial", "10ms"];
        let (code, _, stderr) = run(&w, run_id, &flags, script);
        assert_eq!(code, Some(1), "{run_id}: {stderr}");
        let last = stint_lines_of(&stderr).pop().unwrap_or_default();
        assert!(
            last.starts_with("stint: INVALID_OUTPUT: ") && last.contains(reason),
            "{run_id}: {last}"
        );
        let (state, code, output) = recorded(&w, run_id);
        assert_eq!((state.as_str(), code), ("failed", json!("INVALID_OUTPUT")));
        assert_eq!(output, Value::Null, "{run_id}: nothing stored");
    }
}

#[test]
fn output_flag_picks_the_source() {
    let w = World::sqlite();
    let (code, stdout, stderr) = run(&w, "s", &["--output", "stdout"], "echo step one");
    assert_eq!(
        code,
        Some(1),
        "--output stdout takes stdout as it is: {stderr}"
    );
    assert!(stderr.contains("INVALID_OUTPUT"), "{stderr}");
    assert_eq!(stdout, "");
    let (code, stdout, _) = run(&w, "e", &["--output", "stdout"], "true");
    assert_eq!((code, stdout.trim()), (Some(0), "null"));
    let script = r#"echo 42; test -z "$STINT_OUTPUT" || echo '{"f":1}' > "$STINT_OUTPUT""#;
    let (code, stdout, stderr) = run(&w, "f", &["--output", "file"], script);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "{\"f\":1}");
    assert!(
        stderr.contains("42\n"),
        "--output file shows stdout: {stderr}"
    );
}

#[test]
fn a_schema_requires_an_output() {
    let w = World::sqlite();
    std::fs::write(w.path("schema.json"), r#"{"type":"object"}"#).expect("schema");
    let flags = ["--output-schema", "schema.json"];
    for (run_id, script) in [("none", "true"), ("logs", "echo hello")] {
        let (code, _, stderr) = run(&w, run_id, &flags, script);
        assert_eq!(code, Some(1), "{run_id}: {stderr}");
        assert!(
            stderr.contains("INVALID_OUTPUT: the command wrote no output"),
            "{run_id}: {stderr}"
        );
    }
    let script = r#"echo hello; echo '{"ok":true}' > "$STINT_OUTPUT""#;
    let (code, stdout, stderr) = run(&w, "file", &flags, script);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "{\"ok\":true}");
}

fn stint_lines_of(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("stint: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failure_shows_what_stdout_held_back() {
    let w = World::sqlite();
    let output = w.run("r", "n", &[], "echo '{\"partial\":'; exit 3");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("{\"partial\":"));
    assert!(
        stint_lines(&output)
            .last()
            .is_some_and(|l| l.contains("TASK_FAILED")),
        "{}",
        text(&output.stderr)
    );
}
