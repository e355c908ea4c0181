//! The HTTP client (`ClientConnection`) against the library's own server and against raw
//! `std::net` servers that misbehave on purpose: framing (Content-Length, chunked, until
//! close, bodiless responses), keep-alive reuse, transparent reconnects, timeouts, DNS and
//! connection errors reported exactly once, TLS verification, and the httpclient example.
//!
//! Every client runs on an `OwnedLoop` in the test thread, which must close cleanly
//! (`uv_loop_close`) at the end: no client handle may leak.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use uvhttp::http::{
    ClientConnection, ClientError, Flow, ResponseHead, ServerConnection, ServerConnectionPtr,
    StatusCode,
};
use uvhttp::net::tls::{ThrowawayPki, TlsContext, TlsErrorKind};
use uvhttp::uv::{OwnedLoop, RunMode, TcpHandle, Timer};

// ---- harness --------------------------------------------------------------------------------

/// Everything a client reported, in order.
#[derive(Default, Debug)]
struct Seen {
    connects: usize,
    heads: Vec<ResponseHead>,
    /// Body bytes of the response in progress.
    body: Vec<u8>,
    /// One body per `complete`.
    bodies: Vec<Vec<u8>>,
    closes: Vec<Option<ClientError>>,
}

impl Seen {
    fn status(&self, i: usize) -> u16 {
        self.heads[i].status().as_u16()
    }

    fn body_str(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.bodies[i]).into_owned()
    }

    /// The single error the client closed with; fails unless exactly one close with an error.
    fn only_error(&self) -> ClientError {
        assert_eq!(
            self.closes.len(),
            1,
            "close fires exactly once: {:?}",
            self.closes
        );
        self.closes[0]
            .clone()
            .unwrap_or_else(|| panic!("expected an error, got a clean close"))
    }

    /// Asserts one clean close (by the test itself) and no error.
    fn assert_clean_close(&self) {
        assert_eq!(self.closes.len(), 1, "{:?}", self.closes);
        assert!(
            self.closes[0].is_none(),
            "unexpected error: {:?}",
            self.closes[0]
        );
    }
}

/// Records every signal of `conn` (attached before the test's own slots, so it runs first).
fn record(conn: &ClientConnection) -> Rc<RefCell<Seen>> {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    conn.connect.attach(move |_| s.borrow_mut().connects += 1);
    let s = seen.clone();
    conn.headers
        .attach(move |_, head| s.borrow_mut().heads.push(head.clone()));
    let s = seen.clone();
    conn.payload
        .attach(move |_, chunk| s.borrow_mut().body.extend_from_slice(chunk));
    let s = seen.clone();
    conn.complete.attach(move |_| {
        let mut s = s.borrow_mut();
        let body = std::mem::take(&mut s.body);
        s.bodies.push(body);
    });
    let s = seen.clone();
    conn.close
        .attach(move |_, err| s.borrow_mut().closes.push(err.cloned()));
    seen
}

/// Closes the connection when its `n`th response completes.
fn close_after(conn: &ClientConnection, n: usize) {
    let done = Cell::new(0);
    conn.complete.attach(move |c| {
        done.set(done.get() + 1);
        if done.get() == n {
            c.close();
        }
    });
}

/// Runs the loop until nothing is left on it; fails (instead of hanging) after `limit`.
fn run(lp: &OwnedLoop, limit: Duration) {
    let watchdog = Timer::new(lp.handle()).unwrap();
    let fired = Rc::new(Cell::new(false));
    let (f, h) = (fired.clone(), lp.handle());
    watchdog
        .start(limit.as_millis() as u64, 0, move || {
            f.set(true);
            h.stop();
        })
        .unwrap();
    watchdog.unref();
    lp.handle().run(RunMode::Default);
    drop(watchdog);
    assert!(
        !fired.get(),
        "the client loop did not finish within {limit:?}"
    );
}

/// Runs the loop and then asserts a clean `uv_loop_close` (every handle was released).
fn run_and_close(lp: OwnedLoop, conns: Vec<Rc<ClientConnection>>) {
    run(&lp, Duration::from_secs(30));
    drop(conns);
    lp.close().expect("client loop closes cleanly");
}

