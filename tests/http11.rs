//! HTTP/1.1 semantics (RFC 9110/9112) against real sockets: persistence rules for 1.0 and
//! 1.1, the fields the library writes (Date, framing, Connection), HEAD, bodiless statuses,
//! 100-continue, request-target forms, query strings, header order, trailers, and the
//! responder/payload/pooling paths of the API.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use uvhttp::http::{
    SendError, ServerConnection, ServerConnectionPtr, ServerResponder, StatusCode, TargetForm,
};

/// A handler that answers without a Content-Length or chunked setting of its own: the library
/// must choose the framing.
fn stream_abc_def(conn: &ServerConnection) {
    conn.response().set_content_type("text/plain");
    conn.send(b"abc").unwrap();
    conn.send(b"def").unwrap();
    conn.complete().unwrap();
}

/// Routes shared by several tests: `/` (Hello), `/stream` (library-chosen framing).
fn basic_server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let path = conn.request().path().to_string();
            match path.as_str() {
                "/stream" => stream_abc_def(&conn),
                _ => {
                    conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                        .unwrap();
                }
            }
        };
    })
}

// ---- persistence ----------------------------------------------------------------------------

#[test]
fn keep_alive_reuses_one_connection() {
    let (tx, rx) = mpsc::channel::<String>();
    let srv = TestServer::start(move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            tx.send(format!("{:?}", conn.peer_address().unwrap()))
                .unwrap();
            conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                .unwrap();
        };
    });
    let mut c = Client::connect(srv.addr);
    let mut peers = Vec::new();
    for _ in 0..5 {
        let r = c.request(&get("/"));
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.body_str(), "Hello, World!");
        assert!(
            r.header("connection").is_none(),
            "1.1 keep-alive needs no Connection field"
        );
        peers.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "one TCP connection: {peers:?}"
    );
    assert_eq!(srv.connection_count(), 1);
    c.expect_open_for(Duration::from_millis(50));
    // A second client is served alongside, on its own connection.
    let mut c2 = Client::connect(srv.addr);
    assert_eq!(c2.request(&get("/")).status, 200);
    assert_ne!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), peers[0]);
    assert_eq!(srv.connection_count(), 2);
    drop((c, c2));
    srv.wait_connections(|n| n == 0, "both clients' closes");
    srv.stop();
}

#[test]
fn http10_without_keep_alive_is_closed_after_the_response() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    let r = c.request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    assert_eq!(r.header("content-length"), Some("13"));
    assert!(r.closes(), "HTTP/1.0 without keep-alive: {:?}", r.headers);
    c.expect_clean_close();
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn http10_response_of_unknown_length_is_delimited_by_close_not_chunked() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"GET /stream HTTP/1.0\r\n\r\n");
    let head = c.read_head_raw();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("transfer-encoding"),
        "no chunked for 1.0: {head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(c.read_to_close(), b"abcdef");
    drop(c);
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn http10_with_keep_alive_is_kept_open_and_says_so() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    for _ in 0..3 {
        let r = c.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "Hello, World!");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    c.expect_open_for(Duration::from_millis(50));
    assert_eq!(srv.connection_count(), 1);
    // A 1.0 response of unknown length can only end by closing, keep-alive or not.
    let r = c.request(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.body_str(), "abcdef");
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_clean_close();
    drop(c);
    srv.stop();
}

