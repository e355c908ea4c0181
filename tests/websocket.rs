//! WebSocket over real sockets (127.0.0.1, port 0): the server's upgrade validation and the
//! application's say before the `101`, the framer against hand-built frames from a raw TCP
//! client, the `WebSocket` API, the library's client against the library's server and against
//! raw `std::net` servers that misbehave on purpose, `wss://`, and permessage-deflate.
//!
//! Servers run on the harness loop thread (`TestServer`, whose `stop()` asserts a clean
//! `uv_loop_close`); library clients run on an `OwnedLoop` in the test thread, which must close
//! cleanly too. Every wait is bounded: read timeouts, loop watchdogs, deadlines.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use uvhttp::http::{Server, ServerConnection, ServerConnectionPtr, StatusCode};
use uvhttp::net::tls::{ThrowawayPki, TlsContext};
use uvhttp::uv::{Loop, OwnedLoop, RunMode, Timer};
use uvhttp::ws::{self, handshake, AcceptOptions, ClientOptions, MessageKind, WebSocket};

// ---- raw frames -----------------------------------------------------------------------------

/// The example key of RFC 6455 section 1.3 and the accept value the RFC gives for it.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The masking key of the raw client's frames (any value works; a fixed one keeps runs equal).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// One frame, built by hand: `mask` decides client (masked) or server (unmasked) framing.
fn frame_with(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(((fin as u8) << 7) | ((rsv1 as u8) << 6) | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, false, opcode, payload, Some(MASK))
}

/// A masked, unfragmented client frame.
fn client_msg(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, opcode, payload)
}

/// A Close payload: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A frame as read off the wire (unmasked already).
#[derive(Debug)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    /// Bytes of the header: 2, 4 or 10 (plus 4 when masked) — shows the length encoding.
    header_len: usize,
    payload: Vec<u8>,
}

impl Frame {
    fn close_code(&self) -> Option<u16> {
        assert_eq!(
            self.opcode, OP_CLOSE,
            "expected a Close frame, got {self:?}"
        );
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }
}

