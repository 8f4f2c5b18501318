//! Telemetry that leaves a stint process: spans and metrics exported over OTLP (HTTP/protobuf
//! or gRPC), W3C trace context in and out, and the metrics in the Prometheus text format.
//!
//! Configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_SDK_DISABLED`) and the endpoint flag ([`Config`]). Off when nothing is set: then
//! [`Telemetry::install`] builds nothing, and no span or thread exists.
//!
//! Export never holds up a task: spans and metrics leave on the SDK's own threads, a failed
//! export is remembered rather than printed, and [`Telemetry::shutdown`] waits at most a bound.

mod config;
mod context;
mod export;
mod fanout;
mod prometheus;
mod setup;
mod spans;
mod worker;

pub use config::{Config, ConfigError, Protocol};
pub use context::{TRACEPARENT, TRACESTATE, TraceParent};
pub use export::ExporterError;
pub use fanout::{Observers, WorkerObservers};
pub use prometheus::{MetricsServer, Prometheus};
pub use setup::{FLUSH_BOUND, Telemetry};
pub use spans::SpanObserver;
pub use worker::{QueueDepth, WorkerTelemetry};
