//! `ClientConnection`: an HTTP/1.1 client for `http://` and `https://` URLs, as icey's
//! `http::ClientConnection`, on the loop thread.
//!
//! One `ClientConnection` talks to one origin (scheme, host, port) and carries one request at a
//! time. Sequential requests reuse the connection while the server keeps it open (icey opens a
//! new socket per request); when it does not, the next request reconnects transparently.
//!
//! ```text
//! let conn = ClientConnection::new(lp, "http://example.com/")?;
//! conn.headers += |c, head| println!("{} {}", head.status(), head.reason());
//! conn.payload += |c, chunk| out.extend_from_slice(chunk);
//! conn.complete += |c| c.close();
//! conn.close += |c, err| if let Some(e) = err { eprintln!("{e}") };
//! conn.send()?;                       // or send_body(b"..."), or send_chunk(..)* + finish_body()
//! lp.run(RunMode::Default);
//! ```
//!
//! Events, in order: `connect` (once per new connection, after TCP and TLS are up and the
//! request went out), `headers` (the final response head; interim 1xx heads are skipped),
//! `payload` (body chunks, borrowed for the call), `complete` (the response is whole; a new
//! request may be sent from here), and `close` (exactly once, when the `ClientConnection`
//! ends: with the error that ended it, or `None` after [`ClientConnection::close`]).
//!
//! Errors are never turned into a fake HTTP status: a failure before the response is complete
//! is reported once, through `close`, and `headers` / `complete` do not fire for it. A failure
//! that happens inside a call (a connection that cannot even be started) is also returned by
//! that call, after `close` fired. Calls refused for the request's state
//! ([`ClientError::Busy`], [`ClientError::Usage`], [`ClientError::InvalidRequest`]) only
//! return the error and leave the connection as it was.
//!
//! An idle kept-alive connection keeps the loop running (it waits for the next request):
//! call [`ClientConnection::close`] when done, e.g. from the `complete` slot. Dropping the
//! last `Rc` closes everything silently.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::body::{BodyDecoder, BodyLimits};
use super::decode::{BodyKind, HeadLimits, HeadParser};
use super::encode::{chunk_size_line, push_u64, LAST_CHUNK};
use super::headers::is_field_value;
use super::method::{is_token, Method};
use super::request::{Request, Version};
use super::response_head::ResponseHead;
use super::server_connection::Flow;
use super::status::StatusCode;
use super::url::{Url, UrlError};
use crate::net::tls::{TlsContext, TlsError};
use crate::net::{Socket, SocketHandler, TcpSocket, TlsSocket, DEFAULT_HIGH_WATER};
use crate::signal::{signal_signature, Signal};
use crate::uv::{dns, Loop, Timer, UvError};

signal_signature!(
    (&ClientConnection),
    (&ClientConnection, &ResponseHead),
    (&ClientConnection, &[u8]),
    (&ClientConnection, Option<&ClientError>)
);

/// Signal about the connection: `(connection)`.
pub type ClientSignal = Signal<dyn FnMut(&ClientConnection)>;
/// Signal of the response head: `(connection, head)`.
pub type HeadersSignal = Signal<dyn FnMut(&ClientConnection, &ResponseHead)>;
/// Signal of response body chunks: `(connection, chunk)`, the chunk borrowed for the call.
pub type ClientPayloadSignal = Signal<dyn FnMut(&ClientConnection, &[u8])>;
/// Signal of the end of the connection: `(connection, error)`.
pub type CloseSignal = Signal<dyn FnMut(&ClientConnection, Option<&ClientError>)>;

/// Default limit for connecting: DNS, TCP and the TLS handshake together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for silence from the server while a response is awaited.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Response heads may carry large cookies; allow more than a server accepts in a request.
const RESPONSE_HEAD_LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_head_size: 64 * 1024,
    max_headers: 200,
};

/// A whole request (head plus sized body) up to this size is kept until the response starts,
/// so that it can be resent once if a reused connection turns out to be closed by the server.
const RETRY_KEEP_LIMIT: usize = 64 * 1024;

/// A request buffer that grew beyond this is released after use instead of kept for reuse.
const OUTBUF_KEEP_CAPACITY: usize = 256 * 1024;

