//! Installing the providers a stint process exports through, and taking them down at exit
//! within a bound.

use std::sync::mpsc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::Config;
use crate::export::{self, ExporterError, Failures};
use crate::prometheus::Prometheus;

/// How long the export at exit may take: a collector that is down or slow costs a run at most
/// this much.
pub const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// The installed telemetry of a process. Built only when [`Config::enabled`]; the engine and
/// the worker take their instruments from the global meter provider it installs, so build it
/// before them.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: SdkMeterProvider,
    prometheus: Option<Prometheus>,
    failures: Failures,
}

impl Telemetry {
    /// Builds the exporters and providers `config` asks for and installs the meter provider as
    /// the global one; `None` when it asks for nothing (then nothing is built). With gRPC it
    /// must be called with a Tokio runtime entered, which must outlive [`Telemetry::shutdown`].
    pub fn install(config: &Config) -> Result<Option<Self>, ExporterError> {
        if !config.enabled() {
            return Ok(None);
        }
        let failures = Failures::default();
        let resource = resource(&config.default_service_name);
        let mut meters = SdkMeterProvider::builder().with_resource(resource.clone());
        let mut tracer_provider = None;
        if config.exports() {
            let (spans, metrics) = export::exporters(config, &failures)?;
            tracer_provider = Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(spans)
                    .build(),
            );
            meters = meters.with_periodic_exporter(metrics);
        }
        let prometheus = config.metrics_addr.map(|_| Prometheus::new());
        if let Some(prometheus) = &prometheus {
            meters = meters.with_reader(prometheus.reader());
        }
        let meter_provider = meters.build();
        opentelemetry::global::set_meter_provider(meter_provider.clone());
        Ok(Some(Self {
            tracer_provider,
            meter_provider,
            prometheus,
            failures,
        }))
    }

    /// The tracer spans are made with, when spans are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        use opentelemetry::trace::TracerProvider as _;
        self.tracer_provider
            .as_ref()
            .map(|provider| provider.tracer("stint"))
    }

    /// What `--metrics-addr` serves, when it was given.
    pub fn prometheus(&self) -> Option<&Prometheus> {
        self.prometheus.as_ref()
    }

    /// Exports what is left, waiting at most `bound`, and says what went wrong, if anything
    /// did during the whole run (one message, for one warning line).
    pub fn shutdown(self, bound: Duration) -> Option<String> {
        let (done, finished) = mpsc::channel();
        let Self {
            tracer_provider,
            meter_provider,
            failures,
            ..
        } = self;
        let flushing = failures.clone();
        // The SDK's own waits are longer than the bound (and the metric reader's is fixed), so
        // the flush runs on a thread of its own that the process does not wait for.
        let spawned = std::thread::Builder::new()
            .name("stint-otel-flush".into())
            .spawn(move || {
                let spans = tracer_provider.map(|provider| provider.shutdown_with_timeout(bound));
                let metrics = meter_provider.shutdown_with_timeout(bound);
                let error = [spans.unwrap_or(Ok(())), metrics]
                    .into_iter()
                    .find_map(Result::err);
                let _ = done.send(error.map(|error| error.to_string()));
            });
        if let Err(error) = spawned {
            return Some(format!("cannot flush the telemetry: {error}"));
        }
        let at_exit = match finished.recv_timeout(bound) {
            Ok(error) => error,
            Err(_) => Some(format!(
                "the collector did not take the last spans and metrics within {} ms; they are lost",
                bound.as_millis()
            )),
        };
        flushing.first().or(at_exit)
    }
}

/// The process's resource: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads
/// them, with `default_service` when neither names the service.
fn resource(default_service: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    let builder = Resource::builder();
    let builder = if named {
        builder
    } else {
        builder.with_service_name(default_service.to_owned())
    };
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}
