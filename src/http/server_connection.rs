//! `ServerConnection`: one request on a connection and its response, as the application sees it.
//!
//! icey's `ServerConnection` is the TCP connection itself, answered synchronously. Here a
//! connection can carry several requests at once (pipelining), each answered whenever the
//! application is ready, so the handle is per request: `request()` is *this* request and
//! `send()` writes *its* response. Responses reach the wire in request order: a response that
//! is not yet first in line is buffered until the ones before it are complete.
//!
//! The application gets [`ServerConnectionPtr`]s. Keeping one past the callback defers the
//! answer; when the last one is dropped without the response being finished, the library
//! answers `500` (or ends the body) and logs it, so no client is left hanging.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::bytes::short_eq;
use super::conn::ConnCore;
use super::encode::{
    chunk_size_line, encode_head, ConnectionHeader, Framing, CONTINUE_HEAD, LAST_CHUNK,
};
use super::headers::Headers;
use super::method::Method;
use super::request::{Request, Version};
use super::responder::ServerResponder;
use super::response::Response;
use super::status::StatusCode;
use crate::net::pool;
use crate::signal::{signal_signature, Signal};
use crate::uv::OwnedBuf;

/// A sized body up to this many bytes goes out in the same buffer as its head (one copy,
/// one buffer); larger bodies are queued on their own.
const INLINE_BODY_MAX: usize = 16 * 1024;

signal_signature!(
    (&ServerConnection),
    (&ServerConnection, &[u8]),
    (ServerConnectionPtr)
);

/// Signal of request body chunks: `(request, chunk)`, the chunk borrowed for the call.
pub type PayloadSignal = Signal<dyn FnMut(&ServerConnection, &[u8])>;
/// Signal about one request: `(request)`.
pub type RequestSignal = Signal<dyn FnMut(&ServerConnection)>;

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed (or the request was abandoned): nothing can be sent.
    ConnectionClosed,
    /// `send_header()` was already called for this response.
    HeadersAlreadySent,
    /// The response is already complete.
    ResponseComplete,
    /// More body bytes than the declared `Content-Length`.
    BodyTooLong {
        /// The declared length.
        declared: u64,
        /// Bytes that would have been sent in total.
        attempted: u64,
    },
    /// The response ended with fewer bytes than its `Content-Length`: the connection is closed
    /// so the client sees the truncation instead of waiting forever.
    BodyIncomplete {
        /// The declared length.
        declared: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// This status (1xx, 204, 304) cannot have a body.
    BodyNotAllowed(StatusCode),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::ConnectionClosed => f.write_str("the connection is closed"),
            SendError::HeadersAlreadySent => f.write_str("the response head was already sent"),
            SendError::ResponseComplete => f.write_str("the response is already complete"),
            SendError::BodyTooLong {
                declared,
                attempted,
            } => write!(
                f,
                "body longer than its Content-Length ({attempted} > {declared} bytes)"
            ),
            SendError::BodyIncomplete { declared, sent } => write!(
                f,
                "response ended after {sent} of {declared} Content-Length bytes; connection closed"
            ),
            SendError::BodyNotAllowed(s) => write!(f, "a {s} response cannot have a body"),
        }
    }
}

impl std::error::Error for SendError {}

/// What a successful send says about the connection's write queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Below the high-water mark: keep sending.
    Continue,
    /// At or above the high-water mark: a streaming producer should wait for the `drain`
    /// signal before sending more (sending still works; it only grows the queue).
    Pause,
}

#[derive(Debug, Default)]
struct Output {
    framing: Option<Framing>,
    /// Body bytes sent so far.
    sent: u64,
    /// Output produced while an earlier response is still being written.
    buffered: Option<VecDeque<OwnedBuf>>,
    buffered_bytes: usize,
}

/// Answers about a request head that dispatch and `respond()` would otherwise each work out
/// again from the fields (`Request::keep_alive` alone was asked three times per request).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestFacts {
    /// [`Request::keep_alive`].
    pub keep_alive: bool,
    /// [`Request::is_upgrade`].
    pub upgrade: bool,
    /// HTTP/1.1 and not `HEAD`: the head `respond_direct`'s cache stands for.
    pub plain_http11: bool,
}

#[cfg(test)]
thread_local! {
    /// Responses `respond_direct` wrote on this thread, so tests can tell which path ran.
    pub(crate) static DIRECT_RESPONSES: Cell<u32> = const { Cell::new(0) };
}

