//! The engine's two small ports: where the code stood, and what time it is.

use std::fmt::Debug;
use std::path::Path;

use async_trait::async_trait;

/// Reads where the code stood: a jj change id, a git commit (`+dirty` when changed), or nothing.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VcsProbe: Send + Sync + Debug {
    /// The revision of the repository holding `dir`; `None` outside a repository or without the
    /// tool. Never an error.
    async fn revision(&self, dir: &Path) -> Option<String>;
}

/// The wall clock, injected so tests can control time.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}
