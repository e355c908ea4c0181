//! Server lifecycle: graceful stop with a request in flight, stop closing idle connections,
//! addresses (port 0, IPv6, inherited sockets), bind errors, connection counting, panics and
//! abandoned requests, and libuv handle accounting back to the baseline.

mod common;

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use uvhttp::http::{Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv::{Loop, OwnedLoop, Timer};

thread_local! {
    /// Requests a test keeps unanswered on the loop thread, to answer (or not) later.
    static PENDING: RefCell<Vec<ServerConnectionPtr>> = const { RefCell::new(Vec::new()) };
    /// The loop of the server on this thread.
    static LOOP: Cell<Option<Loop>> = const { Cell::new(None) };
    /// Timers started by tests on the loop thread (each drops itself when it fires).
    static TIMERS: RefCell<Vec<Timer>> = const { RefCell::new(Vec::new()) };
}

/// The body of `/big`: larger than the socket buffers, so the write outlives the handler.
static BIG: [u8; 4 << 20] = [b'x'; 4 << 20];

/// `/` says hello; `/big` answers 4 MiB of `x`; `/slow` is kept pending (answered by `answer_pending_soon`); `/panic`
/// panics before answering; `/panic-late` panics after sending part of a body; `/drop*` is
/// never answered and its handle dropped.
fn lifecycle_server(configure: impl FnOnce(&mut Server) + Send + 'static) -> TestServer {
    TestServer::start(move |srv| {
        configure(srv);
        LOOP.with(|l| l.set(Some(srv.event_loop())));
        srv.connection += |conn: ServerConnectionPtr| {
            let path = conn.request().path().to_string();
            match path.as_str() {
                "/slow" | "/never" => PENDING.with(|p| p.borrow_mut().push(conn)),
                "/panic" => panic!("deliberate panic in a handler (test)"),
                "/panic-late" => {
                    conn.response().set_chunked_transfer_encoding(true);
                    conn.send(b"partial").unwrap();
                    panic!("deliberate panic after the head was sent (test)");
                }
                "/panic-in-payload" => {
                    conn.payload
                        .attach(|_, _| panic!("deliberate panic in a payload slot"));
                }
                p if p.starts_with("/drop") => {} // the handle is dropped unanswered
                "/big" => {
                    conn.respond(StatusCode::OK, "application/octet-stream", &BIG)
                        .unwrap();
                }
                _ => {
                    conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                        .unwrap();
                }
            }
        };
    })
}

/// Starts a uv timer on the loop that answers every pending request after `ms`.
fn answer_pending_soon(srv: &TestServer, ms: u64) {
    srv.on_loop(move || {
        let lp = LOOP.with(|l| l.get()).expect("loop recorded");
        let timer = Timer::new(lp).expect("timer");
        let index = TIMERS.with(|t| t.borrow().len());
        timer
            .start(ms, 0, move || {
                for conn in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
                    let _ = conn.respond(StatusCode::OK, "text/plain", b"answered late");
                }
                // Close this timer: an open handle would keep uv_loop_close from succeeding.
                let me = TIMERS.with(|t| t.borrow_mut().remove(index));
                drop(me);
            })
            .expect("start timer");
        TIMERS.with(|t| t.borrow_mut().push(timer));
    });
}

fn pending_count(srv: &TestServer) -> usize {
    srv.with_server(|_| PENDING.with(|p| p.borrow().len()))
}

/// Waits (bounded) until connecting to `addr` is refused: the listener is closed.
fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "new connections are still accepted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn graceful_stop_finishes_the_request_in_flight() {
    let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
    let srv = lifecycle_server(move |srv| {
        srv.stopped += move || stopped_tx.send(()).unwrap();
    });
    // An idle keep-alive connection, and one with a request in flight.
    let mut idle = Client::connect(srv.addr);
    assert_eq!(idle.request(&get("/")).status, 200);
    let mut busy = Client::connect(srv.addr);
    busy.send(&get("/slow"));
    wait_until(Duration::from_secs(5), "the slow request to arrive", || {
        pending_count(&srv) == 1
    });

    srv.begin_stop();
    // No new connections.
    wait_refused(srv.addr);
    // The idle connection is closed by the stop, cleanly.
    idle.expect_clean_close();
    // The in-flight request is not cut; it is answered from a timer after stop() began.
    busy.expect_open_for(Duration::from_millis(50));
    assert!(
        stopped_rx.try_recv().is_err(),
        "stopped emitted with a request in flight"
    );
    answer_pending_soon(&srv, 20);
    let r = busy.read_reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "answered late");
    assert!(r.closes(), "the last response says close: {:?}", r.headers);
    busy.expect_clean_close();
    drop((idle, busy));
    stopped_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("stopped emitted once everything closed");
    // stop() asserts uv_loop_close succeeds.
    srv.stop();
}

