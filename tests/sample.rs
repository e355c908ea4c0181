//! The sample server binary (examples/httpechoserver.rs) as a user runs it: started on a free
//! port, every route exercised over real sockets, then stopped with SIGTERM (exit code 0,
//! which the sample only returns after a clean `uv_loop_close`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn sample_binary_serves_every_route_and_stops_on_sigterm() {
    let mut sample = SampleServer::start::<&str>(&[]);
    assert_eq!(sample.addr.ip().to_string(), "127.0.0.1");
    let mut c = Client::connect(sample.addr);

    let r = c.request(&get("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let body = pattern(100_000);
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = c.request(&raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert!(r.body == body, "echo differs");

    let r = c.request(&get("/big?bytes=100000"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(r.body.len(), 100_000);
    assert!(r.body.iter().all(|&b| b == b'x'));

    let r = c.request(&get("/status/204"));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(r.header("content-length").is_none());

    let r = c.request(&get("/status/404"));
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());

    let r = c.request(&get("/no/such/route"));
    assert_eq!(r.status, 404);
    assert_eq!(r.body_str(), "Not Found\n");
    assert!(!r.closes(), "all on one keep-alive connection");

    // SIGTERM with this idle keep-alive connection open: it is closed cleanly, then the
    // process exits 0 (after uv_loop_close succeeded).
    let waiter = std::thread::spawn(move || {
        c.expect_clean_close();
    });
    let (code, stderr) = sample.signal_and_wait("-TERM");
    waiter
        .join()
        .expect("the idle connection was closed cleanly");
    assert_eq!(code, Some(0), "exit status; stderr: {stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn sample_binary_stops_on_sigint_too() {
    let mut sample = SampleServer::start::<&str>(&[]);
    assert_eq!(request(sample.addr, &get("/")).status, 200);
    let (code, stderr) = sample.signal_and_wait("-INT");
    assert_eq!(code, Some(0), "exit status; stderr: {stderr}");
}

#[test]
fn sample_binary_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(example_binary("httpechoserver"))
        .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
        .output()
        .expect("run the sample");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port} is in use")),
        "{stderr}"
    );
}
