//! `WebSocket`: one open WebSocket connection (server or client side) with icey-style signals.
//!
//! Bytes from the transport go through the sans-IO [`Protocol`]; complete messages come out
//! through the `message` signal with their kind (text or binary), empty ones included.
//! Sends made from inside a signal handler (the common echo pattern) are queued and encoded as
//! soon as the protocol has finished with the bytes it is parsing, so handlers may send freely.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::close::CloseCode;
use super::protocol::{Config, Event, MessageKind, Protocol, Role, SendError, State};
use crate::http::UpgradedConnection;
use crate::net::{pool, Socket};
use crate::signal::{signal_signature, Signal};
use crate::uv::OwnedBuf;

signal_signature!(
    (&WebSocket),
    (&WebSocket, &[u8]),
    (&WebSocket, MessageKind, &[u8]),
    (&WebSocket, Option<u16>, &str)
);

/// Signal of complete messages: `(socket, kind, payload)`, the payload borrowed for the call.
pub type MessageSignal = Signal<dyn FnMut(&WebSocket, MessageKind, &[u8])>;
/// Signal of control payloads (`ping`, `pong`): `(socket, payload)`.
pub type ControlSignal = Signal<dyn FnMut(&WebSocket, &[u8])>;
/// Signal of the end of the connection: `(socket, close code, reason)`; code 1006 when the
/// connection dropped without a closing handshake.
pub type CloseSignal = Signal<dyn FnMut(&WebSocket, Option<u16>, &str)>;
/// Signal about the socket itself (`connect`, `drain`).
pub type SocketSignal = Signal<dyn FnMut(&WebSocket)>;

/// Where the bytes go.
pub(crate) enum Transport {
    /// A server connection after its `101`.
    Server(UpgradedConnection),
    /// A client socket after the handshake.
    Client(Rc<dyn Socket>),
}

impl Transport {
    fn write_owned(&self, buf: OwnedBuf) {
        match self {
            Transport::Server(c) => c.write_owned(buf),
            Transport::Client(s) => s.write_owned(buf),
        }
    }
    fn close(&self) {
        match self {
            Transport::Server(c) => c.close(),
            Transport::Client(s) => s.close_after_flush(),
        }
    }
    fn abort(&self) {
        match self {
            Transport::Server(c) => c.abort(),
            Transport::Client(s) => s.abort(),
        }
    }
    fn is_over_high_water(&self) -> bool {
        match self {
            Transport::Server(c) => c.is_over_high_water(),
            Transport::Client(s) => s.is_over_high_water(),
        }
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Server(c) => c.peer_addr(),
            Transport::Client(s) => s.peer_addr(),
        }
    }
}

/// A send requested while the protocol was busy delivering an event.
enum Deferred {
    Message(MessageKind, Vec<u8>),
    Fragment(MessageKind, Vec<u8>, bool, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// How long to wait for the peer's Close after sending ours before closing TCP anyway.
const CLOSE_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// One WebSocket connection. Keep the `Rc` to send later; the connection lives until it closes.
pub struct WebSocket {
    me: Weak<WebSocket>,
    protocol: RefCell<Protocol>,
    transport: RefCell<Option<Transport>>,
    busy: Cell<bool>,
    deferred: RefCell<Vec<Deferred>>,
    subprotocol: RefCell<Option<String>>,
    /// Client: the handshake is still running; sends are queued until `connect`.
    connecting: Cell<bool>,
    /// Client: the connection driver, kept alive by the socket until it closes.
    owner: RefCell<Option<Rc<dyn std::any::Any>>>,
    /// Client: the loop it runs on (servers get the time from their connection).
    client_loop: Cell<Option<crate::uv::Loop>>,
    close_fired: Cell<bool>,
    tcp_closed: Cell<bool>,
    close_sent_at: Cell<Option<u64>>,
    last_rx: Cell<u64>,
    ping_interval_ms: Cell<u64>,
    ping_outstanding: Cell<bool>,
    /// Complete messages (text or binary, empty ones too).
    pub message: MessageSignal,
    /// Pings received (already answered with a pong).
    pub ping: ControlSignal,
    /// Pongs received.
    pub pong: ControlSignal,
    /// The connection ended: exactly once, with the peer's (or our) close code and reason.
    pub close: CloseSignal,
    /// Client only: the handshake completed; sends made before it have been flushed.
    pub connect: SocketSignal,
    /// The write queue drained after a send reported backpressure.
    pub drain: SocketSignal,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebSocket({:?}, {:?})",
            self.protocol.borrow().role(),
            self.protocol.borrow().state()
        )
    }
}

