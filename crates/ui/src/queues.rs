//! The queues: each queue's counts, oldest ready age and recent throughput; a queue's tasks,
//! with cancel and retry buttons when actions are on.

use axum::Json;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use stint_domain::{QueueStats, TaskId, TaskRecord, TaskState};
use stint_ports::TaskFilter;

use crate::UiState;
use crate::error::{ApiError, UiError};
use crate::format::{duration, now_ms, segment, state_filter, time};
use crate::pages::{badge, json_link, layout, run_href};

/// Minutes of throughput shown.
const MINUTES: usize = 15;
/// Tasks listed on a queue's page unless `limit` says otherwise.
const TASKS_PER_PAGE: u32 = 200;

/// A queue's counts and its throughput: tasks finished in each of the last minutes, oldest
/// first.
#[derive(Debug, Serialize)]
pub(crate) struct QueueView {
    #[serde(flatten)]
    stats: QueueStats,
    finished_per_minute: Vec<u64>,
}

async fn load_queues(state: &UiState) -> Result<Vec<QueueView>, UiError> {
    let now = now_ms();
    let stats = state.queue.queue_stats(now).await?;
    let filter = TaskFilter {
        queue: None,
        state: Some(TaskState::Finished),
        limit: u32::MAX,
    };
    let finished = state.queue.list_tasks(&filter).await?;
    let since = now.saturating_sub(60_000 * MINUTES as u64);
    Ok(stats
        .into_iter()
        .map(|stats| {
            let mut per_minute = vec![0u64; MINUTES];
            for task in finished.iter().filter(|t| t.queue == stats.queue) {
                let Some(ended) = task.ended_at_ms.filter(|at| *at >= since && *at <= now) else {
                    continue;
                };
                let slot = usize::try_from((ended - since) / 60_000).unwrap_or(MINUTES - 1);
                per_minute[slot.min(MINUTES - 1)] += 1;
            }
            QueueView {
                stats,
                finished_per_minute: per_minute,
            }
        })
        .collect())
}

/// `GET /api/queues`: every queue's counts and throughput.
pub(crate) async fn queues_json(
    State(state): State<UiState>,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    Ok(Json(load_queues(&state).await?))
}

/// A small bar chart of `counts`.
fn sparkline(counts: &[u64]) -> Markup {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    html! {
        svg.spark viewBox="0 0 150 30" role="img" aria-label="finished per minute" {
            @for (i, count) in counts.iter().enumerate() {
                @let h = 28.0 * (*count as f64) / max;
                rect x=(i * 10 + 1) y=(29.0 - h) width="8" height=(h.max(0.5)) {
                    title { (count) " finished" }
                }
            }
        }
    }
}

/// `GET /queues`.
pub(crate) async fn queues_page(State(state): State<UiState>) -> Result<Markup, UiError> {
    let queues = load_queues(&state).await?;
    let content = html! {
        h1 { "Queues" }
        @if queues.is_empty() { p.empty { "No queue holds a task." } } @else {
            table #queues {
                thead { tr {
                    th { "Queue" } th.num { "Ready" } th.num { "Scheduled" } th.num { "Running" }
                    th.num { "Failed" } th.num { "Finished" } th.num { "Cancelled" }
                    th { "Oldest ready" } th.num { "Limit" }
                    th { "Finished per minute (" (MINUTES) " min)" }
                } }
                tbody {
                    @for q in &queues {
                        @let s = &q.stats;
                        tr data-queue=(s.queue) {
                            td { a href={ "/queues/" (segment(&s.queue)) } { (s.queue) } }
                            td.num { (s.ready) } td.num { (s.scheduled) } td.num { (s.running) }
                            td.num { (s.failed) } td.num { (s.finished) } td.num { (s.cancelled) }
                            td { (s.oldest_ready_age_ms.map(duration).unwrap_or_default()) }
                            td.num { (s.max_running.map(|m| m.to_string()).unwrap_or_default()) }
                            td { (sparkline(&q.finished_per_minute)) }
                        }
                    }
                }
            }
        }
        (json_link("/api/queues"))
    };
    Ok(layout("Queues", content, None))
}

