//! The server side of one TCP (or TLS) connection: reads requests, hands them to the
//! application, keeps responses in request order, and enforces limits and timeouts.
//!
//! Data flow: the socket calls `on_data`; `process` parses heads and bodies straight out of the
//! read buffer (unparsed leftovers are copied to `inbuf` only when a head or chunk line is split
//! across reads); each request becomes a [`ServerConnection`] in `pipeline`. The first one in
//! line writes to the socket, later ones buffer. When the first completes, the next is promoted.
//!
//! Re-entrancy: application code runs inside `process` (signals, responders) and may call back
//! in (send, complete, close). No `RefCell` borrow of this struct is held across a call into
//! application code, and `process` never runs nested: a resume requested from inside it is
//! picked up by the running loop.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::adapter::{ConnectionAdapter, UpgradedConnection};
use super::body::BodyLimits;
use super::decode::{BodyKind, HeadLimits, HttpError};
use super::encode::{ConnectionHeader, Framing, CONTINUE_HEAD};
use super::server::ServerShared;
use super::server_connection::{ServerConnection, ServerConnectionPtr};
use super::status::StatusCode;
use crate::net::{pool, Socket, SocketHandler};
use crate::uv::{panic_message, OwnedBuf, UvError};

/// Settings a connection needs on its hot path, fixed when the server starts.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub head_limits: HeadLimits,
    pub body_limits: BodyLimits,
    pub max_body_size: u64,
    pub max_pipelined: usize,
    pub high_water: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub linger_timeout_ms: u64,
    pub tls_handshake_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading the body of `body_exchange`.
    Body,
    /// No more requests will be read (error, `Connection: close`, stop); input is ignored.
    Discard,
    /// An upgrade request is waiting for its answer: nothing more is parsed as HTTP until the
    /// application either switched protocols or answered normally.
    UpgradePending,
    /// Switched protocols: every byte goes to the adapter.
    Upgraded,
}

/// What a connection holds only while it has work: requests in line, a body being read,
/// unparsed bytes, an adapter, timing of the current phase. An idle keep-alive connection has
/// none (it is back in a per-thread pool), which keeps the memory per idle connection small.
pub(crate) struct ConnState {
    /// The server's settings, as they were when this busy period began.
    config: Rc<ConnConfig>,
    /// The request whose body is being read; its own decoder frames the body (kept in the
    /// pooled request object, so an idle connection holds no decoder).
    body_exchange: RefCell<Option<Rc<ServerConnection>>>,
    body_received: Cell<u64>,
    /// The object the next head is parsed into.
    next: RefCell<Option<Rc<ServerConnection>>>,
    /// Unparsed bytes kept between reads (pooled; empty when there are none).
    inbuf: RefCell<Vec<u8>>,
    pipeline: RefCell<VecDeque<Rc<ServerConnection>>>,
    /// The adapter that owns the byte stream after an upgrade (taken out while it runs).
    adapter: RefCell<Option<Box<dyn ConnectionAdapter>>>,
    // Timing, in loop milliseconds.
    head_started: Cell<Option<u64>>,
    last_read: Cell<u64>,
    write_progress: Cell<(u64, u64)>,
    closing_since: Cell<Option<u64>>,
}

impl ConnState {
    fn new(config: Rc<ConnConfig>, now: u64) -> ConnState {
        ConnState {
            config,
            body_exchange: RefCell::new(None),
            body_received: Cell::new(0),
            next: RefCell::new(None),
            inbuf: RefCell::new(Vec::new()),
            pipeline: RefCell::new(VecDeque::new()),
            adapter: RefCell::new(None),
            head_started: Cell::new(None),
            last_read: Cell::new(now),
            write_progress: Cell::new((0, now)),
            closing_since: Cell::new(None),
        }
    }

    /// Ready for a new busy period; keeps the pipeline queue's capacity (no allocation).
    fn reuse(&mut self, config: Rc<ConnConfig>, now: u64) {
        self.config = config;
        self.body_received.set(0);
        self.head_started.set(None);
        self.last_read.set(now);
        self.write_progress.set((0, now));
        self.closing_since.set(None);
    }

    /// Nothing in it needs keeping: it can go back to the pool.
    fn is_idle(&self) -> bool {
        self.pipeline.borrow().is_empty()
            && self.inbuf.borrow().is_empty()
            && self.next.borrow().is_none()
            && self.body_exchange.borrow().is_none()
            && self.adapter.borrow().is_none()
            && self.head_started.get().is_none()
            && self.closing_since.get().is_none()
    }
}

/// Most states a thread keeps for reuse.
const STATE_POOL_MAX: usize = 1024;

thread_local! {
    /// Idle connection states, reused so that a keep-alive request allocates nothing. Boxed:
    /// a connection holds its state as the same `Box`, moved in and out without copying.
    #[allow(clippy::vec_box)]
    static STATE_POOL: RefCell<Vec<Box<ConnState>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) struct ConnCore {
    me: Weak<ConnCore>,
    server: Rc<ServerShared>,
    socket: Rc<dyn Socket>,
    /// Present while the connection has work (see [`ConnState`]).
    state: RefCell<Option<Box<ConnState>>>,
    slot: Cell<u32>,
    phase: Cell<Phase>,
    /// Loop time when the connection was accepted or last became idle (the idle and first
    /// header timeouts, and the TLS handshake timeout, count from here).
    idle_since: Cell<u64>,
    // State.
    first_request: Cell<bool>,
    draining: Cell<bool>,
    peer_eof: Cell<bool>,
    /// The client announced its last request (`Connection: close`, or HTTP/1.0 without
    /// keep-alive) and all of it was read: nothing more should come.
    client_done: Cell<bool>,
    /// Bytes arrived that no request will consume (after the last request, or after an
    /// error): the client may send more still, so closing must linger.
    unread_input: Cell<bool>,
    /// While `process` runs application code: the buffer holds bytes after the current
    /// request, not looked at yet.
    input_ahead: Cell<bool>,
    /// A graceful close is under way (its start time is in the state).
    closing: Cell<bool>,
    closed: Cell<bool>,
    processing: Cell<bool>,
    reading_paused: Cell<bool>,
    app_paused: Cell<bool>,
}