#[test]
fn connection_close_request_gets_close_and_the_connection_ends() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.request(&get("/")).status, 200);
    let r = c.request(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_clean_close();
    drop(c);
    srv.wait_connections(|n| n == 0, "the server to drop the connection");
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn requests_pipelined_after_connection_close_are_not_answered() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    c.send(
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r = c.read_reply();
    assert!(r.closes());
    c.expect_clean_close();
    drop(c);
    srv.stop();
}

// ---- fields the library writes --------------------------------------------------------------

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), strictly parsed.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let weekday = days.iter().position(|d| *d == &s[..3])?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        s.get(r.clone())
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let day = num(5..7)?;
    let month = months.iter().position(|m| *m == &s[8..11])? as u64 + 1;
    let year = num(12..16)?;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if &s[7..8] != " " || &s[11..12] != " " || &s[16..17] != " " || &s[19..20] != ":" {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since_epoch = era * 146_097 + doe - 719_468;
    // 1970-01-01 was a Thursday (index 3).
    if (days_since_epoch + 3) % 7 != weekday as u64 {
        return None;
    }
    Some(days_since_epoch * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[test]
fn date_is_an_imf_fixdate_close_to_now() {
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    for path in ["/", "/stream"] {
        let r = c.request(&get(path));
        let dates: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
            .collect();
        assert_eq!(dates.len(), 1, "exactly one Date: {:?}", r.headers);
        let when = parse_imf_fixdate(&dates[0].1)
            .unwrap_or_else(|| panic!("not an IMF-fixdate: {:?}", dates[0].1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            when.abs_diff(now) <= 2,
            "Date {} is {}s away from now",
            dates[0].1,
            when as i64 - now as i64
        );
    }
    drop(c);
    srv.stop();
}

#[test]
fn library_chooses_chunked_for_11_when_the_app_set_no_length() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    c.send(&get("/stream"));
    let head = c.read_head_raw();
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("connection:"), "{head}");
    // The exact chunked encoding, last chunk included.
    assert_eq!(c.read_exact_bytes(21), b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    // The connection stays usable.
    assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn content_length_set_by_app_is_used_and_not_chunked() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    let r = c.request(&get("/"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert!(r.header("transfer-encoding").is_none());
    drop(c);
    srv.stop();
}

// ---- HEAD and bodiless statuses -------------------------------------------------------------

#[test]
fn head_gets_the_head_of_the_get_without_a_body() {
    let srv = sample_server();
    let mut c = Client::connect(srv.addr);
    let get_reply = c.request(&get("/"));
    // HEAD then GET pipelined: the GET's status line must follow the HEAD's head directly.
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_reply_for(true);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        get_reply.header("content-length")
    );
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert!(head.body.is_empty());
    let next = c.read_reply();
    assert_eq!(next.body_str(), "Hello, World!");
    // A large declared body is not sent either.
    c.send(b"HEAD /big?bytes=100000 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_reply_for(true);
    assert_eq!(head.header("content-length"), Some("100000"));
    assert_eq!(c.read_reply().body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn head_of_a_streamed_response_has_no_body_and_no_chunked_framing() {
    let srv = basic_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_reply_for(true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("transfer-encoding").is_none(),
        "{:?}",
        head.headers
    );
    assert!(!head.closes());
    assert_eq!(c.read_reply().body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let (tx, rx) = mpsc::channel::<Result<(), SendError>>();
    let srv = TestServer::start(move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            let path = conn.request().path().to_string();
            match path.as_str() {
                "/204" => {
                    conn.response().set_status(StatusCode::NO_CONTENT);
                    // The app tries to send a body anyway: refused, nothing reaches the wire.
                    tx.send(conn.send(b"oops").map(|_| ())).unwrap();
                    conn.complete().unwrap();
                }
                "/304" => {
                    conn.response().set_status(StatusCode::NOT_MODIFIED);
                    conn.response().set("ETag", "\"v1\"");
                    conn.send_header().unwrap();
                    tx.send(conn.send(b"oops").map(|_| ())).unwrap();
                    conn.complete().unwrap();
                }
                "/304-respond" => {
                    // respond() has no 200 length to state: none is written.
                    conn.respond(StatusCode::NOT_MODIFIED, "", b"").unwrap();
                }
                "/304-complete" => {
                    conn.response().set_status(StatusCode::NOT_MODIFIED);
                    conn.complete().unwrap();
                }
                "/304-with-length" => {
                    // The length the 200 would have had (RFC 9110 8.6): stated, never sent.
                    conn.response()
                        .set_status(StatusCode::NOT_MODIFIED)
                        .set_content_length(13);
                    conn.complete().unwrap();
                }
                _ => {
                    conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                        .unwrap();
                }
            }
        };
    });
    let mut c = Client::connect(srv.addr);
    c.send(b"GET /204 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head_raw();
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length"),
        "204 must not have Content-Length: {head}"
    );
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Err(SendError::BodyNotAllowed(StatusCode::NO_CONTENT))
    );
    assert_eq!(c.read_reply().body_str(), "Hello, World!");

    c.send(b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head_raw();
    assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{head}");
    assert!(head.contains("\r\nETag: \"v1\"\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Err(SendError::BodyNotAllowed(StatusCode::NOT_MODIFIED))
    );
    assert_eq!(c.read_reply().body_str(), "Hello, World!");

    for path in ["/304-respond", "/304-complete"] {
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .as_bytes(),
        );
        let head = c.read_head_raw();
        assert!(head.starts_with("HTTP/1.1 304 "), "{path}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{path}: a 304 may only state the 200's length (RFC 9110 8.6): {head}"
        );
        assert_eq!(c.read_reply().body_str(), "Hello, World!", "{path}");
    }

    c.send(b"GET /304-with-length HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head_raw();
    assert!(head.starts_with("HTTP/1.1 304 "), "{head}");
    assert!(head.contains("\r\nContent-Length: 13\r\n"), "{head}");
    assert_eq!(c.read_reply().body_str(), "Hello, World!");
    assert_eq!(srv.connection_count(), 1);
    drop(c);
    srv.stop();
}

// ---- Expect: 100-continue -------------------------------------------------------------------

/// Collects the body and answers once the request is complete: 200 with `len=N`.
/// `/reject413` and `/reject417` refuse at headers time.
fn continue_server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let path = conn.request().path().to_string();
            match path.as_str() {
                "/reject413" => {
                    conn.respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", b"too big\n")
                        .unwrap();
                }
                "/reject417" => {
                    conn.respond(StatusCode::EXPECTATION_FAILED, "text/plain", b"no\n")
                        .unwrap();
                }
                "/echo" => sample::echo(&conn),
                _ => {
                    let got = Rc::new(Cell::new(0usize));
                    let g = got.clone();
                    conn.payload
                        .attach(move |_, chunk| g.set(g.get() + chunk.len()));
                    conn.request_complete_signal.attach(move |conn| {
                        let body = format!("len={}", got.get());
                        conn.respond(StatusCode::OK, "text/plain", body.as_bytes())
                            .unwrap();
                    });
                }
            }
        };
    })
}

#[test]
fn expect_100_continue_gets_100_then_the_final_response() {
    let srv = continue_server();
    let mut c = Client::connect(srv.addr);
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    // The body is not sent until the 100 arrives.
    let interim = c.read_head_raw();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    let r = c.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "len=5");
    assert!(!r.closes());
    // Same connection, chunked body this time.
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_head_raw(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.read_reply().body_str(), "len=3");
    drop(c);
    srv.stop();
}

#[test]
fn expect_100_continue_with_a_streaming_echo_still_gets_100_first() {
    // The echo handler sends its 200 head at headers time, before the body was read. The
    // client is still waiting for 100 before sending the body, so 100 must go out first
    // (RFC 9110 10.1.1), otherwise strict clients never send the body.
    let srv = continue_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_head_raw(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    let r = c.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello");
    assert!(!r.closes());
    assert_eq!(c.request(&get("/x")).status, 200);
    drop(c);
    srv.stop();
}

#[test]
fn expect_100_continue_refused_at_headers_gets_no_100() {
    let srv = continue_server();
    for (path, status) in [("/reject413", 413), ("/reject417", 417)] {
        let mut c = Client::connect(srv.addr);
        c.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        );
        // The first thing on the wire is the final response: no 100 before it.
        let r = c.read_any(false);
        assert_eq!(r.status, status, "{path}");
        // The body was never read, so the connection cannot be reused, and the response
        // must say so.
        assert!(r.closes(), "{path}: {:?}", r.headers);
        c.expect_clean_close();
    }
    assert_eq!(request(srv.addr, &get("/x")).status, 200);
    srv.stop();
}

#[test]
fn expect_in_http10_is_ignored() {
    // 1.0 clients do not understand 100 (RFC 9110 10.1.1): no interim response.
    let srv = continue_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /upload HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    let r = c.read_any(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "len=2");
    drop(c);
    srv.stop();
}

// ---- request targets, query strings, headers ------------------------------------------------

fn target_info_server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let info = {
                let r = conn.request();
                format!(
                    "method={} target={} path={} query={:?} form={:?} host={:?}",
                    r.method_str(),
                    r.target(),
                    r.path(),
                    r.query(),
                    r.target_form(),
                    r.host()
                )
            };
            // A 2xx to CONNECT would mean "tunnel established"; this server does not tunnel.
            let status = if conn.request().target_form() == TargetForm::Authority {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::OK
            };
            conn.respond(status, "text/plain", info.as_bytes()).unwrap();
        };
    })
}

