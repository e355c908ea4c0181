//! The routes of the sample server (examples/httpechoserver.rs), in a module of their own so
//! that the integration tests serve exactly the same handlers on their own loops.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use uvhttp::http::sse::EventStream;
use uvhttp::http::{Flow, Method, ServerConnection, StatusCode};
use uvhttp::uv;

/// 64 KiB of filler, sliced for `/big` so large bodies go out without per-request copies.
static BLOCK: [u8; 65536] = [b'x'; 65536];

/// Answers one request of the sample server.
pub fn route(conn: &ServerConnection) {
    // Decide while the request is borrowed, answer after: handlers borrow it again. Only the
    // rare `/status/` route copies anything, so the hot routes allocate nothing.
    let route = {
        let req = conn.request();
        match (req.method(), req.path()) {
            (Method::Get | Method::Head, "/") => Route::Hello,
            (Method::Post | Method::Put, "/echo") => Route::Echo,
            (Method::Get | Method::Head, "/big") => Route::Big,
            (Method::Get | Method::Head, p) if p.starts_with("/status/") => {
                Route::Status(p[8..].to_string())
            }
            (Method::Get, "/ws") => Route::WebSocket,
            (Method::Get, "/delay") => Route::Delay,
            (Method::Get, "/thread") => Route::Thread,
            (Method::Get, "/sse") => Route::Sse,
            (Method::Get, "/stream") => Route::Stream,
            _ => Route::NotFound,
        }
    };
    match route {
        Route::Hello => {
            let _ = conn.respond(StatusCode::OK, "text/plain", b"Hello, World!");
        }
        Route::Echo => echo(conn),
        Route::Big => big(conn),
        Route::Status(code) => status(conn, &code),
        Route::WebSocket => websocket_echo(conn),
        Route::Delay => delay(conn),
        Route::Thread => thread(conn),
        Route::Sse => sse(conn),
        Route::Stream => stream(conn),
        Route::NotFound => {
            let _ = conn.respond(StatusCode::NOT_FOUND, "text/plain", b"Not Found\n");
        }
    }
}

/// What [`route`] decided for a request.
enum Route {
    Hello,
    Echo,
    Big,
    Status(String),
    WebSocket,
    Delay,
    Thread,
    Sse,
    Stream,
    NotFound,
}

/// Streams the body back chunk by chunk as it arrives: no buffering of the whole body.
pub fn echo(conn: &ServerConnection) {
    let length = {
        // The request and the response are borrowed separately, so the type is not copied.
        let req = conn.request();
        conn.response().set_status(StatusCode::OK).set_content_type(
            req.header("content-type")
                .unwrap_or("application/octet-stream"),
        );
        req.content_length()
    };
    let resp = conn.response();
    match length {
        Some(n) => {
            resp.set_content_length(n);
        }
        None => {
            resp.set_chunked_transfer_encoding(true);
        }
    }
    if conn.send_header().is_err() {
        return;
    }
    conn.payload.attach(|conn, chunk| {
        let _ = conn.send(chunk);
    });
    conn.request_complete_signal.attach(|conn| {
        let _ = conn.complete();
    });
}

fn big(conn: &ServerConnection) {
    let bytes: u64 = conn
        .request()
        .query_param("bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    let resp = conn.response();
    resp.set_status(StatusCode::OK)
        .set_content_type("application/octet-stream")
        .set_content_length(bytes);
    if conn.send_header().is_err() {
        return;
    }
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BLOCK.len() as u64) as usize;
        let slice: &'static [u8] = &BLOCK[..n];
        if conn.send_owned(slice).is_err() {
            return;
        }
        left -= n as u64;
    }
}

fn status(conn: &ServerConnection, code: &str) {
    match code.parse::<u16>().ok().and_then(StatusCode::from_u16) {
        Some(s) if s.as_u16() >= 200 => {
            let _ = conn.respond(s, "", b"");
        }
        _ => {
            let _ = conn.respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                b"status must be a number from 200 to 999\n",
            );
        }
    }
}

