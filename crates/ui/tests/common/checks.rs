//! The endpoint checks, one async function each, run on every backend: each seeds a fresh
//! store and asserts what a user (or a script) of the dashboard would see.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use stint_ports::TaskQueue;
use stint_ui::UiState;
use tower::ServiceExt;

use super::{AnyStore, HTML_ERROR, SCRIPT_PAYLOAD, get, seed, send, state_of};

/// A time far enough in the past that nothing is "in the future", fixed so runs order alike.
pub const BASE: u64 = 1_700_000_000_000;

/// Asserts that `GET path` answers `status`.
async fn assert_get_status(state: &UiState, path: &str, status: StatusCode) {
    assert_eq!(get(state, path).await.status, status, "GET {path}");
}

/// The runs list and its JSON: newest first, filtered by state and id, paged with a cursor.
pub async fn runs_are_listed_filtered_and_paged(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let state = state_of(store);
    let page = get(&state, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let positions: Vec<usize> = [
        "data-run=\"nightly\"",
        "data-run=\"broken\"",
        "data-run=\"older\"",
    ]
    .iter()
    .map(|row| {
        page.body
            .find(row)
            .unwrap_or_else(|| panic!("{row} listed"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "newest first: {positions:?}"
    );

    let failed = get(&state, "/?state=failed").await;
    assert!(failed.body.contains("data-run=\"broken\""));
    assert!(
        !failed.body.contains("data-run=\"nightly\""),
        "nightly is in progress, not failed"
    );
    let searched = get(&state, "/api/runs?q=ight").await.json();
    assert_eq!(searched["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(searched["runs"][0]["run_id"], "nightly");
    assert_eq!(searched["runs"][0]["state"], "in-progress");
    assert_eq!(searched["runs"][0]["started_at_ms"], BASE + 1_000);

    let first = get(&state, "/api/runs?limit=2").await.json();
    let ids: Vec<&str> = first["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert_eq!(ids, ["nightly", "broken"]);
    let cursor = first["next"].as_str().expect("a next page");
    let second = get(&state, &format!("/api/runs?limit=2&after={cursor}"))
        .await
        .json();
    assert_eq!(second["runs"][0]["run_id"], "older");
    assert_eq!(
        second["next"],
        serde_json::Value::Null,
        "the last page has no next"
    );
    assert_get_status(&state, "/api/runs?state=bogus", StatusCode::BAD_REQUEST).await;
}

/// A run's page draws one bar per attempt, in order and coloured by state, the heartbeats, the
/// backoff and the heartbeat timeout; its JSON lists nodes and attempts.
pub async fn run_page_draws_the_timeline(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let state = state_of(store);
    let page = get(&state, "/runs/nightly").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    let failed = body
        .find("data-attempt=\"1\" data-state=\"failed\"")
        .expect("attempt 1 failed");
    let finished = body
        .find("data-attempt=\"2\" data-state=\"finished\"")
        .expect("attempt 2 finished");
    assert!(failed < finished, "the failed attempt's bar comes first");
    assert!(
        body.contains("data-attempt=\"1\" data-state=\"in-progress\""),
        "report runs"
    );
    assert_eq!(
        body.matches("class=\"tick\"").count(),
        3,
        "three heartbeats drawn"
    );
    assert!(body.contains("backoff 2.0s before attempt 2"));
    assert!(
        body.contains(">heartbeat timeout fired<"),
        "the deadline that fired is marked"
    );
    assert!(
        body.contains("data-live-run=\"nightly\""),
        "the page follows the run"
    );

    let json = get(&state, "/api/runs/nightly").await.json();
    assert_eq!(json["state"], "in-progress");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["attempts"].as_array().map(Vec::len), Some(3));

    let events = get(&state, "/api/runs/nightly/events?after=0&limit=3")
        .await
        .json();
    let seqs: Vec<u64> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(events[0]["type"], "NodeStarted");

    let unknown = get(&state, "/runs/nobody").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("UNKNOWN_RUN"));
    let unknown = get(&state, "/api/runs/nobody").await;
    assert_eq!(unknown.json()["error"]["code"], "UNKNOWN_RUN");
}

/// An attempt's page shows its error, checkpoint, heartbeat, output and events, with every
/// value from the database as text.
pub async fn attempt_page_shows_everything_escaped(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let state = state_of(store);
    let failed = get(&state, "/runs/nightly/nodes/fetch/0/attempts/1").await;
    assert_eq!(failed.status, StatusCode::OK);
    assert!(failed.body.contains("TASK_HEARTBEAT_TIMEOUT"));
    assert!(
        failed.body.contains("&lt;script&gt;document.title="),
        "payload shown as text"
    );
    assert!(!failed.body.contains(SCRIPT_PAYLOAD), "never as markup");
    assert!(failed.body.contains("TaskHeartbeatTimeout") && failed.body.contains("NodeRetrying"));

    let json = get(&state, "/api/runs/nightly/nodes/fetch/0/attempts/2")
        .await
        .json();
    assert_eq!(json["attempt"]["state"], "finished");
    assert_eq!(json["attempt"]["vcs"], "abc123+dirty");
    assert_eq!(
        json["checkpoint"]["done"], 2,
        "the first attempt's last payload"
    );
    assert_eq!(json["output"]["rows"], 42);
    assert_eq!(
        json["output"]["html"], SCRIPT_PAYLOAD,
        "JSON keeps the value as it is"
    );

    let broken = get(&state, "/runs/broken/nodes/load/0/attempts/1").await;
    assert!(broken.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!broken.body.contains(HTML_ERROR));
    let missing = get(&state, "/api/runs/nightly/nodes/fetch/0/attempts/9").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The queues page and its JSON count each state; a queue's tasks are listed.
pub async fn queues_are_counted_and_listed(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let state = state_of(store);
    let queues = get(&state, "/api/queues").await.json();
    let etl = queues
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == "etl")
        .expect("etl");
    assert_eq!(
        (
            etl["ready"].as_u64(),
            etl["failed"].as_u64(),
            etl["finished"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        etl["finished_per_minute"].as_array().map(Vec::len),
        Some(15)
    );
    let page = get(&state, "/queues").await;
    assert!(page.body.contains("data-queue=\"etl\""));
    assert!(page.body.contains("svg class=\"spark\""));

    let tasks = get(&state, "/api/queues/etl/tasks").await.json();
    assert_eq!(tasks.as_array().map(Vec::len), Some(3));
    let failed = get(&state, "/api/queues/etl/tasks?state=failed")
        .await
        .json();
    assert_eq!(failed[0]["node_id"], "q-fail");
    let id = failed[0]["id"].as_u64().expect("id");
    assert_eq!(
        get(&state, &format!("/api/tasks/{id}")).await.json()["state"],
        "failed"
    );
    assert_get_status(&state, "/api/tasks/999999", StatusCode::NOT_FOUND).await;
    let page = get(&state, "/queues/etl").await;
    assert!(
        page.body.contains("&lt;img src=x"),
        "a task's error is escaped"
    );
    assert!(!page.body.contains("<form"), "read-only: no action buttons");
    assert_get_status(&state, "/assets/app.js", StatusCode::OK).await;
    assert_eq!(
        get(&state, "/assets/app.css").await.headers[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert_get_status(&state, "/assets/other.js", StatusCode::NOT_FOUND).await;
}

/// The live stream sends the run's events from a cursor, then the next one when it is written.
pub async fn live_stream_tails_the_event_log(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let state = state_of(store.clone()).with_poll_interval(Duration::from_millis(50));
    let events = get(&state, "/api/runs/nightly/events?limit=1000")
        .await
        .json();
    let last = events
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["seq"].as_u64())
        .expect("seq");
    let request = Request::get(format!("/api/runs/nightly/events/stream?after={last}"))
        .body(Body::empty())
        .expect("request");
    let response = stint_ui::router(state)
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let begun = super::begin(&*store, "nightly", "late", BASE + 30_000).await;
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("an event within 10 s")
        .expect("a frame")
        .expect("no error");
    let text = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
    assert!(text.starts_with("event: stint"), "{text}");
    assert!(
        text.contains("\"type\":\"NodeStarted\"") && text.contains("\"node_id\":\"late\""),
        "{text}"
    );
    drop(begun);
}

/// With a token, nothing is shown without it; `?token=` becomes a cookie. Actions are refused
/// while off, without the token, and from another origin; allowed, they cancel and retry.
pub async fn token_and_actions_are_enforced(store: Arc<dyn AnyStore>) {
    seed(&*store, BASE).await;
    let read_only = state_of(store.clone()).with_token("s3cret");
    assert_get_status(&read_only, "/", StatusCode::UNAUTHORIZED).await;
    assert_get_status(
        &read_only,
        "/api/runs?token=wrong",
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let shown = get(&read_only, "/runs/nightly?token=s3cret").await;
    assert_eq!(shown.status, StatusCode::SEE_OTHER);
    assert_eq!(shown.headers[header::LOCATION], "/runs/nightly");
    let cookie = shown.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let with_cookie = Request::get("/")
        .header(header::COOKIE, "stint_token=s3cret")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&read_only, with_cookie).await.status, StatusCode::OK);

    actions_are_checked(store).await;
}

/// Actions are refused while off, without the token, and from another origin; allowed, they
/// retry and cancel.
async fn actions_are_checked(store: Arc<dyn AnyStore>) {
    let read_only = state_of(store.clone()).with_token("s3cret");
    let failed = get(
        &state_of(store.clone()),
        "/api/queues/etl/tasks?state=failed",
    )
    .await
    .json();
    let id = failed[0]["id"].as_u64().expect("id");
    let post = |path: String, token: Option<&str>, origin: &str| {
        let mut request = Request::post(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).expect("request")
    };
    let here = "http://127.0.0.1:8080";
    let refused = send(
        &read_only,
        post(format!("/api/tasks/{id}/retry"), Some("s3cret"), here),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "read-only");
    let writes: Arc<dyn TaskQueue> = store.clone();
    let acting = read_only.clone().with_actions(writes);
    assert_eq!(
        send(&acting, post(format!("/api/tasks/{id}/retry"), None, here))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let cross = send(
        &acting,
        post(
            format!("/api/tasks/{id}/retry"),
            Some("s3cret"),
            "http://evil.example",
        ),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(cross.json()["error"]["code"], "CROSS_ORIGIN");
    let retried = send(
        &acting,
        post(format!("/api/tasks/{id}/retry"), Some("s3cret"), here),
    )
    .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    let task = get(&state_of(store.clone()), &format!("/api/tasks/{id}"))
        .await
        .json();
    assert_eq!(task["state"], "ready");
    let cancelled = send(
        &acting,
        post(format!("/api/tasks/{id}/cancel"), Some("s3cret"), here),
    )
    .await;
    assert_eq!(cancelled.json()["outcome"], "cancelled");
    let page = send(
        &acting,
        Request::get("/queues/etl")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert!(
        page.body
            .contains(&format!("action=\"/api/tasks/{id}/retry\"")),
        "a cancelled task can be retried"
    );
}
