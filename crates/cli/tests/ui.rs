//! `stint ui` as a user starts it: on the database of a real run, the URL it prints serves the
//! run; the refusals (a non-loopback address without a token, a taken port, no database) are
//! one line each with their exit code.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use common::{World, assert_exit, stint_lines};

/// `GET path` on `address` over HTTP/1.1: the status line and the body.
fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to stint ui");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
fn ui_serves_the_runs_of_its_database_at_the_url_it_prints() {
    let world = World::sqlite();
    let retried = world.run(
        "nightly",
        "flaky",
        &["--retries", "1", "--backoff-initial", "10ms"],
        "test \"$STINT_ATTEMPT\" = 2 || { echo '{\"at\":\"<b>x</b>\"}' >&3; exit 1; }; echo 7",
    );
    assert_exit(&retried, 0);

    let mut server = world
        .std_cmd()
        .args(["ui", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("stint ui starts");
    let mut stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the first line");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("a URL in {line:?}"));
    let address = url.trim_start_matches("http://").trim_end_matches('/');

    let (status, runs) = http_get(address, "/api/runs");
    assert!(status.contains("200"), "{status}");
    assert!(runs.contains("\"run_id\":\"nightly\""), "{runs}");
    let (_, page) = http_get(address, "/runs/nightly");
    assert!(
        page.contains("data-attempt=\"1\" data-state=\"failed\""),
        "{page}"
    );
    assert!(page.contains("data-attempt=\"2\" data-state=\"finished\""));
    let (_, attempt) = http_get(address, "/runs/nightly/nodes/flaky/0/attempts/1");
    assert!(attempt.contains("&lt;b&gt;x&lt;/b&gt;") && !attempt.contains("<b>x</b>"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = server.wait().expect("stint ui exits");
    assert_eq!(
        status.code(),
        Some(130),
        "SIGTERM stops it as a cancellation"
    );
}

#[test]
fn ui_refuses_what_it_cannot_serve_safely_in_one_line() {
    let world = World::sqlite();
    assert_exit(&world.run("r", "n", &[], "echo 1"), 0);

    let open = world
        .cmd()
        .args(["ui", "--listen", "0.0.0.0:0"])
        .env_remove("STINT_UI_TOKEN")
        .output()
        .expect("stint ui");
    assert_exit(&open, 2);
    let lines = stint_lines(&open);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "stint: USAGE: --listen 0.0.0.0:0 is reachable from other machines: give a token"
        ),
        "{lines:?}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    let busy = world.stint(&["ui", "--listen", &address]);
    assert_exit(&busy, 2);
    assert_eq!(
        stint_lines(&busy),
        [format!(
            "stint: INVALID_INPUT: cannot listen on {address}: the address is already in use"
        )]
    );

    let nowhere = World::sqlite();
    let missing = nowhere.stint(&["ui", "--listen", "127.0.0.1:0"]);
    assert_exit(&missing, 1);
    assert!(stint_lines(&missing)[0].starts_with("stint: NO_DATABASE: "));
}
