//! The published JSON Schemas (`schemas/*.json`) describe what the real `stint` prints: every
//! object of `stint attempts --json`, `runs --json` and `events --json` must validate, with no
//! field the schema does not declare. A field renamed in the output and not in the schema (or
//! the reverse) fails here.

mod common;

use common::{World, assert_exit, text};
use serde_json::Value;

/// `schemas/NAME.json`, closed: a printed field the schema does not declare is an error
/// (`unevaluatedProperties`, so the fields of each event kind's subschema still count).
fn closed_schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/../../schemas/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
    schema["unevaluatedProperties"] = Value::Bool(false);
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{path} is not a schema: {e}"))
}

#[track_caller]
fn assert_valid(validator: &jsonschema::Validator, what: &str, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{instance}"
    );
}

/// A run with a finished attempt (heartbeat and output), a failed one (error, retryable), and
/// a second node cancelled by its timeout: the optional fields are all printed somewhere.
fn world_with_history() -> World {
    let w = World::sqlite();
    let script = r#"echo '{"done":1}' >&3
        if [ "$STINT_ATTEMPT" -lt 2 ]; then echo "first fails" >&2; exit 1; fi
        echo '{"ok":true}'"#;
    let flags = ["--retries", "1", "--backoff-initial", "10ms"];
    let output = w.run("r", "n", &flags, script);
    assert_exit(&output, 0);
    let output = w.run(
        "r",
        "slow",
        &["--timeout", "200ms", "--grace", "1s"],
        "sleep 5",
    );
    assert_exit(&output, 1);
    w
}

#[test]
fn attempts_runs_and_events_json_match_the_published_schemas() {
    let w = world_with_history();

    let attempt = closed_schema("attempt");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for record in &attempts {
        assert_valid(&attempt, "an `attempts --json` item", record);
    }

    let run = closed_schema("run");
    let output = w.stint(&["runs", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let runs: Value = serde_json::from_slice(&output.stdout).expect("runs --json is JSON");
    let runs = runs.as_array().expect("runs --json is an array");
    assert_eq!(runs.len(), 1, "{runs:?}");
    for summary in runs {
        assert_valid(&run, "a `runs --json` item", summary);
    }

    let event = closed_schema("event");
    let events = w.events("r");
    assert!(events.len() >= 7, "{events:?}");
    for record in &events {
        assert_valid(&event, "an `events --json` line", record);
    }
}

/// The check itself can fail: a renamed field is refused by each closed schema.
#[test]
fn a_renamed_field_does_not_match() {
    let w = world_with_history();
    let rename = |mut value: Value, from: &str, to: &str| {
        let object = value.as_object_mut().expect("an object");
        let moved = object.remove(from).unwrap_or_else(|| panic!("no {from}"));
        object.insert(to.to_owned(), moved);
        value
    };
    let attempt = closed_schema("attempt");
    let record = w.attempts("r").remove(0);
    assert!(!attempt.is_valid(&rename(record.clone(), "state", "status")));
    assert!(!attempt.is_valid(&rename(record, "heartbeat", "checkpoint")));
    let event = closed_schema("event");
    let record = w.events("r").remove(0);
    assert!(!event.is_valid(&rename(record, "timestamp_ms", "at_ms")));
}