#[test]
fn stop_timeout_cuts_a_request_that_is_never_answered() {
    let srv = lifecycle_server(|srv| {
        srv.configure(|o| o.stop_timeout = Duration::from_millis(200));
    });
    let mut c = Client::connect(srv.addr);
    c.send(&get("/never"));
    wait_until(Duration::from_secs(5), "the request to arrive", || {
        pending_count(&srv) == 1
    });
    let start = Instant::now();
    srv.begin_stop();
    assert!(c.is_closed_by_server(), "not closed after stop_timeout");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    wait_for_log("stop timeout: closing 1 connection");
    // The pending handle is still held by the test; dropping it later is harmless.
    srv.with_server(|_| PENDING.with(|p| p.borrow_mut().clear()));
    drop(c);
    srv.stop();
}

#[test]
fn address_reports_the_real_port_and_connection_count_counts() {
    // Before start() there is no address.
    let lp = OwnedLoop::new().unwrap();
    let unstarted = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
    assert_eq!(unstarted.address(), None);
    assert_eq!(unstarted.connection_count(), 0);
    drop(unstarted);
    lp.close().expect("no handles left by an unstarted server");

    let srv = hello_server();
    assert_eq!(srv.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(srv.addr.port(), 0);
    assert_eq!(srv.with_server(|s| s.address()), Some(srv.addr));
    assert_eq!(srv.connection_count(), 0);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(srv.addr)).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.request(&get("/")).status, 200);
    }
    assert_eq!(srv.connection_count(), 3);
    clients.pop();
    srv.wait_connections(|n| n == 2, "one close");
    clients.clear();
    srv.wait_connections(|n| n == 0, "all closes");
    srv.stop();
}

#[test]
fn bind_error_names_the_port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let lp = OwnedLoop::new().unwrap();
    let srv = Server::with_loop(lp.handle(), "127.0.0.1", port).unwrap();
    let err = srv.start().expect_err("the port is taken");
    let text = err.to_string();
    assert!(
        text.contains(&format!("port {port} is in use")),
        "error does not name the port: {text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(err.uv_error().is_some_and(|e| e.is_addr_in_use()));
    assert!(!srv.is_running());
    drop(srv);
    // The failed start left nothing open on the loop.
    lp.close().expect("failed start leaked a handle");
    drop(taken);
}

#[test]
fn serves_on_ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        println!("skipped: ::1 is not available on this machine ({e})");
        return;
    }
    let (tx, rx) = mpsc::channel::<String>();
    let srv = TestServer::start_on("::1", move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            tx.send(conn.peer_address().unwrap().ip().to_string())
                .unwrap();
            conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                .unwrap();
        };
    });
    assert!(srv.addr.is_ipv6());
    assert_eq!(srv.addr.ip().to_string(), "::1");
    let r = request(srv.addr, b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "::1");
    srv.stop();
}

#[test]
fn serves_on_an_inherited_listening_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = TestServer::start_with(move |lp| {
        let mut srv = Server::from_listener(lp, listener);
        srv.connection += |conn: ServerConnectionPtr| {
            conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                .unwrap();
        };
        srv
    });
    assert_eq!(srv.addr, addr, "address() is the inherited socket's");
    let mut c = Client::connect(addr);
    for _ in 0..2 {
        assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    }
    drop(c);
    srv.stop();
    // The server owned the descriptor and closed it: the port is free again.
    wait_refused(addr);
}

#[test]
fn panic_in_a_handler_is_a_500_for_that_client_only() {
    let srv = lifecycle_server(|_| {});
    let mut other = Client::connect(srv.addr);
    assert_eq!(other.request(&get("/")).status, 200);

    let mut c = Client::connect(srv.addr);
    let r = c.request(&get("/panic"));
    assert_eq!(r.status, 500);
    assert_eq!(r.body_str(), "Internal Server Error\n");
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_clean_close();
    drop(c);
    let line = wait_for_log("GET /panic (from");
    assert!(line.contains("deliberate panic in a handler"), "{line}");

    // A panic in a payload slot: also 500, also only that client.
    let mut c = Client::connect(srv.addr);
    let r =
        c.request(b"POST /panic-in-payload HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.status, 500);
    assert!(r.closes());
    c.expect_clean_close();
    wait_for_log("POST /panic-in-payload");

    // The loop survived, the other connection is untouched, new clients are served.
    assert_eq!(other.request(&get("/")).body_str(), "Hello, World!");
    assert_still_serves(srv.addr);
    drop((c, other));
    srv.stop();
}

#[test]
fn panic_after_the_head_was_sent_cuts_only_that_connection() {
    let srv = lifecycle_server(|_| {});
    let mut other = Client::connect(srv.addr);
    assert_eq!(other.request(&get("/")).status, 200);
    let mut c = Client::connect(srv.addr);
    c.send(&get("/panic-late"));
    // Whatever arrived, the response never completes: the connection is cut.
    let raw = c.read_to_close();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut response must not look complete: {text:?}"
    );
    wait_for_log("GET /panic-late");
    assert_eq!(other.request(&get("/")).body_str(), "Hello, World!");
    assert_still_serves(srv.addr);
    drop((c, other));
    srv.stop();
}

