//! The two actions, on only with `--allow-actions`: cancel a queued task, retry a failed or
//! cancelled one. Each is a POST that must show the token (checked in front of every route) and
//! come from a page of this server (same-origin check), so another site cannot make a browser
//! that holds the token's cookie send it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use stint_domain::{AttemptState, TaskId, TaskState};
use stint_ports::{AttemptFilter, CancelOutcome, CancelTarget};

use crate::UiState;
use crate::error::{ApiError, UiError};
use crate::format::{now_ms, segment};

/// Refuses an action when actions are off or the request is not from this server's pages.
fn permitted(state: &UiState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.actions_enabled() {
        return Err(UiError::refused(
            StatusCode::FORBIDDEN,
            "ACTIONS_DISABLED",
            "this dashboard is read-only (start it with --allow-actions and a token)",
        )
        .json());
    }
    if !crate::security::same_origin(headers) {
        return Err(UiError::refused(
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
            "an action must come from this dashboard's own pages",
        )
        .json());
    }
    Ok(())
}

/// A form goes back to the queue's page; a script (`Accept: application/json`) gets JSON.
fn answer(headers: &HeaderMap, queue: &str, body: serde_json::Value) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Json(body).into_response()
    } else {
        Redirect::to(&format!("/queues/{}", segment(queue))).into_response()
    }
}

async fn task(state: &UiState, id: u64) -> Result<stint_domain::TaskRecord, ApiError> {
    Ok(state
        .queue
        .get_task(TaskId(id))
        .await?
        .ok_or_else(|| UiError::not_found("UNKNOWN_TASK", format!("no task {id} is queued")))?)
}

/// `POST /api/tasks/ID/cancel`: a ready task is cancelled, a running one asked to stop.
pub(crate) async fn cancel(
    State(state): State<UiState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    permitted(&state, &headers)?;
    let record = task(&state, id).await?;
    let queue = state
        .actions
        .as_ref()
        .ok_or_else(|| UiError::refused(StatusCode::FORBIDDEN, "ACTIONS_DISABLED", "read-only"))?;
    let outcomes = queue
        .cancel(CancelTarget::Task(TaskId(id)), now_ms())
        .await?;
    let outcome = match outcomes.first() {
        Some(CancelOutcome::Cancelled(_)) => "cancelled",
        Some(CancelOutcome::Requested(_)) => "cancel requested",
        Some(CancelOutcome::AlreadyEnded(..)) | None => "already ended",
    };
    tracing::info!(task = id, outcome, "stint ui: cancel");
    Ok(answer(
        &headers,
        &record.queue,
        json!({ "task": id, "outcome": outcome }),
    ))
}

/// `POST /api/tasks/ID/retry`: a failed or cancelled task is ready again, its node's failed
/// attempts so far no longer counted toward its retries (as `stint retry`).
pub(crate) async fn retry(
    State(state): State<UiState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    permitted(&state, &headers)?;
    let record = task(&state, id).await?;
    if !matches!(record.state, TaskState::Failed | TaskState::Cancelled) {
        return Err(UiError::refused(
            StatusCode::CONFLICT,
            "INVALID_INPUT",
            "only a failed or cancelled task can be retried",
        )
        .json());
    }
    let filter = AttemptFilter {
        run_id: record.run_id.clone(),
        node_id: Some(record.node_id.clone()),
        iteration: Some(0),
    };
    let failed = state
        .history
        .list_attempts(&filter)
        .await?
        .iter()
        .filter(|a| a.state == AttemptState::Failed)
        .count();
    let queue = state
        .actions
        .as_ref()
        .ok_or_else(|| UiError::refused(StatusCode::FORBIDDEN, "ACTIONS_DISABLED", "read-only"))?;
    queue
        .retry(
            TaskId(id),
            u32::try_from(failed).unwrap_or(u32::MAX),
            now_ms(),
        )
        .await?;
    tracing::info!(task = id, "stint ui: retry");
    Ok(answer(
        &headers,
        &record.queue,
        json!({ "task": id, "outcome": "ready" }),
    ))
}
