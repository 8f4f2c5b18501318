//! The two actions, on only with `--allow-actions`: cancel a queued task, retry a failed or
//! cancelled one. Each is a POST that must show the token (checked in front of every route) and
//! come from a page of this server (same-origin check), so another site cannot make a browser
//! that holds the token's cookie send it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use stint_domain::{AttemptState, TaskId, TaskRecord, TaskState};
use stint_ports::{AttemptFilter, CancelOutcome, CancelTarget, TaskQueue};

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

/// What an action starts from, once it is permitted: the id of the task the path names, its
/// record, the queue port to write through, and the request's headers (for the answer).
pub(crate) struct Action {
    id: u64,
    record: TaskRecord,
    queue: Arc<dyn TaskQueue>,
    headers: HeaderMap,
}

impl Action {
    /// The answer to the action, which ended in `outcome`: a form goes back to the queue's page;
    /// a script (`Accept: application/json`) gets the task and the outcome as JSON.
    fn answer(&self, outcome: &str) -> Response {
        let wants_json = self
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        if wants_json {
            Json(json!({ "task": self.id, "outcome": outcome })).into_response()
        } else {
            Redirect::to(&format!("/queues/{}", segment(&self.record.queue))).into_response()
        }
    }
}

impl FromRequestParts<UiState> for Action {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        permitted(state, &headers).map_err(IntoResponse::into_response)?;
        let record = state
            .queue
            .get_task(TaskId(id))
            .await
            .map_err(|e| ApiError::from(e).into_response())?
            .ok_or_else(|| {
                ApiError::from(UiError::not_found(
                    "UNKNOWN_TASK",
                    format!("no task {id} is queued"),
                ))
                .into_response()
            })?;
        let queue = state.actions.clone().ok_or_else(|| {
            UiError::refused(StatusCode::FORBIDDEN, "ACTIONS_DISABLED", "read-only")
                .json()
                .into_response()
        })?;
        Ok(Self {
            id,
            record,
            queue,
            headers,
        })
    }
}

/// `POST /api/tasks/ID/cancel`: a ready task is cancelled, a running one asked to stop.
pub(crate) async fn cancel(action: Action) -> Result<Response, ApiError> {
    let outcomes = action
        .queue
        .cancel(CancelTarget::Task(TaskId(action.id)), now_ms())
        .await?;
    let outcome = match outcomes.first() {
        Some(CancelOutcome::Cancelled(_)) => "cancelled",
        Some(CancelOutcome::Requested(_)) => "cancel requested",
        Some(CancelOutcome::AlreadyEnded(..)) | None => "already ended",
    };
    tracing::info!(task = action.id, outcome, "stint ui: cancel");
    Ok(action.answer(outcome))
}

/// `POST /api/tasks/ID/retry`: a failed or cancelled task is ready again, its node's failed
/// attempts so far no longer counted toward its retries (as `stint retry`).
pub(crate) async fn retry(
    State(state): State<UiState>,
    action: Action,
) -> Result<Response, ApiError> {
    if !matches!(
        action.record.state,
        TaskState::Failed | TaskState::Cancelled
    ) {
        return Err(UiError::refused(
            StatusCode::CONFLICT,
            "INVALID_INPUT",
            "only a failed or cancelled task can be retried",
        )
        .json());
    }
    let filter = AttemptFilter {
        run_id: action.record.run_id.clone(),
        node_id: Some(action.record.node_id.clone()),
        iteration: Some(0),
    };
    let failed = state
        .history
        .list_attempts(&filter)
        .await?
        .iter()
        .filter(|a| a.state == AttemptState::Failed)
        .count();
    action
        .queue
        .retry(
            TaskId(action.id),
            u32::try_from(failed).unwrap_or(u32::MAX),
            now_ms(),
        )
        .await?;
    tracing::info!(task = action.id, "stint ui: retry");
    Ok(action.answer("ready"))
}
