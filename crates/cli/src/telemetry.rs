//! Wiring `stint-telemetry` into `run` and `worker`: built only when an endpoint (or
//! `--metrics-addr`) is set, flushed at exit within a bound, failures told in one line.

use std::net::SocketAddr;
use std::sync::Arc;

use stint_domain::AttemptKey;
use stint_engine::Observer;
use stint_telemetry::{Config, FLUSH_BOUND, Observers, SpanObserver, Telemetry, TraceParent};

use crate::args::TelemetryArgs;
use crate::exit::CliError;

/// The telemetry of one command, when any was asked for.
#[derive(Debug)]
pub(crate) struct Exporting {
    telemetry: Telemetry,
    /// The node and attempt spans, when spans are exported.
    pub(crate) spans: Option<Arc<SpanObserver>>,
}

impl Exporting {
    /// Reads `--otlp-endpoint` and the `OTEL_*` variables; builds nothing when they ask for
    /// nothing. Spans are children of `TRACEPARENT`'s context. A bad endpoint or protocol is
    /// bad input (exit 2).
    pub(crate) fn start(
        args: &TelemetryArgs,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Option<Self>, CliError> {
        let mut config = Config::from_env(args.otlp_endpoint.clone(), "stint")
            .map_err(|error| CliError::invalid_input(error.to_string()))?;
        config.metrics_addr = metrics_addr;
        let Some(telemetry) = Telemetry::install(&config)
            .map_err(|error| CliError::invalid_input(error.to_string()))?
        else {
            return Ok(None);
        };
        let spans = telemetry
            .tracer()
            .map(|tracer| Arc::new(SpanObserver::new(tracer, TraceParent::from_env(), None)));
        Ok(Some(Self { telemetry, spans }))
    }

    /// `display` and, when spans are exported, the span observer.
    pub(crate) fn observer(&self, display: Arc<dyn Observer>) -> Arc<dyn Observer> {
        match &self.spans {
            Some(spans) => Arc::new(Observers(vec![display, spans.clone()])),
            None => display,
        }
    }

    /// What `--metrics-addr` serves.
    pub(crate) fn prometheus(&self) -> Option<stint_telemetry::Prometheus> {
        self.telemetry.prometheus().cloned()
    }

    /// Exports what is left within [`FLUSH_BOUND`]; a failure during the run or now is one
    /// warning line.
    pub(crate) fn finish(self) {
        let telemetry = self.telemetry;
        let warning = tokio::task::block_in_place(|| telemetry.shutdown(FLUSH_BOUND));
        if let Some(warning) = warning {
            crate::output::note(&format!("warning: telemetry export failed: {warning}"));
        }
    }
}

/// What `body` returns, run with `exporting`, whose telemetry is then exported within its
/// bound (see [`Exporting::finish`]) whether `body` succeeded or not.
pub(crate) async fn exporting_around<T>(
    exporting: Option<Exporting>,
    body: impl AsyncFnOnce(Option<&Exporting>) -> T,
) -> T {
    let result = body(exporting.as_ref()).await;
    if let Some(exporting) = exporting {
        exporting.finish();
    }
    result
}

/// The variables that hand attempt `key`'s span context to its command (none without spans).
pub(crate) fn command_env(spans: Option<&SpanObserver>, key: &AttemptKey) -> Vec<(String, String)> {
    spans
        .and_then(|spans| spans.traceparent(key))
        .map(|parent| parent.env())
        .unwrap_or_default()
}