/// One request and its response. See the module docs.
pub struct ServerConnection {
    me: Weak<ServerConnection>,
    core: RefCell<Weak<ConnCore>>,
    request: RefCell<Request>,
    trailers: RefCell<Headers>,
    /// Frames this request's body while it arrives (reset per request; lives here so that
    /// pooled request objects, not idle connections, hold decoders).
    body_decoder: RefCell<super::body::BodyDecoder>,
    /// Scans this request's head while it arrives (it may take several reads).
    head_parser: RefCell<super::decode::HeadParser>,
    /// Read through [`resp`](Self::resp), except where no direct response can be pending.
    response: RefCell<Response>,
    /// `respond_direct` wrote a response without describing it in `response` (storing the
    /// content type as a header field cost more than the rest of the fast path): its status
    /// is here, its content type in `direct_type`, its length in `output`, until something
    /// looks at `response`. Almost nothing does after a whole response was written.
    direct_status: Cell<Option<StatusCode>>,
    direct_type: RefCell<String>,
    output: RefCell<Output>,
    /// Taken out while it runs (see `with_responder`). `Cell`s rather than `RefCell`s: they
    /// are only ever moved in and out whole, and a `Cell` tells "none" (every request without
    /// a factory) with one load instead of a borrow flag round trip.
    responder: Cell<Option<Box<dyn ServerResponder>>>,
    adapter: Cell<Option<Box<dyn super::adapter::ConnectionAdapter>>>,
    app_refs: Cell<usize>,
    /// First in line: writes go straight to the socket.
    is_head: Cell<bool>,
    headers_sent: Cell<bool>,
    complete: Cell<bool>,
    request_complete: Cell<bool>,
    /// The connection closes once this response is written.
    close_after: Cell<bool>,
    close_fired: Cell<bool>,
    /// `100 Continue` was sent for this request (it must go out at most once).
    continue_sent: Cell<bool>,
    /// `respond()` is writing a whole response: it finishes as soon as the head is out.
    responding: Cell<bool>,
    /// What the dispatch and the response ask of the request head, noted once when the head
    /// is complete (it does not change afterwards; see [`RequestFacts`]).
    facts: Cell<RequestFacts>,
    /// Chunks of the request body, borrowed for the call: icey's `Payload` signal.
    pub payload: PayloadSignal,
    /// The whole request (head, body, trailers) has arrived.
    pub request_complete_signal: RequestSignal,
    /// The connection closed while this request was outstanding: icey's `Close` signal.
    pub close: RequestSignal,
    /// The write queue drained below the low-water mark after a send returned
    /// [`Flow::Pause`]: a streaming producer may continue. A producer attached here keeps the
    /// response open without holding a [`ServerConnectionPtr`] (it will finish it).
    pub drain: RequestSignal,
}

impl fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = self.request.borrow();
        write!(
            f,
            "ServerConnection({} {}, headers_sent={}, complete={})",
            req.method_str(),
            req.target(),
            self.headers_sent.get(),
            self.complete.get()
        )
    }
}

/// The application's handle to a [`ServerConnection`]: icey's `ServerConnection::Ptr`.
///
/// Cloning it and keeping a clone past the callback defers the response. When the last handle
/// is dropped and the response is unfinished, the library finishes it (500 if nothing was sent)
/// and logs an error.
pub struct ServerConnectionPtr(Rc<ServerConnection>);

impl ServerConnectionPtr {
    pub(crate) fn new(ex: Rc<ServerConnection>) -> Self {
        ex.app_refs.set(ex.app_refs.get() + 1);
        ServerConnectionPtr(ex)
    }
}

impl Clone for ServerConnectionPtr {
    fn clone(&self) -> Self {
        ServerConnectionPtr::new(self.0.clone())
    }
}

impl Drop for ServerConnectionPtr {
    fn drop(&mut self) {
        self.0.release_library_hold();
    }
}

impl std::ops::Deref for ServerConnectionPtr {
    type Target = ServerConnection;
    fn deref(&self) -> &ServerConnection {
        &self.0
    }
}

impl fmt::Debug for ServerConnectionPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Lets a response setter chain be written as in icey: `conn.response().set_status(..)`.
/// Each call borrows the response only for its own duration, so holding this value never
/// blocks `send_header()`.
pub struct ResponseRef<'a>(&'a ServerConnection);

impl ResponseRef<'_> {
    /// See [`Response::set_status`].
    pub fn set_status(&self, status: StatusCode) -> &Self {
        self.0.resp().borrow_mut().set_status(status);
        self
    }
    /// See [`Response::set_reason`].
    pub fn set_reason(&self, reason: &str) -> &Self {
        self.0.resp().borrow_mut().set_reason(reason);
        self
    }
    /// See [`Response::set_content_type`].
    pub fn set_content_type(&self, content_type: &str) -> &Self {
        self.0.resp().borrow_mut().set_content_type(content_type);
        self
    }
    /// See [`Response::set_content_length`].
    pub fn set_content_length(&self, len: u64) -> &Self {
        self.0.resp().borrow_mut().set_content_length(len);
        self
    }
    /// See [`Response::set_chunked_transfer_encoding`].
    pub fn set_chunked_transfer_encoding(&self, chunked: bool) -> &Self {
        self.0
            .resp()
            .borrow_mut()
            .set_chunked_transfer_encoding(chunked);
        self
    }
    /// See [`Response::set_keep_alive`].
    pub fn set_keep_alive(&self, keep_alive: bool) -> &Self {
        self.0.resp().borrow_mut().set_keep_alive(keep_alive);
        self
    }
    /// See [`Response::set`]. Returns false (and sets nothing) for an invalid field.
    pub fn set(&self, name: &str, value: &str) -> bool {
        self.0.resp().borrow_mut().set(name, value)
    }
    /// See [`Response::add`].
    pub fn add(&self, name: &str, value: &str) -> bool {
        self.0.resp().borrow_mut().add(name, value)
    }
    /// The status set so far.
    pub fn status(&self) -> StatusCode {
        self.0.resp().borrow().status()
    }
    /// A copy of a field's first value.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.resp().borrow().get(name).map(str::to_owned)
    }
    /// Runs `f` with the response itself, for anything not covered above.
    pub fn with<R>(&self, f: impl FnOnce(&mut Response) -> R) -> R {
        f(&mut self.0.resp().borrow_mut())
    }
}