/// Reads one frame with `read_exact(n)`. `masked` says what the peer must do: servers never
/// mask, clients always do.
fn read_frame_with(mut read_exact: impl FnMut(usize) -> Vec<u8>, masked: bool) -> Frame {
    let h = read_exact(2);
    assert_eq!(
        h[1] & 0x80 != 0,
        masked,
        "mask bit wrong for this direction: {h:02x?}"
    );
    assert_eq!(h[0] & 0x30, 0, "RSV2/RSV3 set: {h:02x?}");
    let (len, mut header_len) = match h[1] & 0x7f {
        126 => {
            let b = read_exact(2);
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let b = read_exact(8);
            (u64::from_be_bytes(b.try_into().unwrap()), 10)
        }
        n => (n as u64, 2),
    };
    assert!(len <= 64 << 20, "absurd frame length {len}");
    let key = if masked {
        header_len += 4;
        let k = read_exact(4);
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let mut payload = read_exact(len as usize);
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    Frame {
        fin: h[0] & 0x80 != 0,
        rsv1: h[0] & 0x40 != 0,
        opcode: h[0] & 0x0f,
        header_len,
        payload,
    }
}

/// An upgrade request for `path` with the RFC's example key; `extra` holds more header lines,
/// each ending in CRLF.
fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A hand-driven WebSocket client on a blocking socket (10 s read timeout).
struct RawWs {
    c: Client,
}

impl RawWs {
    /// Connects and sends the upgrade request; returns the client and the server's answer.
    fn handshake(addr: SocketAddr, path: &str, extra: &str) -> (RawWs, Reply) {
        let mut c = Client::connect(addr);
        let reply = c.request(&upgrade_request(path, extra));
        (RawWs { c }, reply)
    }

    /// Connects and upgrades; fails unless the answer is a correct `101`.
    fn open(addr: SocketAddr, path: &str) -> RawWs {
        Self::open_with(addr, path, "").0
    }

    fn open_with(addr: SocketAddr, path: &str, extra: &str) -> (RawWs, Reply) {
        let (ws, reply) = Self::handshake(addr, path, extra);
        assert_101(&reply);
        (ws, reply)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.c.send(bytes);
    }

    fn send_msg(&mut self, opcode: u8, payload: &[u8]) {
        self.send(&client_msg(opcode, payload));
    }

    fn read_frame(&mut self) -> Frame {
        let c = &mut self.c;
        read_frame_with(|n| c.read_exact_bytes(n), false)
    }

    /// Reads a data message, joining continuation frames; no control frame may interleave.
    fn read_message(&mut self) -> (u8, Vec<u8>) {
        let first = self.read_frame();
        assert!(
            first.opcode == OP_TEXT || first.opcode == OP_BINARY,
            "expected a data frame, got {first:?}"
        );
        let mut data = first.payload;
        let mut fin = first.fin;
        while !fin {
            let f = self.read_frame();
            assert_eq!(f.opcode, OP_CONT, "expected a continuation, got {f:?}");
            data.extend_from_slice(&f.payload);
            fin = f.fin;
        }
        (first.opcode, data)
    }

    /// Sends a message and expects it back unchanged, with the same opcode, in one frame.
    fn echo(&mut self, opcode: u8, payload: &[u8]) {
        self.send_msg(opcode, payload);
        let f = self.read_frame();
        assert!(f.fin, "an echo of an unfragmented message is one frame");
        assert_eq!(f.opcode, opcode);
        assert_eq!(f.payload.len(), payload.len());
        assert!(
            f.payload == payload,
            "echo differs ({} bytes)",
            payload.len()
        );
    }

    /// Expects the server's Close with `code`, then the server closing TCP (clean EOF).
    fn expect_close_then_eof(&mut self, code: u16) -> Frame {
        let f = self.read_frame();
        assert_eq!(f.opcode, OP_CLOSE, "expected Close({code}), got {f:?}");
        assert_eq!(
            f.close_code(),
            Some(code),
            "close reason: {:?}",
            f.close_reason()
        );
        self.c.expect_clean_close();
        // Now close ours, as a client does once the server has closed.
        let _ = self.c.stream().shutdown(std::net::Shutdown::Write);
        f
    }
}

fn assert_101(reply: &Reply) {
    assert_eq!(reply.status, 101, "upgrade refused: {reply:?}");
    assert_eq!(reply.reason, "Switching Protocols");
    assert!(reply
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(reply
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(reply.header("sec-websocket-accept"), Some(RFC_ACCEPT));
}

// ---- the library server ---------------------------------------------------------------------

/// `max_message_size` of `/ws-small`.
const SMALL_LIMIT: usize = 1024;
/// The only `Origin` `/ws-origin` lets in.
const GOOD_ORIGIN: &str = "https://good.example";
/// Size of the pieces `/ws-api` streams with `send_fragment`.
const STREAM_PIECE: usize = 64 * 1024;

/// What `/ws-api` sockets did, as lines ("open ...", "message Text hello", "close Some(1000)
/// bye"), in order, for the test thread to inspect.
type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

/// Waits (bounded) until the log satisfies `cond`; returns a copy.
fn wait_log(log: &Log, what: &str, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log.lock().unwrap().clone();
        if cond(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; server log: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

/// Starts the WebSocket test server; `configure` runs on its loop before `start()`.
fn start_server(configure: impl FnOnce(&Server) + Send + 'static) -> (TestServer, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let srv = TestServer::start(move |srv| {
        configure(srv);
        let lp = srv.event_loop();
        srv.connection += move |conn: ServerConnectionPtr| route(&conn, lp, &l);
    });
    (srv, log)
}

fn ws_server() -> (TestServer, Log) {
    start_server(|_| {})
}

/// Routes:
/// - `/`              → 200 `Hello, World!`
/// - `/ws`            → echo exactly as examples/httpechoserver.rs (default `AcceptOptions`)
/// - `/ws-nodeflate`  → echo, compression declined (`deflate: None`)
/// - `/ws-proto`      → echo, subprotocols `chat.v2` then `chat`
/// - `/ws-small`      → echo, `max_message_size` = [`SMALL_LIMIT`]
/// - `/ws-origin`     → 403 from the app unless `Origin` is [`GOOD_ORIGIN`], else echo
/// - `/ws-api`        → echo plus commands and a log of every signal (see [`api`])
/// - `/no-upgrade`    → 200 even to an upgrade request (the app declines to switch)
fn route(conn: &ServerConnection, lp: Loop, log: &Log) {
    let path = conn.request().path().to_string();
    match path.as_str() {
        "/" => {
            let _ = conn.respond(StatusCode::OK, "text/plain", b"Hello, World!");
        }
        "/ws" => echo(conn, &AcceptOptions::default()),
        "/ws-nodeflate" => echo(
            conn,
            &AcceptOptions {
                deflate: None,
                ..AcceptOptions::default()
            },
        ),
        "/ws-proto" => echo(
            conn,
            &AcceptOptions {
                protocols: vec!["chat.v2".into(), "chat".into()],
                ..AcceptOptions::default()
            },
        ),
        "/ws-small" => echo(
            conn,
            &AcceptOptions {
                max_message_size: SMALL_LIMIT,
                ..AcceptOptions::default()
            },
        ),
        "/ws-origin" => {
            let allowed = conn.request().header("origin") == Some(GOOD_ORIGIN);
            if allowed {
                echo(conn, &AcceptOptions::default());
            } else {
                // The application's own check, answered before any 101.
                let _ = conn.respond(StatusCode::FORBIDDEN, "text/plain", b"origin not allowed\n");
            }
        }
        "/ws-api" => api(conn, lp, log),
        "/no-upgrade" => {
            let _ = conn.respond(StatusCode::OK, "text/plain", b"not upgraded");
        }
        _ => {
            let _ = conn.respond(StatusCode::NOT_FOUND, "text/plain", b"Not Found\n");
        }
    }
}

/// The `/ws` handler of examples/httpechoserver.rs, with the options as a parameter.
fn echo(conn: &ServerConnection, options: &AcceptOptions) {
    if let Ok(ws) = ws::accept(conn, options) {
        ws.message.attach(|ws, kind, data| {
            let _ = ws.send(data, kind);
        });
    }
}

fn describe(kind: MessageKind, data: &[u8]) -> String {
    match (kind, std::str::from_utf8(data)) {
        (MessageKind::Text, Ok(s)) if s.len() <= 64 => s.to_string(),
        _ => format!("<{} bytes>", data.len()),
    }
}

/// Echo with a log of every signal, and text commands:
/// - `cmd:shutdown`   → `shutdown(4001, "server shutdown")`
/// - `cmd:ping`       → `ping("server-ping")`
/// - `cmd:bomb`       → a 1 MiB binary message of zeros (tiny once compressed)
/// - `cmd:stream N`   → an N-byte binary message ([`pattern`]) streamed with `send_fragment` in
///   [`STREAM_PIECE`] pieces from a timer (outside any signal handler), paced by `drain`
fn api(conn: &ServerConnection, lp: Loop, log: &Log) {
    let ws = match ws::accept(conn, &AcceptOptions::default()) {
        Ok(ws) => ws,
        Err(e) => return note(log, format!("refused {e}")),
    };
    note(log, format!("open compressed={}", ws.is_compressed()));
    let l = log.clone();
    // Timers of streams in progress live as long as the socket (its message slot owns them).
    let timers: RefCell<Vec<Timer>> = RefCell::new(Vec::new());
    ws.message.attach(move |ws, kind, data| {
        note(&l, format!("message {kind:?} {}", describe(kind, data)));
        let command = match kind {
            MessageKind::Text => std::str::from_utf8(data).unwrap_or(""),
            MessageKind::Binary => "",
        };
        let result = match command {
            "cmd:shutdown" => ws.shutdown(4001, "server shutdown"),
            "cmd:ping" => ws.ping(b"server-ping").map(drop),
            "cmd:bomb" => ws.send_binary(&vec![0u8; 1 << 20]).map(drop),
            c if c.starts_with("cmd:stream ") => {
                let n: usize = c["cmd:stream ".len()..].parse().unwrap_or(0);
                match Timer::new(lp) {
                    Ok(t) => {
                        start_stream(ws, &t, n, &l);
                        timers.borrow_mut().push(t);
                    }
                    Err(e) => note(&l, format!("error timer: {e}")),
                }
                Ok(())
            }
            _ => ws.send(data, kind).map(drop),
        };
        if let Err(e) = result {
            note(&l, format!("error {e}"));
        }
    });
    let l = log.clone();
    ws.ping
        .attach(move |_, p| note(&l, format!("ping {}", String::from_utf8_lossy(p))));
    let l = log.clone();
    ws.pong
        .attach(move |_, p| note(&l, format!("pong {}", String::from_utf8_lossy(p))));
    let l = log.clone();
    ws.close
        .attach(move |_, code, reason| note(&l, format!("close {code:?} {reason}")));
}

/// A message being streamed by `/ws-api`.
struct Stream {
    data: Vec<u8>,
    sent: Cell<usize>,
}

fn start_stream(ws: &WebSocket, timer: &Timer, n: usize, log: &Log) {
    let stream = Rc::new(Stream {
        data: pattern(n),
        sent: Cell::new(0),
    });
    let (s, l) = (stream.clone(), log.clone());
    ws.drain.attach(move |ws| pump(ws, &s, &l));
    // Weak: the timer must not keep the socket alive.
    let weak = Rc::downgrade(&ws.handle());
    let l = log.clone();
    let started = timer.start(0, 0, move || {
        if let Some(ws) = weak.upgrade() {
            pump(&ws, &stream, &l);
        }
    });
    if let Err(e) = started {
        note(log, format!("error timer start: {e}"));
    }
}

/// Sends pieces until done or until backpressure (then `drain` calls again).
fn pump(ws: &WebSocket, s: &Stream, log: &Log) {
    while s.sent.get() < s.data.len() {
        let start = s.sent.get();
        let end = (start + STREAM_PIECE).min(s.data.len());
        let fin = end == s.data.len();
        let r = ws.send_fragment(&s.data[start..end], MessageKind::Binary, start == 0, fin);
        s.sent.set(end);
        match r {
            Ok(true) => {}
            Ok(false) => {
                note(log, "stream paused");
                return;
            }
            Err(e) => {
                note(log, format!("error stream: {e}"));
                return;
            }
        }
    }
}

// ---- 1. server upgrade validation -----------------------------------------------------------

#[test]
fn accept_key_matches_the_rfc6455_example_and_echo_works() {
    let (srv, _) = ws_server();
    let (mut ws, reply) = RawWs::open_with(srv.addr, "/ws", "");
    // assert_101 checked Sec-WebSocket-Accept against the RFC's value.
    assert_eq!(reply.header("sec-websocket-protocol"), None);
    assert_eq!(
        reply.header("sec-websocket-extensions"),
        None,
        "no extension offered, none accepted"
    );
    ws.echo(OP_TEXT, b"Hello, WebSocket");
    ws.echo(OP_BINARY, &[0, 1, 2, 0xff]);
    srv.stop();
}

#[test]
fn connection_header_with_several_tokens_is_accepted() {
    let (srv, _) = ws_server();
    let mut c = Client::connect(srv.addr);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: test\r\nupgrade: WebSocket\r\n\
         connection: keep-alive, Upgrade\r\nsec-websocket-key: {RFC_KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let reply = c.request(req.as_bytes());
    assert_101(&reply);
    let mut ws = RawWs { c };
    ws.echo(OP_TEXT, b"tokens");
    srv.stop();
}

#[test]
fn malformed_upgrades_are_refused_with_400_or_426_and_closed() {
    let (srv, _) = ws_server();
    let key_line = format!("Sec-WebSocket-Key: {RFC_KEY}\r\n");
    let base = "Host: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    // (what, request, expected status)
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "POST instead of GET",
            format!(
                "POST /ws HTTP/1.1\r\n{base}{key_line}Sec-WebSocket-Version: 13\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
            400,
        ),
        (
            "HTTP/1.0",
            format!("GET /ws HTTP/1.0\r\n{base}{key_line}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "a body on the upgrade request",
            format!(
                "GET /ws HTTP/1.1\r\n{base}{key_line}Sec-WebSocket-Version: 13\r\n\
                 Content-Length: 5\r\n\r\nhello"
            ),
            400,
        ),
        (
            "no upgrade token in Connection",
            format!(
                "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\
                 {key_line}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "Upgrade is not websocket",
            format!(
                "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
                 {key_line}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "version 8",
            format!("GET /ws HTTP/1.1\r\n{base}{key_line}Sec-WebSocket-Version: 8\r\n\r\n"),
            426,
        ),
        (
            "no version",
            format!("GET /ws HTTP/1.1\r\n{base}{key_line}\r\n"),
            426,
        ),
        (
            "key of 15 bytes",
            // base64 of 15 zero bytes
            format!(
                "GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "key of 17 bytes",
            format!(
                "GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "key not base64",
            format!(
                "GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Key: not a key, not at all!!\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "no key",
            format!("GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
    ];
    for (what, req, status) in cases {
        let mut c = Client::connect(srv.addr);
        let reply = c.request(req.as_bytes());
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert_eq!(reply.header("sec-websocket-accept"), None, "{what}");
        assert_eq!(reply.header("upgrade"), None, "{what}");
        if status == 426 {
            assert_eq!(reply.header("sec-websocket-version"), Some("13"), "{what}");
        }
        assert!(
            reply.closes(),
            "{what}: a refused upgrade closes: {reply:?}"
        );
        c.expect_clean_close();
    }
    assert_still_serves(srv.addr);
    srv.stop();
}

#[test]
fn the_app_refuses_a_bad_origin_with_403_before_any_101() {
    let (srv, _) = ws_server();
    for origin in ["", "Origin: https://evil.example\r\n"] {
        let (mut ws, reply) = RawWs::handshake(srv.addr, "/ws-origin", origin);
        assert_eq!(reply.status, 403, "{reply:?}");
        assert_eq!(reply.body_str(), "origin not allowed\n");
        assert_eq!(reply.header("sec-websocket-accept"), None);
        assert_eq!(reply.header("upgrade"), None);
        // Answered as HTTP, the connection stays HTTP.
        let next = ws.c.request(&get("/"));
        assert_eq!(next.status, 200);
        assert_eq!(next.body_str(), "Hello, World!");
    }
    let (mut ws, _) = RawWs::open_with(
        srv.addr,
        "/ws-origin",
        &format!("Origin: {GOOD_ORIGIN}\r\n"),
    );
    ws.echo(OP_TEXT, b"welcome");
    srv.stop();
}

#[test]
fn subprotocol_is_the_servers_first_choice_among_the_offered() {
    let (srv, _) = ws_server();
    let cases = [
        ("Sec-WebSocket-Protocol: chat, chat.v2\r\n", Some("chat.v2")),
        ("Sec-WebSocket-Protocol: chat\r\n", Some("chat")),
        (
            "Sec-WebSocket-Protocol: superchat\r\nSec-WebSocket-Protocol: chat\r\n",
            Some("chat"),
        ),
        ("Sec-WebSocket-Protocol: superchat\r\n", None),
        ("", None),
    ];
    for (offer, chosen) in cases {
        let (mut ws, reply) = RawWs::open_with(srv.addr, "/ws-proto", offer);
        assert_eq!(reply.header("sec-websocket-protocol"), chosen, "{offer:?}");
        ws.echo(OP_TEXT, b"proto");
    }
    srv.stop();
}

#[test]
fn permessage_deflate_is_accepted_or_declined_by_the_app() {
    let (srv, _) = ws_server();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (mut ws, reply) = RawWs::open_with(srv.addr, "/ws", offer);
    let ext = reply
        .header("sec-websocket-extensions")
        .expect("deflate accepted on /ws");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    let _ = ws.c.stream().shutdown(std::net::Shutdown::Both);
    // deflate: None → no extension in the 101, and frames are plain.
    let (mut ws, reply) = RawWs::open_with(srv.addr, "/ws-nodeflate", offer);
    assert_eq!(reply.header("sec-websocket-extensions"), None);
    ws.echo(OP_TEXT, b"uncompressed");
    srv.stop();
}

#[test]
fn an_upgraded_connection_is_out_of_http_idle_and_header_timeouts() {
    let (srv, log) = start_server(|srv| {
        srv.configure(|o| {
            o.idle_timeout = Duration::from_millis(200);
            o.header_timeout = Duration::from_millis(200);
        })
    });
    // The timeouts are live for HTTP: an idle keep-alive connection is closed.
    let mut http = Client::connect(srv.addr);
    assert_eq!(http.request(&get("/")).status, 200);
    let t = Instant::now();
    http.expect_clean_close();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.c.expect_open_for(Duration::from_secs(1));
    ws.echo(OP_TEXT, b"still here after 1 s");
    ws.c.expect_open_for(Duration::from_millis(500));
    ws.echo(OP_BINARY, b"and after 1.5 s");
    let lines = log.lock().unwrap().clone();
    assert_eq!(count(&lines, "close"), 0, "{lines:?}");
    srv.stop();
}

#[test]
fn frames_sent_together_with_the_handshake_are_not_lost() {
    let (srv, _) = ws_server();
    let mut c = Client::connect(srv.addr);
    let mut one_write = upgrade_request("/ws", "");
    one_write.extend_from_slice(&client_msg(OP_TEXT, b"early bird"));
    one_write.extend_from_slice(&client_msg(OP_BINARY, &[9, 8, 7]));
    one_write.extend_from_slice(&client_frame(false, OP_TEXT, b"early "));
    one_write.extend_from_slice(&client_frame(true, OP_CONT, b"fragments"));
    c.send(&one_write);
    assert_101(&c.read_reply());
    let mut ws = RawWs { c };
    assert_eq!(ws.read_message(), (OP_TEXT, b"early bird".to_vec()));
    assert_eq!(ws.read_message(), (OP_BINARY, vec![9, 8, 7]));
    assert_eq!(ws.read_message(), (OP_TEXT, b"early fragments".to_vec()));
    ws.echo(OP_TEXT, b"and later");
    srv.stop();
}

#[test]
fn after_the_101_http_bytes_are_websocket_frames() {
    let (srv, _) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws");
    // 'G' = 0x47: RSV1 set without an extension and a reserved opcode: a protocol error, not
    // a request.
    ws.send(&get("/"));
    ws.expect_close_then_eof(1002);
    srv.wait_connections(|n| n == 0, "the failed WebSocket to close");
    srv.stop();
}

#[test]
fn an_upgrade_request_answered_normally_stays_http() {
    let (srv, _) = ws_server();
    let mut c = Client::connect(srv.addr);
    let r = c.request(&upgrade_request("/no-upgrade", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "not upgraded");
    let r = c.request(&get("/"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "Hello, World!"));
    // Pipelined behind the upgrade request: parsing waits for the app's decision, then goes
    // on as HTTP.
    let mut both = upgrade_request("/no-upgrade", "");
    both.extend_from_slice(&get("/"));
    c.send(&both);
    assert_eq!(c.read_reply().body_str(), "not upgraded");
    assert_eq!(c.read_reply().body_str(), "Hello, World!");
    c.expect_open_for(Duration::from_millis(100));
    srv.stop();
}

// ---- 2. the framer, live --------------------------------------------------------------------

#[test]
fn payloads_with_7_16_and_64_bit_lengths_are_echoed() {
    let (srv, _) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws");
    // (payload length, header length the server must use: the shortest encoding)
    for (len, header) in [
        (0, 2),
        (1, 2),
        (125, 2),
        (126, 4),
        (127, 4),
        (65535, 4),
        (65536, 10),
        (1 << 20, 10),
    ] {
        let data = pattern(len);
        ws.send_msg(OP_BINARY, &data);
        let f = ws.read_frame();
        assert!(f.fin && !f.rsv1 && f.opcode == OP_BINARY, "{len}: {f:?}");
        assert_eq!(f.header_len, header, "length encoding for {len}");
        assert!(f.payload == data, "payload of {len} bytes differs");
    }
    // Text of a 16-bit and a 64-bit length too.
    for len in [300, 70_000] {
        let text = "é".repeat(len / 2);
        ws.echo(OP_TEXT, text.as_bytes());
    }
    srv.stop();
}

#[test]
fn frames_split_at_every_byte_are_reassembled() {
    let (srv, _) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws");
    let text = client_msg(
        OP_TEXT,
        "Hello, byte by byte — ünïcödé split mid-character".as_bytes(),
    );
    let medium = pattern(200); // 16-bit length
    let mut bytes = text.clone();
    bytes.extend_from_slice(&client_msg(OP_BINARY, &medium));
    for b in &bytes {
        ws.send(&[*b]);
        std::thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(
        ws.read_message(),
        (
            OP_TEXT,
            "Hello, byte by byte — ünïcödé split mid-character"
                .as_bytes()
                .to_vec()
        )
    );
    assert_eq!(ws.read_message(), (OP_BINARY, medium));
    // A 64-bit length header (14 bytes with the mask) one byte at a time, then the payload.
    let big = pattern(70_000);
    let frame = client_msg(OP_BINARY, &big);
    for b in &frame[..14] {
        ws.send(&[*b]);
        std::thread::sleep(Duration::from_micros(500));
    }
    ws.send(&frame[14..]);
    assert_eq!(ws.read_message(), (OP_BINARY, big));
    srv.stop();
}

#[test]
fn fragmented_messages_are_echoed_whole_with_control_frames_answered_between() {
    let (srv, _) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws");
    ws.send(&client_frame(false, OP_TEXT, b"Hello"));
    ws.send(&client_msg(OP_PING, b"between"));
    ws.send(&client_frame(false, OP_CONT, b", frag"));
    ws.send(&client_frame(true, OP_CONT, b"mented world"));
    let pong = ws.read_frame();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OP_PONG, &b"between"[..])
    );
    let f = ws.read_frame();
    assert!(f.fin, "the echo is one whole message: {f:?}");
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_TEXT, &b"Hello, fragmented world"[..])
    );
    // Binary, with an empty fragment in the middle, one write.
    let mut all = client_frame(false, OP_BINARY, &[1, 2]);
    all.extend_from_slice(&client_frame(false, OP_CONT, b""));
    all.extend_from_slice(&client_frame(true, OP_CONT, &[3]));
    ws.send(&all);
    let f = ws.read_frame();
    assert!(f.fin);
    assert_eq!((f.opcode, f.payload), (OP_BINARY, vec![1, 2, 3]));
    srv.stop();
}

#[test]
fn empty_messages_are_delivered_with_their_kind_and_echoed() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.echo(OP_TEXT, b"");
    ws.echo(OP_BINARY, b"");
    // An empty message in two empty fragments.
    ws.send(&client_frame(false, OP_TEXT, b""));
    ws.send(&client_frame(true, OP_CONT, b""));
    assert_eq!(ws.read_message(), (OP_TEXT, Vec::new()));
    let lines = wait_log(&log, "three messages", |l| count(l, "message") == 3);
    assert_eq!(
        lines[1..],
        [
            "message Text ".to_string(),
            "message Binary <0 bytes>".to_string(),
            "message Text ".to_string()
        ]
    );
    srv.stop();
}

#[test]
fn an_unmasked_client_frame_closes_with_1002() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.send(&frame_with(true, false, OP_TEXT, b"not masked", None));
    let f = ws.expect_close_then_eof(1002);
    assert!(
        !f.close_reason().is_empty(),
        "the Close names the violation"
    );
    let lines = wait_log(&log, "close", |l| count(l, "close") == 1);
    assert_eq!(count(&lines, "message"), 0, "{lines:?}");
    assert!(
        lines.last().unwrap().starts_with("close Some(1002)"),
        "{lines:?}"
    );
    srv.stop();
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let (srv, _) = ws_server();
    // In one frame.
    let mut ws = RawWs::open(srv.addr, "/ws");
    ws.send_msg(OP_TEXT, &[b'o', b'k', 0xc3, 0x28]);
    ws.expect_close_then_eof(1007);
    // Across fragments: a valid start of a character, then a byte that cannot continue it.
    let mut ws = RawWs::open(srv.addr, "/ws");
    ws.send(&client_frame(false, OP_TEXT, &[b'a', 0xe2, 0x82]));
    ws.send(&client_frame(true, OP_CONT, &[0x28]));
    ws.expect_close_then_eof(1007);
    // In a Close reason.
    let mut ws = RawWs::open(srv.addr, "/ws");
    let mut payload = close_payload(1000, "");
    payload.extend_from_slice(&[0xff, 0xfe]);
    ws.send_msg(OP_CLOSE, &payload);
    ws.expect_close_then_eof(1007);
    srv.stop();
}

#[test]
fn a_message_over_max_message_size_closes_with_1009() {
    let (srv, _) = ws_server();
    // At the limit: fine.
    let mut ws = RawWs::open(srv.addr, "/ws-small");
    ws.echo(OP_BINARY, &pattern(SMALL_LIMIT));
    // One byte over, in one frame.
    ws.send_msg(OP_BINARY, &pattern(SMALL_LIMIT + 1));
    ws.expect_close_then_eof(1009);
    // Over the limit only once the fragments add up.
    let mut ws = RawWs::open(srv.addr, "/ws-small");
    let piece = pattern(SMALL_LIMIT / 2);
    ws.send(&client_frame(false, OP_BINARY, &piece));
    ws.send(&client_frame(false, OP_CONT, &piece));
    ws.send(&client_frame(true, OP_CONT, &piece));
    ws.expect_close_then_eof(1009);
    srv.wait_connections(|n| n == 0, "the failed WebSockets to close");
    srv.stop();
}

#[test]
fn close_handshake_server_echoes_the_code_and_closes_tcp_first() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.echo(OP_TEXT, b"before closing");
    ws.send_msg(OP_CLOSE, &close_payload(1000, "bye"));
    // The server answers with Close(1000), then closes TCP itself: we read EOF without
    // having closed anything.
    ws.expect_close_then_eof(1000);
    let lines = wait_log(&log, "close", |l| count(l, "close") == 1);
    assert_eq!(lines.last().unwrap(), "close Some(1000) bye");
    srv.wait_connections(|n| n == 0, "the closed WebSocket to go");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count(&log.lock().unwrap(), "close"), 1, "close fires once");
    srv.stop();
}

#[test]
fn the_server_does_not_wait_forever_for_a_client_that_never_closes_tcp() {
    let (srv, log) = start_server(|srv| {
        srv.configure(|o| o.linger_timeout = Duration::from_millis(300));
    });
    // After a closing handshake, and after a failure (1002): we read the server's Close and
    // its FIN but keep our side open; the server must close anyway, bounded by the linger.
    let mut clients = Vec::new();
    for violation in [false, true] {
        let mut ws = RawWs::open(srv.addr, "/ws-api");
        if violation {
            ws.send(&frame_with(true, false, OP_TEXT, b"unmasked", None));
        } else {
            ws.send_msg(OP_CLOSE, &close_payload(1000, "bye"));
        }
        let f = ws.read_frame();
        assert_eq!(f.close_code(), Some(if violation { 1002 } else { 1000 }));
        ws.c.expect_clean_close();
        clients.push(ws);
    }
    let started = Instant::now();
    srv.wait_connections(
        |n| n == 0,
        "the server to give up on the half-closed clients",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let lines = log.lock().unwrap().clone();
    assert_eq!(count(&lines, "close"), 2, "{lines:?}");
    drop(clients);
    srv.stop();
}

#[test]
fn a_close_without_a_code_is_answered_with_an_empty_close() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.send_msg(OP_CLOSE, b"");
    let f = ws.read_frame();
    assert_eq!(f.opcode, OP_CLOSE);
    assert_eq!(f.close_code(), None, "no code received, none echoed: {f:?}");
    ws.c.expect_clean_close();
    let lines = wait_log(&log, "close", |l| count(l, "close") == 1);
    assert!(lines.last().unwrap().starts_with("close None"), "{lines:?}");
    srv.stop();
}

#[test]
fn invalid_close_codes_close_with_1002() {
    let (srv, _) = ws_server();
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        let mut ws = RawWs::open(srv.addr, "/ws");
        ws.send_msg(OP_CLOSE, &close_payload(code, "bad"));
        ws.expect_close_then_eof(1002);
    }
    // A 1-byte Close payload cannot hold a code.
    let mut ws = RawWs::open(srv.addr, "/ws");
    ws.send_msg(OP_CLOSE, &[0x03]);
    ws.expect_close_then_eof(1002);
    srv.stop();
}

// ---- 3. the API from the server side --------------------------------------------------------

#[test]
fn the_app_sees_the_message_kind_and_answers_with_it() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.echo(OP_TEXT, b"some text");
    ws.echo(OP_BINARY, &[0xff, 0x00, 0x80]);
    ws.echo(OP_BINARY, b"bytes that happen to be UTF-8");
    let lines = wait_log(&log, "three messages", |l| count(l, "message") == 3);
    assert_eq!(
        lines,
        [
            "open compressed=false",
            "message Text some text",
            "message Binary <3 bytes>",
            "message Binary <29 bytes>"
        ]
    );
    srv.stop();
}

#[test]
fn a_server_ping_is_answered_and_reported_as_pong() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.send_msg(OP_TEXT, b"cmd:ping");
    let f = ws.read_frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_PING, &b"server-ping"[..])
    );
    ws.send_msg(OP_PONG, &f.payload);
    wait_log(&log, "the pong", |l| {
        l.iter().any(|x| x == "pong server-ping")
    });
    // A ping from the client is answered by the library and reported to the app.
    ws.send_msg(OP_PING, b"client-ping");
    let f = ws.read_frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_PONG, &b"client-ping"[..])
    );
    wait_log(&log, "the ping", |l| {
        l.iter().any(|x| x == "ping client-ping")
    });
    srv.stop();
}