/// Why a WebSocket send failed.
pub type WsSendError = SendError;

impl WebSocket {
    pub(crate) fn new(role: Role, config: Config, subprotocol: Option<String>) -> Rc<WebSocket> {
        let mask_source: Box<dyn FnMut() -> [u8; 4]> = match role {
            Role::Server => Box::new(|| [0; 4]),
            Role::Client => Box::new(MaskSource::new().into_fn()),
        };
        Rc::new_cyclic(|me| WebSocket {
            me: me.clone(),
            protocol: RefCell::new(Protocol::new(role, config, mask_source)),
            transport: RefCell::new(None),
            busy: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            subprotocol: RefCell::new(subprotocol),
            connecting: Cell::new(false),
            owner: RefCell::new(None),
            client_loop: Cell::new(None),
            close_fired: Cell::new(false),
            tcp_closed: Cell::new(false),
            close_sent_at: Cell::new(None),
            last_rx: Cell::new(0),
            ping_interval_ms: Cell::new(0),
            ping_outstanding: Cell::new(false),
            message: Signal::new(),
            ping: Signal::new(),
            pong: Signal::new(),
            close: Signal::new(),
            connect: Signal::new(),
            drain: Signal::new(),
        })
    }

    pub(crate) fn set_transport(&self, t: Transport) {
        *self.transport.borrow_mut() = Some(t);
    }

    pub(crate) fn set_ping_interval_ms(&self, ms: u64) {
        self.ping_interval_ms.set(ms);
    }

    /// An owning handle to this socket, from the `&WebSocket` a signal handler receives
    /// (keep it, or a `Weak` of it, to send later).
    pub fn handle(&self) -> Rc<WebSocket> {
        self.me.upgrade().expect("a live WebSocket")
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<String> {
        self.subprotocol.borrow().clone()
    }

    pub(crate) fn set_connecting(&self, connecting: bool) {
        self.connecting.set(connecting);
        if !connecting {
            self.run_deferred();
        }
    }

    pub(crate) fn configure(&self, config: Config, subprotocol: Option<String>) {
        let role = self.protocol.borrow().role();
        let mask_source: Box<dyn FnMut() -> [u8; 4]> = match role {
            Role::Server => Box::new(|| [0; 4]),
            Role::Client => Box::new(MaskSource::new().into_fn()),
        };
        *self.protocol.borrow_mut() = Protocol::new(role, config, mask_source);
        *self.subprotocol.borrow_mut() = subprotocol;
    }

    pub(crate) fn set_client_loop(&self, lp: crate::uv::Loop) {
        self.client_loop.set(Some(lp));
    }

    pub(crate) fn set_owner(&self, owner: Rc<dyn std::any::Any>) {
        *self.owner.borrow_mut() = Some(owner);
    }

    pub(crate) fn release_owner(&self) {
        let owner = self.owner.borrow_mut().take();
        drop(owner);
    }

    pub(crate) fn fire_connect(&self) {
        self.guard("connect", || self.connect.emit(|f| f(self)));
    }

    /// True if permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.protocol.borrow().is_compressed()
    }

    /// True while the connection is open for messages: connected (for a client, the
    /// handshake finished), no Close sent or received, not failed. Sends made before a client
    /// connects are still accepted and queued.
    pub fn is_open(&self) -> bool {
        !self.connecting.get()
            && !self.close_fired.get()
            && self.protocol.borrow().state() == State::Open
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.transport
            .borrow()
            .as_ref()
            .and_then(Transport::peer_addr)
    }