/// Why a request failed or a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The URL given to [`ClientConnection::new`] is not a valid http(s) URL.
    Url(UrlError),
    /// The host name could not be resolved (the message names the host).
    Resolve(UvError),
    /// No TCP connection could be made to any of the host's addresses (refused,
    /// unreachable, ...); the error of the last address tried.
    Connect(UvError),
    /// Connecting (DNS, TCP and TLS together) took longer than the connect timeout.
    ConnectTimeout {
        /// `host:port`.
        target: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// TLS failed: the server's certificate was rejected (see [`TlsError::kind`]), or the
    /// handshake failed.
    Tls {
        /// `host:port`.
        target: String,
        /// What OpenSSL reported, e.g. "certificate verify failed: self-signed certificate".
        error: TlsError,
    },
    /// The server sent nothing for longer than the read timeout while a response was due.
    ReadTimeout {
        /// `host:port`.
        target: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// The connection failed while sending or receiving (reset, broken pipe, ...).
    Io(UvError),
    /// The server closed the connection before the response was complete.
    ConnectionClosed {
        /// `host:port`.
        target: String,
        /// Where in the response the connection ended, e.g. "before sending a response".
        detail: &'static str,
    },
    /// The server's answer is not a valid HTTP/1.x response.
    InvalidResponse {
        /// `host:port`.
        target: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The request cannot be sent as set up (invalid method, target or header field).
    InvalidRequest(String),
    /// A request is still in progress: wait for `complete` before sending the next one.
    Busy,
    /// The `ClientConnection` was closed; create a new one.
    Closed,
    /// A call that does not fit the request's state (the message says which).
    Usage(&'static str),
}

impl ClientError {
    /// True for the two timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectTimeout { .. } | ClientError::ReadTimeout { .. }
        )
    }

    /// The TLS error, if this is one (e.g. to check for
    /// [`TlsErrorKind::CertificateVerify`](crate::net::tls::TlsErrorKind::CertificateVerify)).
    pub fn tls_error(&self) -> Option<&TlsError> {
        match self {
            ClientError::Tls { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(e) => e.fmt(f),
            ClientError::Resolve(e) | ClientError::Connect(e) => e.fmt(f),
            ClientError::ConnectTimeout { target, timeout } => write!(
                f,
                "connecting to {target} timed out after {} ms (connect timeout)",
                timeout.as_millis()
            ),
            ClientError::Tls { target, error } => write!(f, "TLS with {target}: {error}"),
            ClientError::ReadTimeout { target, timeout } => write!(
                f,
                "no response from {target} for {} ms (read timeout)",
                timeout.as_millis()
            ),
            ClientError::Io(e) => e.fmt(f),
            ClientError::ConnectionClosed { target, detail } => {
                write!(f, "{target} closed the connection {detail}")
            }
            ClientError::InvalidResponse { target, reason } => {
                write!(f, "invalid response from {target}: {reason}")
            }
            ClientError::InvalidRequest(what) => write!(f, "invalid request: {what}"),
            ClientError::Busy => f.write_str(
                "a request is already in progress on this connection (wait for complete)",
            ),
            ClientError::Closed => f.write_str("the client connection is closed"),
            ClientError::Usage(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<UrlError> for ClientError {
    fn from(e: UrlError) -> Self {
        ClientError::Url(e)
    }
}

/// Where the current request/response exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in flight (the connection, if any, is idle and kept alive).
    Idle,
    /// A request waits in `outbuf` for DNS, TCP and TLS.
    Connecting,
    /// The request went out; waiting for the response head.
    Head,
    /// Receiving the response body.
    Body,
}

/// The request body's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyOut {
    /// No body, or all of it is queued.
    Done,
    /// A chunked body is open: `send_chunk` adds to it, `finish_body` ends it.
    Streaming,
    /// The response completed before the streamed body was finished; the rest is dropped
    /// (the connection was closed) until `finish_body` acknowledges it.
    Cut,
}

/// What the single timer is measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerMode {
    Off,
    Connect,
    Read,
}

/// The body of a request being started.
enum OutBody<'a> {
    None,
    Sized(&'a [u8]),
    Chunked,
}

/// Receives socket events for the connection. One per socket: dropping it (with the socket)
/// is how late events of an old socket are ignored.
struct Link {
    conn: Weak<ClientConnection>,
}

impl SocketHandler for Link {
    fn on_data(&self, data: &[u8]) {
        if let Some(c) = self.conn.upgrade() {
            c.on_data(data);
        }
    }
    fn on_eof(&self) {
        if let Some(c) = self.conn.upgrade() {
            c.on_eof();
        }
    }
    fn on_drain(&self) {
        if let Some(c) = self.conn.upgrade() {
            c.on_drain();
        }
    }
    fn on_close(&self, err: Option<UvError>) {
        if let Some(c) = self.conn.upgrade() {
            c.on_socket_close(err);
        }
    }
}

/// A connection handed over after `101 Switching Protocols` (see
/// [`ClientConnection::take_upgraded`]).
pub struct UpgradedSocket {
    /// The connection, now speaking the new protocol; set its handler before returning to
    /// the loop.
    pub socket: Rc<dyn Socket>,
    /// Bytes that arrived after the `101` head: the new protocol's first bytes.
    pub buffered: Vec<u8>,
}

/// Lets request setters be chained as in icey: `conn.request().set_method("POST").set(..)`.
/// Each call borrows the request only for its own duration.
pub struct RequestRef<'a>(&'a RefCell<Request>);

impl RequestRef<'_> {
    /// Sets the method token, e.g. `"POST"` (case-sensitive).
    pub fn set_method(&self, method: &str) -> &Self {
        self.0.borrow_mut().set_method(method);
        self
    }

    /// Sets the request-target: path and query, e.g. `/search?q=1`.
    pub fn set_target(&self, target: &str) -> &Self {
        self.0.borrow_mut().set_target(target);
        self
    }

    /// Sets header `name` to `value`, replacing any earlier value.
    pub fn set(&self, name: &str, value: &str) -> &Self {
        self.0.borrow_mut().headers_mut().set(name, value);
        self
    }

    /// Adds a header field (after any of the same name).
    pub fn add(&self, name: &str, value: &str) -> &Self {
        self.0.borrow_mut().headers_mut().append(name, value);
        self
    }

    /// Removes every field called `name`.
    pub fn remove(&self, name: &str) -> &Self {
        self.0.borrow_mut().headers_mut().remove(name);
        self
    }

    /// Sets `Content-Type`.
    pub fn set_content_type(&self, content_type: &str) -> &Self {
        self.set("Content-Type", content_type)
    }

    /// `false` asks the server to close the connection after the response
    /// (`Connection: close`); `true` removes that request.
    pub fn set_keep_alive(&self, keep_alive: bool) -> &Self {
        if keep_alive {
            self.remove("Connection")
        } else {
            self.set("Connection", "close")
        }
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.0.borrow().method()
    }

    /// The request-target.
    pub fn target(&self) -> String {
        self.0.borrow().target().to_string()
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.borrow().header(name).map(str::to_string)
    }

    /// Runs `f` with the request itself, for anything the setters do not cover.
    pub fn with<R>(&self, f: impl FnOnce(&mut Request) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// An HTTP client connection to one origin. See the module docs.
pub struct ClientConnection {
    me: Weak<ClientConnection>,
    lp: Loop,
    url: Url,
    /// `host:port` for messages.
    target: String,
    /// The `Host` field value, computed once.
    host_header: String,
    tls: RefCell<Option<TlsContext>>,
    connect_timeout: Cell<Duration>,
    read_timeout: Cell<Duration>,
    request: RefCell<Request>,

    // The transport.
    socket: RefCell<Option<Rc<dyn Socket>>>,
    link: RefCell<Option<Rc<Link>>>,
    /// A TCP connect in progress.
    connecting: RefCell<Option<Rc<TcpSocket>>>,
    resolving: RefCell<Option<dns::Resolving>>,
    /// Addresses not tried yet for the current connection attempt.
    addrs: RefCell<VecDeque<SocketAddr>>,
    /// Bumped by every connection attempt and teardown: callbacks of older attempts see a
    /// different number and do nothing.
    attempt: Cell<u64>,
    timer: RefCell<Option<Timer>>,
    timer_mode: Cell<TimerMode>,
    connections: Cell<u64>,
    /// The current exchange runs on a connection an earlier exchange used.
    reused: Cell<bool>,
    /// A `101 Switching Protocols` connection waiting to be taken from the `complete` slot.
    upgraded: RefCell<Option<UpgradedSocket>>,

    // The exchange.
    phase: Cell<Phase>,
    body_out: Cell<BodyOut>,
    /// Bumped per request and by teardown: code that emitted a signal checks it to notice
    /// that a slot started a new request or closed the connection meanwhile.
    exchange: Cell<u64>,
    method: Cell<Method>,
    request_keep_alive: Cell<bool>,
    /// Request bytes waiting for the connection (and, while `retry_kept`, kept until the
    /// response starts).
    outbuf: RefCell<Vec<u8>>,
    retry_kept: Cell<bool>,
    response_started: Cell<bool>,
    /// `send_chunk` returned [`Flow::Pause`]; `drain` is owed.
    paused: Cell<bool>,
    inbuf: RefCell<Vec<u8>>,
    head_parser: RefCell<HeadParser>,
    response: RefCell<ResponseHead>,
    body: RefCell<BodyDecoder>,
    closed: Cell<bool>,
    error: RefCell<Option<ClientError>>,

    /// Connected (TCP, and TLS for https) and the request went out; once per new connection:
    /// icey's `Connect` signal.
    pub connect: ClientSignal,
    /// The final response head arrived: icey's `Headers` signal.
    pub headers: HeadersSignal,
    /// A chunk of the response body, borrowed for the call: icey's `Payload` signal.
    pub payload: ClientPayloadSignal,
    /// The response is complete. The connection is idle (kept alive when the server allows):
    /// a new request may be sent from the slot. icey's `Complete` signal.
    pub complete: ClientSignal,
    /// The `ClientConnection` ended, exactly once: `Some(error)` after a failure, `None` after
    /// [`ClientConnection::close`]. icey's `Close` signal.
    pub close: CloseSignal,
    /// The request body's write queue drained after [`ClientConnection::send_chunk`] returned
    /// [`Flow::Pause`]: a streaming producer may continue.
    pub drain: ClientSignal,
}

impl fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientConnection({}, {:?}, closed={})",
            self.url,
            self.phase.get(),
            self.closed.get()
        )
    }
}