#[test]
fn server_shutdown_sends_its_code_and_reason_and_close_fires_once() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    ws.send_msg(OP_TEXT, b"cmd:shutdown");
    let f = ws.read_frame();
    assert_eq!(f.close_code(), Some(4001));
    assert_eq!(f.close_reason(), "server shutdown");
    // Data after our Close is not for the app; answering the Close ends it.
    ws.send_msg(OP_CLOSE, &close_payload(4001, ""));
    ws.c.expect_clean_close();
    let lines = wait_log(&log, "close", |l| count(l, "close") == 1);
    assert!(
        lines.last().unwrap().starts_with("close Some(4001)"),
        "{lines:?}"
    );
    srv.wait_connections(|n| n == 0, "the closed WebSocket to go");
    assert_eq!(count(&log.lock().unwrap(), "close"), 1);
    srv.stop();
}

#[test]
fn a_streamed_message_arrives_fragmented_and_whole() {
    let (srv, log) = ws_server();
    let mut ws = RawWs::open(srv.addr, "/ws-api");
    let n = 3 * STREAM_PIECE + 1000;
    ws.send_msg(OP_TEXT, format!("cmd:stream {n}").as_bytes());
    let mut frames = 0;
    let mut data = Vec::new();
    loop {
        let f = ws.read_frame();
        let expected = if frames == 0 { OP_BINARY } else { OP_CONT };
        assert_eq!(f.opcode, expected, "frame {frames}: {f:?}");
        frames += 1;
        data.extend_from_slice(&f.payload);
        if f.fin {
            break;
        }
    }
    assert_eq!(frames, 4, "one frame per send_fragment");
    assert!(data == pattern(n), "streamed data differs");
    let lines = log.lock().unwrap().clone();
    assert_eq!(count(&lines, "error"), 0, "{lines:?}");
    srv.stop();
}