impl ServerConnection {
    pub(crate) fn new_pooled() -> Rc<ServerConnection> {
        Rc::new_cyclic(|me| ServerConnection {
            me: me.clone(),
            core: RefCell::new(Weak::new()),
            request: RefCell::new(Request::new()),
            trailers: RefCell::new(Headers::new()),
            head_parser: RefCell::new(super::decode::HeadParser::new()),
            body_decoder: RefCell::new(super::body::BodyDecoder::new(
                super::decode::BodyKind::None,
                super::body::BodyLimits::default(),
            )),
            response: RefCell::new(Response::new()),
            direct_status: Cell::new(None),
            direct_type: RefCell::new(String::new()),
            output: RefCell::new(Output::default()),
            responder: Cell::new(None),
            adapter: Cell::new(None),
            app_refs: Cell::new(0),
            is_head: Cell::new(false),
            headers_sent: Cell::new(false),
            complete: Cell::new(false),
            request_complete: Cell::new(false),
            close_after: Cell::new(false),
            close_fired: Cell::new(false),
            continue_sent: Cell::new(false),
            responding: Cell::new(false),
            facts: Cell::new(RequestFacts::default()),
            payload: Signal::new(),
            request_complete_signal: Signal::new(),
            close: Signal::new(),
            drain: Signal::new(),
        })
    }

    /// Makes a pooled object ready for its next request. Subscriptions of the previous user are
    /// dropped, and a signal someone kept a clone of is replaced, so nothing leaks across.
    #[inline(always)]
    pub(crate) fn reset(&self) {
        // The tie to the connection stays (`attach_core` replaces it): a pooled object is
        // unreachable by the application, and mostly serves the same connection next. What
        // it keeps is the connection's allocation, not the connection (a `Weak`).
        // The request is left as it is: the next head parsed into it replaces all of it (and
        // `reject` clears it for its answer), so clearing it here would be done twice.
        self.head_parser.borrow_mut().reset();
        self.trailers.borrow_mut().clear();
        if self.direct_status.take().is_some() {
            // `respond_direct` wrote without describing the response, having found it
            // untouched but for the status: that is all there is to undo.
            self.response.borrow_mut().set_status(StatusCode::OK);
        } else {
            self.response.borrow_mut().reset();
        }
        {
            let mut out = self.output.borrow_mut();
            let buffered = out.buffered.take();
            *out = Output::default();
            if let Some(q) = buffered {
                pool::give_queue(q);
            }
        }
        // Taken out before they are dropped: their Drop may call back into this object.
        drop(self.responder.take());
        drop(self.adapter.take());
        self.app_refs.set(0);
        for flag in [
            &self.is_head,
            &self.headers_sent,
            &self.complete,
            &self.request_complete,
            &self.close_after,
            &self.close_fired,
            &self.continue_sent,
            &self.responding,
        ] {
            flag.set(false);
        }
        self.payload.renew();
        self.request_complete_signal.renew();
        self.close.renew();
        self.drain.renew();
    }

    // ---- accessors ----------------------------------------------------------------------