fn param<T: std::str::FromStr>(conn: &ServerConnection, name: &str, default: T) -> T {
    conn.request()
        .query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers after `ms` on a loop timer: the handle kept in the closure defers the response.
fn delay(conn: &ServerConnection) {
    let ms: u64 = param(conn, "ms", 0);
    let id: String = param(conn, "id", String::new());
    let pending = conn.defer();
    let Ok(timer) = uv::Timer::new(conn.event_loop().unwrap_or_else(uv::default_loop)) else {
        let _ = conn.respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", b"no timer\n");
        return;
    };
    let slot: Rc<RefCell<Option<uv::Timer>>> = Rc::new(RefCell::new(None));
    let slot_in_cb = slot.clone();
    let started = timer.start(ms, 0, move || {
        let _ = pending.respond(StatusCode::OK, "text/plain", id.as_bytes());
        slot_in_cb.borrow_mut().take(); // the timer is done: close it
    });
    if started.is_ok() {
        *slot.borrow_mut() = Some(timer);
    }
}

/// Answers from another thread through a `Send` handle.
fn thread(conn: &ServerConnection) {
    let ms: u64 = param(conn, "ms", 0);
    let id: String = param(conn, "id", String::new());
    let Ok(remote) = conn.remote() else { return };
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = remote.respond(StatusCode::OK, "text/plain", id.into_bytes());
    });
}

/// `count` events, one every `interval_ms`, then the end of the stream.
fn sse(conn: &ServerConnection) {
    let count: u64 = param(conn, "count", 3);
    let interval: u64 = param(conn, "interval_ms", 100);
    let Ok(stream) = EventStream::start(conn) else {
        return;
    };
    let Ok(timer) = uv::Timer::new(conn.event_loop().unwrap_or_else(uv::default_loop)) else {
        return;
    };
    let state = Rc::new(RefCell::new((Some(stream), None::<uv::Timer>, 0u64)));
    let state_in_cb = state.clone();
    let tick = move || {
        let mut st = state_in_cb.borrow_mut();
        let i = st.2;
        if i < count {
            if let Some(s) = st.0.as_ref() {
                if s.data(&i.to_string()).is_err() {
                    st.2 = count; // client gone
                }
            }
            st.2 += 1;
        }
        if st.2 >= count {
            if let Some(s) = st.0.take() {
                let _ = s.end();
            }
            st.1.take(); // close the timer
        }
    };
    if timer.start(0, interval.max(1), tick).is_ok() {
        state.borrow_mut().1 = Some(timer);
    }
}

/// A chunked body of `chunks` chunks of `size` bytes, sent while the queue has room and
/// resumed from the `drain` signal: memory stays bounded however slow the client is.
fn stream(conn: &ServerConnection) {
    let chunks: u64 = param(conn, "chunks", 10);
    let size: usize = param(conn, "size", 1024).min(16 * 1024 * 1024);
    conn.response()
        .set_status(StatusCode::OK)
        .set_content_type("application/octet-stream")
        .set_chunked_transfer_encoding(true);
    if conn.send_header().is_err() {
        return;
    }
    let block: Arc<Vec<u8>> = Arc::new(vec![b's'; size]);
    let sent = Rc::new(Cell::new(0u64));
    let pump = move |c: &ServerConnection| {
        while sent.get() < chunks {
            sent.set(sent.get() + 1);
            match c.send_owned(block.clone()) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Pause) => return, // resumed by the drain signal
                Err(_) => return,
            }
        }
        let _ = c.complete();
    };
    pump(conn);
    if !conn.is_complete() {
        conn.drain.attach(pump);
    }
}

/// Upgrades to a WebSocket that echoes every message with its kind.
fn websocket_echo(conn: &ServerConnection) {
    let options = uvhttp::ws::AcceptOptions::default();
    if let Ok(ws) = uvhttp::ws::accept(conn, &options) {
        ws.message.attach(|ws, kind, data| {
            let _ = ws.send(data, kind);
        });
    }
}