// ---- 4. the library client ------------------------------------------------------------------

/// Everything a client socket reported, in order.
#[derive(Default, Debug)]
struct Seen {
    /// "connect", "message", "ping", "pong", "close" in the order they fired.
    order: Vec<&'static str>,
    messages: Vec<(MessageKind, Vec<u8>)>,
    pings: Vec<Vec<u8>>,
    pongs: Vec<Vec<u8>>,
    closes: Vec<(Option<u16>, String)>,
    compressed_at_connect: Option<bool>,
    subprotocol_at_connect: Option<Option<String>>,
}

impl Seen {
    fn connects(&self) -> usize {
        self.order.iter().filter(|e| **e == "connect").count()
    }

    /// The one close; fails unless close fired exactly once.
    fn only_close(&self) -> (Option<u16>, String) {
        assert_eq!(self.closes.len(), 1, "close fires exactly once: {self:?}");
        self.closes[0].clone()
    }

    fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|(k, d)| format!("{k:?} {}", describe(*k, d)))
            .collect()
    }
}

/// Records every signal of `ws` (attached before the test's own slots, so it runs first).
fn record(ws: &WebSocket) -> Rc<RefCell<Seen>> {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    ws.connect.attach(move |ws| {
        let mut s = s.borrow_mut();
        s.order.push("connect");
        s.compressed_at_connect = Some(ws.is_compressed());
        s.subprotocol_at_connect = Some(ws.subprotocol());
    });
    let s = seen.clone();
    ws.message.attach(move |_, kind, data| {
        let mut s = s.borrow_mut();
        s.order.push("message");
        s.messages.push((kind, data.to_vec()));
    });
    let s = seen.clone();
    ws.ping.attach(move |_, p| {
        let mut s = s.borrow_mut();
        s.order.push("ping");
        s.pings.push(p.to_vec());
    });
    let s = seen.clone();
    ws.pong.attach(move |_, p| {
        let mut s = s.borrow_mut();
        s.order.push("pong");
        s.pongs.push(p.to_vec());
    });
    let s = seen.clone();
    ws.close.attach(move |_, code, reason| {
        let mut s = s.borrow_mut();
        s.order.push("close");
        s.closes.push((code, reason.to_string()));
    });
    seen
}

