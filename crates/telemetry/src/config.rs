//! What to export and where, from the standard `OTEL_*` variables and stint's own flags.

use std::net::SocketAddr;

/// The standard variables stint reads (the exporter reads the rest, such as
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT`, itself).
const ENDPOINT_VARS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, the default; port 4318).
    HttpProtobuf,
    /// OTLP/gRPC (`grpc`; port 4317).
    Grpc,
}

/// A telemetry setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error(
        "invalid OTLP endpoint {endpoint:?} ({from}): expected a URL such as http://127.0.0.1:4318"
    )]
    Endpoint {
        /// The value given.
        endpoint: String,
        /// Where it came from (a flag or a variable).
        from: String,
    },
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol stint does not speak.
    #[error("unsupported OTEL_EXPORTER_OTLP_PROTOCOL {0:?}: expected http/protobuf or grpc")]
    Protocol(String),
}

/// What a stint process exports. [`Config::from_env`] reads it; [`Config::enabled`] says
/// whether anything is to be built at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `--otlp-endpoint`: the collector's base URL; it wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Whether some `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is set (the exporter reads it).
    pub endpoint_from_env: bool,
    /// The transport.
    pub protocol: Protocol,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported whatever else is set.
    pub sdk_disabled: bool,
    /// The service name when `OTEL_SERVICE_NAME` (or `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`) does not name one.
    pub default_service_name: String,
    /// `--metrics-addr`: serve the metrics in the Prometheus text format there.
    pub metrics_addr: Option<SocketAddr>,
}

impl Config {
    /// Reads the standard variables from the process's environment; `endpoint` is the
    /// `--otlp-endpoint` flag.
    pub fn from_env(endpoint: Option<String>, service: &str) -> Result<Self, ConfigError> {
        Self::from_vars(endpoint, service, |name| std::env::var(name).ok())
    }

    /// As [`Config::from_env`], with the variables read through `var`.
    pub fn from_vars(
        endpoint: Option<String>,
        service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint, "--otlp-endpoint")?;
        }
        let mut endpoint_from_env = false;
        for name in ENDPOINT_VARS {
            if let Some(value) = set(name) {
                check_endpoint(&value, name)?;
                endpoint_from_env = true;
            }
        }
        let protocol = match set("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref().map(str::trim) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => return Err(ConfigError::Protocol(other.to_owned())),
        };
        let sdk_disabled =
            set("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
        Ok(Self {
            endpoint,
            endpoint_from_env,
            protocol,
            sdk_disabled,
            default_service_name: service.to_owned(),
            metrics_addr: None,
        })
    }

    /// Whether spans and metrics are sent to a collector.
    pub fn exports(&self) -> bool {
        !self.sdk_disabled && (self.endpoint.is_some() || self.endpoint_from_env)
    }

    /// Whether anything (an exporter or the metrics endpoint) is to be built. When this is
    /// false, nothing is: no exporter, no thread, no span.
    pub fn enabled(&self) -> bool {
        self.exports() || self.metrics_addr.is_some()
    }

    /// The endpoint of one signal given with `--otlp-endpoint` (`path` is `/v1/traces` or
    /// `/v1/metrics`; gRPC takes the base URL as it is).
    pub(crate) fn signal_endpoint(&self, path: &str) -> Option<String> {
        let base = self.endpoint.as_deref()?.trim_end_matches('/');
        Some(match self.protocol {
            Protocol::HttpProtobuf => format!("{base}{path}"),
            Protocol::Grpc => base.to_owned(),
        })
    }
}

/// Refuses anything but `http://host...` or `https://host...`.
fn check_endpoint(endpoint: &str, from: &str) -> Result<(), ConfigError> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !host.starts_with(':') && !host.contains(' ') => Ok(()),
        _ => Err(ConfigError::Endpoint {
            endpoint: endpoint.to_owned(),
            from: from.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(flag.map(str::to_owned), "stint", |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn nothing_set_builds_nothing() {
        let config = config(None, &[("OTEL_SERVICE_NAME", "x")]).expect("valid");
        assert!(!config.enabled());
    }

    #[test]
    fn an_endpoint_from_the_flag_or_the_environment_turns_export_on() {
        assert!(
            config(Some("http://127.0.0.1:4318"), &[])
                .expect("ok")
                .exports()
        );
        let env = config(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert!(env.expect("ok").exports());
    }

    #[test]
    fn sdk_disabled_wins_over_an_endpoint() {
        let config = config(
            Some("http://127.0.0.1:4318"),
            &[("OTEL_SDK_DISABLED", "TRUE")],
        );
        assert!(!config.expect("ok").exports());
    }

    #[test]
    fn bad_endpoints_and_protocols_are_refused() {
        for bad in ["127.0.0.1:4318", "ftp://x", "http://", "http://:4318/"] {
            assert!(config(Some(bad), &[]).is_err(), "{bad}");
        }
        let json = config(None, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(json, Err(ConfigError::Protocol("http/json".into())));
    }

    #[test]
    fn the_flag_gets_the_signal_path_over_http_only() {
        let http = config(Some("http://c:4318/"), &[]).expect("ok");
        assert_eq!(
            http.signal_endpoint("/v1/traces").as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let grpc = config(
            Some("http://c:4317"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .expect("ok");
        assert_eq!(
            grpc.signal_endpoint("/v1/traces").as_deref(),
            Some("http://c:4317")
        );
    }
}
