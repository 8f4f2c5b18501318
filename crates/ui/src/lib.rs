//! `stint ui`: the web dashboard of a stint database, served from the binary itself.
//!
//! Pages (server-rendered HTML, every value from the database escaped by the templates) and the
//! JSON endpoints behind them, for either backend:
//! - **runs** (`/`, `/api/runs`): a page of runs, newest first, filterable by state and id;
//! - **a run** (`/runs/RUN`, `/api/runs/RUN`): its nodes, and a timeline of each node's attempts
//!   on a shared time axis (heartbeats as ticks, backoff gaps, the deadline that fired);
//! - **an attempt** (`/runs/RUN/nodes/NODE/ITERATION/attempts/N`): its state, error, checkpoint,
//!   last heartbeat, output, revision, metadata and events;
//! - **live**: run and attempt pages follow `/api/runs/RUN/events/stream` (server-sent events
//!   fed by tailing the event log) and refresh themselves when something happens;
//! - **queues** (`/queues`, `/queues/QUEUE`): counts, oldest ready age, throughput, tasks.
//!
//! Assets are compiled in (`include_str!`); nothing is fetched at run time.
//!
//! Security: [`UiState::with_token`] makes every request show the token (constant-time compared),
//! and [`UiState::with_actions`] adds cancel and retry (POST only, token and same-origin
//! checked). Nothing else writes.
//!
//! Invariants, stated as absences: this crate knows no database and no adapter (it is handed the
//! ports), and no handler writes except the two actions.

mod actions;
mod api;
mod assets;
mod error;
mod format;
mod live;
mod pages;
mod queues;
mod security;
mod state;
mod timeline;

use std::future::Future;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use security::{constant_time_eq, is_loopback};
pub use state::UiState;

/// The dashboard's routes: every page, JSON endpoint and asset, with the token check in front
/// when the state has a token.
pub fn router(state: UiState) -> Router {
    let routes = Router::new()
        .route("/", get(pages::runs_page))
        .route("/runs/{run}", get(pages::run_page))
        .route(
            "/runs/{run}/nodes/{node}/{iteration}/attempts/{attempt}",
            get(pages::attempt_page),
        )
        .route("/queues", get(queues::queues_page))
        .route("/queues/{queue}", get(queues::queue_page))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{run}", get(api::run))
        .route("/api/runs/{run}/events", get(api::events))
        .route("/api/runs/{run}/events/stream", get(live::stream))
        .route(
            "/api/runs/{run}/nodes/{node}/{iteration}/attempts/{attempt}",
            get(api::attempt),
        )
        .route("/api/queues", get(queues::queues_json))
        .route("/api/queues/{queue}/tasks", get(queues::tasks_json))
        .route("/api/tasks/{id}", get(queues::task_json))
        .route("/api/tasks/{id}/cancel", post(actions::cancel))
        .route("/api/tasks/{id}/retry", post(actions::retry))
        .route("/assets/{name}", get(assets::asset));
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_token,
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes; live streams end then too, so
/// the server stops without waiting for browsers to go away.
pub async fn serve(
    listener: TcpListener,
    state: UiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = state.stopping();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.cancel();
        })
        .await
}