    /// Sends a whole message (compressed when negotiated). Returns true while below the
    /// high-water mark; false means "pause until `drain`".
    pub fn send(&self, data: &[u8], kind: MessageKind) -> Result<bool, WsSendError> {
        if self.busy.get() || self.connecting.get() {
            self.deferred
                .borrow_mut()
                .push(Deferred::Message(kind, data.to_vec()));
            return Ok(true);
        }
        self.encode(|p, out| p.encode_message(kind, data, out))
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<bool, WsSendError> {
        self.send(text.as_bytes(), MessageKind::Text)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<bool, WsSendError> {
        self.send(data, MessageKind::Binary)
    }

    /// Streams a large message as fragments: `first` on the first piece, `fin` on the last.
    /// Pace it with the return value and the `drain` signal, as for HTTP streaming.
    pub fn send_fragment(
        &self,
        data: &[u8],
        kind: MessageKind,
        first: bool,
        fin: bool,
    ) -> Result<bool, WsSendError> {
        if self.busy.get() || self.connecting.get() {
            self.deferred
                .borrow_mut()
                .push(Deferred::Fragment(kind, data.to_vec(), first, fin));
            return Ok(true);
        }
        self.encode(|p, out| p.encode_fragment(kind, data, first, fin, out))
    }

    /// Sends a ping (payload at most 125 bytes).
    pub fn ping(&self, data: &[u8]) -> Result<bool, WsSendError> {
        if self.busy.get() || self.connecting.get() {
            self.deferred
                .borrow_mut()
                .push(Deferred::Ping(data.to_vec()));
            return Ok(true);
        }
        self.encode(|p, out| p.encode_ping(data, out))
    }

    /// Sends an unsolicited pong.
    pub fn pong(&self, data: &[u8]) -> Result<bool, WsSendError> {
        if self.busy.get() || self.connecting.get() {
            self.deferred
                .borrow_mut()
                .push(Deferred::Pong(data.to_vec()));
            return Ok(true);
        }
        self.encode(|p, out| p.encode_pong(data, out))
    }

    /// Starts the closing handshake with `code` and `reason`; the TCP connection closes once
    /// the peer answers (server side first), or after a timeout.
    pub fn shutdown(&self, code: u16, reason: &str) -> Result<(), WsSendError> {
        if self.busy.get() || self.connecting.get() {
            self.deferred
                .borrow_mut()
                .push(Deferred::Close(code, reason.to_string()));
            return Ok(());
        }
        self.encode(|p, out| p.encode_close(code, reason, out))?;
        self.close_sent_at.set(Some(self.now()));
        Ok(())
    }

    fn now(&self) -> u64 {
        match self.transport.borrow().as_ref() {
            Some(Transport::Server(c)) => c.now(),
            _ => self.client_loop.get().map(|l| l.now()).unwrap_or(0),
        }
    }

    fn encode(
        &self,
        f: impl FnOnce(&mut Protocol, &mut Vec<u8>) -> Result<(), SendError>,
    ) -> Result<bool, WsSendError> {
        let mut out = pool::take_bytes();
        out.clear();
        let result = f(&mut self.protocol.borrow_mut(), &mut out);
        match result {
            Ok(()) => {
                let t = self.transport.borrow();
                match t.as_ref() {
                    Some(t) => {
                        t.write_owned(OwnedBuf::Vec(out));
                        Ok(!t.is_over_high_water())
                    }
                    None => {
                        pool::give_bytes(out);
                        Err(SendError::Closed)
                    }
                }
            }
            Err(e) => {
                pool::give_bytes(out);
                Err(e)
            }
        }
    }

    /// Bytes from the transport.
    pub(crate) fn on_bytes(&self, data: &[u8]) {
        let _me = self.me.upgrade();
        self.last_rx.set(self.now());
        self.ping_outstanding.set(false);
        let mut out = pool::take_bytes();
        out.clear();
        self.busy.set(true);
        let mut closing: Option<(Option<u16>, String)> = None;
        let result = {
            let mut protocol = self.protocol.borrow_mut();
            let me = self;
            protocol.feed(data, &mut out, &mut |event| match event {
                Event::Message { kind, data } => {
                    me.guard("message", || me.message.emit(|f| f(me, kind, data)));
                }
                Event::Ping(p) => me.guard("ping", || me.ping.emit(|f| f(me, p))),
                Event::Pong(p) => me.guard("pong", || me.pong.emit(|f| f(me, p))),
                Event::Close { code, reason } => {
                    closing = Some((code, reason.to_string()));
                }
            })
        };
        self.busy.set(false);
        if let Some(t) = self.transport.borrow().as_ref() {
            if !out.is_empty() {
                t.write_owned(OwnedBuf::Vec(std::mem::take(&mut out)));
            }
        }
        pool::give_bytes(out);
        self.run_deferred();
        if self.close_sent_at.get().is_none() && self.protocol.borrow().state() == State::Closed {
            // Our Close went out without `shutdown()` (the echo of the peer's, or the one
            // failing the connection): start the closing-handshake timeout too. Otherwise a
            // client whose server never closes TCP waited forever (a server is also bounded
            // by its connection's linger).
            self.close_sent_at.set(Some(self.now()));
        }
        match result {
            Err(e) => {
                log::debug!("WebSocket peer {:?}: {e}", self.peer_addr());
                // Our Close with the error code is on its way; the server closes TCP first.
                self.fire_close(Some(e.code.as_u16()), e.reason);
                self.close_transport_if_due(true);
            }
            Ok(()) => {
                if let Some((code, reason)) = closing {
                    self.fire_close(code, &reason);
                }
                self.close_transport_if_due(false);
            }
        }
    }

    fn run_deferred(&self) {
        if self.connecting.get() || self.busy.get() {
            return;
        }
        loop {
            let batch = std::mem::take(&mut *self.deferred.borrow_mut());
            if batch.is_empty() {
                return;
            }
            for d in batch {
                let r = match d {
                    Deferred::Message(k, v) => self.send(&v, k).map(|_| ()),
                    Deferred::Fragment(k, v, first, fin) => {
                        self.send_fragment(&v, k, first, fin).map(|_| ())
                    }
                    Deferred::Ping(v) => self.ping(&v).map(|_| ()),
                    Deferred::Pong(v) => self.pong(&v).map(|_| ()),
                    Deferred::Close(code, reason) => self.shutdown(code, &reason),
                };
                if let Err(e) = r {
                    log::debug!("queued WebSocket send dropped: {e}");
                }
            }
        }
    }

    /// Closes TCP when the protocol says so (server: after the closing handshake or a failure).
    fn close_transport_if_due(&self, failed: bool) {
        let p = self.protocol.borrow();
        let due = p.wants_tcp_close() || (failed && p.role() == Role::Client);
        drop(p);
        if due {
            if let Some(t) = self.transport.borrow().as_ref() {
                t.close();
            }
        }
    }

    /// The transport reached end of file.
    pub(crate) fn on_eof(&self) {
        // The peer will send nothing more: the handshake (if any) is over.
        if let Some(t) = self.transport.borrow().as_ref() {
            t.close();
        }
    }

    /// The transport closed.
    pub(crate) fn on_transport_closed(&self) {
        self.tcp_closed.set(true);
        self.fire_close(Some(1006), "connection closed without a closing handshake");
        self.transport.borrow_mut().take();
    }

    /// True once the transport has closed (or was aborted by the closing timeout).
    pub(crate) fn is_transport_closed(&self) -> bool {
        self.tcp_closed.get()
    }

    pub(crate) fn on_drain(&self) {
        self.guard("drain", || self.drain.emit(|f| f(self)));
    }

    /// Periodic: ping policy and the closing-handshake timeout.
    pub(crate) fn on_tick(&self, now: u64) {
        if let Some(sent) = self.close_sent_at.get() {
            if now.saturating_sub(sent) >= CLOSE_HANDSHAKE_TIMEOUT_MS {
                if let Some(t) = self.transport.borrow().as_ref() {
                    t.abort();
                }
                // A socket does not report a close we asked for (a client's never calls its
                // handler back), so end here: `close` fires (once) and the transport goes.
                self.on_transport_closed();
            }
            return;
        }
        let interval = self.ping_interval_ms.get();
        if interval == 0 || !self.is_open() {
            return;
        }
        let idle = now.saturating_sub(self.last_rx.get());
        if idle >= 2 * interval && self.ping_outstanding.get() {
            log::debug!(
                "WebSocket peer {:?} did not answer a ping",
                self.peer_addr()
            );
            let _ = self.shutdown(CloseCode::GoingAway.as_u16(), "ping timeout");
        } else if idle >= interval && !self.ping_outstanding.get() {
            self.ping_outstanding.set(true);
            let _ = self.ping(b"");
        }
    }

    pub(crate) fn fire_close(&self, code: Option<u16>, reason: &str) {
        if self.close_fired.replace(true) {
            return;
        }
        self.guard("close", || self.close.emit(|f| f(self, code, reason)));
    }

    fn guard<R>(&self, what: &str, f: impl FnOnce() -> R) {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            log::error!(
                "panic in WebSocket {what} handler: {}",
                crate::uv::panic_message(&*p)
            );
            if let Some(t) = self.transport.borrow().as_ref() {
                t.abort();
            }
        }
    }
}

/// Masking keys from the OS CSPRNG (`uv_random`), fetched 256 bytes at a time.
struct MaskSource {
    pool: [u8; 256],
    pos: usize,
}

impl MaskSource {
    fn new() -> Self {
        MaskSource {
            pool: [0; 256],
            pos: 256,
        }
    }

    fn into_fn(mut self) -> impl FnMut() -> [u8; 4] {
        move || {
            if self.pos + 4 > self.pool.len() {
                if let Err(e) = crate::uv::fill_random(&mut self.pool) {
                    log::error!("no random bytes for WebSocket masks: {e}");
                }
                self.pos = 0;
            }
            let k = [
                self.pool[self.pos],
                self.pool[self.pos + 1],
                self.pool[self.pos + 2],
                self.pool[self.pos + 3],
            ];
            self.pos += 4;
            k
        }
    }
}