#[test]
fn dropping_the_handle_without_answering_is_a_500_and_logged() {
    let srv = lifecycle_server(|_| {});
    let mut c = Client::connect(srv.addr);
    let r = c.request(&get("/drop-now"));
    assert_eq!(r.status, 500);
    assert!(r.body_str().contains("not answered"), "{}", r.body_str());
    let line = wait_for_log("GET /drop-now was dropped without a response");
    assert!(line.starts_with("[ERROR]"), "{line}");
    // A kept handle dropped later, from the loop, unanswered: the same.
    c.send(&get("/slow"));
    wait_until(Duration::from_secs(5), "the request to arrive", || {
        pending_count(&srv) == 1
    });
    srv.with_server(|_| PENDING.with(|p| p.borrow_mut().clear()));
    let r = c.read_reply();
    assert_eq!(r.status, 500);
    wait_for_log("GET /slow was dropped without a response");
    // The connection is still usable.
    assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn uv_handles_return_to_the_baseline_after_stop() {
    let (tx, rx) = mpsc::channel::<usize>();
    let srv = TestServer::start_with(move |lp| {
        // Before the server starts: the baseline (the harness adds its mailbox afterwards).
        tx.send(lp.handle_count()).unwrap();
        let mut srv = Server::with_loop(lp, "127.0.0.1", 0).unwrap();
        srv.connection += |conn: ServerConnectionPtr| {
            conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                .unwrap();
        };
        srv
    });
    let baseline = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let harness_handles = 1; // the test harness's own mailbox
    let count = || srv.with_server(|s| s.event_loop().handle_count());
    let running = count();
    assert!(
        running > baseline + harness_handles,
        "a running server holds handles"
    );
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(srv.addr)).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.request(&get("/")).status, 200);
    }
    assert_eq!(count(), running + 3, "one handle per connection");
    drop(clients);
    srv.wait_connections(|n| n == 0, "the clients' closes");
    wait_until(
        Duration::from_secs(5),
        "connection handles to close",
        || count() == running,
    );
    srv.begin_stop();
    wait_until(
        Duration::from_secs(5),
        "the server's handles to close",
        || count() == baseline + harness_handles,
    );
    srv.stop();
}

// ---- closing: when to wait for the client's FIN ------------------------------------------------

/// A server whose lingering close would outlast every wait in these tests.
fn long_linger_server() -> TestServer {
    lifecycle_server(|srv| srv.configure(|o| o.linger_timeout = Duration::from_secs(60)))
}

#[test]
fn a_client_that_asked_to_close_is_not_waited_for() {
    // The client said `Connection: close` (or spoke HTTP/1.0) and sent nothing more: the server
    // closes once the response is written instead of lingering for the client's FIN, which it
    // never sends here (the socket stays open until the end of the test).
    let srv = long_linger_server();
    let mut held = Vec::new();
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        &b"GET / HTTP/1.0\r\n\r\n"[..],
    ] {
        let mut c = Client::connect(srv.addr);
        let reply = c.request(raw);
        assert_eq!(
            (reply.status, reply.body_str().as_str()),
            (200, "Hello, World!")
        );
        c.expect_clean_close();
        held.push(c);
    }
    srv.wait_connections(|n| n == 0, "the server to close without the client's FIN");
    drop(held);
    srv.stop();
}

#[test]
fn a_large_response_is_written_whole_before_a_close_without_linger() {
    // The 4 MiB response is still being written when the handler returns (the client reads
    // only after a pause); the close waits for the last byte, then happens without the FIN.
    let srv = long_linger_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    let all = c.read_to_close();
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let body = &all[head_end..];
    assert_eq!(body.len(), BIG.len(), "the whole body, then EOF");
    assert!(body.iter().all(|&b| b == b'x'));
    srv.wait_connections(|n| n == 0, "the server to close after the last byte");
    drop(c);
    srv.stop();
}

#[test]
fn a_client_that_sent_more_after_its_last_request_is_lingered_for() {
    // Bytes after the `Connection: close` request mean the client may still be sending:
    // closing now could reset the connection and destroy the response, so the server waits
    // for the client's FIN (bounded by linger_timeout).
    let srv = long_linger_server();
    let mut c = Client::connect(srv.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let reply = c.read_reply();
    assert_eq!(reply.status, 200);
    assert!(reply.closes());
    c.expect_clean_close();
    // Our FIN has not been sent: the server is still lingering.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        srv.connection_count(),
        1,
        "the server must wait for our FIN"
    );
    drop(c);
    srv.wait_connections(|n| n == 0, "the close after our FIN");
    srv.stop();
}
