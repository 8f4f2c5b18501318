//! The conformance suite against PostgreSQL, each case on a fresh schema of the test server.
//!
//! The server is `STINT_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//! This binary has no libtest harness (`harness = false`): when nothing listens at the server's
//! address every case is reported ignored, with the reason, unless `STINT_REQUIRE_POSTGRES=1`
//! (see `stint_adapters_postgres::test_support`).

use async_trait::async_trait;
use stint_adapters_postgres::test_support::{SchemaGuard, fresh_schema, run_tests};
use stint_adapters_postgres::{LeaseClock, PostgresStore};
use stint_tests::{Database, Fixture, OnDatabase};

/// One schema, dropped when the case ends; the second handle is a second pool on it, as a second
/// process would open.
struct Schema(SchemaGuard);

#[async_trait]
impl Database for Schema {
    type Store = PostgresStore;

    async fn second(&self, _store: &PostgresStore) -> PostgresStore {
        self.0.connect().await.with_lease_clock(LeaseClock::Caller)
    }

    async fn release(self, store: PostgresStore) {
        store.close().await;
        self.0.drop_schema().await;
    }
}

async fn factory() -> Box<dyn Fixture> {
    let (store, guard) = fresh_schema().await;
    // The cases use fixed times, so the leases follow them rather than the database's clock
    // (which the adapter's own tests cover).
    let store = store.with_lease_clock(LeaseClock::Caller);
    Box::new(OnDatabase {
        store,
        database: Schema(guard),
    })
}

stint_tests::conformance_suite!(list factory);

fn main() -> std::process::ExitCode {
    run_tests(conformance_cases())
}
