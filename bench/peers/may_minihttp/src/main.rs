//! may_minihttp peer server for `bench/run.py`.
//!
//! Serves the benchmark routes on ONE may worker thread (stackful coroutines, one per
//! connection), the same one-core shape as a libuv loop:
//! * `GET /` -> `Hello, World!`
//! * `POST /echo` -> the request body (needs `Content-Length`: may_minihttp reads a body
//!   by that header only, so a chunked body reads as empty)
//! * `GET /big?bytes=N` -> N bytes
//!
//! may_minihttp writes `Content-Length` itself from the body it is given. It never closes
//! a connection on its own: a request with `Connection: close` gets that header back, so
//! the client closes (HTTP/1.1 lets either side close after such an exchange).
//!
//! Usage: `uvhttp-bench-may-peer [--host ADDR] [--port N]`; prints
//! `listening on http://HOST:PORT` once bound.

use std::io::{self, BufRead};
use std::sync::Mutex;

use may_minihttp::{HttpServer, HttpService, Request, Response};
use peer_args::{parse_args, requested_bytes};

#[path = "../../peer_args.rs"]
mod peer_args;

/// Largest body `/big` serves and `/echo` accepts; beyond it the peer answers 413.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Bytes for `/big`. may_minihttp's `Response::body` takes only a `&'static str` (or an
/// owned `Vec`, which would allocate and fill 1 MiB per request), so the body lives in a
/// leaked string, replaced by one at least twice as long when a larger size is asked for:
/// what leaks stays below twice the largest size served.
static BIG_BODY: Mutex<&'static str> = Mutex::new("");

fn main() {
    let (host, port) = match parse_args() {
        Ok(address) => address,
        Err(message) => {
            eprintln!("may_minihttp peer: {message}");
            std::process::exit(2);
        }
    };
    // One worker: the comparison is per core. may pins its workers to cores by default;
    // off, so that the runner's `taskset` alone decides where the server runs.
    may::config().set_workers(1);
    may::config().set_worker_pin(false);
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let server = match HttpServer(Routes).start(address.as_str()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("may_minihttp peer: cannot bind {address}: {error}");
            std::process::exit(1);
        }
    };
    println!("listening on http://{address}");
    // The accept coroutine runs until the process is stopped.
    let _ = server.join();
}

/// What a request asks for, decided before the request is consumed for its body.
enum Route {
    Hello,
    Echo,
    Big(Option<usize>),
    NotFound,
}

#[derive(Clone)]
struct Routes;

impl HttpService for Routes {
    fn call(&mut self, request: Request, response: &mut Response) -> io::Result<()> {
        let (path, query) = match request.path().split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (request.path(), None),
        };
        let route = match (request.method(), path) {
            ("GET", "/") => Route::Hello,
            ("POST", "/echo") => Route::Echo,
            ("GET", "/big") => Route::Big(requested_bytes(query)),
            _ => Route::NotFound,
        };
        if asks_to_close(&request) {
            response.header("Connection: close");
        }
        let declared_length = content_length(&request);
        // The body must be consumed whatever the route: what is left of it in the
        // connection's buffer would be read as the next request. Dropping the reader
        // reads and discards the rest.
        let mut body = request.body();
        match route {
            Route::Hello => {
                response.header("Content-Type: text/plain");
                response.body("Hello, World!");
            }
            Route::Echo if declared_length > MAX_BODY_BYTES => too_large(response),
            Route::Echo => {
                response.header("Content-Type: application/octet-stream");
                let out = response.body_mut();
                loop {
                    let chunk = body.fill_buf()?;
                    if chunk.is_empty() {
                        break;
                    }
                    let read = chunk.len();
                    out.extend_from_slice(chunk);
                    body.consume(read);
                }
            }
            Route::Big(Some(len)) if len <= MAX_BODY_BYTES => {
                response.header("Content-Type: application/octet-stream");
                response.body(big_body(len));
            }
            Route::Big(_) => {
                response.status_code(400, "Bad Request");
                response.header("Content-Type: text/plain");
                response.body("need ?bytes=N, N <= 64 MiB\n");
            }
            Route::NotFound => {
                response.status_code(404, "Not Found");
                response.header("Content-Type: text/plain");
                response.body("not found\n");
            }
        }
        Ok(())
    }
}

fn too_large(response: &mut Response) {
    response.status_code(413, "Payload Too Large");
    response.header("Content-Type: text/plain");
    response.body("body too large\n");
}

/// True when the request carries `Connection: close` (a token list, case-insensitive).
fn asks_to_close(request: &Request) -> bool {
    request.headers().iter().any(|header| {
        header.name.eq_ignore_ascii_case("connection")
            && header
                .value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The declared body length; 0 when absent or unreadable (may_minihttp itself would then
/// fail on it when the body is read).
fn content_length(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .and_then(|header| std::str::from_utf8(header.value).ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn big_body(len: usize) -> &'static str {
    let mut body = BIG_BODY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if body.len() < len {
        let grown = len.max(body.len() * 2).min(MAX_BODY_BYTES);
        *body = Box::leak("x".repeat(grown).into_boxed_str());
    }
    &body[..len]
}