impl ConnCore {
    pub(crate) fn new(server: Rc<ServerShared>, socket: Rc<dyn Socket>) -> Rc<ConnCore> {
        let now = server.now();
        let high_water = server.conn_config().high_water;
        let core = Rc::new_cyclic(|me| ConnCore {
            me: me.clone(),
            server,
            socket,
            state: RefCell::new(None),
            slot: Cell::new(u32::MAX),
            phase: Cell::new(Phase::Head),
            idle_since: Cell::new(now),
            first_request: Cell::new(true),
            draining: Cell::new(false),
            peer_eof: Cell::new(false),
            client_done: Cell::new(false),
            unread_input: Cell::new(false),
            input_ahead: Cell::new(false),
            closing: Cell::new(false),
            closed: Cell::new(false),
            processing: Cell::new(false),
            reading_paused: Cell::new(false),
            app_paused: Cell::new(false),
        });
        core.socket.set_high_water_mark(high_water);
        let handler: Weak<dyn SocketHandler> = core.me.clone() as Weak<dyn SocketHandler>;
        core.socket.set_handler(handler);
        core
    }

    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot
            .set(u32::try_from(slot).expect("fewer than 2^32 connections"));
    }

    fn slot(&self) -> usize {
        self.slot.get() as usize
    }

    // ---- the busy state ---------------------------------------------------------------------

    /// The busy state, taken from the pool if the connection was idle. Borrows of it are
    /// short-lived; none is held while application code runs.
    #[inline]
    fn st(&self) -> Ref<'_, ConnState> {
        if let Ok(st) = Ref::filter_map(self.state.borrow(), |s| s.as_deref()) {
            return st;
        }
        // (The failed borrow above ended with its statement.)
        self.st_new()
    }

    #[cold]
    fn st_new(&self) -> Ref<'_, ConnState> {
        let config = self.server.conn_config();
        let now = self.now();
        let pooled = STATE_POOL.with(|p| p.borrow_mut().pop());
        let state = match pooled {
            Some(mut b) => {
                b.reuse(config, now);
                b
            }
            None => Box::new(ConnState::new(config, now)),
        };
        *self.state.borrow_mut() = Some(state);
        Ref::map(self.state.borrow(), |s| {
            s.as_deref().expect("allocated just above")
        })
    }

    /// Reads the busy state without allocating one: `None` when the connection is idle.
    /// Inline: each use is a borrow and a few loads (the pipeline pop of every response was a
    /// call that spilled registers).
    #[inline]
    fn with_st<R>(&self, f: impl FnOnce(&ConnState) -> R) -> Option<R> {
        self.state.borrow().as_deref().map(f)
    }

    pub(crate) fn holds_busy_state(&self) -> bool {
        self.state.borrow().is_some()
    }

    fn pipeline_len(&self) -> usize {
        self.with_st(|s| s.pipeline.borrow().len()).unwrap_or(0)
    }

    fn pipeline_front(&self) -> Option<Rc<ServerConnection>> {
        self.with_st(|s| s.pipeline.borrow().front().cloned())
            .flatten()
    }

    fn inbuf_is_empty(&self) -> bool {
        self.with_st(|s| s.inbuf.borrow().is_empty())
            .unwrap_or(true)
    }

    fn head_started(&self) -> Option<u64> {
        self.with_st(|s| s.head_started.get()).flatten()
    }

    /// The settings in force (the busy period's, or the server's current ones when idle).
    fn config(&self) -> Rc<ConnConfig> {
        self.with_st(|s| s.config.clone())
            .unwrap_or_else(|| self.server.conn_config())
    }

    /// Gives the busy state back to the pool once nothing in it is needed. Skipped while
    /// anything holds a borrow of it (it is then released at a later call).
    fn release_state_if_idle(&self) {
        // Queued output keeps it too: the write timeout is measured from its progress mark.
        if self.processing.get()
            || self.phase.get() != Phase::Head
            || self.socket.queued_bytes() > 0
        {
            return;
        }
        let Ok(mut slot) = self.state.try_borrow_mut() else {
            return;
        };
        if !slot.as_deref().is_some_and(ConnState::is_idle) {
            return;
        }
        if let Some(state) = slot.take() {
            drop(slot);
            Self::pool_state(state);
        }
    }

    fn pool_state(mut state: Box<ConnState>) {
        pool::give_bytes(std::mem::take(state.inbuf.get_mut()));
        STATE_POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < STATE_POOL_MAX {
                p.push(state);
            }
        });
    }

    /// Starts serving a connection just accepted: the request its client sent right after
    /// connecting is usually there already, and is answered before reading is even registered
    /// with the loop (a `Connection: close` exchange then never is).
    pub(crate) fn start(&self) {
        self.socket.read_available();
        if !self.closed.get() && !self.reading_paused.get() {
            self.socket.resume_reading();
        }
    }

    pub(crate) fn event_loop(&self) -> crate::uv::Loop {
        self.server.event_loop()
    }

    pub(crate) fn now(&self) -> u64 {
        self.server.now()
    }

    /// The server's response head cache (see [`HeadCache`](super::encode::HeadCache)).
    #[inline]
    pub(crate) fn head_cache(&self) -> &std::cell::RefCell<super::encode::HeadCache> {
        self.server.head_cache()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// True when no request will follow `ex` on this connection, so its response should say
    /// `Connection: close`. Earlier pipelined responses keep the connection open: closing after
    /// them would drop the requests behind them.
    #[inline(always)]
    pub(crate) fn closes_after(&self, ex: &ServerConnection) -> bool {
        if !(self.draining.get() || self.server.is_stopping()) {
            return false;
        }
        self.is_last_in_line(ex)
    }

    fn is_last_in_line(&self, ex: &ServerConnection) -> bool {
        self.with_st(|s| {
            s.pipeline
                .borrow()
                .back()
                .map(|b| std::ptr::eq(&**b, ex))
                .unwrap_or(true)
        })
        .unwrap_or(true)
    }

    pub(crate) fn remote(&self) -> Option<crate::uv::Remote> {
        self.server.remote()
    }

    /// Bytes held for this connection: unparsed input, queued output, buffered responses.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.socket.queued_bytes()
            + self
                .with_st(|s| {
                    s.inbuf.borrow().len()
                        + s.pipeline
                            .borrow()
                            .iter()
                            .map(|e| e.buffered_bytes())
                            .sum::<usize>()
                })
                .unwrap_or(0)
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.socket.peer_addr()
    }

    // ---- output, used by ServerConnection ------------------------------------------------

    pub(crate) fn write(&self, data: &[u8]) {
        self.socket.write(data);
    }

    pub(crate) fn write_owned(&self, buf: OwnedBuf) {
        self.socket.write_owned(buf);
    }

    pub(crate) fn write_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        self.socket.write_with(fill);
    }

    /// See [`Socket::write_pair`].
    pub(crate) fn write_pair(&self, first: &[u8], second: &[u8]) {
        self.socket.write_pair(first, second);
    }

    /// Turns Nagle's algorithm off (`tcp_nodelay`) before the first response that needs it:
    /// one that streams (its later pieces must not wait for the peer's ACK) or that keeps the
    /// connection open (the next response must not either). A response of known length after
    /// which the connection closes does not: it is written at once, and the close pushes its
    /// last bytes out; a short connection saves the system call. The socket remembers that it
    /// is settled (also when the option is off), so later responses cost a flag test.
    pub(crate) fn nagle_off_for(&self, framing: Framing, connection: ConnectionHeader) {
        let closes_whole = connection == ConnectionHeader::Close
            && matches!(framing, Framing::Length(_) | Framing::None);
        if !closes_whole {
            self.socket.disable_nagle();
        }
    }

    /// Corks the socket for a burst of writes from a response; returns whether it did, for
    /// [`socket_uncork_if`](Self::socket_uncork_if). While a read is being parsed the socket is
    /// corked already, until the whole read is answered: a nested pair would only cost.
    pub(crate) fn socket_cork(&self) -> bool {
        if self.processing.get() {
            return false;
        }
        self.socket.cork();
        true
    }

    /// Ends what [`socket_cork`](Self::socket_cork) started, if it corked.
    pub(crate) fn socket_uncork_if(&self, corked: bool) {
        if corked {
            self.socket_uncork();
        }
    }

    pub(crate) fn socket_uncork(&self) {
        if let Err(e) = self.socket.uncork() {
            log::debug!("write to {:?} failed: {e}", self.socket.peer_addr());
            self.finish_close(Some(e));
            return;
        }
        if self.closing.get() && self.socket.is_closed() {
            // A close without linger finished with this flush.
            self.finish_close(None);
            return;
        }
        if self.socket.take_drain_owed() {
            // The queue drained inside this call chain (maybe inside the producer's own send):
            // tell the producer from the loop instead of recursing into it.
            self.server.schedule_drain(self.me.clone());
        }
    }

    pub(crate) fn over_high_water(&self, extra: usize) -> bool {
        self.socket.is_over_high_water()
            || self.socket.queued_bytes() + extra >= self.config().high_water
    }

    // ---- reading ---------------------------------------------------------------------------

    fn process_input(&self, data: &[u8]) {
        let me = self.me.upgrade().expect("called through a live Rc");
        self.socket.cork();
        let has_leftover = !self.inbuf_is_empty();
        if !has_leftover {
            let used = self.process(data);
            if used < data.len() && !self.closed.get() && self.phase.get() != Phase::Discard {
                let st = self.st();
                let mut inbuf = st.inbuf.borrow_mut();
                if inbuf.capacity() == 0 {
                    *inbuf = pool::take_bytes();
                }
                inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut *self.st().inbuf.borrow_mut());
            buf.extend_from_slice(data);
            let used = self.process(&buf);
            buf.drain(..used);
            self.store_leftover(buf);
        }
        self.socket_uncork();
        self.update_read_state();
        self.process_leftover();
        self.release_state_if_idle();
        drop(me);
    }

    /// Parsing stops at the write high-water mark while output is corked, but the uncork may
    /// hand all of it to the kernel, leaving reading on. Parse what was already read before
    /// reading more: otherwise a client whose requests are smaller than their responses grows
    /// `inbuf` by nearly a whole read each time (found by tests/pipeline.rs, 100k requests).
    /// Stops once a pass makes no progress (a partial head, or the queue is really full and
    /// reading is paused).
    fn process_leftover(&self) {
        loop {
            let before = self.with_st(|s| s.inbuf.borrow().len()).unwrap_or(0);
            if before == 0 || self.phase.get() == Phase::Discard {
                return;
            }
            self.process_buffered();
            if self.with_st(|s| s.inbuf.borrow().len()).unwrap_or(0) >= before {
                return;
            }
        }
    }

    /// Parses what is buffered (after reading was paused for the pipeline bound).
    fn process_buffered(&self) {
        if self.processing.get() || self.closed.get() || self.inbuf_is_empty() {
            return;
        }
        let me = self.me.upgrade().expect("called through a live Rc");
        self.socket.cork();
        let mut buf = std::mem::take(&mut *self.st().inbuf.borrow_mut());
        let used = self.process(&buf);
        buf.drain(..used);
        self.store_leftover(buf);
        self.socket_uncork();
        self.update_read_state();
        drop(me);
    }

    fn store_leftover(&self, buf: Vec<u8>) {
        if buf.is_empty() || self.closed.get() || self.phase.get() == Phase::Discard {
            pool::give_bytes(buf);
        } else {
            *self.st().inbuf.borrow_mut() = buf;
        }
    }

    /// Parses requests out of `buf`; returns how many bytes were consumed.
    fn process(&self, buf: &[u8]) -> usize {
        if self.processing.replace(true) {
            return 0;
        }
        let mut pos = 0;
        while pos < buf.len() && !self.closed.get() {
            match self.phase.get() {
                Phase::Discard => {
                    self.unread_input.set(true);
                    pos = buf.len();
                }
                Phase::UpgradePending => break,
                Phase::Upgraded => {
                    let rest = &buf[pos..];
                    self.with_adapter(|a| a.on_data(rest));
                    pos = buf.len();
                }
                Phase::Head => {
                    if self.draining.get() || self.server.is_stopping() {
                        self.phase.set(Phase::Discard);
                        continue;
                    }
                    // One look at the busy state for the pipeline bound, the parse and the
                    // request's place in line (it is let go before application code runs).
                    let st = self.st();
                    if self.must_wait_with(&st) {
                        break;
                    }
                    match self.parse_head(&st, &buf[pos..]) {
                        Ok(Some((len, kind, ex))) => {
                            pos += len;
                            self.input_ahead.set(pos < buf.len());
                            self.start_request(st, ex, kind);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            drop(st);
                            self.reject(&e);
                            pos = buf.len();
                        }
                    }
                }
                Phase::Body => {
                    // The clone ends with this statement: a reference kept across
                    // `finish_request` would stop the request object from being recycled.
                    let step = match self.st().body_exchange.borrow().clone() {
                        Some(ex) => ex.body_decoder().decode(&buf[pos..]),
                        None => {
                            self.phase.set(Phase::Head);
                            continue;
                        }
                    };
                    match step {
                        Ok(step) => {
                            let start = pos;
                            pos += step.consumed;
                            self.input_ahead.set(pos < buf.len());
                            if let Some(range) = step.data {
                                let chunk = &buf[start + range.start..start + range.end];
                                if !self.deliver_body(chunk, step.done) {
                                    pos = buf.len();
                                    continue;
                                }
                            }
                            if step.done {
                                self.finish_request();
                            } else if step.consumed == 0 {
                                break;
                            }
                        }
                        Err(e) => {
                            self.body_error(&e);
                            pos = buf.len();
                        }
                    }
                }
            }
        }
        self.processing.set(false);
        self.input_ahead.set(false);
        pos
    }

    /// The pipeline is full, or the output queue is over its high-water mark: stop taking new
    /// requests until responses drain (backpressure instead of unbounded buffering).
    fn must_wait_before_next_request(&self) -> bool {
        self.must_wait_with(&self.st())
    }

    /// [`must_wait_before_next_request`](Self::must_wait_before_next_request) with the busy
    /// state at hand.
    #[inline]
    fn must_wait_with(&self, st: &ConnState) -> bool {
        st.pipeline.borrow().len() >= st.config.max_pipelined
            || self.socket.is_over_high_water()
            || self.app_paused.get()
    }

    #[allow(clippy::type_complexity)]
    fn parse_head(
        &self,
        st: &ConnState,
        buf: &[u8],
    ) -> Result<Option<(usize, BodyKind, Rc<ServerConnection>)>, HttpError> {
        let ex = st
            .next
            .borrow_mut()
            .take()
            .unwrap_or_else(|| self.server.take_exchange());
        let result = ex.parse_head(buf, &st.config.head_limits);
        match result {
            Ok(Some((len, kind))) => {
                st.head_started.set(None);
                Ok(Some((len, kind, ex)))
            }
            Ok(None) => {
                // The header timeout runs from the read that brought the head's first bytes:
                // this one, if no earlier read started it. (A head parsed whole needs no mark.)
                if st.head_started.get().is_none() {
                    st.head_started.set(Some(self.now()));
                }
                *st.next.borrow_mut() = Some(ex);
                Ok(None)
            }
            Err(e) => {
                self.server.recycle_exchange(ex);
                Err(e)
            }
        }
    }

    /// Puts the request `ex` just parsed in line and hands it to the application. `st` is the
    /// busy state the caller looked at; it is let go before any application code runs.
    fn start_request(&self, st: Ref<'_, ConnState>, ex: Rc<ServerConnection>, kind: BodyKind) {
        let first = self.first_request.replace(false);
        ex.attach_core(&self.me);
        if let BodyKind::Length(n) = kind {
            if n > st.config.max_body_size {
                drop(st);
                let e = HttpError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    reason: "request body larger than the server's limit",
                };
                self.server.recycle_exchange(ex);
                self.reject(&e);
                return;
            }
        }
        let body_done = matches!(kind, BodyKind::None | BodyKind::Length(0));
        let facts = ex.note_request_facts();
        if body_done && facts.upgrade {
            // Bytes after this request may belong to another protocol: stop parsing HTTP until
            // the application decided.
            self.phase.set(Phase::UpgradePending);
        }
        {
            let mut pipeline = st.pipeline.borrow_mut();
            if pipeline.is_empty() {
                ex.set_head(true);
            }
            pipeline.push_back(ex.clone());
        }
        if !facts.keep_alive {
            // The client said this is its last request.
            self.draining.set(true);
        } else if first {
            // Responses on a kept-alive connection must not wait for the peer's ACK of the
            // previous one (see `nagle_off_for`): settled once, here, so that no keep-alive
            // response needs to ask. A connection whose first request is its last skips it.
            self.socket.disable_nagle();
        }
        if body_done {
            drop(st);
            // Complete before the application sees it: answering from the handler must not
            // look like answering before the body was read.
            self.request_read(&ex);
        } else {
            ex.start_body(kind, st.config.body_limits);
            st.body_received.set(0);
            *st.body_exchange.borrow_mut() = Some(ex.clone());
            drop(st);
            self.phase.set(Phase::Body);
        }

        // Application: factory, responder.on_headers, then the connection signal.
        if let Some(factory) = self.server.factory() {
            let ok = self.guarded(&ex, "ServerConnectionFactory::create_responder", || {
                ex.set_responder(factory.create_responder(&ex));
            });
            if !ok {
                return;
            }
        }
        if ex.has_responder()
            && !self.guarded(&ex, "ServerResponder::on_headers", || {
                ex.with_responder(|r, c| r.on_headers(c))
            })
        {
            return;
        }
        let signal = self.server.connection_signal();
        // The library holds the request as a handle would until it is complete: letting go
        // earlier would make a bodiless request look abandoned (and answered 500) before a
        // responder's `on_request` or a `request_complete` slot had the chance to answer it.
        // A count rather than a handle of its own: `ex` is alive in this frame anyway.
        ex.hold_for_library();
        let ok = self.guarded(&ex, "connection handler", || {
            signal.emit(|slot| slot(ServerConnectionPtr::new(ex.clone())));
        });
        if ok {
            if body_done {
                self.complete_request(&ex);
            } else if ex.request().expects_continue() && !ex.headers_sent() && !self.closed.get() {
                // The application has not refused the body: invite the client to send it.
                if ex.is_complete() {
                    // It answered already without reading the body: no 100.
                } else if self.pipeline_front().is_some_and(|f| Rc::ptr_eq(&f, &ex))
                    && ex.claim_continue()
                {
                    self.socket.write_owned(OwnedBuf::Static(CONTINUE_HEAD));
                }
            }
        }
        ex.release_library_hold();
        if !ok {
            return;
        }
        // If the response is already done and out of the pipeline, this is the last reference:
        // back to the pool rather than freed (no allocation per request).
        self.server.recycle_exchange(ex);
    }

    /// Runs application code for `ex`; a panic becomes a 500 (or a cut connection) for this
    /// request only. Returns false if it panicked.
    fn guarded(&self, ex: &ServerConnection, what: &str, f: impl FnOnce()) -> bool {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => true,
            Err(payload) => {
                log::error!(
                    "panic in {what} for {} {} (from {:?}): {}",
                    ex.request().method_str(),
                    ex.request().path(),
                    self.socket.peer_addr(),
                    panic_message(&*payload)
                );
                ex.fail_after_panic();
                self.draining.set(true);
                if self.phase.get() == Phase::Body {
                    self.phase.set(Phase::Discard);
                }
                false
            }
        }
    }

    /// Hands a body chunk to the application. Returns false if the connection is done.
    /// `last`: this chunk ends the body. The request counts as complete from then on, so a
    /// response finished inside this very payload call (a streaming echo sending its last
    /// bytes) is not mistaken for one that ends before the body was read, which would close
    /// the connection.
    fn deliver_body(&self, chunk: &[u8], last: bool) -> bool {
        let st = self.st();
        let Some(ex) = st.body_exchange.borrow().clone() else {
            return true;
        };
        let total = st.body_received.get() + chunk.len() as u64;
        st.body_received.set(total);
        let too_large = total > st.config.max_body_size;
        drop(st);
        if too_large {
            self.body_error(&HttpError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: "chunked request body larger than the server's limit",
            });
            return false;
        }
        if last {
            self.request_read(&ex);
        }
        if ex.is_complete() {
            // Answered before its body arrived: the rest of the body is consumed (not
            // delivered) in case it is already in the buffer; the connection closes after the
            // response anyway, since nothing further can be trusted to be in sync.
            return true;
        }
        let ok = self.guarded(&ex, "ServerResponder::on_payload", || {
            ex.with_responder(|r, c| r.on_payload(c, chunk))
        }) && self.guarded(&ex, "payload handler", || {
            ex.payload.emit(|slot| slot(&ex, chunk));
        });
        ok && !self.closed.get()
    }

    fn finish_request(&self) {
        let ex = self.st().body_exchange.borrow_mut().take();
        if self.phase.get() == Phase::Body {
            self.phase.set(Phase::Head);
        }
        if let Some(ex) = ex {
            ex.take_trailers_from_decoder();
            self.request_read(&ex);
            self.complete_request(&ex);
            self.server.recycle_exchange(ex);
        }
    }

    /// The application's turn once all of `ex`'s request was read (`request_read` done).
    #[inline(always)]
    fn complete_request(&self, ex: &Rc<ServerConnection>) {
        // Mostly nobody listens (no responder, no `request_complete` slot): then the guarded
        // calls, and the stack frame they need, are skipped.
        let listened = ex.has_responder() || !ex.request_complete_signal.is_empty();
        let ok = !listened || self.run_request_complete_handlers(ex);
        if ok {
            ex.check_abandoned();
        }
        if self.draining.get() {
            self.phase.set(Phase::Discard);
        }
        self.maybe_close_when_idle();
    }

    /// The responder's `on_request` and the `request_complete` slots, for `complete_request`;
    /// false if one panicked.
    #[inline(never)]
    fn run_request_complete_handlers(&self, ex: &Rc<ServerConnection>) -> bool {
        self.guarded(ex, "ServerResponder::on_request", || {
            ex.with_responder(|r, c| r.on_request(c))
        }) && self.guarded(ex, "request_complete handler", || {
            ex.request_complete_signal.emit(|slot| slot(ex));
        })
    }

    /// All of `ex`'s request has been read.
    fn request_read(&self, ex: &ServerConnection) {
        ex.mark_request_complete();
        if !ex.request_facts().keep_alive {
            self.client_done.set(true);
        }
    }

    /// Answers a request we cannot serve (malformed, too large, timed out) and closes after
    /// the responses before it.
    fn reject(&self, e: &HttpError) {
        log::debug!(
            "rejecting request from {:?}: {} ({})",
            self.socket.peer_addr(),
            e.status,
            e.reason
        );
        self.phase.set(Phase::Discard);
        self.draining.set(true);
        self.st().head_started.set(None);
        let ex = self.server.take_exchange();
        ex.attach_core(&self.me);
        // Of an empty request (a pooled object still holds its last one): what the response
        // path asks of it is then answered as it always was.
        ex.clear_request();
        ex.note_request_facts();
        ex.mark_request_complete();
        {
            let st = self.st();
            let mut pipeline = st.pipeline.borrow_mut();
            if pipeline.is_empty() {
                ex.set_head(true);
            }
            pipeline.push_back(ex.clone());
        }
        ex.response().set_keep_alive(false);
        let mut body = String::with_capacity(64);
        body.push_str(e.status.reason());
        body.push_str(": ");
        body.push_str(e.reason);
        body.push('\n');
        let _ = ex.respond(e.status, "text/plain; charset=utf-8", body.as_bytes());
    }

    /// Over `max_connections` with the `Reject503` policy: answer 503 and close.
    pub(crate) fn reject_overloaded(&self) {
        self.reject(&HttpError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "too many connections; try again later",
        });
    }

    fn body_error(&self, e: &HttpError) {
        let ex = self.st().body_exchange.borrow_mut().take();
        self.phase.set(Phase::Discard);
        self.draining.set(true);
        match ex {
            Some(ex) if !ex.headers_sent() && ex.is_head_of_line(self) => {
                log::debug!(
                    "bad request body from {:?}: {} ({})",
                    self.socket.peer_addr(),
                    e.status,
                    e.reason
                );
                ex.mark_request_complete();
                ex.response().set_keep_alive(false);
                let body = format!("{}: {}\n", e.status.reason(), e.reason);
                let _ = ex.respond(e.status, "text/plain; charset=utf-8", body.as_bytes());
            }
            _ => {
                log::debug!(
                    "bad request body from {:?} after the response started: {}; closing",
                    self.socket.peer_addr(),
                    e.reason
                );
                self.abort();
            }
        }
    }

    fn update_read_state(&self) {
        if self.closed.get() {
            return;
        }
        let want_pause = self.app_paused.get()
            || self.phase.get() == Phase::UpgradePending
            || (self.phase.get() == Phase::Head && self.must_wait_before_next_request());
        if want_pause && !self.reading_paused.get() {
            self.reading_paused.set(true);
            self.socket.pause_reading();
        } else if !want_pause && self.reading_paused.get() {
            self.reading_paused.set(false);
            self.socket.resume_reading();
        }
    }

    pub(crate) fn app_pause_reading(&self, pause: bool) {
        self.app_paused.set(pause);
        self.update_read_state();
        if !pause {
            self.process_buffered();
        }
    }

    // ---- the pipeline ----------------------------------------------------------------------

    /// `ex`'s response is complete. If it is first in line it leaves the line, and the
    /// responses behind it move up.
    #[inline(always)]
    pub(crate) fn on_exchange_complete(&self, ex: &ServerConnection) {
        // The usual case, a response given from the handler inside `process` that is alone
        // in line and leaves nothing behind (no close, no upgrade): taking it off the line and
        // stamping the idle time is all `advance_pipeline` would do, since `process` settles
        // the rest once the read is parsed.
        if self.processing.get() && !self.closed.get() && ex.retires_plainly() {
            let popped = self.with_st(|st| {
                let mut pipeline = st.pipeline.borrow_mut();
                match pipeline.front() {
                    Some(f) if pipeline.len() == 1 && std::ptr::eq(&**f, ex) => {
                        pipeline.pop_front()
                    }
                    _ => None,
                }
            });
            if let Some(Some(front)) = popped {
                front.set_head(false);
                self.server.recycle_exchange(front);
                self.idle_since.set(self.now());
                return;
            }
        }
        self.on_exchange_complete_in_general(ex);
    }

    /// [`on_exchange_complete`](Self::on_exchange_complete) when the usual case does not
    /// apply. Out of line, so the usual case does not pay for this one's stack frame.
    #[inline(never)]
    fn on_exchange_complete_in_general(&self, ex: &ServerConnection) {
        // Popped in the same borrow that finds it first in line: the usual case (one request
        // in line, answered) then looks at the line once.
        let popped = self
            .with_st(|st| {
                let mut pipeline = st.pipeline.borrow_mut();
                if pipeline.front().is_some_and(|f| std::ptr::eq(&**f, ex)) {
                    pipeline.pop_front().map(|f| (f, pipeline.is_empty()))
                } else {
                    None
                }
            })
            .flatten();
        if let Some((front, now_empty)) = popped {
            self.advance_pipeline(front, now_empty);
        }
    }

    /// `close()` on a response that was already complete: no further request is read, and
    /// the connection closes once the responses still in line are written.
    pub(crate) fn close_when_drained(&self) {
        self.draining.set(true);
        if self.pipeline_len() == 0 {
            self.close_gracefully();
        }
    }

    /// Retires `front`, just taken off the line (`now_empty`: it was the last one), then every
    /// complete response behind it, and promotes the first incomplete one. Its one caller is
    /// every response's completion; as a call of its own it spilled registers each time.
    #[inline(always)]
    fn advance_pipeline(&self, mut front: Rc<ServerConnection>, mut now_empty: bool) {
        loop {
            front.set_head(false);
            let close_after = front.close_after();
            let adapter = front.take_adapter();
            let was_upgrade = front.request_facts().upgrade;
            self.server.recycle_exchange(front);
            if let Some(adapter) = adapter {
                self.enter_upgraded(adapter);
                return;
            }
            if was_upgrade && self.phase.get() == Phase::UpgradePending {
                // Answered without switching protocols: carry on with HTTP.
                self.phase.set(Phase::Head);
            }
            if close_after {
                self.draining.set(true);
                self.close_gracefully();
                return;
            }
            if now_empty {
                break;
            }
            let next = self.pipeline_front();
            if let Some(next) = next {
                next.promote(self);
            }
            let popped = self.with_st(|st| {
                let mut pipeline = st.pipeline.borrow_mut();
                match pipeline.front() {
                    Some(f) if f.is_complete() => pipeline
                        .pop_front()
                        .map(|front| (front, pipeline.is_empty())),
                    _ => None,
                }
            });
            let Some(Some((next, emptied))) = popped else {
                break;
            };
            (front, now_empty) = (next, emptied);
        }
        if now_empty || self.pipeline_len() == 0 {
            self.idle_since.set(self.now());
        }
        self.maybe_close_when_idle();
        // Inside `process` (a response given from the handler) the caller settles reading and
        // the state once the read is parsed; doing it per response would only repeat it.
        if !self.closed.get() && !self.processing.get() {
            self.update_read_state();
            self.process_buffered();
            self.release_state_if_idle();
        }
    }

    /// Closes once nothing is outstanding, if no further request can come.
    #[inline(always)]
    fn maybe_close_when_idle(&self) {
        // Inside `process` (every request's dispatch, and responses given from the handler)
        // the caller looks again once the read is parsed.
        if self.closed.get() || self.processing.get() {
            return;
        }
        self.maybe_close_when_idle_now();
    }

    fn maybe_close_when_idle_now(&self) {
        if self.pipeline_len() > 0 {
            return;
        }
        if self.phase.get() == Phase::Body {
            return;
        }
        let no_more = self.draining.get()
            || self.server.is_stopping()
            || (self.peer_eof.get() && self.inbuf_is_empty());
        if no_more {
            self.close_gracefully();
        }
    }

    // ---- upgrade ---------------------------------------------------------------------------

    /// Hands the connection to `adapter` (after the `101` went out).
    fn enter_upgraded(&self, adapter: Box<dyn ConnectionAdapter>) {
        if self.closed.get() {
            return;
        }
        log::debug!("connection {:?} upgraded", self.socket.peer_addr());
        self.phase.set(Phase::Upgraded);
        self.app_paused.set(false);
        *self.st().adapter.borrow_mut() = Some(adapter);
        let conn = UpgradedConnection {
            socket: self.socket.clone(),
            core: self.me.clone(),
        };
        self.with_adapter(|a| a.on_upgrade(conn));
        if self.reading_paused.replace(false) {
            self.socket.resume_reading();
        }
        if !self.processing.get() {
            // Bytes that arrived with the handshake.
            self.process_buffered();
        }
    }

    /// Calls the adapter, taken out of its slot while it runs so that it may call back in
    /// (write, close). If the connection closed meanwhile, the adapter hears about it here.
    fn with_adapter(&self, f: impl FnOnce(&mut dyn ConnectionAdapter)) {
        let taken = self.with_st(|s| s.adapter.borrow_mut().take()).flatten();
        let Some(mut adapter) = taken else { return };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&mut *adapter))) {
            log::error!(
                "panic in a connection adapter (from {:?}): {}",
                self.socket.peer_addr(),
                panic_message(&*p)
            );
            self.abort();
        }
        if self.closed.get() {
            adapter.on_close(None);
        } else {
            *self.st().adapter.borrow_mut() = Some(adapter);
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    /// Flush, FIN, linger, close; `on_close(None)` finishes. Also the way an upgraded
    /// connection's adapter closes (`UpgradedConnection::close`), so that the linger is
    /// bounded by `linger_timeout` for it too.
    pub(crate) fn close_gracefully(&self) {
        if self.closed.get() || self.closing.get() {
            return;
        }
        // Linger (wait for the peer's FIN before closing) unless the peer is known to send
        // nothing more: closing with unread input in the kernel sends a reset that can
        // destroy the response. Like nginx's default `lingering_close on`.
        let peer_quiet = self.peer_eof.get()
            || (self.client_done.get()
                && !self.unread_input.get()
                && !self.input_ahead.get()
                && self.phase.get() != Phase::Body
                && self.inbuf_is_empty());
        self.phase.set(Phase::Discard);
        self.closing.set(true);
        self.st().closing_since.set(Some(self.now()));
        if peer_quiet {
            self.socket.close_after_flush_without_linger();
            if self.socket.is_closed() {
                self.finish_close(None);
            }
        } else {
            self.socket.close_after_flush();
        }
    }

    /// Cuts the connection (reset): for responses that cannot be completed.
    pub(crate) fn abort(&self) {
        if self.closed.get() {
            return;
        }
        self.socket.abort();
        self.finish_close(None);
    }

    /// The connection is gone: tell every outstanding request, release everything, unregister.
    fn finish_close(&self, err: Option<UvError>) {
        if self.closed.replace(true) {
            return;
        }
        let _me = self.me.upgrade();
        self.phase.set(Phase::Discard);
        if !self.socket.is_closing() || err.is_some() {
            self.socket.close();
        }
        match &err {
            Some(e) => log::debug!("connection {:?} closed: {e}", self.socket.peer_addr()),
            None => log::debug!("connection closed (slot {})", self.slot()),
        }
        // Everything outstanding is taken out of the busy state first: the handlers called
        // below may call back in.
        let mut outstanding: Vec<Rc<ServerConnection>> = Vec::new();
        let mut next = None;
        let adapter = self
            .with_st(|st| {
                outstanding.extend(st.pipeline.borrow_mut().drain(..));
                if let Some(ex) = st.body_exchange.borrow_mut().take() {
                    if !outstanding.iter().any(|o| Rc::ptr_eq(o, &ex)) {
                        outstanding.push(ex);
                    }
                }
                next = st.next.borrow_mut().take();
                st.head_started.set(None);
                st.closing_since.set(None);
                st.adapter.borrow_mut().take()
            })
            .flatten();
        if let Some(ex) = next {
            self.server.recycle_exchange(ex);
        }
        // Back to the pool unless a caller further up still reads it (then it is freed with
        // the connection).
        let state = self.state.try_borrow_mut().ok().and_then(|mut s| s.take());
        if let Some(st) = state {
            Self::pool_state(st);
        }
        if let Some(mut adapter) = adapter {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| adapter.on_close(err.as_ref()))) {
                log::error!("panic in an adapter close handler: {}", panic_message(&*p));
            }
        }
        for ex in outstanding {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| ex.fire_close())) {
                log::error!("panic in a close handler: {}", panic_message(&*p));
            }
            self.server.recycle_exchange(ex);
        }
        self.server.unregister(self.slot());
    }

    /// Server stop: finish what is in flight, take nothing new, close when idle.
    pub(crate) fn begin_stop(&self) {
        if self.phase.get() == Phase::Upgraded {
            self.with_adapter(|a| a.on_server_stop());
            return;
        }
        self.draining.set(true);
        if self.pipeline_len() == 0 && self.phase.get() != Phase::Body {
            self.close_gracefully();
        }
    }

    /// Periodic check of this connection's timeouts (the server's sweep timer calls it).
    pub(crate) fn on_tick(&self, now: u64) {
        if self.closed.get() {
            return;
        }
        let cfg = self.config();
        if self.socket.is_handshaking() {
            // No request can have come yet: `idle_since` is still the time of the accept.
            if now.saturating_sub(self.idle_since.get()) >= cfg.tls_handshake_timeout_ms {
                log::debug!("TLS handshake with {:?} timed out", self.socket.peer_addr());
                self.abort();
            }
            return;
        }
        let queued = self.socket.queued_bytes();
        if queued > 0 {
            let progress = self.socket.write_progress();
            let (mark, since) = self.st().write_progress.get();
            if progress != mark {
                self.st().write_progress.set((progress, now));
            } else if now.saturating_sub(since) >= cfg.write_timeout_ms {
                log::debug!(
                    "client {:?} stopped reading ({queued} bytes queued); cutting it off",
                    self.socket.peer_addr()
                );
                self.abort();
                return;
            }
        } else {
            let progress = self.socket.write_progress();
            self.with_st(|s| s.write_progress.set((progress, now)));
        }
        if let Some(since) = self.with_st(|s| s.closing_since.get()).flatten() {
            if queued == 0 && now.saturating_sub(since) >= cfg.linger_timeout_ms {
                self.socket.close();
                self.finish_close(None);
            }
            return;
        }
        match self.phase.get() {
            Phase::Upgraded => self.with_adapter(|a| a.on_tick(now)),
            Phase::UpgradePending => {}
            Phase::Body => {
                let last_read = self.with_st(|s| s.last_read.get()).unwrap_or(now);
                if now.saturating_sub(last_read) >= cfg.body_timeout_ms {
                    self.body_error(&HttpError {
                        status: StatusCode::REQUEST_TIMEOUT,
                        reason: "request body stalled",
                    });
                }
            }
            Phase::Head => {
                if let Some(started) = self.head_started() {
                    if now.saturating_sub(started) >= cfg.header_timeout_ms {
                        self.timeout_head();
                    }
                } else if self.pipeline_len() == 0 && queued == 0 {
                    let limit = if self.first_request.get() {
                        cfg.header_timeout_ms
                    } else {
                        cfg.idle_timeout_ms
                    };
                    if now.saturating_sub(self.idle_since.get()) >= limit {
                        log::debug!("closing idle connection {:?}", self.socket.peer_addr());
                        self.close_gracefully();
                    }
                }
            }
            Phase::Discard => {}
        }
        self.release_state_if_idle();
    }

    fn timeout_head(&self) {
        if self.pipeline_len() == 0 {
            self.reject(&HttpError {
                status: StatusCode::REQUEST_TIMEOUT,
                reason: "request head not received in time",
            });
        } else {
            self.draining.set(true);
            self.phase.set(Phase::Discard);
        }
    }
}

