//! Each timeout, configured short (100-300 ms): header read (slowloris), idle keep-alive,
//! body-read stall and write stall. Every wait is bounded; elapsed times are checked against
//! the configured timeout on both sides.

mod common;

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use uvhttp::http::{ServerConnectionPtr, ServerOptions, StatusCode};

/// 64 KiB of filler for the 64 MiB response, sent by reference.
static BLOCK: [u8; 65536] = [b'w'; 65536];

/// `/huge` sends 64 MiB without copying; requests with a body get it back once complete;
/// anything else says hello.
fn server(configure: impl FnOnce(&mut ServerOptions) + Send + 'static) -> TestServer {
    TestServer::start(move |srv| {
        srv.configure(configure);
        srv.connection += |conn: ServerConnectionPtr| {
            if conn.request().path() == "/huge" {
                conn.response()
                    .set_content_type("application/octet-stream")
                    .set_content_length(64 * 1024 * 1024);
                for _ in 0..1024 {
                    // Flow::Pause is ignored on purpose: this producer does not wait.
                    conn.send_owned(&BLOCK[..]).unwrap();
                }
                return;
            }
            if conn.request().content_length().is_none() && !conn.request().is_chunked() {
                conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                    .unwrap();
                return;
            }
            let body = Rc::new(RefCell::new(Vec::new()));
            let b = body.clone();
            conn.payload
                .attach(move |_, chunk| b.borrow_mut().extend_from_slice(chunk));
            conn.request_complete_signal.attach(move |conn| {
                let body = body.borrow().clone();
                conn.respond(StatusCode::OK, "text/plain", &body).unwrap();
            });
        };
    })
}

/// Asserts `elapsed` is at least about `timeout` (one sweep tick of slack below) and well
/// below a generous upper bound.
fn assert_fired_after(elapsed: Duration, timeout: Duration, what: &str) {
    let low = timeout.mul_f32(0.75);
    let high = timeout + Duration::from_millis(1500);
    assert!(
        elapsed >= low && elapsed <= high,
        "{what}: fired after {elapsed:?}, configured {timeout:?}"
    );
}

#[test]
fn slowloris_half_a_head_gets_408() {
    let t = Duration::from_millis(200);
    let srv = server(move |o| o.header_timeout = t);
    let mut c = Client::connect(srv.addr);
    let start = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n");
    let r = c.read_reply();
    assert_fired_after(start.elapsed(), t, "header timeout");
    assert_eq!(r.status, 408);
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn slowloris_trickling_bytes_is_still_cut_at_the_header_timeout() {
    // Activity does not extend the deadline: it runs from the head's first byte.
    let t = Duration::from_millis(300);
    let srv = server(move |o| o.header_timeout = t);
    let mut c = Client::connect(srv.addr);
    let start = Instant::now();
    let mut reader = c.stream().try_clone().unwrap();
    let raw =
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    // Trickle a byte every 20 ms until the server answers (bounded by the raw length).
    reader
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut first = [0u8; 1];
    loop {
        match reader.read(&mut first) {
            Ok(1) => break,
            Ok(_) => panic!("closed without a response"),
            Err(_) => {}
        }
        assert!(sent < raw.len(), "the server never timed the head out");
        c.send(&raw[sent..sent + 1]);
        sent += 1;
    }
    assert_fired_after(start.elapsed(), t, "header timeout while trickling");
    assert_eq!(first[0], b'H');
    let rest = c.read_reply();
    assert_eq!(
        rest.version, "TTP/1.1",
        "status line continues after the first byte"
    );
    assert_eq!(rest.status, 408);
    assert!(rest.closes());
    drop((c, reader));
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let t = Duration::from_millis(200);
    let srv = server(move |o| o.header_timeout = t);
    let mut c = Client::connect(srv.addr);
    let start = Instant::now();
    // Nothing was asked, so nothing is answered: just a clean close.
    c.expect_clean_close();
    assert_fired_after(start.elapsed(), t, "first-request timeout");
    drop(c);
    srv.wait_connections(|n| n == 0, "the silent connection to go");
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let t = Duration::from_millis(300);
    let srv = server(move |o| {
        o.idle_timeout = t;
        o.header_timeout = Duration::from_secs(5);
    });
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.request(&get("/")).status, 200);
    // A request well inside the idle period is answered, and restarts the idle period.
    std::thread::sleep(t / 2);
    let answered = Instant::now();
    let r = c.request(&get("/"));
    assert_eq!(r.status, 200);
    assert!(!r.closes());
    c.expect_clean_close();
    assert_fired_after(answered.elapsed(), t, "idle timeout");
    drop(c);
    srv.wait_connections(|n| n == 0, "the idle connection to go");
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn idle_timeout_does_not_cut_a_slow_application() {
    // The idle clock runs only while nothing is outstanding: a response that takes longer than
    // the idle timeout is still delivered.
    let t = Duration::from_millis(100);
    let srv = TestServer::start(move |srv| {
        srv.configure(move |o| o.idle_timeout = t);
        let lp = srv.event_loop();
        srv.connection += move |conn: ServerConnectionPtr| {
            let timer = uvhttp::uv::Timer::new(lp).unwrap();
            let keep = conn.clone();
            let slot = Rc::new(RefCell::new(None));
            let s = slot.clone();
            timer
                .start(400, 0, move || {
                    keep.respond(StatusCode::OK, "text/plain", b"late").unwrap();
                    s.borrow_mut().take(); // drops (closes) the timer
                })
                .unwrap();
            *slot.borrow_mut() = Some(timer);
        };
    });
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.request(&get("/")).body_str(), "late");
    assert_eq!(c.request(&get("/")).body_str(), "late");
    drop(c);
    srv.stop();
}

#[test]
fn stalled_request_body_gets_408() {
    let t = Duration::from_millis(200);
    let srv = server(move |o| o.body_timeout = t);
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    let start = Instant::now();
    let r = c.read_reply();
    assert_fired_after(start.elapsed(), t, "body timeout");
    assert_eq!(r.status, 408);
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    // A body that keeps coming, slower than the whole timeout but faster than it per read,
    // is not cut: the timeout is between reads.
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n");
    for b in b"abcdef".chunks(1) {
        std::thread::sleep(t / 4);
        c.send(b);
    }
    let r = c.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "abcdef");
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn client_that_stops_reading_is_cut_off_after_write_timeout() {
    let t = Duration::from_millis(300);
    let srv = server(move |o| o.write_timeout = t);
    let mut stalled = Client::connect(srv.addr);
    let requested = Instant::now();
    stalled.send(&get("/huge"));
    // Meanwhile another client is served normally, several times.
    let mut other = Client::connect(srv.addr);
    for _ in 0..3 {
        assert_eq!(other.request(&get("/")).body_str(), "Hello, World!");
    }
    // The stalled connection goes away on its own (the other one stays), once the kernel
    // buffers are full and no byte has moved for the write timeout.
    srv.wait_connections(|n| n == 1, "the stalled connection to be cut");
    assert_fired_after(requested.elapsed(), t, "write timeout");
    assert_eq!(other.request(&get("/")).body_str(), "Hello, World!");
    // The stalled client never gets the whole response.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(10);
    stalled.set_read_timeout(Duration::from_secs(5));
    loop {
        assert!(
            Instant::now() < deadline,
            "reading the cut response did not end"
        );
        match stalled.stream().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < 64 * 1024 * 1024,
        "the whole response arrived ({got} bytes)"
    );
    drop((stalled, other));
    srv.stop();
}
