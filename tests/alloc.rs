//! The request path allocates nothing per request in steady state: a counting global
//! allocator watches 10,000 keep-alive requests (pipelined 16 per read) through a server
//! connection over an in-memory socket, after a warm-up that fills the pools.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use uvhttp::http::in_memory::InMemoryConnection;
use uvhttp::http::{Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv::OwnedLoop;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..625 {
        conn.feed(&batch); // 10,000 requests
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
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