impl ServerConnection {
    fn is_head_of_line(&self, core: &ConnCore) -> bool {
        core.pipeline_front()
            .is_some_and(|f| std::ptr::eq(&*f, self))
    }
}

impl SocketHandler for ConnCore {
    fn on_data(&self, data: &[u8]) {
        if self.closed.get() {
            return;
        }
        self.st().last_read.set(self.now());
        if self.phase.get() == Phase::Upgraded && self.inbuf_is_empty() {
            self.with_adapter(|a| a.on_data(data));
            return;
        }
        self.process_input(data);
    }

    fn on_eof(&self) {
        self.peer_eof.set(true);
        match self.phase.get() {
            Phase::Upgraded => self.with_adapter(|a| a.on_eof()),
            Phase::Body => {
                log::debug!(
                    "client {:?} closed in the middle of a request body",
                    self.socket.peer_addr()
                );
                self.draining.set(true);
                self.phase.set(Phase::Discard);
                let ex = self.st().body_exchange.borrow_mut().take();
                if let Some(ex) = ex {
                    if !ex.is_complete() {
                        // Nobody can receive a response to a request cut short.
                        self.finish_close(None);
                        return;
                    }
                }
                self.maybe_close_when_idle();
            }
            _ => {
                // A half-close after pipelining: answer what was received, then close.
                if self.head_started().is_some() && !self.inbuf_is_empty() {
                    // A partial head can never complete now.
                    let complete_requests_pending = self.pipeline_len();
                    if complete_requests_pending == 0 {
                        self.process_buffered();
                    }
                }
                self.maybe_close_when_idle();
            }
        }
    }

