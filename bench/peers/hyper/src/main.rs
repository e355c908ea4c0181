//! hyper 1.x peer server for `bench/run.py`.
//!
//! Serves the benchmark routes on one thread (tokio current-thread runtime), the
//! same one-core shape as a libuv loop:
//! * `GET /` -> `Hello, World!`
//! * `POST /echo` -> the request body
//! * `GET /big?bytes=N` -> N bytes
//!
//! Usage: `uvhttp-bench-hyper-peer [--host ADDR] [--port N]`; prints
//! `listening on http://HOST:PORT` once bound.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use peer_args::{parse_args, requested_bytes};
use tokio::net::TcpListener;

#[path = "../../peer_args.rs"]
mod peer_args;

/// Largest body `/big` serves and `/echo` accepts; beyond it the peer answers 413.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

thread_local! {
    /// Bytes for `/big`, grown to the largest size asked for so far and shared by
    /// reference count, so a request does not allocate its body.
    static BIG_BODY: RefCell<Bytes> = const { RefCell::new(Bytes::new()) };
}

fn main() {
    let (host, port) = match parse_args() {
        Ok(address) => address,
        Err(message) => {
            eprintln!("hyper peer: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("cannot build the tokio runtime");
    if let Err(message) = runtime.block_on(serve(host, port)) {
        eprintln!("hyper peer: {message}");
        std::process::exit(1);
    }
}

async fn serve(host: String, port: u16) -> Result<(), String> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| format!("bad --host {host:?}"))?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot bind {address}: {error}"))?;
    let bound = listener.local_addr().map_err(|error| error.to_string())?;
    println!("listening on http://{bound}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // `pipeline_flush` is hyper's own answer to pipelining: responses to requests
            // that arrived together go out in one write instead of one write each. Without
            // it the pipelined scenario would measure a setting no one tuning hyper keeps.
            let _ = http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await;
        });
    }
}

async fn route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let response = match (request.method(), path) {
        (&Method::GET, "/") => text(StatusCode::OK, "Hello, World!"),
        (&Method::POST, "/echo") => {
            match Limited::new(request.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
                Ok(body) => body_response(body.to_bytes()),
                Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            }
        }
        (&Method::GET, "/big") => match requested_bytes(request.uri().query()) {
            Some(len) if len <= MAX_BODY_BYTES => body_response(big_body(len)),
            _ => text(StatusCode::BAD_REQUEST, "need ?bytes=N, N <= 64 MiB\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn big_body(len: usize) -> Bytes {
    BIG_BODY.with(|cell| {
        let mut body = cell.borrow_mut();
        if body.len() < len {
            *body = Bytes::from(vec![b'x'; len]);
        }
        body.slice(..len)
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn body_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}
