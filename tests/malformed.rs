//! Hostile and malformed input (RFC 9112): each case gets its precise status with
//! `Connection: close`, the connection is then closed cleanly (FIN, not reset), and the server
//! keeps serving other clients.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use uvhttp::http::{ServerConnectionPtr, StatusCode};

/// `/` says hello; `/echo` is the sample's streaming echo; any other POST collects its body
/// and answers it once complete (so body errors can still get their status).
fn server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let path = conn.request().path().to_string();
            if path == "/echo" {
                return sample::echo(&conn);
            }
            if path == "/" {
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

/// Sends `raw` on a fresh connection and asserts the rejection: `status`, `Connection: close`,
/// a plain-text body naming the status, then a clean close.
fn expect_rejected(srv: &TestServer, raw: &[u8], status: u16) {
    let what = String::from_utf8_lossy(raw).into_owned();
    let mut c = Client::connect(srv.addr);
    c.send(raw);
    let r = c.read_reply();
    assert_eq!(r.status, status, "for {what:?}: {}", r.body_str());
    assert!(
        r.closes(),
        "no Connection: close for {what:?}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{what:?}"
    );
    let reason = StatusCode::from_u16(status).unwrap().reason();
    assert!(
        r.body_str().starts_with(&format!("{reason}: ")),
        "{what:?}: body {:?}",
        r.body_str()
    );
    c.expect_clean_close();
}

fn expect_accepted(srv: &TestServer, raw: &[u8], body: &str) {
    let mut c = Client::connect(srv.addr);
    let r = c.request(raw);
    let what = String::from_utf8_lossy(raw);
    assert_eq!(r.status, 200, "for {what:?}: {}", r.body_str());
    assert_eq!(r.body_str(), body, "{what:?}");
    assert!(!r.closes(), "{what:?}");
    // Still in sync: another request on the same connection works.
    assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let srv = server();
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn differing_content_lengths_are_400_identical_ones_are_accepted() {
    let srv = server();
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    );
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    );
    for bad in ["-1", "+5", "5x", "", "0x5", "99999999999999999999999"] {
        expect_rejected(
            &srv,
            format!("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: {bad}\r\n\r\nhello").as_bytes(),
            400,
        );
    }
    expect_accepted(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "hello",
    );
    expect_accepted(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
        "hello",
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn bad_chunk_framing_is_400() {
    let srv = server();
    let head = "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",            // not hexadecimal
        "-5\r\nhello\r\n0\r\n\r\n",            // a sign
        "5\r\nhelloXX0\r\n\r\n",               // no CRLF after the chunk data
        "5\r\nhello\n0\r\n\r\n",               // bare LF after the chunk data
        "5\nhello\r\n0\r\n\r\n",               // bare LF after the size
        "10000000000000000\r\nx\r\n0\r\n\r\n", // 17 hex digits
        "5;=x\r\nhello\r\n0\r\n\r\n",          // bad extension
        "0\r\nBad Trailer: x\r\n\r\n",         // bad trailer name
    ] {
        expect_rejected(&srv, format!("{head}{body}").as_bytes(), 400);
    }
    // The same framing, well-formed, is fine.
    expect_accepted(
        &srv,
        format!("{head}5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n").as_bytes(),
        "hello",
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn bad_chunk_after_a_streamed_response_started_cuts_only_that_connection() {
    // The echo sent its 200 head before the bad chunk arrived: a 400 can no longer be sent, so
    // the response is cut short (never completed) instead.
    let srv = server();
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let head = c.read_head_raw();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(c.read_exact_bytes(10), b"5\r\nhello\r\n");
    c.send(b"zz\r\n");
    // Cut: no last chunk ever comes, the connection ends (reset, since the response is
    // unfinished and must not look complete).
    assert!(c.is_closed_by_server(), "the connection was not cut");
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn obs_fold_is_400() {
    let srv = server();
    expect_rejected(
        &srv,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n",
        400,
    );
    expect_rejected(
        &srv,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\tc\r\n\r\n",
        400,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn control_characters_in_a_header_value_are_400() {
    let srv = server();
    for value in [&b"a\x01b"[..], b"a\x00b", b"a\x7fb", b"a\x1bb", b"a\rb"] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: ".to_vec();
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n\r\n");
        expect_rejected(&srv, &raw, 400);
    }
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn bad_line_endings_are_400() {
    let srv = server();
    expect_rejected(&srv, b"GET / HTTP/1.1\nHost: h\n\n", 400);
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn host_is_required_once_in_http11() {
    let srv = server();
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    // HTTP/1.0 may leave it out.
    let r = request(srv.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    srv.stop();
}

#[test]
fn unknown_transfer_coding_is_501() {
    let srv = server();
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    );
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400() {
    // RFC 9112 6.3: the body length cannot be determined: 400 and close (this takes precedence
    // over the unknown coding, which would otherwise be 501).
    let srv = server();
    for te in ["gzip", "chunked, gzip", "chunked, chunked", "identity"] {
        expect_rejected(
            &srv,
            format!("POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n")
                .as_bytes(),
            400,
        );
    }
    // HTTP/1.0 has no transfer codings.
    expect_rejected(
        &srv,
        b"POST /b HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn unsupported_http_versions_are_505() {
    let srv = server();
    for v in ["HTTP/2.0", "HTTP/3", "HTTP/0.9"] {
        expect_rejected(
            &srv,
            format!("GET / {v}\r\nHost: h\r\n\r\n").as_bytes(),
            505,
        );
    }
    // HTTP/0.9's request-line has no version at all.
    expect_rejected(&srv, b"GET /\r\n\r\n", 505);
    // Not a version: 400.
    expect_rejected(&srv, b"GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400);
    assert_still_serves(srv.addr);
    srv.stop();
}

/// RFC 9110 2.5: a higher minor version of HTTP/1 is served as HTTP/1.1 and answered as such,
/// on a connection that stays open.
#[test]
fn a_higher_http1_minor_version_is_served_as_http11() {
    let srv = server();
    let mut c = Client::connect(srv.addr);
    c.send(b"GET / HTTP/1.2\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    for _ in 0..2 {
        let r = c.read_reply();
        assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
        assert_eq!(r.body_str(), "Hello, World!");
        assert!(!r.closes(), "{:?}", r.headers);
    }
    srv.stop();
}

#[test]
fn bad_request_lines_are_400() {
    let srv = server();
    for line in [
        "G(T / HTTP/1.1",               // not a token
        "GET  / HTTP/1.1",              // two spaces
        "GET /a b HTTP/1.1",            // space in the target
        "GET /#frag HTTP/1.1",          // fragment
        "GET example.com:80 HTTP/1.1",  // authority-form with GET
        "GET * HTTP/1.1",               // asterisk-form without OPTIONS
        "CONNECT / HTTP/1.1",           // CONNECT needs authority-form
        "CONNECT example.com HTTP/1.1", // ... with a port
    ] {
        expect_rejected(&srv, format!("{line}\r\nHost: h\r\n\r\n").as_bytes(), 400);
    }
    // Non-ASCII in the target.
    expect_rejected(&srv, b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn whitespace_before_the_colon_is_400() {
    let srv = server();
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost: h\r\nX-A\t: b\r\n\r\n", 400);
    expect_rejected(
        &srv,
        b"GET / HTTP/1.1\r\nHost: h\r\nNo colon here\r\n\r\n",
        400,
    );
    expect_rejected(
        &srv,
        b"GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
        400,
    );
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn malformed_request_after_a_good_one_on_the_same_connection() {
    let srv = server();
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.request(&get("/")).status, 200);
    c.send(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n");
    let r = c.read_reply();
    assert_eq!(r.status, 400);
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    srv.wait_connections(|n| n == 0, "the rejected connection to close");
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn garbage_gets_400_and_binary_noise_does_not_hurt() {
    let srv = server();
    expect_rejected(
        &srv,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        400,
    );
    expect_rejected(&srv, b"HELLO\r\n\r\n", 400);
    let noise: Vec<u8> = pattern(4096);
    let mut c = Client::connect(srv.addr);
    c.send(&noise);
    let r = c.read_reply();
    assert!(r.status == 400, "{}", r.status);
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

/// The object a rejection is answered through comes from the pool, where it keeps the last
/// request it served: a HEAD before the bad request must not make the rejection bodiless.
#[test]
fn a_rejection_after_a_head_request_still_has_its_body() {
    let srv = server();
    let mut c = Client::connect(srv.addr);
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_reply_for(true);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // A control byte in the target: 400, answered in full.
    c.send(b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_reply();
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(
        r.body_str().starts_with("Bad Request: "),
        "{:?}",
        r.body_str()
    );
    assert!(r.closes());
}
