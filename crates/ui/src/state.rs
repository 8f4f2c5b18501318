//! What every handler shares: the ports, the token, whether actions are on, and the signal
//! that ends live streams.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stint_ports::{HistoryStore, QueueHistory, TaskQueue};
use tokio_util::sync::CancellationToken;

/// The dashboard's state: the history and queue read ports, and (with actions on) the queue's
/// write port.
#[derive(Clone)]
pub struct UiState {
    pub(crate) history: Arc<dyn HistoryStore>,
    pub(crate) queue: Arc<dyn QueueHistory>,
    pub(crate) actions: Option<Arc<dyn TaskQueue>>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) poll: Duration,
    stopping: CancellationToken,
}

impl fmt::Debug for UiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiState")
            .field("history", &self.history)
            .field("actions", &self.actions.is_some())
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl UiState {
    /// A read-only dashboard of `history` and `queue`, open to whoever reaches it (loopback).
    pub fn new(history: Arc<dyn HistoryStore>, queue: Arc<dyn QueueHistory>) -> Self {
        Self {
            history,
            queue,
            actions: None,
            token: None,
            poll: Duration::from_millis(500),
            stopping: CancellationToken::new(),
        }
    }

    /// Every request must show `token`: as `Authorization: Bearer TOKEN`, as the `stint_token`
    /// cookie, or once as `?token=TOKEN` (which sets the cookie).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<Arc<str>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Adds the cancel and retry actions on queued tasks, written through `queue`. They need a
    /// token ([`UiState::with_token`]): without one every action is refused.
    #[must_use]
    pub fn with_actions(mut self, queue: Arc<dyn TaskQueue>) -> Self {
        self.actions = Some(queue);
        self
    }

    /// How often live streams look for new events (500 ms by default).
    #[must_use]
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Whether the cancel and retry actions are on.
    pub fn actions_enabled(&self) -> bool {
        self.actions.is_some() && self.token.is_some()
    }

    /// Cancelled when the server stops: live streams end then.
    pub(crate) fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }
}
