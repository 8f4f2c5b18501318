//! What both same-SQL floors bind: the values of one trivial attempt, prepared once per run so
//! the floor pays only for the SQL.

use serde_json::Value;

use crate::floor_postgres::Bodies;

/// The floor's lifecycle is always iteration 0 of a fresh node ...
pub(crate) const ITERATION: i64 = 0;
/// ... and its first attempt.
pub(crate) const ATTEMPT: i64 = 1;

/// The values of one lifecycle (begin, one heartbeat, end finished).
#[derive(Debug)]
pub(crate) struct Lifecycle<'a> {
    pub run_id: &'a str,
    pub node_id: &'a str,
    pub owner: &'a str,
    pub now_ms: i64,
    pub lease_ms: i64,
    /// The task metadata, as the engine serialises the default.
    pub metadata: &'a str,
    pub metadata_json: &'a Value,
    pub working_dir: Option<&'a str>,
    /// The heartbeat payload, as text and as JSON.
    pub heartbeat: &'a str,
    pub heartbeat_json: &'a Value,
    /// The output, as text and as JSON.
    pub output: &'a str,
    pub output_json: &'a Value,
    /// The PostgreSQL floor's event bodies, parsed once (the SQLite floor binds text).
    pub pg_bodies: Option<&'a Bodies>,
}

impl Lifecycle<'static> {
    /// Placeholder values, for building templates.
    pub(crate) fn template() -> Self {
        Self {
            run_id: "",
            node_id: "",
            owner: "",
            now_ms: 0,
            lease_ms: 0,
            metadata: "",
            metadata_json: &Value::Null,
            working_dir: None,
            heartbeat: "",
            heartbeat_json: &Value::Null,
            output: "",
            output_json: &Value::Null,
            pg_bodies: None,
        }
    }
}

/// An event's JSON body, in the shape the store writes: `{run_id, node_id, iteration, attempt,
/// timestamp_ms, type, ...}` with `extra` (`,"k":v...`) appended.
pub(crate) fn event_body(lc: &Lifecycle<'_>, kind: &str, extra: &str) -> String {
    format!(
        r#"{{"run_id":"{}","node_id":"{}","iteration":0,"attempt":1,"timestamp_ms":{},"type":"{kind}"{extra}}}"#,
        lc.run_id, lc.node_id, lc.now_ms
    )
}
