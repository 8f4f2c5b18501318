//! From sqlx errors to [`StoreError`], and the bounded retry of transient failures.

use std::future::Future;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use stint_ports::StoreError;

/// How many times a transaction is tried when PostgreSQL aborts it for a serialization failure
/// or a deadlock (which it resolves by killing one side).
const MAX_TRIES: u32 = 5;

/// SQLSTATE codes stint reacts to.
mod sqlstate {
    pub(super) const UNIQUE_VIOLATION: &str = "23505";
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
    pub(super) const DEADLOCK_DETECTED: &str = "40P01";
    pub(super) const INVALID_PASSWORD: &str = "28P01";
    pub(super) const INVALID_AUTHORIZATION: &str = "28000";
    pub(super) const UNKNOWN_DATABASE: &str = "3D000";
    pub(super) const TOO_MANY_CONNECTIONS: &str = "53300";
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
}

/// What one try of an operation can end in: a decided store error, or a database error that
/// may deserve another try.
#[derive(Debug)]
pub(crate) enum OpError {
    /// Final: returned as is.
    Store(StoreError),
    /// Mapped by [`map_sqlx`] unless it is transient.
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for OpError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(
        db.code().as_deref(),
        Some(sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED)
    ))
}

/// Runs `op` until it succeeds, fails for good, or was aborted as transient [`MAX_TRIES`] times.
pub(crate) async fn retrying<T, F, Fut>(
    endpoint: &str,
    what: &str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OpError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match op().await {
            Ok(value) => return Ok(value),
            Err(OpError::Store(error)) => return Err(error),
            Err(OpError::Sql(error)) if is_transient(&error) && tries < MAX_TRIES => {
                tracing::debug!(%error, tries, what, "transient PostgreSQL failure, trying again");
                // A short, growing pause lets the transaction that won finish first.
                tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(OpError::Sql(error)) => return Err(map_sqlx(endpoint, what, error)),
        }
    }
}

/// The [`StoreError`] for `error`, met while doing `what` against `endpoint` (`host:port`),
/// with the driver's error kept as its source.
pub(crate) fn map_sqlx(endpoint: &str, what: &str, error: sqlx::Error) -> StoreError {
    let mapped = match &error {
        sqlx::Error::Migrate(migrate) => return map_migrate(endpoint, migrate),
        error => describe(endpoint, what, error),
    };
    mapped.caused_by(error)
}

/// The [`StoreError`] that says what `error` means for stint, without its source.
fn describe(endpoint: &str, what: &str, error: &sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                Some(sqlstate::UNIQUE_VIOLATION) => StoreError::conflict(format!(
                    "{what}: a concurrent writer took the same key ({message})"
                )),
                Some(sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED) => {
                    StoreError::unavailable(format!(
                        "{what}: PostgreSQL at {endpoint} kept aborting the transaction \
                         ({message}) after {MAX_TRIES} tries"
                    ))
                }
                Some(sqlstate::INVALID_PASSWORD | sqlstate::INVALID_AUTHORIZATION) => {
                    StoreError::unavailable(format!(
                        "PostgreSQL at {endpoint} refused the login: {message}"
                    ))
                }
                Some(sqlstate::UNKNOWN_DATABASE) => {
                    StoreError::unavailable(format!("PostgreSQL at {endpoint}: {message}"))
                }
                Some(sqlstate::TOO_MANY_CONNECTIONS | sqlstate::CANNOT_CONNECT_NOW) => {
                    StoreError::unavailable(format!(
                        "PostgreSQL at {endpoint} accepts no connection now: {message}"
                    ))
                }
                code => StoreError::unavailable(format!(
                    "{what}: PostgreSQL at {endpoint} failed ({}): {message}",
                    code.unwrap_or_default()
                )),
            }
        }
        sqlx::Error::Io(io) => {
            StoreError::unavailable(format!("cannot reach PostgreSQL at {endpoint}: {io}"))
        }
        sqlx::Error::PoolTimedOut => StoreError::unavailable(format!(
            "{what}: no connection to PostgreSQL at {endpoint} within the acquire timeout \
             (server unreachable or every pooled connection busy)"
        )),
        sqlx::Error::PoolClosed => StoreError::unavailable("the PostgreSQL store was closed"),
        sqlx::Error::Tls(tls) => {
            StoreError::unavailable(format!("TLS with PostgreSQL at {endpoint} failed: {tls}"))
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => {
            StoreError::incompatible(format!("{what}: a stored row does not decode: {error}"))
        }
        sqlx::Error::Migrate(migrate) => map_migrate(endpoint, migrate),
        other => StoreError::unavailable(format!("{what}: PostgreSQL at {endpoint}: {other}")),
    }
}

/// Migration errors: an unknown applied version means a newer stint wrote the schema.
pub(crate) fn map_migrate(endpoint: &str, error: &MigrateError) -> StoreError {
    match error {
        MigrateError::VersionMissing(version) => StoreError::incompatible(format!(
            "the schema at {endpoint} has migration {version}, unknown to this stint: it was \
             written by a newer version"
        )),
        MigrateError::VersionMismatch(version) => StoreError::incompatible(format!(
            "the schema at {endpoint} has a different migration {version} than this stint"
        )),
        MigrateError::Dirty(version) => StoreError::incompatible(format!(
            "the schema at {endpoint} has migration {version} half applied"
        )),
        MigrateError::Execute(sql) | MigrateError::ExecuteMigration(sql, _) => {
            describe(endpoint, "migrating the schema", sql)
        }
        other => StoreError::incompatible(format!("migrating the schema at {endpoint}: {other}")),
    }
}

/// Converts a stored BIGINT back to the unsigned value it was written from.
pub(crate) fn to_u64(column: &str, value: i64) -> Result<u64, OpError> {
    u64::try_from(value).map_err(|_| {
        OpError::Store(StoreError::incompatible(format!(
            "column {column} holds {value}, not an unsigned number"
        )))
    })
}

/// Converts a stored BIGINT back to a `u32` (iteration, attempt number).
pub(crate) fn to_u32(column: &str, value: i64) -> Result<u32, OpError> {
    u32::try_from(value).map_err(|_| {
        OpError::Store(StoreError::incompatible(format!(
            "column {column} holds {value}, out of range"
        )))
    })
}

/// Millisecond times beyond `i64::MAX` (year 292 million) are clamped rather than refused.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