    fn on_drain(&self) {
        self.deliver_drain();
    }

    fn on_close(&self, err: Option<UvError>) {
        self.finish_close(err);
    }
}

impl ConnCore {
    pub(crate) fn deliver_drain(&self) {
        if self.closed.get() {
            return;
        }
        let _me = self.me.upgrade();
        if self.phase.get() == Phase::Upgraded {
            self.with_adapter(|a| a.on_drain());
            return;
        }
        // Output fell to low water: take new requests again, and tell streaming producers.
        self.update_read_state();
        self.process_buffered();
        let front = self.pipeline_front();
        if let Some(front) = front {
            if !front.is_complete() {
                // A panic is answered inside `guarded`; nothing more to do here.
                self.guarded(&front, "drain handler", || {
                    front.drain.emit(|slot| slot(&front));
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_core_stays_small() {
        // What every idle keep-alive connection costs besides its socket; everything used
        // only while busy lives in the pooled `ConnState`. 72 bytes plus the `Rc` header is
        // one 96-byte malloc chunk; growing past it costs 16 bytes per idle connection.
        eprintln!(
            "ConnCore {} bytes, ConnState {} bytes",
            std::mem::size_of::<ConnCore>(),
            std::mem::size_of::<ConnState>()
        );
        assert!(std::mem::size_of::<ConnCore>() <= 72);
    }

    /// Nagle goes off before a response that keeps the connection open or streams, not for a
    /// whole response that closes it (the close pushes its bytes out).
    #[test]
    fn nagle_goes_off_only_for_responses_that_need_it() {
        use crate::http::in_memory::InMemoryConnection;
        use crate::http::{Server, ServerConnectionPtr, StatusCode};
        use crate::uv::OwnedLoop;

        let lp = OwnedLoop::new().unwrap();
        let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
        srv.connection += |conn: ServerConnectionPtr| {
            if conn.request().path() == "/stream" {
                conn.send_header().unwrap();
                conn.send(b"piece").unwrap();
                conn.complete().unwrap();
            } else {
                conn.respond(StatusCode::OK, "text/plain", b"hi").unwrap();
            }
        };
        let closing = InMemoryConnection::new(&srv);
        closing.feed(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(closing.nagle_offs(), 0, "one whole response, then close");
        let old_client = InMemoryConnection::new(&srv);
        old_client.feed(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(old_client.nagle_offs(), 0, "HTTP/1.0: also closes after it");
        let kept = InMemoryConnection::new(&srv);
        kept.feed(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            kept.nagle_offs(),
            1,
            "kept alive: the next response must not wait"
        );
        let streaming = InMemoryConnection::new(&srv);
        streaming.feed(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(
            streaming.nagle_offs(),
            1,
            "chunked: its pieces must not wait"
        );
        drop((closing, old_client, kept, streaming));
        drop(srv);
        lp.close().unwrap();
    }

    #[test]
    fn the_busy_state_goes_back_to_the_pool_whenever_the_connection_is_idle() {
        use crate::http::in_memory::InMemoryConnection;
        use crate::http::{Server, ServerConnectionPtr, StatusCode};
        use crate::uv::OwnedLoop;

        let lp = OwnedLoop::new().unwrap();
        let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
        let held: Rc<RefCell<Vec<ServerConnectionPtr>>> = Rc::default();
        let keep = held.clone();
        srv.connection += move |conn: ServerConnectionPtr| {
            if conn.request().path() == "/later" {
                keep.borrow_mut().push(conn);
            } else {
                conn.respond(StatusCode::OK, "text/plain", b"hi").unwrap();
            }
        };
        let conn = InMemoryConnection::new(&srv);
        assert!(
            !conn.holds_busy_state(),
            "a new connection has no busy state"
        );
        conn.feed(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(!conn.holds_busy_state(), "answered at once: idle again");
        conn.feed(b"GET / HTTP/1.1\r\nHo");
        assert!(conn.holds_busy_state(), "half a head is kept");
        conn.feed(b"st: t\r\n\r\n");
        assert!(!conn.holds_busy_state());
        conn.feed(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(conn.holds_busy_state(), "two requests wait in line");
        let later = held.borrow_mut().pop().unwrap();
        later
            .respond(StatusCode::OK, "text/plain", b"late")
            .unwrap();
        drop(later);
        assert!(!conn.holds_busy_state(), "both answered: idle again");
        drop(conn);
        drop(srv);
        lp.close().unwrap();
    }

    #[test]
    fn the_direct_respond_path_writes_what_the_general_path_writes() {
        use crate::http::in_memory::InMemoryConnection;
        use crate::http::server_connection::DIRECT_RESPONSES;
        use crate::http::{Server, ServerConnectionPtr, StatusCode};
        use crate::uv::OwnedLoop;

        let direct = || DIRECT_RESPONSES.with(|n| n.get());
        let lp = OwnedLoop::new().unwrap();
        let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
        let held: Rc<RefCell<Vec<ServerConnectionPtr>>> = Rc::default();
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let (keep, log) = (held.clone(), seen.clone());
        srv.connection += move |conn: ServerConnectionPtr| {
            if conn.request().path() == "/later" {
                keep.borrow_mut().push(conn);
                return;
            }
            let body: &[u8] = if conn.request().path() == "/long" {
                b"hello"
            } else {
                b"hi"
            };
            // A handle to the response taken before it was written reads it afterwards.
            let early = conn.response();
            conn.respond(StatusCode::OK, "text/plain", body).unwrap();
            assert_eq!(early.get("Content-Type").as_deref(), Some("text/plain"));
            assert_eq!(early.status(), StatusCode::OK);
            // Whichever path wrote it, the response reads the same afterwards.
            conn.response().with(|r| {
                assert_eq!(r.content_length(), Some(body.len() as u64));
                let ct = r.get("content-type").unwrap_or("none");
                log.borrow_mut()
                    .push(format!("{} {ct}", r.status().as_u16()));
            });
        };
        let conn = InMemoryConnection::new(&srv);
        conn.capture_output(true);
        let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        // The loop's clock does not move here, so every head carries the same Date.
        conn.feed(get);
        let first = conn.take_output();
        let before = direct();
        conn.feed(get);
        assert_eq!(
            direct(),
            before + 1,
            "the head cache is warm: the direct path ran"
        );
        assert_eq!(conn.take_output(), first);
        // Another length: the cached whole head is made again for it, and back.
        conn.feed(b"GET /long HTTP/1.1\r\nHost: t\r\n\r\n");
        conn.feed(get);
        assert_eq!(direct(), before + 3);
        let long_then_short = String::from_utf8(conn.take_output()).unwrap();
        let first_text = String::from_utf8(first.clone()).unwrap();
        assert_eq!(
            long_then_short,
            first_text.replace("Length: 2\r\n\r\nhi", "Length: 5\r\n\r\nhello") + &first_text
        );

        // Second in line: buffered behind /later, so the general path writes it.
        conn.feed(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(direct(), before + 3);
        let later = held.borrow_mut().pop().unwrap();
        later.respond(StatusCode::OK, "text/plain", b"hi").unwrap();
        drop(later);
        assert_eq!(direct(), before + 4, "/later was first in line");
        let both = conn.take_output();
        assert_eq!(both, [first.clone(), first.clone()].concat());

        // Requests the direct path leaves alone, HEAD and HTTP/1.0: their heads differ as the
        // protocol requires.
        conn.feed(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        conn.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(direct(), before + 4);
        let rest = String::from_utf8(conn.take_output()).unwrap();
        assert!(
            rest.contains("Content-Length: 2\r\n\r\nHTTP/1.1 200 OK"),
            "{rest}"
        );
        assert!(rest.ends_with("Connection: keep-alive\r\n\r\nhi"), "{rest}");
        assert_eq!(*seen.borrow(), vec!["200 text/plain"; 7]);
        drop(conn);
        drop(srv);
        lp.close().unwrap();
    }
}