impl ClientConnection {
    /// A client for `url` (`http://` or `https://`) on `lp`. Nothing happens on the network
    /// until a request is sent. The request starts as `GET` of the URL's path and query;
    /// change it with [`request`](Self::request). For https the system's CAs verify the
    /// server unless [`set_tls_context`](Self::set_tls_context) gives a context.
    pub fn new(lp: Loop, url: &str) -> Result<Rc<ClientConnection>, ClientError> {
        let url = Url::parse(url)?;
        let target = if url.is_ipv6() {
            format!("[{}]:{}", url.host(), url.port())
        } else {
            format!("{}:{}", url.host(), url.port())
        };
        let request = Request::with("GET", url.path_and_query(), Version::Http11);
        Ok(Rc::new_cyclic(|me| ClientConnection {
            me: me.clone(),
            lp,
            host_header: url.host_header(),
            url,
            target,
            tls: RefCell::new(None),
            connect_timeout: Cell::new(DEFAULT_CONNECT_TIMEOUT),
            read_timeout: Cell::new(DEFAULT_READ_TIMEOUT),
            request: RefCell::new(request),
            socket: RefCell::new(None),
            link: RefCell::new(None),
            connecting: RefCell::new(None),
            resolving: RefCell::new(None),
            addrs: RefCell::new(VecDeque::new()),
            attempt: Cell::new(0),
            timer: RefCell::new(None),
            timer_mode: Cell::new(TimerMode::Off),
            connections: Cell::new(0),
            reused: Cell::new(false),
            upgraded: RefCell::new(None),
            phase: Cell::new(Phase::Idle),
            body_out: Cell::new(BodyOut::Done),
            exchange: Cell::new(0),
            method: Cell::new(Method::Get),
            request_keep_alive: Cell::new(true),
            outbuf: RefCell::new(Vec::new()),
            retry_kept: Cell::new(false),
            response_started: Cell::new(false),
            paused: Cell::new(false),
            inbuf: RefCell::new(Vec::new()),
            head_parser: RefCell::new(HeadParser::new()),
            response: RefCell::new(ResponseHead::new()),
            body: RefCell::new(BodyDecoder::new(BodyKind::None, BodyLimits::default())),
            closed: Cell::new(false),
            error: RefCell::new(None),
            connect: Signal::new(),
            headers: Signal::new(),
            payload: Signal::new(),
            complete: Signal::new(),
            close: Signal::new(),
            drain: Signal::new(),
        }))
    }

    /// Like [`new`](Self::new), with the TLS context for https (e.g. built with
    /// `TlsContext::client().ca_file(..)`).
    pub fn with_tls(
        lp: Loop,
        url: &str,
        ctx: TlsContext,
    ) -> Result<Rc<ClientConnection>, ClientError> {
        let conn = Self::new(lp, url)?;
        conn.set_tls_context(ctx);
        Ok(conn)
    }

    /// Sets the TLS context used by the next connection (for https URLs; ignored for http).
    pub fn set_tls_context(&self, ctx: TlsContext) {
        *self.tls.borrow_mut() = Some(ctx);
    }