/// Shuts the socket down with 1000 once it has received `n` messages.
fn shutdown_after(ws: &WebSocket, n: usize) {
    let got = Cell::new(0);
    ws.message.attach(move |ws, _, _| {
        got.set(got.get() + 1);
        if got.get() == n {
            ws.shutdown(1000, "client done").unwrap();
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

/// Runs the client loop to the end, then asserts a clean `uv_loop_close`.
fn run_and_close(lp: OwnedLoop, sockets: Vec<Rc<WebSocket>>) {
    run(&lp, Duration::from_secs(20));
    drop(sockets);
    lp.close()
        .expect("client loop closes cleanly (no handle leaked)");
}

fn url(srv: &TestServer, path: &str) -> String {
    format!("ws://{}{path}", srv.addr)
}

#[test]
fn client_echo_of_text_and_binary_then_client_shutdown() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        assert!(ws.is_open());
        ws.send_text("hello").unwrap();
        ws.send(&[1, 2, 3], MessageKind::Binary).unwrap();
        ws.send_text("").unwrap();
    });
    shutdown_after(&ws, 3);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.connects(), 1);
    assert_eq!(s.texts(), ["Text hello", "Binary <3 bytes>", "Text "]);
    assert_eq!(s.messages[1].1, [1, 2, 3]);
    assert_eq!(s.only_close().0, Some(1000));
    assert_eq!(s.order.first(), Some(&"connect"));
    assert_eq!(s.order.last(), Some(&"close"));
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert_eq!(lines.last().unwrap(), "close Some(1000) client done");
    srv.wait_connections(|n| n == 0, "the server side to close");
    assert_eq!(count(&log.lock().unwrap(), "close"), 1);
    srv.stop();
}

