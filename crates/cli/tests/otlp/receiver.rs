//! OTLP receivers started inside the test on loopback ports: OTLP/HTTP (protobuf bodies, axum)
//! and OTLP/gRPC (tonic, with opentelemetry-proto's service traits), decoding what stint sends
//! with opentelemetry-proto; and one that accepts connections and never answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// What a receiver was sent.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub spans: Vec<Span>,
    pub metrics: Vec<Metric>,
    pub service_names: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

/// A receiver on a loopback port, on a runtime of its own.
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    received: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// OTLP/HTTP with protobuf bodies on `/v1/traces` and `/v1/metrics`.
    pub(crate) fn http() -> Self {
        Self::start(|listener, received| async move {
            let app = axum::Router::new()
                .route(
                    "/v1/traces",
                    axum::routing::post(export_http::<ExportTraceServiceRequest>),
                )
                .route(
                    "/v1/metrics",
                    axum::routing::post(export_http::<ExportMetricsServiceRequest>),
                )
                .with_state(received);
            let _ = axum::serve(listener, app).await;
        })
    }

    /// OTLP/gRPC.
    pub(crate) fn grpc() -> Self {
        Self::start(|listener, received| async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Grpc(received.clone())))
                .add_service(MetricsServiceServer::new(Grpc(received)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        })
    }

    fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Shared) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let received = Shared::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(serve(listener, received.clone()));
        Self {
            addr,
            received,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reads what was received.
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Received) -> T) -> T {
        read(&self.received.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The spans named `name`.
    pub(crate) fn spans(&self, name: &str) -> Vec<Span> {
        self.with(|r| r.spans.iter().filter(|s| s.name == name).cloned().collect())
    }

    /// The metrics named `name` (one per export).
    pub(crate) fn metrics(&self, name: &str) -> Vec<Metric> {
        self.with(|r| {
            r.metrics
                .iter()
                .filter(|m| m.name == name)
                .cloned()
                .collect()
        })
    }
}

/// An OTLP export request: what the receiver keeps of it, and the answer it gets.
trait Export: prost::Message + Default + Sized + 'static {
    /// The (empty, accepting) response.
    type Response: prost::Message + Default;

    /// Keeps what the request carries.
    fn record(self, received: &Shared);
}

impl Export for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;

    fn record(self, received: &Shared) {
        let mut received = received.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in self.resource_spans {
            if let Some(name) = resource
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
            {
                received.service_names.push(name);
            }
            for scope in resource.scope_spans {
                received.spans.extend(scope.spans);
            }
        }
    }
}

impl Export for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;

    fn record(self, received: &Shared) {
        let mut received = received.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in self.resource_metrics {
            for scope in resource.scope_metrics {
                received.metrics.extend(scope.metrics);
            }
        }
    }
}

/// One OTLP/HTTP export: the protobuf body decoded and recorded, the response encoded.
async fn export_http<R: Export>(
    axum::extract::State(received): axum::extract::State<Shared>,
    body: axum::body::Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let request = R::decode(body).expect("an OTLP export request");
    request.record(&received);
    let response = R::Response::default().encode_to_vec();
    ([("content-type", "application/x-protobuf")], response)
}

struct Grpc(Shared);

/// Implements the OTLP/gRPC service trait `$service`, whose one method `export` takes a
/// `$request`, for [`Grpc`]. A macro because each service is a trait of its own.
macro_rules! grpc_export {
    ($service:ident, $request:ty) => {
        #[tonic::async_trait]
        impl $service for Grpc {
            async fn export(
                &self,
                request: tonic::Request<$request>,
            ) -> Result<tonic::Response<<$request as Export>::Response>, tonic::Status> {
                request.into_inner().record(&self.0);
                Ok(tonic::Response::new(Default::default()))
            }
        }
    };
}

grpc_export!(TraceService, ExportTraceServiceRequest);
grpc_export!(MetricsService, ExportMetricsServiceRequest);

/// A port that accepts connections and never answers (a collector that hangs).
pub(crate) struct Silent {
    pub addr: SocketAddr,
}

impl Silent {
    pub(crate) fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: a test process makes a handful of connections.
            for stream in listener.incoming().take(64).flatten() {
                held.push(stream);
            }
        });
        Self { addr }
    }
}

/// The string (or integer, as text) value of attribute `key`.
pub(crate) fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The sum of a counter's latest points whose `key` attribute is `value`: the last export
/// (cumulative) holds the totals.
pub(crate) fn counter_total(metrics: &[Metric], key: &str, value: &str) -> Option<u64> {
    let last = metrics.last()?;
    let Some(metric::Data::Sum(sum)) = &last.data else {
        return None;
    };
    let total = sum
        .data_points
        .iter()
        .filter(|p| attribute(&p.attributes, key).as_deref() == Some(value))
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => {
                u64::try_from(i).unwrap_or(0)
            }
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                d,
            )) => d as u64,
            None => 0,
        })
        .sum();
    Some(total)
}

/// The number of values a histogram's latest export counted.
pub(crate) fn histogram_count(metrics: &[Metric]) -> Option<u64> {
    let Some(metric::Data::Histogram(histogram)) = &metrics.last()?.data else {
        return None;
    };
    Some(histogram.data_points.iter().map(|p| p.count).sum())
}

/// Lower-case hex, as W3C trace context writes ids.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