    /// Limits connecting (DNS, TCP and TLS together); zero means no limit. Default 30 s.
    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.connect_timeout.set(timeout);
    }

    /// Limits how long the server may stay silent while a response is due (from the end of
    /// the request until the response is complete, restarted by every read); zero means no
    /// limit. Default 60 s.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.read_timeout.set(timeout);
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.get()
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout.get()
    }

    /// The URL this connection was created for.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The loop the connection runs on.
    pub fn event_loop(&self) -> Loop {
        self.lp
    }

    /// The next request's head, to change before sending: method, target, header fields.
    /// `Host`, `User-Agent` (unless set here) and the body framing fields are added when
    /// sending. The request is kept between exchanges, so settings carry over.
    pub fn request(&self) -> RequestRef<'_> {
        RequestRef(&self.request)
    }

    /// The last response head (valid from `headers` on). Do not hold it across a `send`.
    pub fn response(&self) -> Ref<'_, ResponseHead> {
        self.response.borrow()
    }

    /// True while a request is in progress (sent or being sent, response not complete).
    pub fn is_busy(&self) -> bool {
        self.phase.get() != Phase::Idle || self.body_out.get() == BodyOut::Streaming
    }

    /// True when a connection is open (idle or in use).
    pub fn is_connected(&self) -> bool {
        self.usable_socket().is_some()
    }

    /// True once closed (by [`close`](Self::close) or an error).
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// The error that closed the connection, if one did.
    pub fn error(&self) -> Option<ClientError> {
        self.error.borrow().clone()
    }

    /// How many TCP connections this client has established so far (keep-alive reuse keeps
    /// it at 1 across sequential requests).
    pub fn connections_opened(&self) -> u64 {
        self.connections.get()
    }

    /// The server's address while connected.
    pub fn peer_address(&self) -> Option<SocketAddr> {
        self.usable_socket().and_then(|s| s.peer_addr())
    }

    /// Sends the request without a body (`Content-Length: 0` for methods that usually carry
    /// one, POST, PUT and PATCH).
    pub fn send(&self) -> Result<(), ClientError> {
        self.start(OutBody::None)
    }

    /// Sends the request with `body` (`Content-Length` framing).
    pub fn send_body(&self, body: &[u8]) -> Result<(), ClientError> {
        self.start(OutBody::Sized(body))
    }

    /// Streams a request body (`Transfer-Encoding: chunked`): the first call sends the head
    /// (an empty `data` sends only that), each call adds a chunk, and
    /// [`finish_body`](Self::finish_body) ends the body. Returns [`Flow::Pause`] when the
    /// write queue is full: wait for the `drain` signal before sending more.
    pub fn send_chunk(&self, data: &[u8]) -> Result<Flow, ClientError> {
        match self.body_out.get() {
            BodyOut::Cut => {
                return Err(ClientError::Usage(
                    "the response is already complete; the rest of the request body was not \
                     sent (call finish_body)",
                ))
            }
            BodyOut::Done => self.start(OutBody::Chunked)?,
            BodyOut::Streaming => {}
        }
        if !data.is_empty() {
            let mut size = [0u8; 20];
            let line = chunk_size_line(data.len(), &mut size);
            self.write_parts(&[line, data, b"\r\n"]);
        }
        Ok(self.flow())
    }

    /// Ends a body streamed with [`send_chunk`](Self::send_chunk).
    pub fn finish_body(&self) -> Result<(), ClientError> {
        match self.body_out.get() {
            BodyOut::Done => Err(ClientError::Usage(
                "finish_body: no streamed request body is open (start one with send_chunk)",
            )),
            BodyOut::Cut => {
                self.body_out.set(BodyOut::Done);
                Ok(())
            }
            BodyOut::Streaming => {
                self.body_out.set(BodyOut::Done);
                self.write_parts(&[LAST_CHUNK]);
                if matches!(self.phase.get(), Phase::Head | Phase::Body) {
                    self.arm_read_timer();
                }
                Ok(())
            }
        }
    }

    /// Closes the connection: any request in progress is abandoned, the socket and timer
    /// close, and `close(None)` is emitted (once). Idempotent. The loop can end (or be
    /// closed) once the handles' close callbacks ran.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.teardown();
        self.close.emit(|f| f(self, None));
    }

    /// After a `101 Switching Protocols` response, inside the `complete` slot: takes the
    /// connection for the new protocol, with the bytes that already arrived after the
    /// response head. The caller sets the socket's handler. If no slot takes it, the
    /// connection is closed after `complete`.
    pub fn take_upgraded(&self) -> Option<UpgradedSocket> {
        self.upgraded.borrow_mut().take()
    }

    // -----------------------------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------------------------

    fn usable_socket(&self) -> Option<Rc<dyn Socket>> {
        self.socket
            .borrow()
            .as_ref()
            .filter(|s| !s.is_closing())
            .cloned()
    }

    fn start(&self, body: OutBody<'_>) -> Result<(), ClientError> {
        if self.closed.get() {
            return Err(ClientError::Closed);
        }
        if self.is_busy() {
            return Err(ClientError::Busy);
        }
        if self.body_out.get() == BodyOut::Cut {
            self.body_out.set(BodyOut::Done);
        }
        {
            let req = self.request.borrow();
            if matches!(body, OutBody::Chunked) && req.version() == Version::Http10 {
                return Err(ClientError::Usage(
                    "an HTTP/1.0 request cannot stream a chunked body; use send_body",
                ));
            }
            let mut out = self.outbuf.borrow_mut();
            out.clear();
            encode_request_head(&mut out, &req, &self.host_header, &body)?;
            if let OutBody::Sized(data) = body {
                out.extend_from_slice(data);
            }
            self.method.set(req.method());
            self.request_keep_alive.set(req.keep_alive());
            self.retry_kept.set(
                is_idempotent(req.method())
                    && !matches!(body, OutBody::Chunked)
                    && out.len() <= RETRY_KEEP_LIMIT,
            );
        }
        self.exchange.set(self.exchange.get().wrapping_add(1));
        self.head_parser.borrow_mut().reset();
        self.response.borrow_mut().clear();
        self.inbuf.borrow_mut().clear();
        self.response_started.set(false);
        self.paused.set(false);
        self.body_out.set(if matches!(body, OutBody::Chunked) {
            BodyOut::Streaming
        } else {
            BodyOut::Done
        });
        if self.usable_socket().is_some() {
            self.reused.set(true);
            self.phase.set(Phase::Head);
            self.flush_outbuf();
            if self.body_out.get() == BodyOut::Done && self.phase.get() == Phase::Head {
                self.arm_read_timer();
            }
        } else {
            self.drop_socket();
            self.reused.set(false);
            self.phase.set(Phase::Connecting);
            self.open_connection();
        }
        match self.error.borrow().as_ref() {
            Some(e) if self.closed.get() => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Writes several pieces as one unit: to the socket when connected, else to `outbuf`.
    fn write_parts(&self, parts: &[&[u8]]) {
        if matches!(self.phase.get(), Phase::Head | Phase::Body) {
            if let Some(sock) = self.usable_socket() {
                sock.cork();
                for p in parts {
                    sock.write(p);
                }
                let _ = sock.uncork();
                self.check_write_failure(&sock);
                return;
            }
            // The connection is gone (the response already failed or completed): drop.
            return;
        }
        let mut out = self.outbuf.borrow_mut();
        for p in parts {
            out.extend_from_slice(p);
        }
    }

    /// Sends what waits in `outbuf` on the (now usable) socket.
    fn flush_outbuf(&self) {
        let Some(sock) = self.usable_socket() else {
            return;
        };
        {
            let mut out = self.outbuf.borrow_mut();
            if !out.is_empty() {
                sock.write(&out);
                if !self.retry_kept.get() {
                    release_outbuf(&mut out);
                }
            }
        }
        self.check_write_failure(&sock);
    }

    /// A failed synchronous write closes the socket without an event: notice it here.
    fn check_write_failure(&self, sock: &Rc<dyn Socket>) {
        if sock.is_closing() && !self.closed.get() {
            let err = UvError::with_context(
                crate::uv::sys::uv_errno_t_UV_EPIPE,
                format!("write to {}", self.target),
            );
            self.on_socket_close(Some(err));
        }
    }

    /// `Flow` for a streaming producer, remembering that a `drain` is owed.
    fn flow(&self) -> Flow {
        let full = match self.usable_socket() {
            Some(sock) if matches!(self.phase.get(), Phase::Head | Phase::Body) => {
                let _ = sock.take_drain_owed();
                sock.is_over_high_water()
            }
            _ => self.outbuf.borrow().len() >= DEFAULT_HIGH_WATER,
        };
        if full {
            self.paused.set(true);
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    fn emit_drain_if_owed(&self) {
        if self.paused.get() && self.body_out.get() == BodyOut::Streaming {
            let over = self
                .usable_socket()
                .map(|s| s.is_over_high_water())
                .unwrap_or(false);
            if !over {
                self.paused.set(false);
                self.drain.emit(|f| f(self));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Connecting
    // -----------------------------------------------------------------------------------------

    fn open_connection(&self) {
        let attempt = self.attempt.get().wrapping_add(1);
        self.attempt.set(attempt);
        self.start_timer(TimerMode::Connect, self.connect_timeout.get());
        let host = self.url.host();
        if let Ok(ip) = host.parse::<IpAddr>() {
            *self.addrs.borrow_mut() = VecDeque::from([SocketAddr::new(ip, self.url.port())]);
            self.connect_next(None);
            return;
        }
        let weak = self.me.clone();
        let started = dns::resolve(self.lp, host, self.url.port(), move |result| {
            let Some(conn) = weak.upgrade() else { return };
            if conn.attempt.get() != attempt || conn.closed.get() {
                return;
            }
            conn.resolving.borrow_mut().take();
            match result {
                Ok(addrs) => {
                    *conn.addrs.borrow_mut() = addrs.into();
                    conn.connect_next(None);
                }
                Err(e) => conn.fail(ClientError::Resolve(e)),
            }
        });
        match started {
            Ok(token) => *self.resolving.borrow_mut() = Some(token),
            Err(e) => self.fail(ClientError::Resolve(e)),
        }
    }

    /// Tries the next address; reports `last_error` when none is left.
    fn connect_next(&self, mut last_error: Option<UvError>) {
        let attempt = self.attempt.get();
        loop {
            let next = self.addrs.borrow_mut().pop_front();
            let Some(addr) = next else {
                let err = last_error.unwrap_or_else(|| {
                    UvError::with_context(
                        crate::uv::sys::uv_errno_t_UV_EAI_NODATA,
                        format!("cannot resolve {}: no address", self.url.host()),
                    )
                });
                self.fail(ClientError::Connect(err));
                return;
            };
            let weak = self.me.clone();
            let started = TcpSocket::connect(self.lp, addr, move |result| {
                let Some(conn) = weak.upgrade() else { return };
                if conn.attempt.get() != attempt || conn.closed.get() {
                    return;
                }
                conn.connecting.borrow_mut().take();
                match result {
                    Ok(tcp) => conn.on_tcp_connected(tcp),
                    Err(e) => conn.connect_next(Some(e)),
                }
            });
            match started {
                Ok(tcp) => {
                    *self.connecting.borrow_mut() = Some(tcp);
                    return;
                }
                Err(e) => last_error = Some(e.context(format!("connect to {addr}"))),
            }
        }
    }

    fn on_tcp_connected(&self, tcp: Rc<TcpSocket>) {
        self.connections.set(self.connections.get() + 1);
        let link = Rc::new(Link {
            conn: self.me.clone(),
        });
        let handler: Weak<dyn SocketHandler> = Rc::downgrade(&link) as Weak<dyn SocketHandler>;
        *self.link.borrow_mut() = Some(link);
        if !self.url.is_tls() {
            tcp.set_handler(handler);
            tcp.resume_reading();
            *self.socket.borrow_mut() = Some(tcp as Rc<dyn Socket>);
            self.on_ready();
            return;
        }
        let ctx = match self.tls_context() {
            Ok(ctx) => ctx,
            Err(error) => {
                tcp.close();
                self.fail(ClientError::Tls {
                    target: self.target.clone(),
                    error,
                });
                return;
            }
        };
        let weak = self.me.clone();
        let attempt = self.attempt.get();
        let started = TlsSocket::client(
            tcp.clone(),
            &ctx,
            self.url.host(),
            self.url.port(),
            move |result| {
                let Some(conn) = weak.upgrade() else { return };
                if conn.attempt.get() != attempt || conn.closed.get() {
                    return;
                }
                match result {
                    Ok(()) => conn.on_ready(),
                    Err(error) => conn.fail(ClientError::Tls {
                        target: conn.target.clone(),
                        error,
                    }),
                }
            },
        );
        match started {
            Ok(tls) => {
                tls.set_handler(handler);
                *self.socket.borrow_mut() = Some(tls as Rc<dyn Socket>);
            }
            Err(error) => {
                tcp.close();
                self.fail(ClientError::Tls {
                    target: self.target.clone(),
                    error,
                });
            }
        }
    }

    /// The caller's TLS context, or one with the system CAs (built once per thread: loading
    /// the system store is slow).
    fn tls_context(&self) -> Result<TlsContext, TlsError> {
        if let Some(ctx) = self.tls.borrow().as_ref() {
            return Ok(ctx.clone());
        }
        thread_local! {
            static SYSTEM_CAS: RefCell<Option<TlsContext>> = const { RefCell::new(None) };
        }
        SYSTEM_CAS.with(|cell| {
            if let Some(ctx) = cell.borrow().as_ref() {
                return Ok(ctx.clone());
            }
            let ctx = TlsContext::client().build()?;
            *cell.borrow_mut() = Some(ctx.clone());
            Ok(ctx)
        })
    }

    /// TCP (and TLS) is up: send the request and tell the application.
    fn on_ready(&self) {
        if self.phase.get() != Phase::Connecting {
            return;
        }
        self.stop_timer();
        self.phase.set(Phase::Head);
        self.flush_outbuf();
        if self.closed.get() || self.phase.get() != Phase::Head {
            return;
        }
        if self.body_out.get() == BodyOut::Done {
            self.arm_read_timer();
        }
        let exchange = self.exchange.get();
        self.connect.emit(|f| f(self));
        if self.exchange.get() == exchange && !self.closed.get() {
            self.emit_drain_if_owed();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------------------

    fn start_timer(&self, mode: TimerMode, timeout: Duration) {
        self.stop_timer();
        if timeout.is_zero() {
            return;
        }
        // The loop's cached time may be stale when this runs outside a loop callback (a
        // `send` before `run`); the deadline must count from now.
        self.lp.update_time();
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut slot = self.timer.borrow_mut();
        if slot.is_none() {
            match Timer::new(self.lp) {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    log::warn!(
                        "client timer unavailable, {} not enforced: {e}",
                        self.target
                    );
                    return;
                }
            }
        }
        let Some(timer) = slot.as_ref() else { return };
        let weak = self.me.clone();
        // Read mode repeats so that `again()` can push the deadline out on every read
        // without a new closure.
        let repeat = if mode == TimerMode::Read { ms } else { 0 };
        let started = timer.start(ms, repeat, move || {
            if let Some(conn) = weak.upgrade() {
                conn.on_timeout();
            }
        });
        match started {
            Ok(()) => self.timer_mode.set(mode),
            Err(e) => log::warn!("client timer failed, {} not enforced: {e}", self.target),
        }
    }

    fn stop_timer(&self) {
        if self.timer_mode.replace(TimerMode::Off) != TimerMode::Off {
            if let Some(t) = self.timer.borrow().as_ref() {
                t.stop();
            }
        }
    }

    fn arm_read_timer(&self) {
        if self.timer_mode.get() != TimerMode::Read {
            self.start_timer(TimerMode::Read, self.read_timeout.get());
        }
    }

    /// Bytes arrived: the read deadline moves out.
    fn note_activity(&self) {
        if self.timer_mode.get() == TimerMode::Read {
            if let Some(t) = self.timer.borrow().as_ref() {
                let _ = t.again();
            }
        }
    }

    fn on_timeout(&self) {
        match self.timer_mode.replace(TimerMode::Off) {
            TimerMode::Off => {}
            TimerMode::Connect => self.fail(ClientError::ConnectTimeout {
                target: self.target.clone(),
                timeout: self.connect_timeout.get(),
            }),
            TimerMode::Read => self.fail(ClientError::ReadTimeout {
                target: self.target.clone(),
                timeout: self.read_timeout.get(),
            }),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Receiving
    // -----------------------------------------------------------------------------------------

    fn on_data(&self, data: &[u8]) {
        match self.phase.get() {
            // Nothing was asked: a server that talks now (e.g. a 408 before closing an idle
            // connection) makes the connection unusable, but it is not this client's error.
            Phase::Idle | Phase::Connecting => {
                log::debug!(
                    "unsolicited {} bytes from {}; closing",
                    data.len(),
                    self.target
                );
                self.drop_socket();
            }
            Phase::Head => {
                self.note_activity();
                if !self.response_started.replace(true) && self.retry_kept.replace(false) {
                    release_outbuf(&mut self.outbuf.borrow_mut());
                }
                self.on_head_data(data);
            }
            Phase::Body => {
                self.note_activity();
                self.on_body_data(data);
            }
        }
    }

    fn on_head_data(&self, data: &[u8]) {
        // Taken out so that no borrow is held while slots run.
        let mut buf = std::mem::take(&mut *self.inbuf.borrow_mut());
        let incomplete = if buf.is_empty() {
            // The usual case, a head that arrives whole: parse it (and the body bytes after
            // it) straight from the read buffer; only an incomplete head is copied.
            let rest = self.process_heads(data);
            if let Some(from) = rest {
                buf.extend_from_slice(data.get(from..).unwrap_or_default());
            }
            rest.is_some()
        } else {
            buf.extend_from_slice(data);
            let rest = self.process_heads(&buf);
            if let Some(from) = rest {
                buf.drain(..from);
            }
            rest.is_some()
        };
        if !incomplete {
            buf.clear();
        }
        // A slot may have started a new exchange meanwhile, which found `inbuf` empty; put
        // the buffer (and its capacity) back unless that exchange already has data in it.
        let mut slot = self.inbuf.borrow_mut();
        if slot.is_empty() {
            *slot = buf;
        }
    }

    /// Parses response heads from `input` (which starts at a head) and hands what follows the
    /// final head to the body decoder. Returns `Some(offset)` when the head at `offset` is
    /// still incomplete, `None` when this exchange is done with `input` (head parsed, or
    /// failed, or ended by a slot).
    fn process_heads(&self, input: &[u8]) -> Option<usize> {
        let mut start = 0;
        loop {
            let parsed = {
                let mut head = self.response.borrow_mut();
                self.head_parser.borrow_mut().parse_response(
                    input.get(start..).unwrap_or_default(),
                    &RESPONSE_HEAD_LIMITS,
                    self.method.get(),
                    &mut head,
                )
            };
            match parsed {
                Ok(None) => return Some(start),
                Err(e) => {
                    self.fail(ClientError::InvalidResponse {
                        target: self.target.clone(),
                        reason: e.reason,
                    });
                    return None;
                }
                Ok(Some((head_len, kind))) => {
                    start += head_len;
                    let status = self.response.borrow().status();
                    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                        // 100 Continue and friends: the real response follows.
                        continue;
                    }
                    self.body.borrow_mut().reset(kind);
                    self.phase.set(Phase::Body);
                    let exchange = self.exchange.get();
                    {
                        let head = self.response.borrow();
                        self.headers.emit(|f| f(self, &head));
                    }
                    if self.exchange.get() == exchange && !self.closed.get() {
                        self.on_body_data(input.get(start..).unwrap_or_default());
                    }
                    return None;
                }
            }
        }
    }

    fn on_body_data(&self, input: &[u8]) {
        let exchange = self.exchange.get();
        let mut pos = 0;
        loop {
            let step = self
                .body
                .borrow_mut()
                .decode(input.get(pos..).unwrap_or_default());
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    self.fail(ClientError::InvalidResponse {
                        target: self.target.clone(),
                        reason: e.reason,
                    });
                    return;
                }
            };
            if let Some(range) = step.data.clone() {
                let chunk = input
                    .get(pos + range.start..pos + range.end)
                    .unwrap_or_default();
                if !chunk.is_empty() {
                    self.payload.emit(|f| f(self, chunk));
                    if self.exchange.get() != exchange || self.closed.get() {
                        return;
                    }
                }
            }
            pos += step.consumed;
            if step.done {
                self.finish_response(input.get(pos..).unwrap_or_default());
                return;
            }
            if step.consumed == 0 || pos >= input.len() {
                return;
            }
        }
    }

    /// The response is whole; `leftover` are bytes that followed it.
    fn finish_response(&self, leftover: &[u8]) {
        self.stop_timer();
        let (upgrade, server_keeps) = {
            let head = self.response.borrow();
            (
                head.status() == StatusCode::SWITCHING_PROTOCOLS,
                head.keep_alive(),
            )
        };
        let until_close = self.body.borrow().kind() == BodyKind::UntilClose;
        let streaming = self.body_out.get() == BodyOut::Streaming;
        if streaming {
            self.body_out.set(BodyOut::Cut);
        }
        let reusable = !upgrade
            && server_keeps
            && self.request_keep_alive.get()
            && !until_close
            && !streaming
            && leftover.is_empty();
        if upgrade {
            let sock = self.socket.borrow_mut().take();
            self.link.borrow_mut().take();
            if let Some(sock) = sock {
                *self.upgraded.borrow_mut() = Some(UpgradedSocket {
                    socket: sock,
                    buffered: leftover.to_vec(),
                });
            }
        } else if !reusable {
            if !leftover.is_empty() {
                log::debug!(
                    "{} sent {} bytes after the response; not reusing the connection",
                    self.target,
                    leftover.len()
                );
            }
            self.drop_socket();
        }
        self.phase.set(Phase::Idle);
        release_outbuf(&mut self.outbuf.borrow_mut());
        self.retry_kept.set(false);
        self.complete.emit(|f| f(self));
        let untaken = self.upgraded.borrow_mut().take();
        if let Some(up) = untaken {
            up.socket.close();
        }
    }

    fn on_eof(&self) {
        match self.phase.get() {
            Phase::Idle => self.drop_socket(),
            // TLS reports an EOF during the handshake through its handshake callback.
            Phase::Connecting => {}
            Phase::Head => {
                if !self.try_resend() {
                    let detail = if self.response_started.get() {
                        "in the middle of the response head"
                    } else {
                        "before sending a response"
                    };
                    self.fail(ClientError::ConnectionClosed {
                        target: self.target.clone(),
                        detail,
                    });
                }
            }
            Phase::Body => {
                let end = self.body.borrow_mut().finish_on_eof();
                match end {
                    Ok(()) => {
                        self.drop_socket();
                        self.finish_response(&[]);
                    }
                    Err(e) => {
                        let detail = match self.body.borrow().kind() {
                            BodyKind::Length(_) => {
                                "before the end of the body (Content-Length not reached)"
                            }
                            BodyKind::Chunked => "before the end of the chunked body",
                            _ => e.reason,
                        };
                        self.fail(ClientError::ConnectionClosed {
                            target: self.target.clone(),
                            detail,
                        })
                    }
                }
            }
        }
    }

    /// The socket closed by itself (error, or a graceful close finished).
    fn on_socket_close(&self, err: Option<UvError>) {
        match self.phase.get() {
            Phase::Idle => self.drop_socket(),
            Phase::Connecting => {}
            Phase::Head if self.try_resend() => {}
            Phase::Head | Phase::Body => match err {
                // A TLS failure after the handshake (e.g. a TLS 1.3 server rejecting our
                // certificate with an alert) is still a TLS error, not an I/O one.
                Some(e) => match self.socket_tls_failure() {
                    Some(error) => self.fail(ClientError::Tls {
                        target: self.target.clone(),
                        error,
                    }),
                    None => self.fail(ClientError::Io(e)),
                },
                None => self.fail(ClientError::ConnectionClosed {
                    target: self.target.clone(),
                    detail: "before the response was complete",
                }),
            },
        }
    }

    fn on_drain(&self) {
        self.emit_drain_if_owed();
    }

    fn socket_tls_failure(&self) -> Option<crate::net::tls::TlsError> {
        self.socket.borrow().as_ref().and_then(|s| s.tls_failure())
    }

    /// A reused connection that the server had closed (the race between its idle timeout and
    /// our request) fails before any response byte: resend a kept idempotent request once on
    /// a new connection.
    fn try_resend(&self) -> bool {
        if !(self.reused.get() && self.retry_kept.get() && !self.response_started.get()) {
            return false;
        }
        log::debug!("{} closed a reused connection; resending", self.target);
        self.drop_socket();
        self.reused.set(false);
        self.phase.set(Phase::Connecting);
        self.open_connection();
        true
    }

    // -----------------------------------------------------------------------------------------
    // Ending
    // -----------------------------------------------------------------------------------------

    fn drop_socket(&self) {
        let sock = self.socket.borrow_mut().take();
        if let Some(sock) = sock {
            sock.close();
        }
        self.link.borrow_mut().take();
    }

    /// Reports `err` once through `close` and releases everything.
    fn fail(&self, err: ClientError) {
        if self.closed.replace(true) {
            return;
        }
        log::debug!("client {}: {err}", self.url);
        *self.error.borrow_mut() = Some(err.clone());
        self.teardown();
        self.close.emit(|f| f(self, Some(&err)));
    }

    /// Closes every handle (socket, pending connect, timer) and cancels a pending lookup.
    fn teardown(&self) {
        self.exchange.set(self.exchange.get().wrapping_add(1));
        self.attempt.set(self.attempt.get().wrapping_add(1));
        self.phase.set(Phase::Idle);
        if self.body_out.get() == BodyOut::Streaming {
            self.body_out.set(BodyOut::Cut);
        }
        if let Some(r) = self.resolving.borrow_mut().take() {
            r.cancel();
        }
        if let Some(tcp) = self.connecting.borrow_mut().take() {
            tcp.close();
        }
        self.drop_socket();
        let untaken = self.upgraded.borrow_mut().take();
        if let Some(up) = untaken {
            up.socket.close();
        }
        self.timer_mode.set(TimerMode::Off);
        // Dropping the timer closes its handle.
        let timer = self.timer.borrow_mut().take();
        drop(timer);
        release_outbuf(&mut self.outbuf.borrow_mut());
        self.retry_kept.set(false);
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        // Sockets and the timer close through their own Drop; a lookup would keep the loop
        // busy until it finished, so cancel it.
        if let Some(r) = self.resolving.get_mut().take() {
            r.cancel();
        }
    }
}

/// Empties the request buffer, releasing it if one big request made it large.
fn release_outbuf(out: &mut Vec<u8>) {
    if out.capacity() > OUTBUF_KEEP_CAPACITY {
        *out = Vec::new();
    } else {
        out.clear();
    }
}

/// Methods a client may resend automatically (RFC 9110 9.2.2).
fn is_idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

/// Writes the request line and fields. `Host` and `User-Agent` are added unless the request
/// has them; framing fields are the library's (any in the request are not sent).
fn encode_request_head(
    out: &mut Vec<u8>,
    req: &Request,
    host_header: &str,
    body: &OutBody<'_>,
) -> Result<(), ClientError> {
    let method = req.method_str();
    if !is_token(method.as_bytes()) {
        return Err(ClientError::InvalidRequest(format!(
            "method {method:?} is not a valid token"
        )));
    }
    let target = req.target();
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ClientError::InvalidRequest(format!(
            "request-target {target:?} is empty or has spaces, controls or non-ASCII bytes \
             (percent-encode them)"
        )));
    }
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.version().as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    let headers = req.headers();
    if !headers.contains("host") {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host_header.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains("user-agent") {
        out.extend_from_slice(b"User-Agent: uvhttp/");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        if !is_token(name.as_bytes()) {
            return Err(ClientError::InvalidRequest(format!(
                "header name {name:?} is not a valid token"
            )));
        }
        if !is_field_value(value) {
            return Err(ClientError::InvalidRequest(format!(
                "value of header {name:?} has control characters (CR, LF, NUL) or surrounding \
                 whitespace"
            )));
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match body {
        OutBody::Sized(data) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, data.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        OutBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        OutBody::None => {
            if matches!(req.method(), Method::Post | Method::Put | Method::Patch) {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: &Request, url: &str, body: OutBody<'_>) -> Result<String, ClientError> {
        let mut out = Vec::new();
        let host = Url::parse(url).unwrap().host_header();
        encode_request_head(&mut out, req, &host, &body)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn get_head_has_host_and_user_agent() {
        let req = Request::with("GET", "/a?b=1", Version::Http11);
        let h = head_of(&req, "http://example.com:8080/a?b=1", OutBody::None).unwrap();
        assert_eq!(
            h,
            format!(
                "GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: uvhttp/{}\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let h = head_of(&req, "https://[::1]/", OutBody::None).unwrap();
        assert!(h.contains("\r\nHost: [::1]\r\n"), "{h}");
    }

    #[test]
    fn framing_fields_are_the_librarys() {
        let mut req = Request::with("POST", "/echo", Version::Http11);
        req.headers_mut().append("Content-Length", "999");
        req.headers_mut().append("Transfer-Encoding", "gzip");
        req.headers_mut().append("Host", "override");
        req.headers_mut().append("User-Agent", "me");
        let h = head_of(&req, "http://h/", OutBody::Sized(b"hello")).unwrap();
        assert_eq!(
            h,
            "POST /echo HTTP/1.1\r\nHost: override\r\nUser-Agent: me\r\nContent-Length: 5\r\n\r\n"
        );
        let h = head_of(&req, "http://h/", OutBody::Chunked).unwrap();
        assert!(
            h.ends_with("User-Agent: me\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{h}"
        );
        let h = head_of(&req, "http://h/", OutBody::None).unwrap();
        assert!(h.ends_with("Content-Length: 0\r\n\r\n"), "{h}");
        let get = Request::with("GET", "/", Version::Http11);
        let h = head_of(&get, "http://h/", OutBody::None).unwrap();
        assert!(!h.contains("Content-Length"), "{h}");
    }

    #[test]
    fn injection_is_refused() {
        let mut req = Request::with("GET", "/", Version::Http11);
        req.headers_mut().append("X-Evil", "a\r\nInjected: yes");
        let e = head_of(&req, "http://h/", OutBody::None).unwrap_err();
        assert!(e.to_string().contains("X-Evil"), "{e}");

        let mut req = Request::with("GET", "/", Version::Http11);
        req.headers_mut().append("Bad Name", "x");
        assert!(matches!(
            head_of(&req, "http://h/", OutBody::None),
            Err(ClientError::InvalidRequest(_))
        ));

        let req = Request::with("GET", "/a b", Version::Http11);
        assert!(matches!(
            head_of(&req, "http://h/", OutBody::None),
            Err(ClientError::InvalidRequest(_))
        ));
        let req = Request::with("GE T", "/", Version::Http11);
        assert!(matches!(
            head_of(&req, "http://h/", OutBody::None),
            Err(ClientError::InvalidRequest(_))
        ));
    }

    #[test]
    fn bad_urls_are_reported() {
        let lp = crate::uv::OwnedLoop::new().unwrap();
        let e = ClientConnection::new(lp.handle(), "ftp://x/").unwrap_err();
        assert!(e.to_string().contains("unsupported URL scheme"), "{e}");
        let e = ClientConnection::new(lp.handle(), "example.com").unwrap_err();
        assert!(matches!(e, ClientError::Url(UrlError::MissingScheme)));
        lp.close().unwrap();
    }

    #[test]
    fn usage_errors_leave_the_connection_usable() {
        let lp = crate::uv::OwnedLoop::new().unwrap();
        let conn = ClientConnection::new(lp.handle(), "http://127.0.0.1:9/").unwrap();
        assert!(matches!(conn.finish_body(), Err(ClientError::Usage(_))));
        conn.request().add("X-Bad", "a\nb");
        assert!(matches!(conn.send(), Err(ClientError::InvalidRequest(_))));
        assert!(!conn.is_closed() && !conn.is_busy());
        conn.request().remove("X-Bad");
        conn.request().with(|r| r.set_version(Version::Http10));
        assert!(matches!(conn.send_chunk(b"x"), Err(ClientError::Usage(_))));
        conn.close();
        assert!(matches!(conn.send(), Err(ClientError::Closed)));
        lp.close().unwrap();
    }

    #[test]
    fn error_messages_read_well() {
        let e = ClientError::ReadTimeout {
            target: "localhost:80".into(),
            timeout: Duration::from_millis(250),
        };
        assert_eq!(
            e.to_string(),
            "no response from localhost:80 for 250 ms (read timeout)"
        );
        assert!(e.is_timeout());
        let e = ClientError::ConnectionClosed {
            target: "h:1".into(),
            detail: "before sending a response",
        };
        assert_eq!(
            e.to_string(),
            "h:1 closed the connection before sending a response"
        );
    }
}