/// The query string of a queue's tasks.
#[derive(Debug, Deserialize)]
pub(crate) struct TasksParams {
    state: Option<String>,
    limit: Option<u32>,
}

async fn load_tasks(
    state: &UiState,
    queue: &str,
    params: &TasksParams,
) -> Result<Vec<TaskRecord>, UiError> {
    let wanted = state_filter::<TaskState>(
        params.state.as_deref(),
        "`state` is one of ready, running, finished, failed, cancelled",
    )?;
    let filter = TaskFilter {
        queue: Some(queue.to_owned()),
        state: wanted,
        limit: params.limit.unwrap_or(TASKS_PER_PAGE).clamp(1, 10_000),
    };
    Ok(state.queue.list_tasks(&filter).await?)
}

/// `GET /api/queues/QUEUE/tasks?state=&limit=`: the queue's tasks, oldest first.
pub(crate) async fn tasks_json(
    State(state): State<UiState>,
    Path(queue): Path<String>,
    Query(params): Query<TasksParams>,
) -> Result<Json<Vec<TaskRecord>>, ApiError> {
    Ok(Json(load_tasks(&state, &queue, &params).await?))
}

/// `GET /api/tasks/ID`: one task.
pub(crate) async fn task_json(
    State(state): State<UiState>,
    Path(id): Path<u64>,
) -> Result<Json<TaskRecord>, ApiError> {
    let task = state.queue.get_task(TaskId(id)).await?.ok_or_else(|| {
        UiError::not_found("UNKNOWN_TASK", format!("no task {id} is queued")).json()
    })?;
    Ok(Json(task))
}

/// `GET /queues/QUEUE`.
pub(crate) async fn queue_page(
    State(state): State<UiState>,
    Path(queue): Path<String>,
    Query(params): Query<TasksParams>,
) -> Result<Markup, UiError> {
    let tasks = load_tasks(&state, &queue, &params).await?;
    let now = now_ms();
    let actions = state.actions_enabled();
    let content = html! {
        h1 { "Queue " span.id { (queue) } }
        @if tasks.is_empty() { p.empty { "No tasks." } } @else {
            table #tasks {
                thead { tr {
                    th.num { "Id" } th { "State" } th.num { "Priority" } th { "Run" } th { "Node" }
                    th.num { "Claims" } th { "Due" } th { "Last error" }
                    @if actions { th { "Actions" } }
                } }
                tbody {
                    @for task in &tasks {
                        (task_row(task, now, actions))
                    }
                }
            }
        }
        (json_link(&format!("/api/queues/{}/tasks", segment(&queue))))
    };
    Ok(layout(&queue, content, None))
}

fn task_row(task: &TaskRecord, now: u64, actions: bool) -> Markup {
    let error = task.last_error.as_ref().map(|e| {
        e.get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| e.to_string(), str::to_owned)
    });
    html! {
        tr data-task=(task.id.0) {
            td.num { (task.id.0) }
            td { (badge(task.listed_state(now))) @if task.cancel_requested { " (cancel requested)" } }
            td.num { (task.priority) }
            td { a href=(run_href(&task.run_id)) { (task.run_id) } }
            td.id { (task.node_id) }
            td.num { (task.claims) }
            td { (time(task.run_at_ms)) }
            td { (error.unwrap_or_default()) }
            @if actions {
                td.actions {
                    @if matches!(task.state, TaskState::Ready | TaskState::Running) && !task.cancel_requested {
                        form method="post" action={ "/api/tasks/" (task.id.0) "/cancel" } {
                            button.danger type="submit" { "Cancel" }
                        }
                    }
                    @if matches!(task.state, TaskState::Failed | TaskState::Cancelled) {
                        form method="post" action={ "/api/tasks/" (task.id.0) "/retry" } {
                            button type="submit" { "Retry" }
                        }
                    }
                }
            }
        }
    }
}