/// Routes of the library server used here: the sample routes plus `/chunked` (three pieces,
/// library-chosen chunked framing) and `/peer` (the client's port, to see connection reuse).
fn route(conn: &ServerConnection) {
    let path = conn.request().path().to_string();
    match path.as_str() {
        "/chunked" => {
            conn.response().set_content_type("text/plain");
            for piece in [&b"one,"[..], b"two,", b"three"] {
                conn.send(piece).unwrap();
            }
            conn.complete().unwrap();
        }
        "/peer" => {
            let peer = conn
                .peer_address()
                .map(|p| p.to_string())
                .unwrap_or_default();
            conn.respond(StatusCode::OK, "text/plain", peer.as_bytes())
                .unwrap();
        }
        _ => sample::route(conn),
    }
}

fn server() -> TestServer {
    TestServer::start(|srv| srv.connection += |conn: ServerConnectionPtr| route(&conn))
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A raw TCP server on a thread: `serve` handles each accepted connection in turn, with its
/// index. Stops accepting after `max` connections or when dropped.
struct RawServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(max: usize, serve: impl Fn(TcpStream, usize, &AtomicBool) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut n = 0;
            while n < max && !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        a.fetch_add(1, Ordering::SeqCst);
                        serve(stream, n, &s);
                        n += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        RawServer {
            addr,
            accepts,
            stop,
            thread: Some(thread),
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head (the raw servers only get bodiless requests). Empty at EOF.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn hold_until_stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- plain HTTP -----------------------------------------------------------------------------

#[test]
fn get_prints_status_headers_and_body() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/")).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.send().unwrap();
    assert!(conn.is_busy());
    assert!(
        matches!(conn.send(), Err(ClientError::Busy)),
        "one request at a time"
    );
    run_and_close(lp, vec![conn]);

    let s = seen.borrow();
    assert_eq!(s.connects, 1);
    assert_eq!(s.heads.len(), 1);
    assert_eq!(s.status(0), 200);
    assert_eq!(s.heads[0].reason(), "OK");
    assert_eq!(s.heads[0].header("content-length"), Some("13"));
    assert_eq!(s.heads[0].header("content-type"), Some("text/plain"));
    assert_eq!(s.body_str(0), "Hello, World!");
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn request_carries_host_user_agent_and_custom_headers() {
    let (tx, rx) = mpsc::channel::<(String, String, String, String)>();
    let srv = TestServer::start(move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            let req = conn.request();
            let get = |n: &str| req.header(n).unwrap_or("").to_string();
            tx.send((
                format!("{} {}", req.method_str(), req.target()),
                get("host"),
                get("user-agent"),
                get("x-test"),
            ))
            .unwrap();
            drop(req);
            conn.respond(StatusCode::OK, "text/plain", b"ok").unwrap();
        };
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/path?q=1#frag")).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.request().set_method("DELETE").set("X-Test", "yes");
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let (line, host, agent, custom) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(line, "DELETE /path?q=1");
    assert_eq!(host, srv.addr.to_string());
    assert_eq!(agent, format!("uvhttp/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(custom, "yes");
    assert_eq!(seen.borrow().body_str(0), "ok");
    srv.stop();
}

#[test]
fn post_sized_body_is_echoed() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/echo")).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    let body = pattern(300_000);
    conn.request()
        .set_method("POST")
        .set_content_type("application/x-test");
    conn.send_body(&body).unwrap();
    run_and_close(lp, vec![conn]);

    let s = seen.borrow();
    assert_eq!(s.status(0), 200);
    assert_eq!(
        s.heads[0].header("content-type"),
        Some("application/x-test")
    );
    assert_eq!(s.heads[0].content_length(), Some(body.len() as u64));
    assert!(
        s.bodies[0] == body,
        "echo differs ({} bytes)",
        s.bodies[0].len()
    );
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn streamed_chunked_body_of_8_mib_round_trips() {
    const TOTAL: usize = 8 << 20;
    const PIECE: usize = 64 * 1024;
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/echo")).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.request().set_method("POST");

    // A producer paced by backpressure: send until told to pause, resume on `drain`.
    let body = Rc::new(pattern(TOTAL));
    let sent = Rc::new(Cell::new(0usize));
    let pauses = Rc::new(Cell::new(0usize));
    let pump = {
        let (body, sent, pauses) = (body.clone(), sent.clone(), pauses.clone());
        move |c: &ClientConnection| {
            while sent.get() < TOTAL {
                let end = (sent.get() + PIECE).min(TOTAL);
                let flow = c.send_chunk(&body[sent.get()..end]).unwrap();
                sent.set(end);
                if flow == Flow::Pause {
                    pauses.set(pauses.get() + 1);
                    return;
                }
            }
            c.finish_body().unwrap();
        }
    };
    let p = pump.clone();
    conn.drain.attach(move |c| p(c));
    pump(&conn);
    assert!(
        sent.get() < TOTAL,
        "the producer is paused before the connection is up"
    );
    run_and_close(lp, vec![conn]);

    let s = seen.borrow();
    assert!(pauses.get() >= 1, "backpressure was signalled");
    assert_eq!(sent.get(), TOTAL);
    assert_eq!(s.status(0), 200);
    assert!(s.heads[0].is_chunked(), "echo of a chunked body is chunked");
    assert_eq!(s.bodies[0].len(), TOTAL);
    assert!(s.bodies[0] == *body, "8 MiB echo differs");
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn chunked_response_is_reassembled() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/chunked")).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert!(s.heads[0].is_chunked(), "{:?}", s.heads[0]);
    assert_eq!(s.body_str(0), "one,two,three");
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn head_204_and_304_responses_have_no_body_and_keep_the_connection() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/")).unwrap();
    let seen = record(&conn);
    let step = Cell::new(0);
    conn.complete.attach(move |c| {
        step.set(step.get() + 1);
        match step.get() {
            1 => {
                c.request().set_method("GET").set_target("/status/204");
                c.send().unwrap();
            }
            2 => {
                c.request().set_target("/status/304");
                c.send().unwrap();
            }
            3 => {
                c.request().set_target("/");
                c.send().unwrap();
            }
            _ => c.close(),
        }
    });
    conn.request().set_method("HEAD");
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);

    let s = seen.borrow();
    assert_eq!(s.heads.len(), 4);
    assert_eq!(s.status(0), 200);
    assert_eq!(s.heads[0].header("content-length"), Some("13"));
    assert!(s.bodies[0].is_empty(), "HEAD has no body");
    assert_eq!(s.status(1), 204);
    assert!(s.bodies[1].is_empty());
    assert_eq!(s.status(2), 304);
    assert!(s.bodies[2].is_empty());
    assert_eq!(s.body_str(3), "Hello, World!", "framing stayed in step");
    assert_eq!(conn.connections_opened(), 1);
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn keep_alive_reuses_one_connection_for_sequential_requests() {
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    let srv = TestServer::start(move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            tx.send(conn.peer_address().unwrap()).unwrap();
            route(&conn);
        };
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/")).unwrap();
    let seen = record(&conn);
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() < 3 {
            assert!(c.is_connected(), "the idle connection is kept");
            c.send().unwrap();
        } else {
            c.close();
        }
    });
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);

    let peers: Vec<SocketAddr> = rx.try_iter().collect();
    assert_eq!(peers.len(), 3, "three requests reached the server");
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "one TCP connection: {peers:?}"
    );
    assert_eq!(conn.connections_opened(), 1);
    let s = seen.borrow();
    assert_eq!(s.connects, 1, "connect fires once per connection");
    assert_eq!(s.bodies.len(), 3);
    assert!(s.bodies.iter().all(|b| b == b"Hello, World!"));
    s.assert_clean_close();
    srv.wait_connections(|n| n == 0, "the client's close");
    srv.stop();
}

#[test]
fn connection_close_from_the_server_means_a_new_connection_next_time() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/peer")).unwrap();
    let seen = record(&conn);
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            assert!(!c.is_connected(), "Connection: close was honoured");
            c.request().set_keep_alive(true);
            c.send().unwrap();
        } else {
            c.close();
        }
    });
    conn.request().set_keep_alive(false);
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert_eq!(s.heads[0].header("connection"), Some("close"));
    assert_eq!(s.bodies.len(), 2);
    assert_ne!(s.bodies[0], s.bodies[1], "two different client ports");
    assert_eq!(conn.connections_opened(), 2);
    assert_eq!(s.connects, 2);
    s.assert_clean_close();
    srv.stop();
}

