//! How a SQLite store is configured: the options, and the `sqlite:` URL that names them.

use std::path::PathBuf;
use std::time::Duration;

use stint_ports::StoreError;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before it returns, even across a power cut (the default).
    #[default]
    Full,
    /// In WAL mode a commit survives a crash of the process but may be lost on a power cut;
    /// faster, for users who opt in.
    Normal,
}

impl Synchronous {
    /// The pragma value, as SQLite spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Options of [`crate::SqliteStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long a writer waits for another one's lock before the store reports itself unavailable.
    pub busy_timeout: Duration,
    /// Connections in the pool. Readers run in parallel under WAL; writers take turns.
    pub max_connections: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_millis(5000),
            max_connections: 4,
        }
    }
}

/// A parsed `sqlite:` URL: the database file and the options its query names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    pub(crate) path: PathBuf,
    pub(crate) options: SqliteOptions,
}

/// Parses `sqlite://path`, `sqlite:path`, with optional `?synchronous=normal|full` and
/// `?busy_timeout_ms=N`. Unknown keys are refused, so a typo never silently weakens durability.
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, StoreError> {
    let invalid =
        |why: String| StoreError::invalid_config(format!("invalid sqlite url '{url}': {why}"));
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| invalid("it must start with 'sqlite:' or 'sqlite://'".to_owned()))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid("it names no file".to_owned()));
    }
    if path == ":memory:" || path.starts_with("file::memory:") {
        // Each pooled connection would get its own empty database: never what a user wants.
        return Err(invalid(
            "in-memory SQLite is not supported; use the memory store".to_owned(),
        ));
    }
    let mut options = SqliteOptions::default();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "synchronous" => {
                options.synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => Synchronous::Full,
                    "normal" => Synchronous::Normal,
                    other => {
                        return Err(invalid(format!(
                            "synchronous must be 'full' or 'normal', not '{other}'"
                        )));
                    }
                }
            }
            "busy_timeout_ms" => {
                let ms: u64 = value.parse().map_err(|_| {
                    invalid(format!(
                        "busy_timeout_ms must be a whole number of milliseconds, not '{value}'"
                    ))
                })?;
                options.busy_timeout = Duration::from_millis(ms);
            }
            other => {
                return Err(invalid(format!(
                    "unknown option '{other}' (known: synchronous, busy_timeout_ms)"
                )));
            }
        }
    }
    Ok(ParsedUrl {
        path: PathBuf::from(path),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_forms_name_the_same_relative_path() {
        let a = parse_url("sqlite://data/stint.db").expect("parses");
        let b = parse_url("sqlite:data/stint.db").expect("parses");
        assert_eq!(a, b);
        assert_eq!(a.path, PathBuf::from("data/stint.db"));
        assert_eq!(a.options, SqliteOptions::default());
    }

    #[test]
    fn absolute_paths_and_options_parse() {
        let parsed = parse_url("sqlite:///var/lib/stint.db?synchronous=NORMAL&busy_timeout_ms=250")
            .expect("parses");
        assert_eq!(parsed.path, PathBuf::from("/var/lib/stint.db"));
        assert_eq!(parsed.options.synchronous, Synchronous::Normal);
        assert_eq!(parsed.options.busy_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, fragment) in [
            ("postgres://x", "must start with"),
            ("sqlite://", "names no file"),
            ("sqlite::memory:", "in-memory"),
            ("sqlite:a.db?synchronous=off", "synchronous must be"),
            ("sqlite:a.db?busy_timeout_ms=soon", "busy_timeout_ms"),
            (
                "sqlite:a.db?journal_mode=delete",
                "unknown option 'journal_mode'",
            ),
        ] {
            let error = parse_url(url).expect_err(url).to_string();
            assert!(error.contains(fragment), "{url}: {error}");
        }
    }
}
