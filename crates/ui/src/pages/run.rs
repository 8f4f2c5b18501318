//! A run's page: its timeline, its nodes and its attempts; it follows the run live.

use axum::extract::{Path, State};
use maud::{Markup, html};

use super::{Live, attempt_href, badge, json_link, layout, run_href};
use crate::UiState;
use crate::api::load_run;
use crate::error::UiError;
use crate::format::{duration, now_ms, segment, time};
use crate::timeline::timeline;

/// `GET /runs/RUN`.
pub(crate) async fn run_page(
    State(state): State<UiState>,
    Path(run_id): Path<String>,
) -> Result<Markup, UiError> {
    let run = load_run(&state, &run_id).await?;
    let now = now_ms();
    let content = html! {
        h1 { "Run " span.id { (run.run_id) } " " (badge(run.state.as_str())) }
        h2 { "Timeline" }
        (timeline(&run.attempts, &run.events, now))
        p.legend {
            span.key.s-finished { "finished" } span.key.s-failed { "failed" }
            span.key.s-cancelled { "cancelled" } span.key.s-in-progress { "in progress" }
            span.key.k-tick { "heartbeat" } span.key.k-backoff { "backoff" }
            span.key.k-deadline { "timeout fired" }
        }
        h2 { "Nodes" }
        table #nodes {
            thead { tr {
                th { "Node" } th.num { "Iteration" } th { "State" } th.num { "Attempts" }
                th { "Updated" } th { "Label" }
            } }
            tbody {
                @for node in &run.nodes {
                    tr {
                        td.id { (node.node_id) }
                        td.num { (node.iteration) }
                        td { (badge(node.state.as_str())) }
                        td.num {
                            a href=(attempt_href(&node.run_id, &node.node_id, node.iteration,
                                node.last_attempt)) { (node.last_attempt) }
                        }
                        td { (time(node.updated_at_ms)) }
                        td { (node.label.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Attempts" }
        table #attempts {
            thead { tr {
                th { "Node" } th.num { "Attempt" } th { "State" } th { "Started" }
                th { "Duration" } th { "Error" }
            } }
            tbody {
                @for a in &run.attempts {
                    tr data-state=(a.state.as_str()) {
                        td.id { (a.node_id) @if a.iteration > 0 { "#" (a.iteration) } }
                        td.num {
                            a href=(attempt_href(&a.run_id, &a.node_id, a.iteration, a.attempt)) {
                                (a.attempt)
                            }
                        }
                        td { (badge(a.state.as_str())) }
                        td { (time(a.started_at_ms)) }
                        td { (duration(a.finished_at_ms.unwrap_or(now).saturating_sub(a.started_at_ms))) }
                        td {
                            @if let Some(error) = &a.error {
                                code { (error.code.as_str()) } " " (error.message)
                            }
                        }
                    }
                }
            }
        }
        (json_link(&format!("/api/runs/{}", segment(&run.run_id))))
        p.json { a href={ (run_href(&run.run_id)) } { "permalink" } }
    };
    let live = Live {
        run_id: &run.run_id,
        after_seq: run.last_seq,
    };
    Ok(layout(&run.run_id, content, Some(&live)))
}
