//! The store URL: the parameters stint reads itself, and the rest handed to sqlx.
//!
//! stint reads `max_connections`, `connect_timeout` (seconds), `acquire_timeout` (seconds) and
//! `schema` from the query string and removes them, so that sqlx sees only the libpq parameters
//! it knows (`sslmode`, `options`, `application_name`...).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use stint_ports::StoreError;

/// Pool size when the URL does not say.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// How long establishing a connection may take when the URL does not say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a query may wait for a free pooled connection when the URL does not say.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything [`crate::PostgresStore::connect`] needs, parsed from one URL.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Connection options for sqlx (the password stays in here, never in a message).
    pub options: PgConnectOptions,
    /// `host:port` (or the socket path), for error messages.
    pub endpoint: String,
    /// The schema the tables live in, if not the default search path.
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// Bound on establishing one connection.
    pub connect_timeout: Duration,
    /// Bound on waiting for a pooled connection.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Parses a `postgres://` or `postgresql://` URL.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut rest = Vec::new();
        let mut schema = None;
        let mut max_connections = DEFAULT_MAX_CONNECTIONS;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut acquire_timeout = DEFAULT_ACQUIRE_TIMEOUT;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "schema" => schema = Some(validate_schema(value)?.to_owned()),
                "max_connections" => max_connections = parse_number(key, value)?.max(1),
                "connect_timeout" => {
                    connect_timeout = Duration::from_secs(parse_number(key, value)?.into())
                }
                "acquire_timeout" => {
                    acquire_timeout = Duration::from_secs(parse_number(key, value)?.into())
                }
                _ => rest.push(pair),
            }
        }
        let sqlx_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // sqlx's own message may quote the URL, password included, so it is not passed on.
        let mut options = PgConnectOptions::from_str(&sqlx_url).map_err(|_| {
            StoreError::invalid_config(format!(
                "invalid PostgreSQL URL '{}'",
                redact_password(base)
            ))
        })?;
        if let Some(schema) = &schema {
            // Every pooled connection starts with the schema first on its search path, so
            // unqualified table names (and sqlx's migration table) resolve inside it.
            options = options.options([("search_path", schema.as_str())]);
        }
        let endpoint = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        Ok(Self {
            options,
            endpoint,
            schema,
            max_connections,
            connect_timeout,
            acquire_timeout,
        })
    }
}

fn parse_number(key: &str, value: &str) -> Result<u32, StoreError> {
    value.parse().map_err(|_| {
        StoreError::invalid_config(format!(
            "invalid PostgreSQL URL: '{key}' must be a whole number, got '{value}'"
        ))
    })
}

/// Accepts only names that need no quoting (lowercase ASCII letters, digits, `_`, at most 63
/// bytes, not starting with a digit): the one identifier stint ever writes into SQL text.
pub fn validate_schema(name: &str) -> Result<&str, StoreError> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid_start && valid_rest && name.len() <= 63 && !name.starts_with("pg_") {
        Ok(name)
    } else {
        Err(StoreError::invalid_config(format!(
            "invalid PostgreSQL schema name '{name}': use lowercase letters, digits and '_' \
             (at most 63, not starting with a digit or 'pg_')"
        )))
    }
}

/// The URL with its password (if any) replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}:***@{host}{slash}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stint_parameters_are_read_and_removed() {
        let config = StoreConfig::parse(
            "postgres://u:secret@db.example:6543/x?max_connections=3&schema=s1&connect_timeout=2&sslmode=disable",
        )
        .expect("valid");
        assert_eq!(config.max_connections, 3);
        assert_eq!(config.schema.as_deref(), Some("s1"));
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.endpoint, "db.example:6543");
        assert_eq!(config.options.get_database(), Some("x"));
        assert!(
            config
                .options
                .get_options()
                .is_some_and(|o| o.contains("search_path=s1"))
        );
    }

    #[test]
    fn bad_schema_names_are_refused() {
        for bad in [
            "",
            "A",
            "1a",
            "a;drop",
            "a b",
            "pg_catalog",
            &"a".repeat(64),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
        assert!(validate_schema("stint_test_01").is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        let error = StoreConfig::parse("postgres://u:secret@h:1/db?max_connections=x")
            .expect_err("bad number");
        assert!(!error.to_string().contains("secret"));
    }
}
