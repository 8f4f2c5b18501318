//! What both floors bind: the values of one trivial attempt, prepared once per run so the floor
//! pays only for the SQL.

use serde_json::Value;

/// The values of one lifecycle (begin, one heartbeat, end finished).
#[derive(Debug)]
pub struct Lifecycle<'a> {
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
}

/// An event's JSON body, in the shape the store writes: `{run_id, node_id, iteration, attempt,
/// timestamp_ms, type, ...}` with `extra` (`,"k":v...`) appended.
pub fn event_body(lc: &Lifecycle<'_>, kind: &str, extra: &str) -> String {
    format!(
        r#"{{"run_id":"{}","node_id":"{}","iteration":0,"attempt":1,"timestamp_ms":{},"type":"{kind}"{extra}}}"#,
        lc.run_id, lc.node_id, lc.now_ms
    )
}
