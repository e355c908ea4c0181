//! The request path allocates nothing per request in steady state: a counting global
//! allocator watches 10,000 keep-alive requests (pipelined 16 per read) through a server
//! connection over an in-memory socket, after a warm-up that fills the pools. Counts are per
//! thread, so the tests of this file do not see each other's allocations.

use uvhttp::http::in_memory::InMemoryConnection;
use uvhttp::http::{Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv::OwnedLoop;

mod counting;

use counting::allocations;

const REQUEST: &[u8] =
    b"GET /plaintext?x=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";

#[test]
fn no_allocation_per_request_in_steady_state() {
    let lp = OwnedLoop::new().unwrap();
    let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
    srv.connection += |conn: ServerConnectionPtr| {
        let _ = conn.respond(StatusCode::OK, "text/plain", b"Hello, World!");
    };
    let conn = InMemoryConnection::new(&srv);
    conn.capture_output(true);
    let batch: Vec<u8> = REQUEST.repeat(16);
    // Warm-up: pools and buffers reach their working size.
    for _ in 0..100 {
        conn.feed(&batch);
    }
    let out = conn.take_output();
    assert_eq!(
        out.windows(b"Hello, World!".len())
            .filter(|w| w == b"Hello, World!")
            .count(),
        1600,
        "every warm-up request was answered"
    );
    conn.capture_output(false);
    let written_before = conn.bytes_written();
    let before = allocations();
    for _ in 0..625 {
        conn.feed(&batch); // 10,000 requests
    }
    let allocations = allocations() - before;
    let per_response = out.len() as u64 / 1600;
    assert_eq!(
        conn.bytes_written() - written_before,
        per_response * 10_000,
        "all 10,000 requests answered"
    );
    assert_eq!(
        allocations, 0,
        "allocations during 10,000 steady-state requests"
    );
    drop(conn);
    drop(srv);
    lp.close().unwrap();
}

#[test]
fn an_echo_with_per_request_slots_allocates_nothing_either() {
    // The icey way to stream a body back: per request, attach a payload slot and a
    // request-complete slot. Closures that capture nothing box without allocating, and
    // signals are renewed in place when the pooled request object is reused.
    let lp = OwnedLoop::new().unwrap();
    let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
    srv.connection += |conn: ServerConnectionPtr| {
        let length = conn.request().content_length().unwrap_or(0);
        conn.response()
            .set_status(StatusCode::OK)
            .set_content_length(length);
        conn.send_header().unwrap();
        conn.payload.attach(|conn, chunk| {
            let _ = conn.send(chunk);
        });
        conn.request_complete_signal.attach(|conn| {
            let _ = conn.complete();
        });
    };
    let conn = InMemoryConnection::new(&srv);
    let request = b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 11\r\n\r\nhello world";
    let batch: Vec<u8> = request.repeat(16);
    conn.capture_output(true);
    for _ in 0..100 {
        conn.feed(&batch);
    }
    let out = conn.take_output();
    assert_eq!(
        out.windows(11).filter(|w| w == b"hello world").count(),
        1600,
        "every warm-up body was echoed"
    );
    conn.capture_output(false);
    let written_before = conn.bytes_written();
    let before = allocations();
    for _ in 0..625 {
        conn.feed(&batch);
    }
    let allocations = allocations() - before;
    assert_eq!(
        conn.bytes_written() - written_before,
        out.len() as u64 / 1600 * 10_000,
        "all 10,000 bodies echoed"
    );
    assert_eq!(allocations, 0, "allocations during 10,000 echoed requests");
    drop(conn);
    drop(srv);
    lp.close().unwrap();
}