#[test]
fn client_sends_made_before_connect_are_flushed_after_the_handshake() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    // Same tick as connect(): nothing is connected yet.
    assert_eq!(seen.borrow().connects(), 0);
    ws.send_text("sent before connect").unwrap();
    ws.send_binary(&[42; 10]).unwrap();
    ws.ping(b"early ping").unwrap();
    shutdown_after(&ws, 2);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.order[0], "connect", "{:?}", s.order);
    assert_eq!(s.texts(), ["Text sent before connect", "Binary <10 bytes>"]);
    assert_eq!(s.pongs, [b"early ping".to_vec()]);
    assert_eq!(s.only_close().0, Some(1000));
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert_eq!(lines[1], "message Text sent before connect");
    srv.stop();
}

#[test]
fn client_ping_gets_a_pong_and_server_ping_reaches_the_client() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.ping(b"are you there").unwrap();
    });
    ws.pong.attach(|ws, _| {
        ws.send_text("cmd:ping").unwrap();
    });
    ws.ping.attach(|ws, _| {
        // The library has answered already; we are done.
        ws.shutdown(1000, "").unwrap();
    });
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.pongs, [b"are you there".to_vec()]);
    assert_eq!(s.pings, [b"server-ping".to_vec()]);
    assert_eq!(s.only_close().0, Some(1000));
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert!(
        lines.contains(&"ping are you there".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"pong server-ping".to_string()), "{lines:?}");
    srv.stop();
}

#[test]
fn server_shutdown_reaches_the_client_with_code_and_reason_once() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.send_text("cmd:shutdown").unwrap();
    });
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.only_close(), (Some(4001), "server shutdown".to_string()));
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert!(
        lines.last().unwrap().starts_with("close Some(4001)"),
        "{lines:?}"
    );
    srv.wait_connections(|n| n == 0, "the server side to close");
    assert_eq!(count(&log.lock().unwrap(), "close"), 1);
    srv.stop();
}

#[test]
fn a_streamed_message_arrives_whole_at_the_client() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    let n = 4 << 20;
    ws.connect.attach(move |ws| {
        ws.send_text(&format!("cmd:stream {n}")).unwrap();
    });
    shutdown_after(&ws, 1);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.compressed_at_connect, Some(true), "deflate on by default");
    assert_eq!(s.messages.len(), 1);
    assert_eq!(s.messages[0].0, MessageKind::Binary);
    assert!(s.messages[0].1 == pattern(n), "streamed message differs");
    assert_eq!(s.only_close().0, Some(1000));
    let lines = log.lock().unwrap().clone();
    assert_eq!(count(&lines, "error"), 0, "{lines:?}");
    srv.stop();
}

#[test]
fn client_subprotocol_is_agreed_on_both_sides() {
    let (srv, _) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        protocols: vec!["chat".into(), "chat.v2".into()],
        ..ClientOptions::default()
    };
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-proto"), options).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.send_text("x").unwrap();
    });
    shutdown_after(&ws, 1);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.subprotocol_at_connect, Some(Some("chat.v2".to_string())));
    assert_eq!(s.texts(), ["Text x"]);
    srv.stop();
}

#[test]
fn a_refused_upgrade_closes_the_client_with_1006_and_the_status() {
    let (srv, _) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        headers: vec![("Origin".into(), "https://evil.example".into())],
        ..ClientOptions::default()
    };
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-origin"), options).unwrap();
    let seen = record(&ws);
    ws.send_text("never sent").unwrap();
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    assert!(s.messages.is_empty());
    assert_eq!(
        s.only_close(),
        (
            Some(1006),
            "server refused the WebSocket upgrade: 403 Forbidden".to_string()
        )
    );
    srv.wait_connections(|n| n == 0, "the refused connection to close");
    srv.stop();
}

#[test]
fn connection_refused_closes_the_client_once_with_the_reason() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(
        lp.handle(),
        &format!("ws://127.0.0.1:{port}/"),
        ClientOptions::default(),
    )
    .unwrap();
    let seen = record(&ws);
    ws.send_text("queued").unwrap();
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    let (code, reason) = s.only_close();
    assert_eq!(code, Some(1006));
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
    assert!(reason.contains("ECONNREFUSED"), "{reason}");
}

#[test]
fn dns_failure_closes_the_client_once_with_the_reason() {
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(
        lp.handle(),
        "ws://nosuch.invalid/ws",
        ClientOptions::default(),
    )
    .unwrap();
    let seen = record(&ws);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    let (code, reason) = s.only_close();
    assert_eq!(code, Some(1006));
    assert!(
        reason.starts_with("cannot resolve nosuch.invalid"),
        "{reason}"
    );
}

#[test]
fn invalid_urls_are_refused_at_once() {
    let lp = OwnedLoop::new().unwrap();
    for bad in ["ftp://host/", "no scheme", "ws://"] {
        let r = ws::connect(lp.handle(), bad, ClientOptions::default());
        assert!(r.is_err(), "{bad}");
    }
    lp.close().expect("nothing was started");
}

/// A one-connection scripted "server" on a std listener thread: `script` gets the accepted
/// stream (10 s timeouts, no Nagle) and the request head, read byte by byte so that nothing
/// after the head is consumed.
fn raw_server(
    script: impl FnOnce(TcpStream, String) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut b).unwrap(),
                1,
                "client closed inside its request"
            );
            head.push(b[0]);
        }
        script(s, String::from_utf8(head).unwrap());
    });
    (addr, thread)
}

fn request_key(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .expect("the client sent a key")
}

fn response_101(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

fn read_client_frame(s: &mut TcpStream) -> Frame {
    read_frame_with(
        |n| {
            let mut v = vec![0; n];
            s.read_exact(&mut v).expect("read a client frame");
            v
        },
        true,
    )
}

/// Reads until the client closes its end (EOF or reset); fails if it sends anything else.
fn expect_client_gone(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from the client: {:02x?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the client did not close: {e}"),
    }
}

#[test]
fn a_101_split_across_reads_is_accepted_and_connect_waits_for_its_last_byte() {
    let head_done = Arc::new(AtomicBool::new(false));
    let done = head_done.clone();
    let (addr, server) = raw_server(move |mut s, head| {
        assert!(head.starts_with("GET /split HTTP/1.1\r\n"), "{head}");
        let response = response_101(&handshake::accept_key(&request_key(&head)));
        let bytes = response.as_bytes();
        let (last, most) = bytes.split_last().unwrap();
        for b in most {
            s.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        // The last byte of the head and a first frame in one write.
        done.store(true, Ordering::SeqCst);
        let mut tail = vec![*last];
        tail.extend_from_slice(&frame_with(true, false, OP_TEXT, b"first frame", None));
        s.write_all(&tail).unwrap();
        let f = read_client_frame(&mut s);
        assert!(!f.rsv1, "no compression was agreed");
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_TEXT, &b"got: first frame"[..])
        );
        let f = read_client_frame(&mut s);
        assert_eq!(f.close_code(), Some(1000));
        s.write_all(&frame_with(
            true,
            false,
            OP_CLOSE,
            &close_payload(1000, ""),
            None,
        ))
        .unwrap();
        // Closing TCP first, as a server does.
    });
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(
        lp.handle(),
        &format!("ws://{addr}/split"),
        ClientOptions::default(),
    )
    .unwrap();
    let seen = record(&ws);
    let early_connect = Rc::new(Cell::new(false));
    let e = early_connect.clone();
    ws.connect
        .attach(move |_| e.set(!head_done.load(Ordering::SeqCst)));
    ws.message.attach(|ws, _, data| {
        let text = format!("got: {}", String::from_utf8_lossy(data));
        ws.send_text(&text).unwrap();
        ws.shutdown(1000, "done").unwrap();
    });
    run_and_close(lp, vec![ws]);
    server.join().expect("raw server script");
    assert!(
        !early_connect.get(),
        "connect fired before the whole 101 arrived"
    );
    let s = seen.borrow();
    assert_eq!(s.order, ["connect", "message", "close"]);
    assert_eq!(s.compressed_at_connect, Some(false));
    assert_eq!(s.texts(), ["Text first frame"]);
    assert_eq!(s.only_close().0, Some(1000));
}

