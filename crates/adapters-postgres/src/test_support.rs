//! Fresh, isolated schemas on a test server, for this crate's tests and for other crates'
//! (enable the `test-support` feature).
//!
//! The server is `STINT_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//! When it does not answer, [`fresh_schema`] prints one loud line and returns `None` (the test
//! skips), unless `STINT_REQUIRE_POSTGRES=1`, when it panics so CI cannot pass by skipping.
#![allow(clippy::print_stderr, reason = "a skipped test must say so loudly")]

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use stint_ports::StoreError;

use crate::PostgresStore;

/// The server tried when `STINT_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var("STINT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned())
}

fn postgres_required() -> bool {
    std::env::var("STINT_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// `url` with `key=value` added to its query string.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// A schema made for one test; [`SchemaGuard::drop_schema`] removes it.
#[derive(Debug)]
pub struct SchemaGuard {
    server_url: String,
    schema: String,
}

impl SchemaGuard {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A store URL pointing at the schema (add `max_connections` etc. with [`with_param`]).
    pub fn url(&self) -> String {
        with_param(&self.server_url, "schema", &self.schema)
    }

    /// Another store on the same schema, with its own pool: a second process, as far as the
    /// database can tell.
    pub async fn connect(&self) -> PostgresStore {
        self.connect_with("").await
    }

    /// As [`SchemaGuard::connect`], with extra URL parameters (`max_connections=1`).
    pub async fn connect_with(&self, params: &str) -> PostgresStore {
        let mut url = self.url();
        if !params.is_empty() {
            url = format!("{url}&{params}");
        }
        PostgresStore::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("second store on {}: {error}", self.schema))
    }

    /// Drops the schema and everything in it. Failure is only logged: the schema's name is
    /// unique, so a leftover harms no other test.
    pub async fn drop_schema(self) {
        let dropped = async {
            let options: sqlx::postgres::PgConnectOptions = self.server_url.parse()?;
            let mut conn = PgConnection::connect_with(&options).await?;
            // The name was made by `fresh_schema` and passes `validate_schema`.
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("stint test: could not drop schema {}: {error}", self.schema);
        }
    }
}

/// A store on a new, empty schema of the test server, or `None` when no server answers (and
/// PostgreSQL is not required).
pub async fn fresh_schema() -> Option<(PostgresStore, SchemaGuard)> {
    fresh_schema_with("").await
}

/// As [`fresh_schema`], with extra URL parameters for the store (`max_connections=8`).
pub async fn fresh_schema_with(params: &str) -> Option<(PostgresStore, SchemaGuard)> {
    let server_url = server_url();
    let schema = format!("stint_test_{}", uuid::Uuid::new_v4().simple());
    let guard = SchemaGuard {
        server_url: server_url.clone(),
        schema,
    };
    let mut url = guard.url();
    if !params.is_empty() {
        url = format!("{url}&{params}");
    }
    match PostgresStore::connect(&with_param(&url, "connect_timeout", "3")).await {
        Ok(store) => Some((store, guard)),
        Err(error @ StoreError::Unavailable { .. }) if !postgres_required() => {
            eprintln!(
                "!!! SKIPPED: PostgreSQL test server not available ({error}); set \
                 STINT_TEST_POSTGRES_URL, or STINT_REQUIRE_POSTGRES=1 to fail instead !!!"
            );
            None
        }
        Err(error) => panic!("the PostgreSQL test server failed: {error}"),
    }
}
