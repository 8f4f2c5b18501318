//! An attempt's page: state, error, checkpoint, last heartbeat, output, revision, metadata and
//! events; it follows its run live.

use axum::extract::State;
use maud::{Markup, html};
use serde_json::Value;

use super::{Live, badge, json_link, layout, run_href};
use crate::UiState;
use crate::api::{AttemptPath, load_attempt};
use crate::error::UiError;
use crate::format::{duration, now_ms, pretty, segment, time};

/// A JSON value, pretty-printed as text (escaped like everything else).
fn json_block(value: Option<&Value>, absent: &str) -> Markup {
    html! {
        @match value {
            Some(value) => pre.json { (pretty(value)) },
            None => p.empty { (absent) },
        }
    }
}

/// `GET /runs/RUN/nodes/NODE/ITERATION/attempts/N`.
pub(crate) async fn attempt_page(
    State(state): State<UiState>,
    axum::extract::Path(path): AttemptPath,
) -> Result<Markup, UiError> {
    let view = load_attempt(&state, path).await?;
    let a = &view.attempt;
    let end = a.finished_at_ms.unwrap_or_else(now_ms);
    let api = format!(
        "/api/runs/{}/nodes/{}/{}/attempts/{}",
        segment(&a.run_id),
        segment(&a.node_id),
        a.iteration,
        a.attempt
    );
    let content = html! {
        p.crumbs { a href=(run_href(&a.run_id)) { "run " (a.run_id) } }
        h1 {
            "Attempt " (a.attempt) " of " span.id { (a.node_id) } @if a.iteration > 0 { "#" (a.iteration) }
            " " (badge(a.state.as_str()))
        }
        dl.facts {
            dt { "Started" } dd { (time(a.started_at_ms)) }
            dt { "Finished" } dd { @if let Some(at) = a.finished_at_ms { (time(at)) } @else { "—" } }
            dt { "Duration" } dd { (duration(end.saturating_sub(a.started_at_ms))) }
            dt { "Last heartbeat" } dd { @if let Some(at) = a.last_heartbeat_at_ms { (time(at)) } @else { "none" } }
            dt { "VCS revision" } dd.id { (a.vcs.as_deref().unwrap_or("—")) }
            dt { "Working directory" } dd.id { (a.working_dir.as_deref().unwrap_or("—")) }
            dt { "Owner" } dd.id { (a.owner) }
            @if let Some(retryable) = a.retryable { dt { "Retryable" } dd { (retryable) } }
        }
        h2 { "Error" }
        @match &a.error {
            Some(error) => {
                p #error.error { code { (error.code.as_str()) } ": " span.message { (error.message) } }
                @if !error.details.is_null() { (json_block(Some(&error.details), "")) }
            },
            None => p.empty { "none" },
        }
        h2 { "Checkpoint received" }
        (json_block(view.checkpoint.as_ref(), "none (no earlier attempt heartbeated a payload)"))
        h2 { "Last heartbeat payload" }
        div #heartbeat { (json_block(a.heartbeat.as_ref(), "none")) }
        h2 { "Output" }
        div #output { (json_block(view.output.as_ref(), "none (this attempt did not finish)")) }
        h2 { "Metadata" }
        (json_block(Some(&a.metadata), "none"))
        h2 { "Events" }
        table #events {
            thead { tr { th.num { "Seq" } th { "Time" } th { "Event" } th { "Details" } } }
            tbody {
                @for record in &view.events {
                    @let body = serde_json::to_value(&record.event.kind).unwrap_or(Value::Null);
                    tr {
                        td.num { (record.seq) }
                        td { (time(record.event.timestamp_ms)) }
                        td { (record.event.kind.type_name()) }
                        td { code { (details(&body)) } }
                    }
                }
            }
        }
        (json_link(&api))
    };
    let live = Live {
        run_id: &a.run_id,
        after_seq: view.last_seq,
    };
    let title = format!("{} attempt {}", a.node_id, a.attempt);
    Ok(layout(&title, content, Some(&live)))
}

/// An event's own fields as compact JSON, without its `type` tag.
fn details(body: &Value) -> String {
    match body {
        Value::Object(fields) => {
            let rest: serde_json::Map<String, Value> = fields
                .iter()
                .filter(|(key, _)| key.as_str() != "type")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            if rest.is_empty() {
                String::new()
            } else {
                Value::Object(rest).to_string()
            }
        }
        other => other.to_string(),
    }
}
