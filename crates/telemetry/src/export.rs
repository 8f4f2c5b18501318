//! The OTLP exporters, wrapped so that a failed export is remembered (and told once, at exit)
//! instead of being printed from the exporter's thread while a task runs.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::config::{Config, Protocol};

/// The first export failure of the process, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Option<String>>>);

impl Failures {
    fn record(&self, what: &str, result: &OTelSdkResult) {
        if let Err(error) = result {
            let mut first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| format!("{what}: {error}"));
        }
    }

    /// `inner`, its failures recorded here.
    fn watch<E>(&self, inner: E) -> Watched<E> {
        Watched {
            inner,
            failures: self.clone(),
        }
    }

    /// The first failure's message.
    pub(crate) fn first(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An exporter whose failures are recorded in [`Failures`].
#[derive(Debug)]
pub(crate) struct Watched<E> {
    inner: E,
    failures: Failures,
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.failures.record("exporting spans", &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.failures.record("exporting metrics", &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP exporter: {0}")]
pub struct ExporterError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Builds the exporter of one signal from its builder, over the protocol `config` asks for.
/// The span and metric builders share no trait, so a macro spells the choice once.
macro_rules! build_exporter {
    ($builder:expr, $config:expr, $path:literal) => {{
        let endpoint = $config.signal_endpoint($path);
        match $config.protocol {
            Protocol::HttpProtobuf => {
                let builder = $builder.with_http();
                match endpoint {
                    Some(endpoint) => builder.with_endpoint(endpoint).build()?,
                    None => builder.build()?,
                }
            }
            Protocol::Grpc => {
                let builder = $builder.with_tonic();
                match endpoint {
                    Some(endpoint) => builder.with_endpoint(endpoint).build()?,
                    None => builder.build()?,
                }
            }
        }
    }};
}

/// The span and metric exporters `config` asks for, their failures recorded in `failures`.
/// gRPC needs a Tokio runtime entered on this thread.
pub(crate) fn exporters(
    config: &Config,
    failures: &Failures,
) -> Result<
    (
        Watched<opentelemetry_otlp::SpanExporter>,
        Watched<opentelemetry_otlp::MetricExporter>,
    ),
    ExporterError,
> {
    let spans = opentelemetry_otlp::SpanExporter::builder();
    let metrics = opentelemetry_otlp::MetricExporter::builder();
    Ok((
        failures.watch(build_exporter!(spans, config, "/v1/traces")),
        failures.watch(build_exporter!(metrics, config, "/v1/metrics")),
    ))
}