#[test]
fn every_request_target_form_reaches_the_app() {
    let srv = target_info_server();
    let mut c = Client::connect(srv.addr);
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n",
            200,
            "method=GET target=/a/b%20c?x=1&y=2 path=/a/b%20c query=Some(\"x=1&y=2\") form=Origin host=Some(\"h\")",
        ),
        (
            b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
            200,
            "method=GET target=http://example.com:8080/p?q path=/p query=Some(\"q\") form=Absolute host=Some(\"example.com:8080\")",
        ),
        (
            b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            200,
            "method=GET target=http://example.com path=/ query=None form=Absolute host=Some(\"example.com\")",
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            200,
            "method=OPTIONS target=* path=* query=None form=Asterisk host=Some(\"h\")",
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
            "method=CONNECT target=example.com:443 path=example.com:443 query=None form=Authority host=Some(\"example.com:443\")",
        ),
    ];
    for (raw, status, info) in cases {
        let r = c.request(raw);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.body_str(), info);
    }
    drop(c);
    srv.stop();
}

#[test]
fn query_parameters_are_percent_and_plus_decoded() {
    let srv = TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let body = {
                let r = conn.request();
                let mut out = String::new();
                for name in ["a", "b", "c", "d", "e", "name x", "missing", "utf"] {
                    out.push_str(&format!("{name}={:?}\n", r.query_param(name)));
                }
                let pairs: Vec<String> = r.query_pairs().map(|(k, v)| format!("{k}:{v}")).collect();
                out.push_str(&pairs.join("|"));
                out
            };
            conn.respond(StatusCode::OK, "text/plain", body.as_bytes())
                .unwrap();
        };
    });
    let r = request(
        srv.addr,
        b"GET /q?a=1&b=hello+world&c=%41%42%2b&d=&e&&name%20x=v%2Bw&a=2&utf=%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        "a=Some(\"1\")\nb=Some(\"hello world\")\nc=Some(\"AB+\")\nd=Some(\"\")\ne=Some(\"\")\n\
         name x=Some(\"v+w\")\nmissing=None\nutf=Some(\"é\")\n\
         a:1|b:hello world|c:AB+|d:|e:|name x:v+w|a:2|utf:é"
    );
    srv.stop();
}

