//! `--metrics-addr`: the process's metrics in the Prometheus text format on `GET /metrics`.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The pull side of the meter provider: collects on each scrape.
#[derive(Debug, Clone)]
pub struct Prometheus {
    reader: Arc<ManualReader>,
}

/// The reader registered with the meter provider (it takes ownership of its readers).
#[derive(Debug)]
pub(crate) struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl Prometheus {
    pub(crate) fn new() -> Self {
        Self {
            reader: Arc::new(ManualReader::builder().build()),
        }
    }

    pub(crate) fn reader(&self) -> SharedReader {
        SharedReader(self.reader.clone())
    }

    /// Every metric now, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut collected = ResourceMetrics::default();
        let mut text = String::new();
        if self.reader.collect(&mut collected).is_ok() {
            for scope in collected.scope_metrics() {
                for metric in scope.metrics() {
                    encode(&mut text, metric);
                }
            }
        }
        text
    }

    /// Listens on `addr` and serves [`Prometheus::render`] on `GET /metrics` until the
    /// returned server is dropped. Binding fails when the address is in use.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, self.clone()));
            }
        });
        Ok(MetricsServer { local, task })
    }
}

/// A running metrics endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on (the port chosen when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one HTTP/1.x request and closes the connection.
async fn answer(mut stream: TcpStream, metrics: Prometheus) {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 1024];
    // The request line and headers: at most 16 KiB, within 5 s.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
    });
    if read.await.is_err() {
        return;
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", metrics.render()),
        (Some("GET"), _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Appends `metric` in the text format: gauges and sums as samples, histograms as buckets.
fn encode(out: &mut String, metric: &Metric) {
    let name = metric_name(metric);
    let help = metric
        .description()
        .replace('\\', "\\\\")
        .replace('\n', "\\n");
    match metric.data() {
        AggregatedMetrics::F64(data) => encode_data(out, &name, &help, data),
        AggregatedMetrics::U64(data) => encode_data(out, &name, &help, data),
        AggregatedMetrics::I64(data) => encode_data(out, &name, &help, data),
    }
}

fn encode_data<T: Copy + fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
) {
    match data {
        MetricData::Gauge(gauge) => {
            header(out, name, help, "gauge");
            for point in gauge.data_points() {
                sample(out, name, &labels(point.attributes(), None), point.value());
            }
        }
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{name}_total"), "counter")
            } else {
                (name.to_owned(), "gauge")
            };
            header(out, &name, help, kind);
            for point in sum.data_points() {
                sample(out, &name, &labels(point.attributes(), None), point.value());
            }
        }
        MetricData::Histogram(histogram) => {
            header(out, name, help, "histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0_u64;
                let bounds: Vec<String> = point.bounds().map(|b| b.to_string()).collect();
                let les = bounds.iter().map(String::as_str).chain(["+Inf"]);
                for (le, count) in les.zip(point.bucket_counts()) {
                    cumulative += count;
                    let labels = labels(point.attributes(), Some(le));
                    sample(out, &format!("{name}_bucket"), &labels, cumulative);
                }
                let labels = labels(point.attributes(), None);
                sample(out, &format!("{name}_sum"), &labels, point.sum());
                sample(out, &format!("{name}_count"), &labels, point.count());
            }
        }
        // No instrument of stint's is an exponential histogram.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl fmt::Display) {
    let _ = writeln!(out, "{name}{labels} {value}");
}

/// `{key="value",...}`, or nothing without labels.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| {
            let value = kv.value.as_str();
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{value}\"", sanitize(kv.key.as_str()))
        })
        .collect();
    pairs.extend(le.map(|le| format!("le=\"{le}\"")));
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// `stint.attempt.duration` in ms becomes `stint_attempt_duration_milliseconds`.
fn metric_name(metric: &Metric) -> String {
    let name = sanitize(metric.name());
    match metric.unit() {
        "ms" => format!("{name}_milliseconds"),
        "s" => format!("{name}_seconds"),
        _ => name,
    }
}

/// Letters, digits and `_` only.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let prometheus = Prometheus::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(prometheus.reader())
            .build();
        let meter = provider.meter("stint");
        let attempts = meter.u64_counter("stint.attempts").build();
        attempts.add(2, &[KeyValue::new("outcome", "finished")]);
        let duration = meter
            .f64_histogram("stint.attempt.duration")
            .with_unit("ms")
            .build();
        duration.record(3.0, &[KeyValue::new("outcome", "finished")]);
        let text = prometheus.render();
        assert!(
            text.contains("# TYPE stint_attempts_total counter"),
            "{text}"
        );
        assert!(
            text.contains("stint_attempts_total{outcome=\"finished\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("stint_attempt_duration_milliseconds_count{outcome=\"finished\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "stint_attempt_duration_milliseconds_bucket{outcome=\"finished\",le=\"+Inf\"} 1"
            ),
            "{text}"
        );
    }
}
