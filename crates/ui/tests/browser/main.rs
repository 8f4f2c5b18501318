//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, or the binary
//! `STINT_CHROMIUM` names) driven through the DevTools protocol. Without a browser these tests
//! are reported ignored, with the reason; `STINT_REQUIRE_BROWSER=1` (CI) makes that a failure.
//!
//! Screenshots of the runs list, a run's timeline and an attempt page are saved as test
//! artifacts under the target folder's `tmp/ui-screenshots/`, and also in the folder
//! `STINT_UI_SCREENSHOTS` names (`docs/ui` regenerates the README's).
#![allow(clippy::print_stderr, reason = "a skipped test must say so loudly")]

mod cdp;
#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stint_adapters_sqlite::SqliteStore;
use stint_ports::{AttemptEnd, EndAttempt, TaskQueue};
use stint_ui::UiState;
use tokio::sync::oneshot;

use cdp::Browser;
use common::{AnyStore, SCRIPT_PAYLOAD, begin, seed, state_of};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("STINT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    path.exists().then_some(path)
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    u64::try_from(since.as_millis()).expect("ms")
}

/// A seeded SQLite store, served on a free loopback port; stops when dropped.
struct Served {
    store: Arc<dyn AnyStore>,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(configure: impl FnOnce(UiState, Arc<dyn AnyStore>) -> UiState) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("stint.db").display());
    let store: Arc<dyn AnyStore> = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    let now = now_ms();
    for day in 1..=6u64 {
        let run = format!("daily-2026-11-{:02}", 20 + day);
        let at = now - 3_600_000 * (8 - day);
        let attempt = begin(&*store, &run, "build", at).await;
        let end = EndAttempt {
            end: AttemptEnd::Finished {
                output: json!({"ok": true}),
                vcs: None,
            },
            finished_at_ms: at + 42_000 + day * 5_000,
            events: vec![],
            task: None,
        };
        store.end_attempt(&attempt, end).await.expect("end");
    }
    seed(&*store, now - 40_000).await;
    let state = configure(
        state_of(store.clone()).with_poll_interval(Duration::from_millis(100)),
        store.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(stint_ui::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Served {
        store,
        url: format!("http://{address}"),
        stop: Some(stop),
        _dir: dir,
    }
}

fn screenshot_paths(name: &str) -> Vec<PathBuf> {
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let mut paths = vec![artifacts];
    if let Some(docs) = std::env::var_os("STINT_UI_SCREENSHOTS") {
        paths.push(PathBuf::from(docs));
    }
    paths
        .into_iter()
        .map(|dir| {
            std::fs::create_dir_all(&dir).expect("screenshot folder");
            dir.join(name)
        })
        .collect()
}

async fn shoot(browser: &mut Browser, name: &str) {
    for path in screenshot_paths(name) {
        browser.screenshot(&path).await;
        eprintln!("stint ui test: screenshot {}", path.display());
    }
}

/// The run page of a node whose first attempt failed and whose retry finished shows two bars,
/// failed then finished, in time order and in different colours. Screenshots of the runs list,
/// the run and the failed attempt are saved.
async fn timeline_shows_a_failed_then_retried_attempt(chromium: PathBuf) {
    let served = serve(|state, _| state).await;
    let mut browser = Browser::launch(&chromium, WIDTH, HEIGHT).await;
    browser.open(&format!("{}/", served.url)).await;
    let listed = browser
        .eval("[...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run)")
        .await;
    assert_eq!(listed[0], "nightly", "newest first: {listed}");
    shoot(&mut browser, "runs.png").await;

    browser.open(&format!("{}/runs/nightly", served.url)).await;
    let bars = browser
        .eval(
            "[...document.querySelectorAll('#timeline g.node[data-node=\"fetch\"] a.attempt')].map(a => { \
               const bar = a.querySelector('rect.bar'); \
               return [a.dataset.attempt, a.dataset.state, bar.getBBox().x, getComputedStyle(bar).fill]; })",
        )
        .await;
    let bars = bars.as_array().expect("bars");
    assert_eq!(bars.len(), 2, "two attempts of fetch: {bars:?}");
    assert_eq!(
        (bars[0][0].as_str(), bars[0][1].as_str()),
        (Some("1"), Some("failed"))
    );
    assert_eq!(
        (bars[1][0].as_str(), bars[1][1].as_str()),
        (Some("2"), Some("finished"))
    );
    assert!(
        bars[0][2].as_f64() < bars[1][2].as_f64(),
        "the failed bar is left of the retry: {bars:?}"
    );
    assert_ne!(
        bars[0][3], bars[1][3],
        "failed and finished bars differ in colour"
    );
    shoot(&mut browser, "run.png").await;

    browser
        .open(&format!(
            "{}/runs/nightly/nodes/fetch/0/attempts/1",
            served.url
        ))
        .await;
    shoot(&mut browser, "attempt.png").await;
    browser.close().await;
}

/// A heartbeat payload holding `<script>` is shown as text on the attempt page and never runs.
async fn script_in_a_payload_is_shown_as_text(chromium: PathBuf) {
    let served = serve(|state, _| state).await;
    let mut browser = Browser::launch(&chromium, WIDTH, HEIGHT).await;
    browser
        .open(&format!(
            "{}/runs/nightly/nodes/fetch/0/attempts/1",
            served.url
        ))
        .await;
    let shown = browser
        .eval("document.querySelector('#heartbeat pre').textContent")
        .await;
    assert!(
        shown
            .as_str()
            .is_some_and(|text| text.contains(SCRIPT_PAYLOAD)),
        "shown as text: {shown}"
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#content script').length")
            .await,
        json!(0)
    );
    assert_ne!(
        browser.eval("document.title").await,
        json!("pwned"),
        "the payload's script never ran"
    );
    let error = browser
        .eval("document.querySelector('#error .message').textContent")
        .await;
    assert!(
        error
            .as_str()
            .is_some_and(|t| t.starts_with("no heartbeat")),
        "{error}"
    );
    browser.close().await;
}

/// An open run page shows a new attempt without being reloaded.
async fn live_page_updates_when_a_new_attempt_begins(chromium: PathBuf) {
    let served = serve(|state, _| state).await;
    let mut browser = Browser::launch(&chromium, WIDTH, HEIGHT).await;
    browser.open(&format!("{}/runs/nightly", served.url)).await;
    let count =
        "document.querySelectorAll('#timeline g.node[data-node=\"retry-me\"] a.attempt').length";
    assert_eq!(browser.eval(count).await, json!(0));
    browser.eval("window.stintMarker = 42").await;
    // Let the page's event stream connect, then begin an attempt of a new node.
    browser
        .wait_for(
            "document.getElementById('live-status').textContent === 'live'",
            Duration::from_secs(10),
        )
        .await;
    begin(&*served.store, "nightly", "retry-me", now_ms()).await;
    browser
        .wait_for(&format!("{count} === 1"), Duration::from_secs(10))
        .await;
    assert_eq!(
        browser.eval("window.stintMarker").await,
        json!(42),
        "updated without a reload"
    );
    let state = browser.eval("document.querySelector('#timeline g.node[data-node=\"retry-me\"] a.attempt').dataset.state").await;
    assert_eq!(state, json!("in-progress"));
    browser.close().await;
}

/// With actions on, a failed task's Retry button makes it ready again: the dashboard's own form
/// passes the token and same-origin checks.
async fn retry_button_requeues_a_failed_task(chromium: PathBuf) {
    let served = serve(|state, store| {
        let writes: Arc<dyn TaskQueue> = store;
        state.with_token("tok-123").with_actions(writes)
    })
    .await;
    let mut browser = Browser::launch(&chromium, WIDTH, HEIGHT).await;
    browser
        .open(&format!("{}/queues/etl?token=tok-123", served.url))
        .await;
    let row = "document.querySelector('#tasks tr[data-task] td:nth-child(2) .badge')";
    let failed_row = "[...document.querySelectorAll('#tasks tr[data-task]')].find(r => r.querySelector('form[action$=\"/retry\"]'))";
    let id = browser.eval(&format!("{failed_row}.dataset.task")).await;
    let id = id
        .as_str()
        .expect("a failed task with a Retry button")
        .to_owned();
    assert!(browser.eval(&format!("{row} !== null")).await == json!(true));
    browser
        .eval(&format!(
            "{failed_row}.querySelector('form[action$=\"/retry\"] button').click()"
        ))
        .await;
    let badge = format!("document.querySelector('#tasks tr[data-task=\"{id}\"] .badge')");
    browser
        .wait_for(
            &format!("{badge} !== null && {badge}.textContent === 'ready'"),
            Duration::from_secs(10),
        )
        .await;
    let task = served
        .store
        .get_task(stint_domain::TaskId(id.parse().expect("id")))
        .await
        .expect("task");
    assert_eq!(task.map(|t| t.state), Some(stint_domain::TaskState::Ready));
    browser.close().await;
}

fn main() -> ExitCode {
    let arguments = libtest_mimic::Arguments::from_args();
    let chromium = chromium();
    let required = std::env::var("STINT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let skip = chromium.is_none() && !required;
    if skip && !arguments.list {
        eprintln!(
            "stint: browser tests ignored: no chromium at /usr/bin/chromium (install Debian's \
             `chromium`, or set STINT_CHROMIUM; STINT_REQUIRE_BROWSER=1 fails instead)"
        );
    }
    type Case = fn(PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    let cases: Vec<(&str, Case)> = vec![
        ("timeline_shows_a_failed_then_retried_attempt", |c| {
            Box::pin(timeline_shows_a_failed_then_retried_attempt(c))
        }),
        ("script_in_a_payload_is_shown_as_text", |c| {
            Box::pin(script_in_a_payload_is_shown_as_text(c))
        }),
        ("live_page_updates_when_a_new_attempt_begins", |c| {
            Box::pin(live_page_updates_when_a_new_attempt_begins(c))
        }),
        ("retry_button_requeues_a_failed_task", |c| {
            Box::pin(retry_button_requeues_a_failed_task(c))
        }),
    ];
    let trials = cases
        .into_iter()
        .map(|(name, case)| {
            let chromium = chromium.clone();
            libtest_mimic::Trial::test(name, move || {
                let chromium =
                    chromium.ok_or("no chromium at /usr/bin/chromium (STINT_REQUIRE_BROWSER=1)")?;
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(case(chromium));
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}
