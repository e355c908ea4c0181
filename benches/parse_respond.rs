//! Cost per request of the library's request path (parse, dispatch, respond) without the
//! kernel: requests are fed to a server connection over an in-memory socket, 16 per read.
//!
//! `cargo bench --bench parse_respond` prints ns per request for a few request shapes. For
//! instruction counts that do not depend on machine load, run the binary under
//! `valgrind --tool=callgrind`.

use std::time::Instant;

use uvhttp::http::in_memory::InMemoryConnection;
use uvhttp::http::{Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv::OwnedLoop;

fn run(name: &str, request: &[u8], rounds: usize) {
    // UVHTTP_BENCH_SHAPE=minimal (a prefix of the name) runs one shape only, e.g. under callgrind.
    if let Ok(only) = std::env::var("UVHTTP_BENCH_SHAPE") {
        if !name.starts_with(only.as_str()) {
            return;
        }
    }
    let lp = OwnedLoop::new().unwrap();
    let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
    srv.connection += |conn: ServerConnectionPtr| {
        let _ = conn.respond(StatusCode::OK, "text/plain", b"Hello, World!");
    };
    let conn = InMemoryConnection::new(&srv);
    let batch = request.repeat(16);
    for _ in 0..1000 {
        conn.feed(&batch);
    }
    let start = Instant::now();
    for _ in 0..rounds {
        conn.feed(&batch);
    }
    let elapsed = start.elapsed();
    let n = rounds * 16;
    println!(
        "{name:<28} {:>8.1} ns/request  ({n} requests, {} bytes out)",
        elapsed.as_nanos() as f64 / n as f64,
        conn.bytes_written()
    );
    drop(conn);
    drop(srv);
    lp.close().unwrap();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and then a short smoke run is enough. A number argument sets the rounds (callgrind).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(
        if args.iter().any(|a| a == "--bench") {
            40_000
        } else {
            50
        },
    );
    run("minimal GET", b"GET / HTTP/1.1\r\nHost: b\r\n\r\n", rounds);
    run(
        "wrk-like GET",
        b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
        rounds,
    );
    run(
        "browser-like GET (9 fields)",
        b"GET /index.html?user=42&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nCache-Control: max-age=0\r\n\r\n",
        rounds,
    );
}