// ---- raw servers: framing by close, broken responses, reconnects ---------------------------

#[test]
fn response_delimited_by_close_then_transparent_reconnect() {
    let raw = RawServer::start(2, |mut s, i, _| {
        let head = read_head(&mut s);
        assert!(head.starts_with("GET /old HTTP/1.1\r\n"), "{head}");
        let body = format!("HTTP/1.0 body number {i}, length unknown");
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            .unwrap();
        s.write_all(body.as_bytes()).unwrap();
        // Dropping the stream closes it: that ends the body.
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/old", raw.addr)).unwrap();
    let seen = record(&conn);
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            c.send().unwrap();
        } else {
            c.close();
        }
    });
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert_eq!(s.body_str(0), "HTTP/1.0 body number 0, length unknown");
    assert_eq!(s.body_str(1), "HTTP/1.0 body number 1, length unknown");
    assert_eq!(conn.connections_opened(), 2);
    assert_eq!(raw.accepts(), 2);
    s.assert_clean_close();
}

#[test]
fn reused_connection_closed_by_the_server_is_retried_once() {
    // The server answers one request per connection but claims keep-alive, then closes when
    // the next request arrives: the race with a server's idle timeout.
    let raw = RawServer::start(2, |mut s, i, _| {
        read_head(&mut s);
        let body = format!("conn {i}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).unwrap();
        if i == 0 {
            read_head(&mut s); // the second request, never answered here
        }
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            c.send().unwrap();
        } else {
            c.close();
        }
    });
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert_eq!(s.bodies.len(), 2, "{s:?}");
    assert_eq!(s.body_str(0), "conn 0");
    assert_eq!(s.body_str(1), "conn 1", "resent on a new connection");
    assert_eq!(raw.accepts(), 2);
    s.assert_clean_close();
}