#[test]
fn headers_are_case_insensitive_and_keep_their_order() {
    let srv = TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let body = {
                let r = conn.request();
                let mut out = String::new();
                for (name, value) in r.headers().iter() {
                    out.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
                }
                let all: Vec<&str> = r.headers().get_all("X-ONE").collect();
                out.push_str(&format!(
                    "get(x-one)={:?} get_all(X-ONE)={all:?}\n",
                    r.header("x-one")
                ));
                out.push_str(&format!("get(ACCEPT)={:?}", r.header("ACCEPT")));
                out
            };
            conn.respond(StatusCode::OK, "text/plain", body.as_bytes())
                .unwrap();
        };
    });
    let r = request(
        srv.addr,
        b"GET / HTTP/1.1\r\nX-One: 1\r\nHost: h\r\naccept: */*\r\nx-two:  2 \r\nX-ONE: 3\r\nx-one:4\r\n\r\n",
    );
    assert_eq!(
        r.body_str(),
        "X-One: 1\nHost: h\naccept: */*\nx-two: 2\nX-ONE: 3\nx-one: 4\n\
         get(x-one)=Some(\"1\") get_all(X-ONE)=[\"1\", \"3\", \"4\"]\nget(ACCEPT)=Some(\"*/*\")"
    );
    srv.stop();
}

// ---- request bodies: trailers, payload chunks -----------------------------------------------

