//! The runs list: newest first, filterable by state and id, one page at a time.

use axum::extract::{Query, State};
use maud::{Markup, html};

use super::{STATES, badge, json_link, layout, run_href};
use crate::UiState;
use crate::api::{RunsParams, next_query, runs_page as read_page};
use crate::error::UiError;
use crate::format::{duration, time};

/// `GET /`: the runs list.
pub(crate) async fn runs_page(
    State(state): State<UiState>,
    Query(params): Query<RunsParams>,
) -> Result<Markup, UiError> {
    let page = read_page(&state, &params).await?;
    let selected = params.state.as_deref().unwrap_or_default();
    let content = html! {
        h1 { "Runs" }
        form.filters method="get" action="/" {
            label { "State "
                select name="state" {
                    option value="" selected[selected.is_empty()] { "any" }
                    @for s in STATES {
                        option value=(s.as_str()) selected[selected == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Run id contains "
                input type="search" name="q" value=[params.q.as_deref()];
            }
            button type="submit" { "Filter" }
        }
        @if page.runs.is_empty() {
            p.empty { "No runs match." }
        } @else {
            table #runs {
                thead { tr {
                    th { "Run" } th { "State" } th { "Started" } th { "Duration" }
                    th.num { "In progress" } th.num { "Finished" } th.num { "Failed" }
                    th.num { "Cancelled" } th.num { "Nodes" }
                } }
                tbody {
                    @for run in &page.runs {
                        tr data-run=(run.run_id()) {
                            td { a href=(run_href(run.run_id())) { (run.run_id()) } }
                            td { (badge(run.state().as_str())) }
                            td { (time(run.started_at_ms())) }
                            td { (duration(run.duration_ms())) }
                            @for count in run.counts() { td.num { (count) } }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &page.next {
            p.pager { a #next href={ "/?" (next_query(&params, next)) } { "Older runs →" } }
        }
        (json_link("/api/runs"))
    };
    Ok(layout("Runs", content, None))
}
