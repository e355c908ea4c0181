//! Each limit, configured small: its status (414, 431, 413, 503) with `Connection: close`, a
//! clean close, and a server that keeps serving. Values at the limit are accepted.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use uvhttp::http::{OverLimit, ServerConnectionPtr, ServerOptions, StatusCode};

/// `GET` says hello; anything with a body gets it back once complete (not streamed, so body
/// errors can still be answered with their status).
fn server(configure: impl FnOnce(&mut ServerOptions) + Send + 'static) -> TestServer {
    TestServer::start(move |srv| {
        srv.configure(configure);
        srv.connection += |conn: ServerConnectionPtr| {
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

/// Reads the rejection on `c`: `status`, `Connection: close`, then a clean close.
fn expect_rejection(c: &mut Client, status: u16) {
    let r = c.read_reply();
    assert_eq!(r.status, status, "{}", r.body_str());
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_clean_close();
}

/// Sends `raw` on a fresh connection (and nothing more) and expects the rejection.
fn rejected(srv: &TestServer, raw: &[u8], status: u16) {
    let mut c = Client::connect(srv.addr);
    c.send(raw);
    expect_rejection(&mut c, status);
}

#[test]
fn request_line_over_the_limit_is_414() {
    let srv = server(|o| o.max_request_line = 100);
    // "GET " + target + " HTTP/1.1" is exactly 100 bytes: accepted.
    let target = format!("/{}", "a".repeat(100 - 4 - 9 - 1));
    let line = format!("GET {target} HTTP/1.1");
    assert_eq!(line.len(), 100);
    let r = request(srv.addr, format!("{line}\r\nHost: h\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    // One more byte: 414.
    rejected(
        &srv,
        format!("GET {target}a HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        414,
    );
    // Decided as soon as the line is too long, without waiting for its end.
    rejected(&srv, format!("GET /{}", "b".repeat(200)).as_bytes(), 414);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn head_over_the_limit_is_431() {
    let srv = server(|o| o.max_head_size = 1024);
    let head = |pad: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let fixed = head(0).len();
    // Exactly 1024 bytes with the final CRLF: accepted.
    let r = request(srv.addr, head(1024 - fixed).as_bytes());
    assert_eq!(r.status, 200);
    rejected(&srv, head(1025 - fixed).as_bytes(), 431);
    // A head that never ends is cut off at the limit, not buffered further.
    rejected(
        &srv,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Pad: {}", "p".repeat(3000)).as_bytes(),
        431,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn too_many_header_fields_is_431() {
    let srv = server(|o| o.max_headers = 10);
    let with_fields = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 1..n {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    let r = request(srv.addr, with_fields(10).as_bytes());
    assert_eq!(r.status, 200);
    rejected(&srv, with_fields(11).as_bytes(), 431);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn content_length_over_max_body_size_is_413_before_the_body_is_sent() {
    let srv = server(|o| o.max_body_size = 1000);
    let r = request(
        srv.addr,
        format!(
            "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n{}",
            "x".repeat(1000)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    // Only the head is sent: the 413 must come without waiting for any body byte.
    rejected(
        &srv,
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
    // A huge declared length is no different.
    rejected(
        &srv,
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
        413,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn chunked_body_over_max_body_size_is_413() {
    let srv = server(|o| o.max_body_size = 1000);
    let head = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    // 1000 bytes in chunks: accepted.
    let mut raw = head.as_bytes().to_vec();
    raw.extend_from_slice(&chunked(&[b'y'; 1000], 300));
    let r = request(srv.addr, &raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    // 1001: refused as soon as the total passes the limit.
    let mut raw = head.as_bytes().to_vec();
    raw.extend_from_slice(&chunked(&[b'y'; 1001], 600));
    rejected(&srv, &raw, 413);
    // One chunk announcing more than the limit, with its data still to come.
    rejected(
        &srv,
        format!("{head}100000\r\n{}", "z".repeat(2000)).as_bytes(),
        413,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn over_max_connections_with_reject503() {
    let srv = server(|o| {
        o.max_connections = 2;
        o.over_limit = OverLimit::Reject503;
    });
    let mut a = Client::connect(srv.addr);
    let mut b = Client::connect(srv.addr);
    assert_eq!(a.request(&get("/")).status, 200);
    assert_eq!(b.request(&get("/")).status, 200);
    srv.wait_connections(|n| n == 2, "two connections");
    let mut c = Client::connect(srv.addr);
    c.send(&get("/"));
    let r = c.read_reply();
    assert_eq!(r.status, 503);
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    // The two admitted connections are unaffected.
    assert_eq!(a.request(&get("/")).status, 200);
    srv.wait_connections(|n| n == 2, "the rejected connection to go");
    // When one closes, a new client is served again.
    drop(b);
    srv.wait_connections(|n| n == 1, "b's close");
    let mut d = Client::connect(srv.addr);
    assert_eq!(d.request(&get("/")).status, 200);
    drop((a, d));
    srv.stop();
}

#[test]
fn a_burst_of_connections_is_taken_in_batches_within_max_connections() {
    // Several connections wait in the kernel's queue at once, so the server takes more than
    // one per wakeup (`accept_batch`); the batch must still stop at the limit.
    let srv = server(|o| {
        o.max_connections = 2;
        o.over_limit = OverLimit::PauseAccepting;
        o.accept_batch = 8;
    });
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(srv.addr)).collect();
    for c in &mut clients {
        c.send(&get("/"));
    }
    srv.wait_connections(|n| n == 2, "two admitted connections");
    // The other three stay queued in the kernel while the two stay open.
    clients[4].expect_open_for(Duration::from_millis(300));
    assert_eq!(srv.connection_count(), 2);
    // Connections are accepted in the order they were queued: each close admits the next,
    // and every client is answered in the end.
    let mut answered = 0;
    while !clients.is_empty() {
        let mut c = clients.remove(0);
        let r = c.read_reply();
        assert_eq!(r.status, 200);
        assert!(srv.connection_count() <= 2);
        answered += 1;
        drop(c);
    }
    assert_eq!(answered, 5);
    srv.stop();
}

#[test]
fn connections_taken_in_one_accept_batch_are_served_whether_they_close_or_stay() {
    // The loop is held while six connections queue with their requests, so one wakeup takes
    // them all: one through libuv's accept, the rest through the batch, whose sockets are
    // read and written before libuv has them (on Unix) and go to libuv only to wait.
    let srv = server(|o| o.accept_batch = 16);
    let (release, held) = std::sync::mpsc::channel::<()>();
    srv.on_loop(move || {
        let _ = held.recv_timeout(Duration::from_secs(10));
    });
    let close_request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut closing: Vec<Client> = (0..3).map(|_| Client::connect(srv.addr)).collect();
    let mut staying: Vec<Client> = (0..2).map(|_| Client::connect(srv.addr)).collect();
    let mut partial = Client::connect(srv.addr);
    for c in &mut closing {
        c.send(close_request);
    }
    for c in &mut staying {
        c.send(&get("/"));
    }
    // Half a head: the rest can only be read by waiting, which needs libuv.
    partial.send(b"GET / HTTP/1.1\r\nHo");
    release.send(()).unwrap();
    for c in &mut closing {
        let r = c.read_reply();
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "Hello, World!");
        assert!(r.closes(), "{:?}", r.headers);
        c.expect_clean_close();
    }
    for c in &mut staying {
        assert_eq!(c.read_reply().status, 200);
        // The second request arrives later: the socket waits for it through libuv.
        let r = c.request(&get("/"));
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
    partial.send(b"st: x\r\n\r\n");
    let r = partial.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    drop((staying, partial));
    srv.wait_connections(|n| n == 0, "every connection closed");
    srv.stop();
}

#[test]
fn over_max_connections_with_pause_accepting() {
    let srv = server(|o| {
        o.max_connections = 1;
        o.over_limit = OverLimit::PauseAccepting;
    });
    let mut a = Client::connect(srv.addr);
    assert_eq!(a.request(&get("/")).status, 200);
    // The kernel completes b's handshake, but the server does not accept it yet.
    let mut b = Client::connect(srv.addr);
    b.send(&get("/"));
    b.expect_open_for(Duration::from_millis(300));
    assert_eq!(srv.connection_count(), 1);
    // a is still served normally meanwhile.
    assert_eq!(a.request(&get("/")).status, 200);
    // Once a closes, b is accepted and answered.
    drop(a);
    let r = b.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    assert!(!r.closes());
    drop(b);
    srv.stop();
}
