//! `stint worker`: its spans continue the submitter's trace, and `--metrics-addr` serves the
//! metrics in the Prometheus text format.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{World, assert_exit, text};
use crate::receiver::{Receiver, hex};
use crate::{TRACE, assert_attributes, stint_with, the_only, the_traced_node, traceparent};

#[test]
fn a_submitted_task_continues_the_submitters_trace() {
    let collector = Receiver::http();
    let w = World::sqlite();
    let submit = ["-q", "submit", "--queue", "builds"];
    let node = ["--run-id", "w1", "--node-id", "n1"];
    let script = ["--", "sh", "-c", r#"echo "$TRACEPARENT" > seen; echo 1"#];
    let parent = traceparent();
    stint_with(
        &w,
        &[("TRACEPARENT", &parent)],
        &[&submit, &node, &script],
        0,
    );
    let worked = w
        .cmd()
        .env_remove("TRACEPARENT")
        .args(["-q", "worker", "--queue", "builds", "--exit-when-empty"])
        .args(["--otlp-endpoint", &collector.url()])
        .output()
        .expect("stint worker runs");
    assert_exit(&worked, 0);

    let node = the_traced_node(&collector, "the submitter's span");
    assert_attributes(&node, &[("stint.queue", "builds")]);
    let attempt = the_only(collector.spans("stint.attempt"), "attempt");
    assert_eq!(attempt.parent_span_id, node.span_id);
    assert_attributes(
        &attempt,
        &[("stint.queue", "builds"), ("stint.state", "finished")],
    );
    let seen = std::fs::read_to_string(w.path("seen")).expect("seen");
    assert_eq!(
        seen.trim(),
        format!("00-{TRACE}-{}-01", hex(&attempt.span_id))
    );
}

/// A worker serving `/metrics` on a port of its choosing, and that address.
fn worker_with_metrics(w: &World) -> (Child, String) {
    let mut worker = w
        .std_cmd()
        .args([
            "worker",
            "--queue",
            "scraped",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("stint worker starts");
    let stderr = worker.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("stint: metrics on http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .map(str::to_owned)
        })
        .expect("the worker says where its metrics are");
    // Keep draining stderr so the worker never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (worker, addr)
}

/// `GET /metrics`, parsed into `name{labels}` → value.
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn metrics_addr_serves_the_prometheus_text_format() {
    let w = World::sqlite();
    let submitted = w.stint(&[
        "-q", "submit", "--queue", "scraped", "--", "sh", "-c", "echo 1",
    ]);
    assert_exit(&submitted, 0);
    let (mut worker, addr) = worker_with_metrics(&w);
    let deadline = Instant::now() + Duration::from_secs(60);
    let samples = loop {
        let samples = scrape(&addr);
        let finished = samples.get("stint_attempts_total{outcome=\"finished\"}") == Some(&1.0);
        let depth = samples.keys().any(|k| k.starts_with("stint_queue_depth{"));
        if (finished && depth) || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = worker.kill();
    let _ = worker.wait();
    let get = |series: &str| samples.get(series).copied();
    assert_eq!(
        get("stint_attempts_total{outcome=\"finished\"}"),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        get("stint_worker_claim_latency_milliseconds_count{queue=\"scraped\"}"),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        get("stint_worker_running{queue=\"scraped\"}"),
        Some(0.0),
        "{samples:#?}"
    );
    assert_eq!(
        get("stint_attempt_duration_milliseconds_bucket{outcome=\"finished\",le=\"+Inf\"}"),
        Some(1.0),
        "{samples:#?}"
    );
    let depth = |state: &str| {
        get(&format!(
            "stint_queue_depth{{queue=\"scraped\",state=\"{state}\"}}"
        ))
    };
    assert!(
        depth("ready").is_some() && depth("running").is_some(),
        "{samples:#?}"
    );
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let w = World::sqlite();
    let output = w.stint(&["worker", "--exit-when-empty", "--metrics-addr", &addr]);
    assert_exit(&output, 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")),
        "{stderr}"
    );
}
