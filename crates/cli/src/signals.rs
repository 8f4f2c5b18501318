//! The signals that stop stint's long-running commands (`run`, `worker`): SIGINT (Ctrl-C),
//! SIGTERM, SIGHUP (the terminal closed, the ssh session dropped) and SIGQUIT, told apart as a
//! first request and a second one.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::AbortOnDropHandle;

use crate::exit::{self, CliError};

/// Signals this soon after the first one are the same request, not a second one: a supervisor
/// that signals both stint and its process group, or `kill` run twice by a script, must not cut
/// the first request short. A person pressing Ctrl-C again takes longer.
pub(crate) const SAME_REQUEST: Duration = Duration::from_millis(500);

/// Which stop request a signal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The first signal.
    First,
    /// A signal within [`SAME_REQUEST`] of the first: part of it.
    Same,
    /// A later signal: the user insists.
    Again,
}

/// Calls `on` with the name and [`Request`] of every stopping signal, until the returned handle
/// is dropped.
pub(crate) fn watch(
    mut on: impl FnMut(&'static str, Request) + Send + 'static,
) -> Result<AbortOnDropHandle<()>, CliError> {
    let install = |kind| {
        signal(kind).map_err(|error| {
            CliError::new(
                exit::CliCode::Runtime,
                format!("cannot handle signals: {error}"),
            )
        })
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut hangup = install(SignalKind::hangup())?;
    let mut quit = install(SignalKind::quit())?;
    Ok(AbortOnDropHandle::new(tokio::spawn(async move {
        let mut first: Option<tokio::time::Instant> = None;
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "interrupt",
                _ = terminate.recv() => "SIGTERM",
                _ = hangup.recv() => "SIGHUP",
                _ = quit.recv() => "SIGQUIT",
            };
            let request = match first {
                None => {
                    first = Some(tokio::time::Instant::now());
                    Request::First
                }
                Some(at) if at.elapsed() < SAME_REQUEST => Request::Same,
                Some(_) => Request::Again,
            };
            on(name, request);
        }
    })))
}
