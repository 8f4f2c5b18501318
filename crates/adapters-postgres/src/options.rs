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
pub(crate) struct StoreConfig {
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
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
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
        let invalid = |why: &str| {
            StoreError::invalid_config(format!(
                "invalid PostgreSQL URL '{}': {why}",
                redact_password(base)
            ))
        };
        if let Some(mode) = rest.iter().find_map(|pair| ssl_mode(pair))
            && !SSL_MODES.contains(&mode.to_ascii_lowercase().as_str())
        {
            return Err(invalid(&format!(
                "sslmode must be one of {}, not '{mode}'",
                SSL_MODES.join(", ")
            )));
        }
        let sqlx_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut options = PgConnectOptions::from_str(&sqlx_url)
            .map_err(|error| invalid(&redact(&innermost(&error), password(base))))?;
        if !names_user(base, &rest)
            && let Some(user) = default_user(std::env::var("PGUSER").ok(), os_user())
        {
            options = options.username(&user);
        }
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

/// The values libpq accepts for `sslmode`.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The value of a `sslmode` (or sqlx's `ssl-mode`) query pair.
fn ssl_mode(pair: &str) -> Option<&str> {
    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
    matches!(key, "sslmode" | "ssl-mode").then_some(value)
}

/// The message of the deepest error in `error`'s chain: sqlx wraps the reason in layers of
/// "error with configuration".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

/// The password of a `postgres://user:password@host` URL, if it has one.
fn password(base: &str) -> Option<&str> {
    let (_, rest) = base.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `text` with `secret` (if any) replaced by `***`.
fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) => text.replace(secret, "***"),
        None => text.to_owned(),
    }
}

/// Whether the URL names the user: `postgres://user@...` or a `user=` parameter.
fn names_user(base: &str, params: &[&str]) -> bool {
    let in_authority = base.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or("");
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| !userinfo.split(':').next().unwrap_or("").is_empty())
    });
    in_authority || params.iter().any(|pair| pair.starts_with("user="))
}

/// The user to connect as when the URL names none, as libpq picks it: `PGUSER` (which sqlx reads
/// itself, so `None` here), else the name of the OS user stint runs as.
fn default_user(pguser: Option<String>, os_user: Option<String>) -> Option<String> {
    match pguser {
        Some(user) if !user.is_empty() => None,
        _ => os_user,
    }
}

/// The name of the effective OS user (libpq looks it up the same way).
fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.name)
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
pub(crate) fn redact_password(url: &str) -> String {
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
    fn a_bad_sslmode_says_which_values_are_allowed() {
        let error = StoreConfig::parse("postgres://u:secret@h/db?sslmode=bogus")
            .expect_err("bad sslmode")
            .to_string();
        assert_eq!(
            error,
            "invalid store configuration: invalid PostgreSQL URL 'postgres://u:***@h/db': sslmode \
             must be one of disable, allow, prefer, require, verify-ca, verify-full, not 'bogus'"
        );
        assert!(StoreConfig::parse("postgres://u@h/db?sslmode=Require").is_ok());
    }

    #[test]
    fn other_url_errors_give_the_reason_without_the_password() {
        let error = StoreConfig::parse("postgres://u:secret@h:99999/db")
            .expect_err("bad port")
            .to_string();
        assert!(
            error.starts_with("invalid store configuration: invalid PostgreSQL URL 'postgres://u:***@h:99999/db': "),
            "{error}"
        );
        assert!(error.contains("port"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn without_a_user_the_url_connects_as_pguser_else_as_the_os_user() {
        assert!(names_user("postgres://u@h/db", &[]));
        assert!(names_user("postgres://u:pw@h/db", &[]));
        assert!(names_user("postgres://h/db", &["user=u"]));
        assert!(!names_user("postgres://h/db", &["sslmode=disable"]));
        assert!(!names_user("postgres://:pw@h/db", &[]));
        let os = Some("alice".to_owned());
        assert_eq!(default_user(Some("bob".to_owned()), os.clone()), None);
        assert_eq!(default_user(None, os.clone()), os);
        assert_eq!(default_user(Some(String::new()), os.clone()), os);
        let named = StoreConfig::parse("postgres://carol@h/db").expect("valid");
        assert_eq!(named.options.get_username(), "carol");
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