#[test]
fn chunked_request_trailers_are_available_once_the_request_is_complete() {
    let srv = TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let body = Rc::new(RefCell::new(Vec::new()));
            let at_headers = conn.trailers().len();
            let b = body.clone();
            conn.payload
                .attach(move |_, chunk| b.borrow_mut().extend_from_slice(chunk));
            conn.request_complete_signal.attach(move |conn| {
                let trailers: Vec<String> = conn
                    .trailers()
                    .iter()
                    .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                    .collect();
                let text = format!(
                    "body={} trailers_at_headers={at_headers} trailers={} sum={:?} in_headers={}",
                    String::from_utf8_lossy(&body.borrow()),
                    trailers.join(","),
                    conn.trailers().get("x-sum"),
                    conn.request().header("x-sum").is_some(),
                );
                conn.respond(StatusCode::OK, "text/plain", text.as_bytes())
                    .unwrap();
            });
        };
    });
    let mut c = Client::connect(srv.addr);
    let r = c.request(
        b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
          5;name=val;flag\r\nhello\r\n6 ; q=\"a b\"\r\n world\r\n0\r\nX-Sum: abc\r\nX-Other:  1 \r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        "body=hello world trailers_at_headers=0 trailers=X-Sum=abc,X-Other=1 sum=Some(\"abc\") in_headers=false"
    );
    // The next request on the connection starts with no trailers.
    let r =
        c.request(b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(
        r.body_str(),
        "body= trailers_at_headers=0 trailers= sum=None in_headers=false"
    );
    drop(c);
    srv.stop();
}

/// FNV-1a, to compare bodies without sending them back.
fn fnv(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

#[test]
fn payload_chunks_add_up_to_the_body() {
    let srv = TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| {
            let state = Rc::new(Cell::new((0usize, 0usize, FNV_START)));
            let s = state.clone();
            conn.payload.attach(move |_, chunk| {
                let (n, total, h) = s.get();
                assert!(!chunk.is_empty(), "empty payload chunk");
                s.set((n + 1, total + chunk.len(), fnv(chunk, h)));
            });
            conn.request_complete_signal.attach(move |conn| {
                let (n, total, h) = state.get();
                let text = format!("{n} {total} {h:x}");
                conn.respond(StatusCode::OK, "text/plain", text.as_bytes())
                    .unwrap();
            });
        };
    });
    let body = pattern(300_000);
    let want = format!("{:x}", fnv(&body, FNV_START));
    let mut c = Client::connect(srv.addr);
    // Content-Length, written in pieces so the server reads it in several.
    c.send(
        format!(
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(70_000) {
        c.send(piece);
    }
    let r = c.read_reply();
    let parts: Vec<String> = r.body_str().split(' ').map(str::to_string).collect();
    let chunks: usize = parts[0].parse().unwrap();
    assert!(chunks >= 1);
    assert_eq!(parts[1], body.len().to_string());
    assert_eq!(parts[2], want);
    // Chunked: chunk boundaries of the wire format are invisible to the app.
    let mut raw = b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(&body, 777));
    let r = c.request(&raw);
    let parts: Vec<String> = r.body_str().split(' ').map(str::to_string).collect();
    assert_eq!(parts[1], body.len().to_string());
    assert_eq!(parts[2], want);
    drop(c);
    srv.stop();
}

// ---- the responder/factory path -------------------------------------------------------------

struct Recorder {
    log: Rc<RefCell<Vec<String>>>,
}

impl ServerResponder for Recorder {
    fn on_headers(&mut self, conn: &ServerConnection) {
        self.log
            .borrow_mut()
            .push(format!("headers {}", conn.request().path()));
    }
    fn on_payload(&mut self, _conn: &ServerConnection, chunk: &[u8]) {
        self.log
            .borrow_mut()
            .push(format!("payload {}", chunk.len()));
    }
    fn on_request(&mut self, conn: &ServerConnection) {
        self.log.borrow_mut().push("request".to_string());
        let text = self.log.borrow().join("\n");
        conn.respond(StatusCode::OK, "text/plain", text.as_bytes())
            .unwrap();
    }
}

#[test]
fn responder_factory_sees_headers_payload_request_in_order() {
    let srv = TestServer::start(|srv| {
        let log: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        srv.set_factory(
            move |conn: &ServerConnection| -> Option<Box<dyn ServerResponder>> {
                if conn.request().path() == "/plain" {
                    return None; // left to the connection signal
                }
                l.borrow_mut().clear();
                l.borrow_mut().push("factory".to_string());
                Some(Box::new(Recorder { log: l.clone() }))
            },
        );
        srv.connection += move |conn: ServerConnectionPtr| {
            if conn.request().path() == "/plain" {
                conn.respond(StatusCode::OK, "text/plain", b"signal only")
                    .unwrap();
            } else {
                log.borrow_mut().push("signal".to_string());
            }
        };
    });
    let body = pattern(200_000);
    let mut c = Client::connect(srv.addr);
    for round in 0..2 {
        c.send(
            format!(
                "POST /r{round} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.send(&body[..1000]);
        std::thread::sleep(Duration::from_millis(2));
        c.send(&body[1000..]);
        let r = c.read_reply();
        let text = r.body_str();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..3],
            &["factory", &format!("headers /r{round}"), "signal"],
            "{text}"
        );
        assert_eq!(*lines.last().unwrap(), "request", "{text}");
        let payload: Vec<usize> = lines[3..lines.len() - 1]
            .iter()
            .map(|l| {
                l.strip_prefix("payload ")
                    .expect(text.as_str())
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(
            payload.len() >= 2,
            "split body gives several payloads: {text}"
        );
        assert_eq!(payload.iter().sum::<usize>(), body.len());
        // A bodiless request: headers, signal, request.
        let r = c.request(&get("/g"));
        assert_eq!(r.body_str(), "factory\nheaders /g\nsignal\nrequest");
        let r = c.request(&get("/plain"));
        assert_eq!(r.body_str(), "signal only");
    }
    drop(c);
    srv.stop();
}

// ---- pooled ServerConnection objects --------------------------------------------------------

#[test]
fn pooled_connection_objects_do_not_leak_subscriptions_to_the_next_request() {
    let payload_calls = Arc::new(AtomicUsize::new(0));
    let complete_calls = Arc::new(AtomicUsize::new(0));
    let objects = Arc::new(Mutex::new(Vec::<usize>::new()));
    let (p, cc, objs) = (
        payload_calls.clone(),
        complete_calls.clone(),
        objects.clone(),
    );
    let srv = TestServer::start(move |srv| {
        let kept = Rc::new(RefCell::new(Vec::new()));
        srv.connection += move |conn: ServerConnectionPtr| {
            objs.lock()
                .unwrap()
                .push(&*conn as *const ServerConnection as usize);
            let path = conn.request().path().to_string();
            if path == "/attach" {
                // Request 1 subscribes and answers; its slots must die with it.
                let p = p.clone();
                conn.payload.attach(move |_, _| {
                    p.fetch_add(1, Ordering::SeqCst);
                });
                let cc = cc.clone();
                conn.request_complete_signal.attach(move |_| {
                    cc.fetch_add(1, Ordering::SeqCst);
                });
                // Also keep a clone of the signal past the request: it must not be reused.
                kept.borrow_mut().push(conn.payload.clone());
                conn.respond(StatusCode::OK, "text/plain", b"attached")
                    .unwrap();
            } else {
                let got = Rc::new(RefCell::new(Vec::new()));
                let g = got.clone();
                conn.payload
                    .attach(move |_, chunk| g.borrow_mut().extend_from_slice(chunk));
                conn.request_complete_signal.attach(move |conn| {
                    let body = got.borrow().clone();
                    conn.respond(StatusCode::OK, "text/plain", &body).unwrap();
                });
            }
        };
    });
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.request(&get("/attach")).body_str(), "attached");
    assert_eq!(complete_calls.load(Ordering::SeqCst), 1);
    let r = c.request(b"POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.body_str(), "hello world");
    let r = c.request(b"POST /third HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(r.body_str(), "abc");
    assert_eq!(
        payload_calls.load(Ordering::SeqCst),
        0,
        "request 1's payload slot fired later"
    );
    assert_eq!(
        complete_calls.load(Ordering::SeqCst),
        1,
        "request 1's completion slot fired later"
    );
    // The test only means something if the object really was reused.
    let objs = objects.lock().unwrap().clone();
    assert_eq!(objs.len(), 3);
    assert!(
        objs[1] == objs[0] || objs[2] == objs[0],
        "the pooled object was not reused ({objs:?}); this test needs reuse to be meaningful"
    );
    drop(c);
    srv.stop();
}