#[test]
fn a_wrong_accept_value_closes_the_client_with_1006_and_no_connect() {
    let (addr, server) = raw_server(|mut s, _| {
        s.write_all(response_101(&handshake::accept_key("AAAAAAAAAAAAAAAAAAAAAA==")).as_bytes())
            .unwrap();
        expect_client_gone(&mut s);
    });
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(
        lp.handle(),
        &format!("ws://{addr}/"),
        ClientOptions::default(),
    )
    .unwrap();
    let seen = record(&ws);
    ws.send_text("must not be sent").unwrap();
    run_and_close(lp, vec![ws]);
    server.join().expect("raw server script");
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    let (code, reason) = s.only_close();
    assert_eq!(code, Some(1006));
    assert!(reason.contains("Sec-WebSocket-Accept"), "{reason}");
}

#[test]
fn a_101_with_an_unoffered_extension_or_subprotocol_is_refused() {
    for extra in [
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        "Sec-WebSocket-Protocol: chat\r\n",
    ] {
        let (addr, server) = raw_server(move |mut s, head| {
            let mut r = response_101(&handshake::accept_key(&request_key(&head)));
            r.insert_str(r.len() - 2, extra);
            s.write_all(r.as_bytes()).unwrap();
            expect_client_gone(&mut s);
        });
        let lp = OwnedLoop::new().unwrap();
        let options = ClientOptions {
            deflate: None,
            ..ClientOptions::default()
        };
        let ws = ws::connect(lp.handle(), &format!("ws://{addr}/"), options).unwrap();
        let seen = record(&ws);
        run_and_close(lp, vec![ws]);
        server.join().expect("raw server script");
        let s = seen.borrow();
        assert_eq!(s.connects(), 0, "{extra}");
        let (code, reason) = s.only_close();
        assert_eq!(code, Some(1006), "{extra}");
        assert!(
            reason.contains("not offered") || reason.contains("did not offer"),
            "{reason}"
        );
    }
}

#[test]
fn a_handshake_that_never_completes_times_out_without_connect() {
    let (addr, server) = raw_server(|mut s, _| {
        // Half a response, then silence until the client gives up.
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpg")
            .unwrap();
        expect_client_gone(&mut s);
    });
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let ws = ws::connect(lp.handle(), &format!("ws://{addr}/"), options).unwrap();
    let seen = record(&ws);
    let started = Instant::now();
    run_and_close(lp, vec![ws]);
    let elapsed = started.elapsed();
    server.join().expect("raw server script");
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    assert_eq!(
        s.only_close(),
        (Some(1006), "connecting timed out after 300 ms".to_string())
    );
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
}

#[test]
fn client_close_fires_once_when_the_server_goes_away() {
    // The server process dies: its socket closes with FIN (nothing unread) or with a reset
    // (unread data in its receive buffer).
    for reset in [false, true] {
        let (addr, server) = raw_server(move |mut s, head| {
            s.write_all(response_101(&handshake::accept_key(&request_key(&head))).as_bytes())
                .unwrap();
            s.write_all(&frame_with(true, false, OP_TEXT, b"hello", None))
                .unwrap();
            if reset {
                // Wait for the client's answer and leave it unread: close() then resets.
                let mut b = [0u8; 1];
                assert_eq!(s.peek(&mut b).unwrap(), 1);
            } else {
                let f = read_client_frame(&mut s);
                assert_eq!(f.payload, b"answer");
            }
            drop(s);
        });
        let lp = OwnedLoop::new().unwrap();
        let ws = ws::connect(
            lp.handle(),
            &format!("ws://{addr}/"),
            ClientOptions::default(),
        )
        .unwrap();
        let seen = record(&ws);
        ws.message.attach(|ws, _, _| {
            ws.send_text("answer").unwrap();
        });
        run_and_close(lp, vec![ws]);
        server.join().expect("raw server script");
        let s = seen.borrow();
        assert_eq!(s.connects(), 1);
        assert_eq!(s.texts(), ["Text hello"]);
        let (code, reason) = s.only_close();
        assert_eq!(code, Some(1006), "reset={reset}: {reason}");
    }
}

#[test]
fn the_client_does_not_wait_forever_for_a_server_that_never_closes_tcp() {
    // Four servers that complete the handshake, then never close TCP; all four clients on
    // one loop, so the closing-handshake timeout (5 s) is waited for once.
    #[derive(Clone, Copy, Debug)]
    enum Script {
        /// Sends Close(1000), reads the client's answer, then holds the connection.
        ServerCloses,
        /// Answers the client's Close, then holds the connection.
        EchoesClientClose,
        /// Sends a masked frame (a violation), reads the client's Close(1002), holds.
        Violates,
        /// Reads the client's Close and never answers.
        IgnoresClientClose,
    }
    let scripts = [
        Script::ServerCloses,
        Script::EchoesClientClose,
        Script::Violates,
        Script::IgnoresClientClose,
    ];
    let lp = OwnedLoop::new().unwrap();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for script in scripts {
        let (addr, server) = raw_server(move |mut s, head| {
            s.write_all(response_101(&handshake::accept_key(&request_key(&head))).as_bytes())
                .unwrap();
            match script {
                Script::ServerCloses => {
                    s.write_all(&frame_with(
                        true,
                        false,
                        OP_CLOSE,
                        &close_payload(1000, "x"),
                        None,
                    ))
                    .unwrap();
                    assert_eq!(read_client_frame(&mut s).close_code(), Some(1000));
                }
                Script::EchoesClientClose => {
                    assert_eq!(read_client_frame(&mut s).close_code(), Some(1000));
                    s.write_all(&frame_with(
                        true,
                        false,
                        OP_CLOSE,
                        &close_payload(1000, ""),
                        None,
                    ))
                    .unwrap();
                }
                Script::Violates => {
                    s.write_all(&frame_with(true, false, OP_TEXT, b"masked", Some(MASK)))
                        .unwrap();
                    assert_eq!(read_client_frame(&mut s).close_code(), Some(1002));
                }
                Script::IgnoresClientClose => {
                    assert_eq!(read_client_frame(&mut s).close_code(), Some(1000));
                }
            }
            expect_client_gone(&mut s);
        });
        let ws = ws::connect(
            lp.handle(),
            &format!("ws://{addr}/"),
            ClientOptions::default(),
        )
        .unwrap();
        let seen = record(&ws);
        if matches!(
            script,
            Script::EchoesClientClose | Script::IgnoresClientClose
        ) {
            ws.connect.attach(|ws| ws.shutdown(1000, "bye").unwrap());
        }
        servers.push((script, server, seen));
        clients.push(ws);
    }
    let started = Instant::now();
    run_and_close(lp, clients);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    for (script, server, seen) in servers {
        server.join().expect("raw server script");
        let s = seen.borrow();
        let (code, reason) = s.only_close();
        let expected = match script {
            Script::ServerCloses | Script::EchoesClientClose => 1000,
            Script::Violates => 1002,
            Script::IgnoresClientClose => 1006,
        };
        assert_eq!(code, Some(expected), "{script:?}: {reason}");
    }
}

