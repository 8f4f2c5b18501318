//! Mapping of sqlx and rusqlite errors (the pool's and the writer's), and of out-of-range numbers,
//! onto [`StoreError`]. Both drivers report SQLite's result codes, and each is classified the same
//! way: a caller cannot tell which connection failed.

use std::path::Path;

use stint_ports::StoreError;

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The primary result code of a database error, if sqlx reports one.
fn primary_code(error: &sqlx::Error) -> Option<i64> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let code: i64 = db.code()?.parse().ok()?;
    Some(code & 0xff)
}

/// Whether SQLite answered "busy" or "locked": another connection holds the lock. On a fresh
/// file SQLite may answer so at once, without waiting on the busy timeout (switching to WAL,
/// upgrading a read transaction), so opening retries it.
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    matches!(primary_code(error), Some(SQLITE_BUSY | SQLITE_LOCKED))
}

/// Maps an error met while using an open store.
pub(crate) fn map(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return StoreError::conflict(format!("unique key taken: {}", db.message()));
    }
    match primary_code(&error) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => {
            StoreError::unavailable_from("the database stayed locked past the busy timeout", error)
        }
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => {
            StoreError::incompatible_from("the database is corrupt", error)
        }
        _ => match error {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::incompatible_from(format!("a row does not decode: {error}"), error)
            }
            other => StoreError::unavailable_from(other.to_string(), other),
        },
    }
}

/// Maps an error met on the writer's connection, as [`map`] maps the pool's: the same cases for
/// the same result codes, with sqlx's wording of a database error.
pub(crate) fn map_rusqlite(error: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    use rusqlite::ffi::ErrorCode;
    if let E::SqliteFailure(failure, message) = &error {
        let shown = message.as_deref().unwrap_or("");
        let said = format!(
            "error returned from database: (code: {}) {shown}",
            failure.extended_code
        );
        return match failure.code {
            _ if matches!(
                failure.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
            {
                StoreError::conflict(format!("unique key taken: {shown}"))
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::unavailable_from(
                "the database stayed locked past the busy timeout",
                error,
            ),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::incompatible_from("the database is corrupt", error)
            }
            _ => StoreError::unavailable_from(said, error),
        };
    }
    match error {
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..)
        | E::Utf8Error(..) => {
            StoreError::incompatible_from(format!("a row does not decode: {error}"), error)
        }
        other => StoreError::unavailable_from(other.to_string(), other),
    }
}

/// Maps an error met while opening the database at `path`, naming the path.
pub(crate) fn map_open(path: &Path, error: sqlx::Error) -> StoreError {
    let shown = path.display();
    match primary_code(&error) {
        Some(SQLITE_NOTADB | SQLITE_CORRUPT) => {
            StoreError::incompatible_from(format!("{shown} is not a SQLite database"), error)
        }
        Some(SQLITE_CANTOPEN) => StoreError::unavailable_from(
            format!("{shown}: cannot open or create the database"),
            error,
        ),
        _ => name_path(path, map(error)),
    }
}

/// `error` with the path of the database it concerns before its message, when it is about the
/// store (unavailable or incompatible) rather than stint's own decision.
pub(crate) fn name_path(path: &Path, error: StoreError) -> StoreError {
    let shown = path.display();
    match error {
        StoreError::Unavailable { message, source } => StoreError::Unavailable {
            message: format!("{shown}: {message}"),
            source,
        },
        StoreError::Incompatible { message, source } => StoreError::Incompatible {
            message: format!("{shown}: {message}"),
            source,
        },
        other => other,
    }
}

/// A number as SQLite stores it; stint's times and counters never reach `i64::MAX`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::incompatible(format!(
            "{what} {value} does not fit in a signed 64-bit column"
        ))
    })
}

/// A stored number read back; a negative or oversized value means the row was not written by
/// stint.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::incompatible(format!("stored {what} {value} is negative")))
}

/// A stored number read back as `u32`.
pub(crate) fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::incompatible(format!("stored {what} {value} is out of range")))
}

/// A stored JSON text read back.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::incompatible(format!("stored {what} is not valid: {error}")))
}

/// A value written as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    // Serialising stint's own types and `serde_json::Value` cannot fail; keep the error anyway.
    serde_json::to_string(value).map_err(|error| {
        StoreError::incompatible(format!("{what} cannot be written as JSON: {error}"))
    })
}