#[test]
fn truncated_body_is_an_error_not_a_response() {
    let raw = RawServer::start(1, |mut s, _, _| {
        read_head(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            .unwrap();
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert!(s.bodies.is_empty(), "no complete for a truncated body");
    let e = s.only_error();
    assert!(matches!(e, ClientError::ConnectionClosed { .. }), "{e:?}");
    assert!(e.to_string().contains("Content-Length not reached"), "{e}");
}

#[test]
fn garbage_instead_of_a_response_is_reported_once_without_a_status() {
    let raw = RawServer::start(1, |mut s, _, _| {
        read_head(&mut s);
        s.write_all(b"SSH-2.0-OpenSSH_9.0\r\n\r\n").unwrap();
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert!(s.heads.is_empty(), "no fake status: {:?}", s.heads);
    let e = s.only_error();
    assert!(matches!(e, ClientError::InvalidResponse { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("invalid response from 127.0.0.1:"),
        "{e}"
    );
    assert_eq!(conn.error(), Some(e));
    assert!(matches!(conn.send(), Err(ClientError::Closed)));
}

#[test]
fn interim_response_and_a_chunked_body_split_into_single_bytes() {
    let raw = RawServer::start(1, |mut s, _, _| {
        read_head(&mut s);
        s.set_nodelay(true).unwrap();
        let resp: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Last: 1\r\n\r\n\
            3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: t\r\n\r\n";
        for b in resp {
            s.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.request().set("Expect", "100-continue");
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert_eq!(
        s.heads.len(),
        1,
        "the interim 100 is not a response: {:?}",
        s.heads
    );
    assert_eq!(s.status(0), 200);
    assert_eq!(s.heads[0].header("x-last"), Some("1"));
    assert_eq!(s.body_str(0), "abcdefgh");
    s.assert_clean_close();
}

#[test]
fn early_response_cuts_a_streamed_body_and_the_next_request_reconnects() {
    let srv = server();
    let lp = OwnedLoop::new().unwrap();
    // No such route: the server answers 404 as soon as it has the head.
    let conn = ClientConnection::new(lp.handle(), &url(srv.addr, "/nowhere")).unwrap();
    let seen = record(&conn);
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            assert!(
                !c.is_connected(),
                "a half-sent body makes the connection unusable"
            );
            assert!(matches!(c.send_chunk(b"more"), Err(ClientError::Usage(_))));
            c.finish_body().unwrap();
            c.request().set_method("GET").set_target("/");
            c.send().unwrap();
        } else {
            c.close();
        }
    });
    conn.request().set_method("POST");
    assert_eq!(conn.send_chunk(b"").unwrap(), Flow::Continue, "head only");
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert_eq!(s.status(0), 404);
    assert_eq!(s.status(1), 200);
    assert_eq!(s.body_str(1), "Hello, World!");
    assert_eq!(conn.connections_opened(), 2);
    s.assert_clean_close();
    srv.stop();
}

#[test]
fn switching_protocols_hands_over_the_socket_with_early_bytes() {
    let raw = RawServer::start(2, |mut s, _, _| {
        read_head(&mut s);
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\nhi",
        )
        .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // until the client closes
    });
    let lp = OwnedLoop::new().unwrap();
    let taken = Rc::new(RefCell::new(None));
    let mut conns = Vec::new();
    for take in [true, false] {
        let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
        let seen = record(&conn);
        let t = taken.clone();
        conn.complete.attach(move |c| {
            if take {
                let up = c.take_upgraded().expect("the 101 connection");
                *t.borrow_mut() = Some(up.buffered.clone());
                up.socket.close();
            }
            c.close();
        });
        conn.request()
            .set("Connection", "Upgrade")
            .set("Upgrade", "x-test");
        conn.send().unwrap();
        conns.push((conn, seen));
    }
    run(&lp, Duration::from_secs(30));
    for (_, seen) in &conns {
        let s = seen.borrow();
        assert_eq!(s.status(0), 101);
        assert!(s.heads[0].is_upgrade());
        s.assert_clean_close();
    }
    assert_eq!(taken.borrow().as_deref(), Some(&b"hi"[..]));
    drop(conns);
    lp.close()
        .expect("an untaken upgraded socket is closed too");
}

#[test]
fn endless_response_head_is_cut_off_at_the_limit() {
    let raw = RawServer::start(1, |mut s, _, _| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Filler: ");
        let filler = vec![b'a'; 16 * 1024];
        for _ in 0..64 {
            if s.write_all(&filler).is_err() {
                break; // the client gave up, as it should
            }
        }
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert!(s.heads.is_empty());
    let e = s.only_error();
    assert!(matches!(e, ClientError::InvalidResponse { .. }), "{e:?}");
    assert!(e.to_string().contains("too"), "{e}");
}

// ---- errors reported once -------------------------------------------------------------------

#[test]
fn connection_refused_is_reported_once() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://127.0.0.1:{port}/")).unwrap();
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert_eq!(s.connects, 0);
    assert!(s.heads.is_empty() && s.bodies.is_empty());
    let e = s.only_error();
    assert!(matches!(e, ClientError::Connect(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("ECONNREFUSED"), "{text}");
}

#[test]
fn connect_timeout_is_reported_once() {
    // A listener with a full accept queue drops further SYNs, so a connect to it hangs: all
    // on loopback. Its loop never runs, so nothing ever accepts.
    let parked = OwnedLoop::new().unwrap();
    let listener = TcpHandle::new(parked.handle()).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse().unwrap(), false)
        .unwrap();
    listener.listen(0, |_| {}).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..32 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "could not fill the accept queue");

    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{addr}/")).unwrap();
    conn.set_connect_timeout(Duration::from_millis(300));
    let seen = record(&conn);
    let started = Instant::now();
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let elapsed = started.elapsed();
    let e = seen.borrow().only_error();
    assert!(
        matches!(e, ClientError::ConnectTimeout { timeout, .. } if timeout == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(e.is_timeout());
    assert!(e.to_string().contains("timed out after 300 ms"), "{e}");
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");

    drop(fillers);
    listener.close();
    drop(listener);
    parked.close().expect("parked loop closes");
}

#[test]
fn read_timeout_is_reported_once() {
    let raw = RawServer::start(1, |mut s, _, stop| {
        read_head(&mut s);
        hold_until_stopped(stop); // accepts, reads, never answers
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    conn.set_read_timeout(Duration::from_millis(200));
    let seen = record(&conn);
    let started = Instant::now();
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let elapsed = started.elapsed();
    let s = seen.borrow();
    assert_eq!(s.connects, 1);
    assert!(s.heads.is_empty());
    let e = s.only_error();
    assert!(matches!(e, ClientError::ReadTimeout { .. }), "{e:?}");
    assert!(e.to_string().contains("(read timeout)"), "{e}");
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
}

#[test]
fn read_timeout_restarts_with_every_read() {
    // A slow server: the body comes in 6 pieces 50 ms apart, longer than the 250 ms read
    // timeout in total but never silent for that long.
    let raw = RawServer::start(1, |mut s, _, _| {
        read_head(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            .unwrap();
        for b in b"slow!!" {
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(&[*b]).unwrap();
        }
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    conn.set_read_timeout(Duration::from_millis(250));
    let seen = record(&conn);
    close_after(&conn, 1);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert_eq!(s.body_str(0), "slow!!");
    s.assert_clean_close();
}

#[test]
fn unknown_host_is_reported_once_naming_the_host() {
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), "http://nosuch.invalid/").unwrap();
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert_eq!(s.connects, 0);
    let e = s.only_error();
    assert!(matches!(e, ClientError::Resolve(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("cannot resolve nosuch.invalid: "),
        "{e}"
    );
}

#[test]
fn closing_mid_request_reports_none_once_and_releases_everything() {
    let raw = RawServer::start(1, |mut s, _, stop| {
        read_head(&mut s);
        hold_until_stopped(stop);
    });
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &format!("http://{}/", raw.addr)).unwrap();
    let seen = record(&conn);
    conn.connect.attach(|c| c.close());
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    seen.borrow().assert_clean_close();
    conn.close(); // idempotent: no second close signal
    assert_eq!(seen.borrow().closes.len(), 1);
}

// ---- TLS ------------------------------------------------------------------------------------

fn tls_server(pki: &ThrowawayPki) -> TestServer {
    let ctx = TlsContext::server()
        .cert_chain_pem(pki.cert_pem())
        .key_pem(pki.key_pem())
        .build()
        .unwrap();
    TestServer::start(move |srv| {
        srv.set_tls(ctx);
        srv.connection += |conn: ServerConnectionPtr| route(&conn);
    })
}

fn trusting(pki: &ThrowawayPki) -> TlsContext {
    TlsContext::client().ca_pem(pki.ca_pem()).build().unwrap()
}

#[test]
fn https_get_and_post_on_one_connection() {
    let pki = ThrowawayPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let srv = tls_server(&pki);
    let lp = OwnedLoop::new().unwrap();
    // "localhost" goes through DNS, and is the name the certificate is checked against.
    let conn = ClientConnection::with_tls(
        lp.handle(),
        &format!("https://localhost:{}/", srv.addr.port()),
        trusting(&pki),
    )
    .unwrap();
    let seen = record(&conn);
    let body = pattern(100_000);
    let b = body.clone();
    let n = Cell::new(0);
    conn.complete.attach(move |c| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            c.request().set_method("POST").set_target("/echo");
            c.send_body(&b).unwrap();
        } else {
            c.close();
        }
    });
    conn.send().unwrap();
    run_and_close(lp, vec![conn.clone()]);
    let s = seen.borrow();
    assert_eq!(s.connects, 1);
    assert_eq!(s.status(0), 200);
    assert_eq!(s.body_str(0), "Hello, World!");
    assert_eq!(s.status(1), 200);
    assert!(s.bodies[1] == body, "TLS echo differs");
    assert_eq!(conn.connections_opened(), 1, "keep-alive over TLS");
    s.assert_clean_close();
    srv.stop();
}

/// Runs one https GET that must fail the certificate check; returns the error.
fn https_error(url: String, ctx: Option<TlsContext>) -> ClientError {
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::new(lp.handle(), &url).unwrap();
    if let Some(ctx) = ctx {
        conn.set_tls_context(ctx);
    }
    let seen = record(&conn);
    conn.send().unwrap();
    run_and_close(lp, vec![conn]);
    let s = seen.borrow();
    assert_eq!(s.connects, 0, "connect only fires once TLS is up");
    assert!(s.heads.is_empty(), "no fake status: {:?}", s.heads);
    s.only_error()
}

#[test]
fn https_certificate_for_another_name_is_rejected() {
    let pki = ThrowawayPki::generate(&["other.test"]).unwrap();
    let srv = tls_server(&pki);
    let e = https_error(
        format!("https://localhost:{}/", srv.addr.port()),
        Some(trusting(&pki)),
    );
    let tls = e.tls_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(tls.kind(), TlsErrorKind::CertificateVerify, "{e}");
    let text = e.to_string();
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(text.contains("localhost"), "{text}");
    srv.stop();
}

#[test]
fn https_certificate_from_an_unknown_ca_is_rejected() {
    let pki = ThrowawayPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let other = ThrowawayPki::generate(&["localhost"]).unwrap();
    let srv = tls_server(&pki);
    // A CA the client trusts, but not the one that issued the certificate.
    let e = https_error(
        format!("https://127.0.0.1:{}/", srv.addr.port()),
        Some(trusting(&other)),
    );
    assert_eq!(
        e.tls_error().map(|t| t.kind()),
        Some(TlsErrorKind::CertificateVerify),
        "{e}"
    );
    assert!(e.to_string().contains("certificate verify failed"), "{e}");
    // The default context (the system CAs) does not know the throwaway CA either.
    let e = https_error(format!("https://localhost:{}/", srv.addr.port()), None);
    assert_eq!(
        e.tls_error().map(|t| t.kind()),
        Some(TlsErrorKind::CertificateVerify),
        "{e}"
    );
    srv.stop();
}

#[test]
fn https_to_a_plain_http_server_fails_cleanly() {
    let srv = server();
    let e = https_error(format!("https://{}/", srv.addr), None);
    assert!(e.tls_error().is_some(), "{e:?}");
    assert_still_serves(srv.addr);
    srv.stop();
}

// ---- the example ----------------------------------------------------------------------------

#[test]
fn httpclient_example_prints_status_headers_and_body() {
    let srv = server();
    let out = std::process::Command::new(example_binary("httpclient"))
        .arg(url(srv.addr, "/"))
        .output()
        .expect("run examples/httpclient (built by cargo test)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{stdout}");
    assert!(stdout.contains("\r\nContent-Length: 13\r\n"), "{stdout}");
    assert!(stdout.ends_with("\r\n\r\nHello, World!"), "{stdout}");

    let out = std::process::Command::new(example_binary("httpclient"))
        .args([
            url(srv.addr, "/echo").as_str(),
            "-X",
            "PUT",
            "-d",
            "some data",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("\r\n\r\nsome data"));
    srv.stop();

    let out = std::process::Command::new(example_binary("httpclient"))
        .arg("http://nosuch.invalid/")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing printed as if it were a response"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot resolve nosuch.invalid"), "{stderr}");
}

#[test]
fn httpclient_example_verifies_with_a_ca_file() {
    let pki = ThrowawayPki::generate(&["localhost"]).unwrap();
    let dir = std::env::temp_dir().join(format!("uvhttp-client-{}", std::process::id()));
    let paths = pki.write_to(&dir).unwrap();
    let srv = tls_server(&pki);
    let target = format!("https://localhost:{}/", srv.addr.port());

    let out = std::process::Command::new(example_binary("httpclient"))
        .arg(&target)
        .output()
        .unwrap();
    assert!(!out.status.success(), "untrusted CA must fail: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    let out = std::process::Command::new(example_binary("httpclient"))
        .args([target.as_str(), "--cacert"])
        .arg(&paths.ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("Hello, World!"));

    let out = std::process::Command::new(example_binary("httpclient"))
        .args([target.as_str(), "--insecure"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
