//! `stint ui`: serves the dashboard (the `stint-ui` crate) on the store `--db` names.

use std::sync::Arc;

use stint_ports::{HistoryStore, QueueHistory, TaskQueue};
use stint_ui::{UiState, is_loopback};
use tokio::net::TcpListener;

use crate::args::UiArgs;
use crate::exit::{self, CliError};

/// `stint ui`: serves until Ctrl-C or SIGTERM (exit 130).
pub(super) async fn ui(db: &str, quiet: bool, args: &UiArgs) -> Result<u8, CliError> {
    let mut token = args.token.clone().filter(|token| !token.is_empty());
    let loopback = is_loopback(&args.listen);
    if !loopback && token.is_none() {
        return Err(CliError::usage(format!(
            "--listen {} is reachable from other machines: give a token (--token or \
             STINT_UI_TOKEN), or listen on 127.0.0.1",
            args.listen
        )));
    }
    if args.allow_actions && token.is_none() {
        token = Some(uuid::Uuid::new_v4().simple().to_string());
    }
    let store = crate::store::open_queue_existing(db).await?;
    let listener = TcpListener::bind(args.listen).await.map_err(|error| {
        let why = match error.kind() {
            std::io::ErrorKind::AddrInUse => "the address is already in use".to_owned(),
            _ => error.to_string(),
        };
        CliError::invalid_input(format!("cannot listen on {}: {why}", args.listen))
    })?;
    let address = listener
        .local_addr()
        .map_err(|error| CliError::internal(format!("the listening address: {error}")))?;

    let history: Arc<dyn HistoryStore> = store.clone();
    let queue: Arc<dyn QueueHistory> = store.clone();
    let mut state = UiState::new(history, queue);
    if args.allow_actions {
        let writes: Arc<dyn TaskQueue> = store;
        state = state.with_actions(writes);
    }
    let url = match &token {
        Some(token) => {
            state = state.with_token(token.as_str());
            format!("http://{address}/?token={token}")
        }
        None => format!("http://{address}/"),
    };
    if !quiet {
        let mode = if args.allow_actions {
            "cancel and retry allowed"
        } else {
            "read-only"
        };
        crate::output::note(&format!("ui at {url} ({mode}; Ctrl-C stops)"));
        if token.is_some() {
            crate::output::note("every request must show the token (the URL above sets it)");
        }
    }
    stint_ui::serve(listener, state, stop_signal())
        .await
        .map_err(|error| CliError::internal(format!("the dashboard's server: {error}")))?;
    Ok(exit::CANCELLED)
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
