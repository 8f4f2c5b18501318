//! The conformance suite against PostgreSQL, each case on a fresh schema of the test server.
//!
//! The server is `STINT_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//! This binary has no libtest harness (`harness = false`): when nothing listens at the server's
//! address every case is reported ignored, with the reason, unless `STINT_REQUIRE_POSTGRES=1`
//! (see `stint_adapters_postgres::test_support`).

use std::sync::Arc;

use async_trait::async_trait;
use stint_adapters_postgres::test_support::{SchemaGuard, fresh_schema, run_tests};
use stint_adapters_postgres::{LeaseClock, PostgresStore};
use stint_ports::{QueueStore, Store};
use stint_tests::Fixture;

/// One schema; the second handle is a second pool on it, as a second process would open.
struct PostgresFixture {
    store: PostgresStore,
    guard: SchemaGuard,
}

impl PostgresFixture {
    async fn second(&self) -> PostgresStore {
        self.guard
            .connect()
            .await
            .with_lease_clock(LeaseClock::Caller)
    }
}

#[async_trait]
impl Fixture for PostgresFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn second_store(&self) -> Arc<dyn Store> {
        Arc::new(self.second().await)
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.store.clone())
    }

    async fn second_queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.second().await)
    }

    async fn teardown(self: Box<Self>) {
        self.store.close().await;
        self.guard.drop_schema().await;
    }
}

async fn factory() -> Box<dyn Fixture> {
    let (store, guard) = fresh_schema().await;
    // The cases use fixed times, so the leases follow them rather than the database's clock
    // (which the adapter's own tests cover).
    let store = store.with_lease_clock(LeaseClock::Caller);
    Box::new(PostgresFixture { store, guard })
}

stint_tests::conformance_suite!(list factory);

fn main() -> std::process::ExitCode {
    run_tests(conformance_cases())
}
