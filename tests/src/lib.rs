//! The conformance suite every storage adapter must pass.
//!
//! An adapter's test file declares a fixture factory and calls [`conformance_suite!`] once; the
//! macro expands to one `#[tokio::test]` per case, each on a fresh, isolated store.

use std::sync::Arc;

use async_trait::async_trait;
use stint_ports::Store;

pub mod cases;

/// A fresh, isolated store for one test (a temp file, a fresh schema...).
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;

    /// A second, independent handle (its own pool or connection) on the same database, for
    /// cases where two processes race.
    async fn second_store(&self) -> Arc<dyn Store>;

    /// Releases what the fixture made (drops the schema, deletes the file).
    async fn teardown(self: Box<Self>) {}
}

/// Declares one `#[tokio::test]` per conformance case. `$factory` is an `async fn() ->
/// Option<Box<dyn Fixture>>`; `None` skips the case (the factory prints why).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@cases $factory;
            numbering_starts_at_one_without_gaps
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(fixture) = $factory().await {
                    $crate::cases::$case(&*fixture).await;
                    fixture.teardown().await;
                }
            }
        )*
    };
}