#[test]
fn client_close_fires_once_when_the_library_server_stops() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), ClientOptions::default()).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.send_text("stop now").unwrap();
    });
    let srv = Rc::new(srv);
    let s2 = srv.clone();
    ws.message.attach(move |_, _, _| s2.begin_stop());
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.texts(), ["Text stop now"]);
    let (code, _) = s.only_close();
    // Either a going-away Close or a dropped connection; exactly once either way.
    assert!(matches!(code, Some(1001) | Some(1006)), "{code:?}");
    wait_log(&log, "server close", |l| count(l, "close") == 1);
    Rc::try_unwrap(srv).ok().expect("sole owner").stop();
}

// ---- 5. wss:// ------------------------------------------------------------------------------

fn tls_ws_server(pki: &ThrowawayPki) -> (TestServer, Log) {
    let ctx = TlsContext::server()
        .cert_chain_pem(pki.cert_pem())
        .key_pem(pki.key_pem())
        .build()
        .unwrap();
    start_server(move |srv| srv.set_tls(ctx))
}

#[test]
fn wss_echo_with_deflate() {
    let pki = ThrowawayPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let (srv, log) = tls_ws_server(&pki);
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        tls: Some(TlsContext::client().ca_pem(pki.ca_pem()).build().unwrap()),
        ..ClientOptions::default()
    };
    // "localhost" goes through DNS and is the name the certificate is checked against.
    let u = format!("wss://localhost:{}/ws-api", srv.addr.port());
    let ws = ws::connect(lp.handle(), &u, options).unwrap();
    let seen = record(&ws);
    let big = "compressible text ".repeat(20_000);
    let b2 = big.clone();
    ws.connect.attach(move |ws| {
        ws.send_text("over TLS").unwrap();
        ws.send_binary(&pattern(100_000)).unwrap();
        ws.send_text(&b2).unwrap();
    });
    shutdown_after(&ws, 3);
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.compressed_at_connect, Some(true));
    assert_eq!(s.messages.len(), 3, "{:?}", s.order);
    assert_eq!(s.messages[0], (MessageKind::Text, b"over TLS".to_vec()));
    assert!(s.messages[1] == (MessageKind::Binary, pattern(100_000)));
    assert!(s.messages[2] == (MessageKind::Text, big.into_bytes()));
    assert_eq!(s.only_close().0, Some(1000));
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert_eq!(lines[0], "open compressed=true");
    srv.stop();
}

#[test]
fn wss_with_an_untrusted_certificate_closes_without_connect() {
    let pki = ThrowawayPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let other = ThrowawayPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let (srv, log) = tls_ws_server(&pki);
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        tls: Some(TlsContext::client().ca_pem(other.ca_pem()).build().unwrap()),
        ..ClientOptions::default()
    };
    let u = format!("wss://localhost:{}/ws-api", srv.addr.port());
    let ws = ws::connect(lp.handle(), &u, options).unwrap();
    let seen = record(&ws);
    ws.send_text("never").unwrap();
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.connects(), 0);
    let (code, reason) = s.only_close();
    assert_eq!(code, Some(1006));
    assert!(reason.starts_with("TLS"), "{reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    srv.wait_connections(|n| n == 0, "the failed TLS connection to close");
    assert!(log.lock().unwrap().is_empty(), "no request reached the app");
    srv.stop();
}

// ---- 6. permessage-deflate, live ------------------------------------------------------------

/// Raw deflate of `data` as permessage-deflate sends it: sync-flushed, without the trailing
/// `00 00 ff ff`.
fn deflate_message(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        out.reserve(64 * 1024);
        c.compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
    }
    out.truncate(out.len() - 4);
    out
}

/// Inflates one permessage-deflate message (fresh context).
fn inflate_message(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    while (d.total_in() as usize) < input.len() {
        out.reserve(64 * 1024);
        let before = (d.total_in(), d.total_out());
        d.decompress_vec(
            &input[d.total_in() as usize..],
            &mut out,
            flate2::FlushDecompress::Sync,
        )
        .unwrap();
        assert!(
            (d.total_in(), d.total_out()) != before,
            "inflate made no progress"
        );
    }
    out
}

const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

#[test]
fn compressed_frames_are_echoed_compressed() {
    let (srv, _) = ws_server();
    let (mut ws, reply) = RawWs::open_with(srv.addr, "/ws", DEFLATE_OFFER);
    assert!(reply
        .header("sec-websocket-extensions")
        .is_some_and(|e| e.starts_with("permessage-deflate")));
    let text = "Hello, compressed world! ".repeat(40);
    ws.send(&frame_with(
        true,
        true,
        OP_TEXT,
        &deflate_message(text.as_bytes()),
        Some(MASK),
    ));
    let f = ws.read_frame();
    assert!(f.fin && f.rsv1, "the echo is compressed: {f:?}");
    assert_eq!(f.opcode, OP_TEXT);
    assert!(
        f.payload.len() < text.len() / 4,
        "{} bytes",
        f.payload.len()
    );
    assert_eq!(inflate_message(&f.payload), text.as_bytes());
    // An uncompressed frame on the same connection is fine too (RSV1 per message).
    ws.send_msg(OP_BINARY, &[1, 2, 3]);
    let f = ws.read_frame();
    assert_eq!(f.opcode, OP_BINARY);
    let payload = if f.rsv1 {
        inflate_message(&f.payload)
    } else {
        f.payload
    };
    assert_eq!(payload, [1, 2, 3]);
    srv.stop();
}

#[test]
fn a_compression_bomb_from_a_raw_client_closes_with_1009() {
    let (srv, _) = ws_server();
    let (mut ws, _) = RawWs::open_with(srv.addr, "/ws-small", DEFLATE_OFFER);
    let bomb = deflate_message(&vec![0u8; 512 << 10]);
    assert!(
        bomb.len() < SMALL_LIMIT,
        "the bomb is small on the wire: {}",
        bomb.len()
    );
    ws.send(&frame_with(true, true, OP_BINARY, &bomb, Some(MASK)));
    ws.expect_close_then_eof(1009);
    srv.wait_connections(|n| n == 0, "the failed WebSocket to close");
    srv.stop();
}

#[test]
fn a_compression_bomb_from_the_client_closes_with_1009() {
    let (srv, _) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let ws = ws::connect(
        lp.handle(),
        &url(&srv, "/ws-small"),
        ClientOptions::default(),
    )
    .unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.send_text("small first").unwrap();
    });
    ws.message.attach(|ws, _, _| {
        ws.send_binary(&vec![0u8; 1 << 20]).unwrap();
    });
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.compressed_at_connect, Some(true));
    assert_eq!(s.texts(), ["Text small first"]);
    assert_eq!(s.only_close().0, Some(1009));
    srv.stop();
}

#[test]
fn a_compression_bomb_from_the_server_closes_the_client_with_1009() {
    let (srv, log) = ws_server();
    let lp = OwnedLoop::new().unwrap();
    let options = ClientOptions {
        max_message_size: 64 * 1024,
        ..ClientOptions::default()
    };
    let ws = ws::connect(lp.handle(), &url(&srv, "/ws-api"), options).unwrap();
    let seen = record(&ws);
    ws.connect.attach(|ws| {
        ws.send_text("cmd:bomb").unwrap();
    });
    run_and_close(lp, vec![ws]);
    let s = seen.borrow();
    assert_eq!(s.compressed_at_connect, Some(true));
    assert!(s.messages.is_empty(), "{:?}", s.order);
    assert_eq!(s.only_close().0, Some(1009));
    // The server hears the client's Close(1009).
    let lines = wait_log(&log, "server close", |l| count(l, "close") == 1);
    assert!(
        lines.last().unwrap().starts_with("close Some(1009)"),
        "{lines:?}"
    );
    srv.stop();
}