    /// The request (head; the body arrives through [`ServerConnection::payload`]).
    #[inline]
    pub fn request(&self) -> Ref<'_, Request> {
        self.request.borrow()
    }

    /// Trailer fields of a chunked request body (empty until the request is complete).
    pub fn trailers(&self) -> Ref<'_, Headers> {
        self.trailers.borrow()
    }

    /// Empties the request, for an answer to a request that could not be read.
    pub(crate) fn clear_request(&self) {
        self.request.borrow_mut().clear();
    }

    /// Parses the head in `buf` into this request (see [`super::decode::HeadParser`]).
    #[inline]
    pub(crate) fn parse_head(
        &self,
        buf: &[u8],
        limits: &super::decode::HeadLimits,
    ) -> Result<Option<(usize, super::decode::BodyKind)>, super::decode::HttpError> {
        let mut req = self.request.borrow_mut();
        self.head_parser
            .borrow_mut()
            .parse_request(buf, limits, &mut req)
    }

    /// Works out and keeps the [`RequestFacts`] of the head now in `request`. Called once the
    /// head is complete, before anything reads the facts. Inline: called as a function it
    /// saved and restored six registers around a dozen loads (23 instructions per request).
    #[inline(always)]
    pub(crate) fn note_request_facts(&self) -> RequestFacts {
        let req = self.request.borrow();
        let facts = RequestFacts {
            keep_alive: req.keep_alive(),
            upgrade: req.is_upgrade(),
            plain_http11: req.version() == Version::Http11 && req.method() != Method::Head,
        };
        self.facts.set(facts);
        facts
    }

    /// The facts noted by [`note_request_facts`](Self::note_request_facts).
    pub(crate) fn request_facts(&self) -> RequestFacts {
        self.facts.get()
    }

    pub(crate) fn body_decoder(&self) -> std::cell::RefMut<'_, super::body::BodyDecoder> {
        self.body_decoder.borrow_mut()
    }

    pub(crate) fn start_body(
        &self,
        kind: super::decode::BodyKind,
        limits: super::body::BodyLimits,
    ) {
        let mut d = self.body_decoder.borrow_mut();
        if d.limits() != limits {
            *d = super::body::BodyDecoder::new(kind, limits);
        } else {
            d.reset(kind);
        }
    }

    /// Copies the trailer fields the decoder collected into the request's trailers.
    pub(crate) fn take_trailers_from_decoder(&self) {
        let d = self.body_decoder.borrow();
        let mut mine = self.trailers.borrow_mut();
        mine.clear();
        for (name, value) in d.trailers().iter() {
            mine.append_bytes(name.as_bytes(), value);
        }
    }

    /// The response to fill in before `send_header()`.
    pub fn response(&self) -> ResponseRef<'_> {
        ResponseRef(self)
    }

    /// Another handle to this request: keep it to answer later (on the loop thread).
    pub fn defer(&self) -> ServerConnectionPtr {
        ServerConnectionPtr::new(self.me.upgrade().expect("a live ServerConnection"))
    }

    /// A `Send` handle to this request's response, for answering from another thread
    /// (posted back to the loop through `uv_async`).
    pub fn remote(&self) -> Result<super::remote::RemoteConnection, SendError> {
        let core = self.live_core()?;
        let remote = core.remote().ok_or(SendError::ConnectionClosed)?;
        Ok(super::remote::RemoteConnection::register(
            self.defer(),
            remote,
        ))
    }

    /// The loop this request is served on (for timers that answer it later).
    pub fn event_loop(&self) -> Option<crate::uv::Loop> {
        self.core().map(|c| c.event_loop())
    }

    /// The client's address, while connected.
    pub fn peer_address(&self) -> Option<SocketAddr> {
        self.core().and_then(|c| c.peer_addr())
    }

    /// True while the connection is open.
    pub fn is_connected(&self) -> bool {
        self.core().map(|c| !c.is_closed()).unwrap_or(false)
    }

    /// True once `send_header()` has run.
    pub fn headers_sent(&self) -> bool {
        self.headers_sent.get()
    }

    /// True once the response is complete (all of it produced; it may still be in the queue).
    pub fn is_complete(&self) -> bool {
        self.complete.get()
    }

    /// True once the whole request (with body) has arrived.
    pub fn is_request_complete(&self) -> bool {
        self.request_complete.get()
    }

    // ---- sending ------------------------------------------------------------------------

    /// Sends the response head. Chooses the body framing: the `Content-Length` if set, else
    /// chunked (HTTP/1.1) or until-close (HTTP/1.0); none for HEAD, 1xx, 204 and 304.
    pub fn send_header(&self) -> Result<(), SendError> {
        self.send_head(&[]).map(|_| ())
    }

    /// Sends the head. `body`, when it is exactly the declared `Content-Length` and small, goes
    /// out in the same write (the head is encoded straight into the socket's buffer, the body
    /// copied behind it) and finishes the response; returns whether it did.
    fn send_head(&self, body: &[u8]) -> Result<bool, SendError> {
        let core = self.live_core()?;
        if self.headers_sent.get() {
            return Err(SendError::HeadersAlreadySent);
        }
        self.send_head_on(&core, body)
    }

    /// [`send_head`](Self::send_head) once the caller checked the connection and that no head
    /// went out yet.
    fn send_head_on(&self, core: &ConnCore, body: &[u8]) -> Result<bool, SendError> {
        let (framing, connection) = self.decide_framing(core);
        core.nagle_off_for(framing, connection);
        // Inside `respond` the socket is corked already.
        let corked = !self.responding.get() && core.socket_cork();
        if self.needs_continue_before_head(framing) {
            self.continue_sent.set(true);
            self.emit_static(core, CONTINUE_HEAD);
        }
        let inline = !body.is_empty()
            && body.len() <= INLINE_BODY_MAX
            && framing == Framing::Length(body.len() as u64);
        let now = core.now();
        let mut fill = |out: &mut Vec<u8>| {
            encode_head(
                out,
                core.head_cache(),
                &self.resp().borrow(),
                framing,
                connection,
                now,
            );
            if inline {
                out.extend_from_slice(body);
            }
        };
        if self.is_head.get() {
            core.write_with(&mut fill);
        } else {
            let mut buf = pool::take_bytes();
            fill(&mut buf);
            self.buffer(OwnedBuf::Vec(buf));
        }
        self.headers_sent.set(true);
        {
            let mut o = self.output.borrow_mut();
            o.framing = Some(framing);
            if inline {
                o.sent = body.len() as u64;
            }
        }
        if inline || framing == Framing::None || framing == Framing::Length(0) {
            self.finish(core);
        }
        core.socket_uncork_if(corked);
        Ok(inline)
    }

    fn decide_framing(&self, core: &ConnCore) -> (Framing, ConnectionHeader) {
        let req = self.request.borrow();
        let resp = self.resp().borrow();
        let status = resp.status();
        let http10 = req.version() == Version::Http10;
        let framing = if req.method() == Method::Head || !status.allows_body() {
            Framing::None
        } else if let Some(n) = resp.content_length() {
            Framing::Length(n)
        } else if http10 {
            Framing::UntilClose
        } else {
            Framing::Chunked
        };
        // A response that is over before the request body was read leaves the connection
        // unusable: `finish` closes it (the rest of the body is not read, and after
        // `Expect: 100-continue` the client may never send it). The head must say so
        // (RFC 9110 10.1.1, RFC 9112 9.6).
        let ends_before_body = !self.request_complete.get()
            && (self.responding.get() || matches!(framing, Framing::None | Framing::Length(0)));
        let keep = self.facts.get().keep_alive
            && resp.keep_alive() != Some(false)
            && !core.closes_after(self)
            && framing != Framing::UntilClose
            && !ends_before_body;
        let connection = if !keep {
            self.close_after.set(true);
            ConnectionHeader::Close
        } else if http10 {
            ConnectionHeader::KeepAlive
        } else {
            ConnectionHeader::Omit
        };
        (framing, connection)
    }

    /// Sends a copy of `data` as (part of) the body, sending the head first if needed.
    pub fn send(&self, data: &[u8]) -> Result<Flow, SendError> {
        self.send_body(BodyBytes::Borrowed(data))
    }

    /// Sends `buf` as (part of) the body without copying it: a `Vec<u8>`, a `&'static [u8]`,
    /// or shared bytes (`Arc<...>`) that many responses can reference at once.
    pub fn send_owned(&self, buf: impl Into<OwnedBuf>) -> Result<Flow, SendError> {
        self.send_body(BodyBytes::Owned(buf.into()))
    }

    fn send_body(&self, data: BodyBytes<'_>) -> Result<Flow, SendError> {
        let core = self.live_core()?;
        if self.output.borrow().framing == Some(Framing::None) {
            // The head said there is no body, and the response finished with it. The answer
            // depends on why: a HEAD body is computed and dropped however many sends it takes
            // (so GET code serves HEAD unchanged); 204/304/1xx cannot have one.
            return self.send_without_body(&core);
        }
        if self.complete.get() {
            return Err(SendError::ResponseComplete);
        }
        if !self.headers_sent.get() {
            self.send_header()?;
            if self.complete.get() && data.len() == 0 {
                return Ok(self.flow(&core));
            }
        }
        let framing = self.output.borrow().framing.expect("head sent");
        let len = data.len() as u64;
        match framing {
            Framing::None => return self.send_without_body(&core),
            Framing::Length(declared) => {
                let sent = self.output.borrow().sent;
                if sent + len > declared {
                    return Err(SendError::BodyTooLong {
                        declared,
                        attempted: sent + len,
                    });
                }
                if self.complete.get() {
                    return Err(SendError::ResponseComplete);
                }
                let corked = core.socket_cork();
                self.emit_body(&core, data);
                self.output.borrow_mut().sent = sent + len;
                if sent + len == declared {
                    self.finish(&core);
                }
                core.socket_uncork_if(corked);
            }
            Framing::Chunked => {
                if len > 0 {
                    let mut line = [0u8; 20];
                    let corked = core.socket_cork();
                    self.emit_copy(&core, chunk_size_line(len as usize, &mut line));
                    self.emit_body(&core, data);
                    self.emit_copy(&core, b"\r\n");
                    core.socket_uncork_if(corked);
                    self.output.borrow_mut().sent += len;
                }
            }
            Framing::UntilClose => {
                self.emit_body(&core, data);
                self.output.borrow_mut().sent += len;
            }
        }
        Ok(self.flow(&core))
    }

    /// A send on a response whose head allows no body (see `send_body`).
    fn send_without_body(&self, core: &ConnCore) -> Result<Flow, SendError> {
        if self.request.borrow().method() == Method::Head {
            // HEAD: the body is computed by the application but never sent.
            return Ok(self.flow(core));
        }
        Err(SendError::BodyNotAllowed(self.resp().borrow().status()))
    }

    /// Whether `100 Continue` must precede the head being sent now: the client asked for it,
    /// has not been invited to send the body yet, and the application starts a successful
    /// response that is not over at once, i.e. it means to read the body (a streaming echo).
    /// Without the 100 a client waiting for it might never send the body. Refusals (non-2xx)
    /// and responses that end at once go out without it: the body is not wanted then.
    fn needs_continue_before_head(&self, framing: Framing) -> bool {
        !self.request_complete.get()
            && !self.continue_sent.get()
            && !self.responding.get()
            && !matches!(framing, Framing::None | Framing::Length(0))
            && self.resp().borrow().status().is_success()
            && self.request.borrow().expects_continue()
    }

    /// Marks `100 Continue` as sent; returns false if it already was.
    pub(crate) fn claim_continue(&self) -> bool {
        !self.continue_sent.replace(true)
    }

    /// Finishes the response: the last chunk for chunked bodies, nothing more for sized ones.
    /// Sends an empty `Content-Length: 0` response if nothing was sent yet. A sized body that
    /// is short closes the connection (the client must not wait for bytes that never come).
    ///
    /// A response finished before its request body was fully received (answering at headers
    /// time, e.g. 413) says `Connection: close` and the connection closes after it: requests
    /// pipelined behind it are not answered.
    pub fn complete(&self) -> Result<(), SendError> {
        let core = self.live_core()?;
        if self.complete.get() {
            return Ok(());
        }
        if !self.headers_sent.get() {
            {
                let mut r = self.resp().borrow_mut();
                if r.content_length().is_none()
                    && !r.is_chunked_transfer_encoding()
                    && r.status().allows_body()
                {
                    r.set_content_length(0);
                }
            }
            self.send_header()?;
            if self.complete.get() {
                return Ok(());
            }
        }
        let (framing, sent) = {
            let o = self.output.borrow();
            (o.framing.expect("head sent"), o.sent)
        };
        match framing {
            Framing::Chunked => {
                let corked = core.socket_cork();
                self.emit_static(&core, LAST_CHUNK);
                self.finish(&core);
                core.socket_uncork_if(corked);
                Ok(())
            }
            Framing::UntilClose => {
                self.close_after.set(true);
                self.finish(&core);
                Ok(())
            }
            Framing::Length(declared) if sent < declared => {
                log::warn!(
                    "response to {} {} ended after {sent} of {declared} bytes; closing the connection",
                    self.request.borrow().method_str(),
                    self.request.borrow().path()
                );
                self.complete.set(true);
                core.abort();
                Err(SendError::BodyIncomplete { declared, sent })
            }
            Framing::Length(_) | Framing::None => {
                self.finish(&core);
                Ok(())
            }
        }
    }

    /// Finishes a chunked response with trailer fields (RFC 9112 7.1.2). For other framings
    /// the trailers cannot be sent and this is the same as [`ServerConnection::complete`].
    pub fn complete_with_trailers(&self, trailers: &[(&str, &str)]) -> Result<(), SendError> {
        let core = self.live_core()?;
        let chunked = self.output.borrow().framing == Some(Framing::Chunked)
            || (!self.headers_sent.get() && self.resp().borrow().is_chunked_transfer_encoding());
        if !chunked || self.complete.get() {
            return self.complete();
        }
        if !self.headers_sent.get() {
            self.send_header()?;
        }
        let mut tail = pool::take_bytes();
        tail.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            if super::method::is_token(name.as_bytes())
                && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            {
                tail.extend_from_slice(name.as_bytes());
                tail.extend_from_slice(b": ");
                tail.extend_from_slice(value.as_bytes());
                tail.extend_from_slice(b"\r\n");
            }
        }
        tail.extend_from_slice(b"\r\n");
        let corked = core.socket_cork();
        self.emit(&core, OwnedBuf::Vec(tail));
        self.finish(&core);
        core.socket_uncork_if(corked);
        Ok(())
    }

    /// Sends a whole response in one call: status, `Content-Type`, `Content-Length` and body
    /// (for 1xx, 204 and 304, which have no body, only the status and type). As for
    /// [`ServerConnection::complete`], answering before the request body arrived closes the
    /// connection after this response.
    pub fn respond(
        &self,
        status: StatusCode,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), SendError> {
        let core = self.live_core()?;
        if self.headers_sent.get() {
            return Err(SendError::HeadersAlreadySent);
        }
        if self.respond_direct(&core, status, content_type, body) {
            return Ok(());
        }
        {
            let mut r = self.resp().borrow_mut();
            r.set_status(status);
            if !content_type.is_empty() {
                r.set_content_type(content_type);
            }
            // 1xx, 204 and 304 carry no body; a 304 may only state the length a 200 would
            // have had (RFC 9110 8.6), which `body` is not: leave it to the application.
            if status.allows_body() {
                r.set_content_length(body.len() as u64);
            }
        }
        let corked = core.socket_cork();
        self.responding.set(true);
        let result = self.send_head_on(&core, body).and_then(|inline| {
            if !inline && !body.is_empty() && !self.complete.get() {
                self.send(body).map(|_| ())
            } else {
                Ok(())
            }
        });
        self.responding.set(false);
        core.socket_uncork_if(corked);
        result
    }

    /// `respond()` in the case that dominates busy servers, without the general path's
    /// decisions: this response is first in line, the request was read whole, it is an
    /// HTTP/1.1 keep-alive request other than HEAD, the application set nothing on the
    /// response, the body is small, and the server's head cache holds the head. Every one of
    /// those facts settles a decision `send_head_on` would make (framing by length, no
    /// `Connection` field, no `100 Continue`, the body inline), so the bytes are the ones the
    /// general path writes, and the response is left in the same state. Returns false, having
    /// done nothing, when any fact does not hold.
    fn respond_direct(
        &self,
        core: &ConnCore,
        status: StatusCode,
        content_type: &str,
        body: &[u8],
    ) -> bool {
        if !self.is_head.get()
            || !self.request_complete.get()
            || self.close_after.get()
            || body.len() > INLINE_BODY_MAX
            || !status.allows_body()
            // No content type means no field at all, which the cache does not stand for.
            || content_type.is_empty()
        {
            return false;
        }
        let facts = self.facts.get();
        if !facts.plain_http11 || !facts.keep_alive {
            return false;
        }
        if !self.resp().borrow().is_untouched() || core.closes_after(self) {
            return false;
        }
        let now = core.now();
        let len = body.len() as u64;
        // Nagle is off already: this is a keep-alive request, so the connection's first
        // request was one too, and dispatching it turned Nagle off (`start_request`).
        let corked = core.socket_cork();
        let written = {
            let mut cache = core.head_cache().borrow_mut();
            match cache.whole_head(status, content_type.as_bytes(), len, now) {
                Some(head) => {
                    core.write_pair(head, body);
                    true
                }
                None => false,
            }
        };
        if !written {
            core.socket_uncork_if(corked);
            return false;
        }
        // Described in `response` only if something looks (see `direct_status`).
        self.direct_status.set(Some(status));
        {
            // A pooled object mostly answers as it did last time: then there is nothing to copy.
            let mut ty = self.direct_type.borrow_mut();
            if !short_eq(ty.as_bytes(), content_type.as_bytes()) {
                ty.clear();
                ty.push_str(content_type);
            }
        }
        self.headers_sent.set(true);
        {
            let mut o = self.output.borrow_mut();
            o.framing = Some(Framing::Length(len));
            o.sent = len;
        }
        self.finish(core);
        core.socket_uncork_if(corked);
        #[cfg(test)]
        DIRECT_RESPONSES.with(|n| n.set(n.get() + 1));
        true
    }

    /// icey's `close()`: finishes this response (what was written is flushed, never
    /// truncated), then closes the connection. Requests pipelined after this one are dropped.
    /// Without any response sent, the connection simply closes after earlier responses.
    pub fn close(&self) {
        let Some(core) = self.core() else { return };
        if core.is_closed() {
            return;
        }
        self.close_after.set(true);
        if self.complete.get() {
            core.close_when_drained();
            return;
        }
        if self.headers_sent.get() {
            let _ = self.complete();
        } else {
            // No response at all: nothing goes out for this request.
            self.finish(&core);
        }
    }

    /// Replaces the connection's adapter: once this request's `101 Switching Protocols`
    /// response has been written, the connection stops speaking HTTP and every byte goes to
    /// `adapter` (icey's `replaceAdapter`; the WebSocket module uses it). Call it before or
    /// after sending the `101`, but before the response completes; with any other status the
    /// adapter is dropped and the connection stays HTTP.
    pub fn replace_adapter(
        &self,
        adapter: Box<dyn super::adapter::ConnectionAdapter>,
    ) -> Result<(), SendError> {
        self.live_core()?;
        if self.complete.get() {
            return Err(SendError::ResponseComplete);
        }
        self.adapter.set(Some(adapter));
        Ok(())
    }

    /// Nothing is left to do once this response is off the line: the connection is not to
    /// close after it, and it neither is nor may become a protocol switch.
    #[inline]
    pub(crate) fn retires_plainly(&self) -> bool {
        if self.close_after.get() || self.facts.get().upgrade {
            return false;
        }
        let adapter = self.adapter.take();
        let none = adapter.is_none();
        self.adapter.set(adapter);
        none
    }

    pub(crate) fn take_adapter(&self) -> Option<Box<dyn super::adapter::ConnectionAdapter>> {
        let adapter = self.adapter.take()?;
        if self.resp().borrow().status() == StatusCode::SWITCHING_PROTOCOLS
            && self.headers_sent.get()
        {
            Some(adapter)
        } else {
            None
        }
    }

    /// Stops reading from the client until [`ServerConnection::resume_reading`]: flow control
    /// for an application that consumes the request body slower than it arrives.
    pub fn pause_reading(&self) {
        if let Some(core) = self.core() {
            core.app_pause_reading(true);
        }
    }

    /// Resumes reading after [`ServerConnection::pause_reading`].
    pub fn resume_reading(&self) {
        if let Some(core) = self.core() {
            core.app_pause_reading(false);
        }
    }

    // ---- internals used by the connection ------------------------------------------------

    /// Ties this request object to its connection. A pooled object keeps the last tie (see
    /// `reset`): when it serves the same connection again, as it mostly does, there is nothing
    /// to change.
    pub(crate) fn attach_core(&self, core: &Weak<ConnCore>) {
        let mut mine = self.core.borrow_mut();
        if !Weak::ptr_eq(&mine, core) {
            *mine = core.clone();
        }
    }

    pub(crate) fn core(&self) -> Option<Rc<ConnCore>> {
        self.core.borrow().upgrade()
    }

    /// The response, first described in full if `respond_direct` left that for later: whoever
    /// reads it sees what the general path would have left.
    #[inline]
    fn resp(&self) -> &RefCell<Response> {
        if self.direct_status.get().is_some() {
            self.describe_direct_response();
        }
        &self.response
    }

    #[cold]
    fn describe_direct_response(&self) {
        let Some(status) = self.direct_status.take() else {
            return;
        };
        let len = self.output.borrow().sent;
        let mut r = self.response.borrow_mut();
        r.set_status(status);
        r.set_clean_content_type(&self.direct_type.borrow());
        r.set_content_length(len);
    }

    fn live_core(&self) -> Result<Rc<ConnCore>, SendError> {
        match self.core() {
            Some(c) if !c.is_closed() && !self.close_fired.get() => Ok(c),
            _ => Err(SendError::ConnectionClosed),
        }
    }

    fn flow(&self, core: &ConnCore) -> Flow {
        let buffered = self.output.borrow().buffered_bytes;
        if core.over_high_water(buffered) {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    fn emit_body(&self, core: &ConnCore, data: BodyBytes<'_>) {
        match data {
            BodyBytes::Borrowed(d) => self.emit_copy(core, d),
            BodyBytes::Owned(b) => self.emit(core, b),
        }
    }

    fn emit_copy(&self, core: &ConnCore, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.is_head.get() {
            core.write(data);
        } else {
            // Waiting behind an earlier response: coalesce small copies into the last
            // buffered vector instead of holding a pooled buffer per piece.
            let mut o = self.output.borrow_mut();
            o.buffered_bytes += data.len();
            let q = o.buffered.get_or_insert_with(pool::take_queue);
            if let Some(OwnedBuf::Vec(last)) = q.back_mut() {
                if last.len() + data.len() <= last.capacity().max(16 * 1024) {
                    last.extend_from_slice(data);
                    return;
                }
            }
            let mut v = pool::take_bytes();
            v.extend_from_slice(data);
            q.push_back(OwnedBuf::Vec(v));
        }
    }

    fn emit_static(&self, core: &ConnCore, data: &'static [u8]) {
        self.emit(core, OwnedBuf::Static(data));
    }

    fn emit(&self, core: &ConnCore, buf: OwnedBuf) {
        if buf.is_empty() {
            return;
        }
        if self.is_head.get() {
            // Small owned pieces (response heads) are cheaper copied into the coalescing
            // buffer than queued as separate iovecs.
            match buf {
                OwnedBuf::Vec(v) if v.len() <= 1024 => {
                    core.write(&v);
                    pool::give_bytes(v);
                }
                other => core.write_owned(other),
            }
        } else {
            self.buffer(buf);
        }
    }

    fn buffer(&self, buf: OwnedBuf) {
        let mut o = self.output.borrow_mut();
        o.buffered_bytes += buf.len();
        o.buffered
            .get_or_insert_with(pool::take_queue)
            .push_back(buf);
    }

    /// Becomes first in line: everything buffered goes to the socket.
    pub(crate) fn promote(&self, core: &ConnCore) {
        self.is_head.set(true);
        let queued = {
            let mut o = self.output.borrow_mut();
            o.buffered_bytes = 0;
            o.buffered.take()
        };
        if let Some(mut q) = queued {
            for b in q.drain(..) {
                core.write_owned(b);
            }
            pool::give_queue(q);
        }
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.output.borrow().buffered_bytes
    }

    pub(crate) fn set_head(&self, head: bool) {
        self.is_head.set(head);
    }

    pub(crate) fn close_after(&self) -> bool {
        self.close_after.get()
    }

    pub(crate) fn mark_request_complete(&self) {
        self.request_complete.set(true);
    }

    fn finish(&self, core: &ConnCore) {
        if self.complete.replace(true) {
            return;
        }
        if !self.request_complete.get() {
            // The rest of the request body will not be read: the connection cannot be reused.
            self.close_after.set(true);
        }
        core.on_exchange_complete(self);
    }

    /// Whether a responder is attached (not while it runs: it is out of its cell then).
    #[inline]
    pub(crate) fn has_responder(&self) -> bool {
        let r = self.responder.take();
        let has = r.is_some();
        self.responder.set(r);
        has
    }

    pub(crate) fn set_responder(&self, r: Option<Box<dyn ServerResponder>>) {
        self.responder.set(r);
    }

    /// Calls the responder (if any) with this connection; the responder is taken out while
    /// it runs so that it may call back into this object.
    #[inline]
    pub(crate) fn with_responder(&self, f: impl FnOnce(&mut dyn ServerResponder, &Self)) {
        let Some(mut r) = self.responder.take() else {
            return;
        };
        f(&mut *r, self);
        // Back unless it was replaced meanwhile or the connection closed (then dropped here).
        match self.responder.take() {
            None if !self.close_fired.get() => self.responder.set(Some(r)),
            replaced => self.responder.set(replaced),
        }
    }

    pub(crate) fn has_app_refs(&self) -> bool {
        self.app_refs.get() > 0
    }

    /// The connection closed with this request outstanding.
    pub(crate) fn fire_close(&self) {
        if self.close_fired.replace(true) {
            return;
        }
        if let Some(mut r) = self.responder.take() {
            r.on_close(self);
        }
        self.close.emit(|f| f(self));
    }

    /// A panic in application code while handling this request: answer 500 if nothing was
    /// sent, otherwise cut the connection (a half-sent response cannot be repaired).
    pub(crate) fn fail_after_panic(&self) {
        let Some(core) = self.core() else { return };
        if core.is_closed() || self.complete.get() {
            return;
        }
        if !self.headers_sent.get() {
            self.resp().borrow_mut().reset();
            self.resp().borrow_mut().set_keep_alive(false);
            let _ = self.respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                b"Internal Server Error\n",
            );
        } else {
            core.abort();
        }
    }

    /// Counts as one more handle while the library dispatches the request (see
    /// [`release_library_hold`](Self::release_library_hold)).
    #[inline]
    pub(crate) fn hold_for_library(&self) {
        self.app_refs.set(self.app_refs.get() + 1);
    }

    /// Lets go of one handle's worth of hold (a [`ServerConnectionPtr`] dropped, or the
    /// library's own hold ended); the last one finishes an abandoned response.
    #[inline]
    pub(crate) fn release_library_hold(&self) {
        let n = self.app_refs.get() - 1;
        self.app_refs.set(n);
        if n == 0 {
            self.check_abandoned();
        }
    }

    /// Called when the application may no longer hold this request: if its response is
    /// unfinished and nobody can finish it, finish it here.
    #[inline]
    pub(crate) fn check_abandoned(&self) {
        // Twice per request (after the handlers, and when the library's hold ends), and
        // nearly always answered by the first two tests: kept inline, the rest out of line.
        if self.app_refs.get() > 0 || self.complete.get() {
            return;
        }
        self.check_abandoned_unanswered();
    }

    fn check_abandoned_unanswered(&self) {
        if !self.request_complete.get() || self.close_fired.get() || !self.drain.is_empty() {
            return;
        }
        let Some(core) = self.core() else { return };
        if core.is_closed() {
            return;
        }
        if !self.headers_sent.get() {
            log::error!(
                "{} {} was dropped without a response; answering 500",
                self.request.borrow().method_str(),
                self.request.borrow().path()
            );
            self.resp().borrow_mut().reset();
            let _ = self.respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                b"Internal Server Error: the request was not answered\n",
            );
        } else {
            log::debug!(
                "{} {}: response left open by the application; finishing it",
                self.request.borrow().method_str(),
                self.request.borrow().path()
            );
            let _ = self.complete();
        }
    }
}

enum BodyBytes<'a> {
    Borrowed(&'a [u8]),
    Owned(OwnedBuf),
}

impl BodyBytes<'_> {
    fn len(&self) -> usize {
        match self {
            BodyBytes::Borrowed(b) => b.len(),
            BodyBytes::Owned(b) => b.len(),
        }
    }
}
