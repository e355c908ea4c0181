//! A TLS socket: a [`TcpSocket`] underneath, a [`TlsEngine`] in between, the same [`Socket`]
//! interface on top — so HTTP and WebSocket code run unchanged over TLS.
//!
//! Reading: ciphertext from TCP is fed to the engine; handshake replies and alerts go straight
//! back to TCP; plaintext goes up. Writing: plaintext is encrypted into records and queued on
//! TCP (the engine buffers it while the handshake is still running). Closing sends
//! `close_notify` before TCP's graceful close.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::pool;
use super::socket::{Socket, SocketHandler};
use super::tcp::TcpSocket;
use super::tls::{TlsContext, TlsEngine, TlsError};
use crate::uv::{OwnedBuf, UvError};

type HandshakeCallback = Box<dyn FnOnce(Result<(), TlsError>)>;

/// A TLS connection over TCP on the loop.
pub struct TlsSocket {
    me: Weak<TlsSocket>,
    tcp: Rc<TcpSocket>,
    engine: RefCell<TlsEngine>,
    handler: RefCell<Option<Weak<dyn SocketHandler>>>,
    handshake_done: Cell<bool>,
    on_handshake: RefCell<Option<HandshakeCallback>>,
    failed: Cell<bool>,
    /// Plaintext written while corked, encrypted in one go at the outermost uncork: a response
    /// head and body become one TLS record instead of one per write.
    corked: RefCell<Vec<u8>>,
    corks: Cell<u32>,
    /// Why the engine failed, for handlers that want the TLS error itself.
    failure: RefCell<Option<TlsError>>,
}

impl TlsSocket {
    /// Server side of an accepted TCP connection.
    pub fn server(tcp: Rc<TcpSocket>, ctx: &TlsContext) -> Result<Rc<TlsSocket>, TlsError> {
        let engine = TlsEngine::server(ctx)?;
        Ok(Self::wrap(tcp, engine))
    }

    /// Client side of a connected TCP socket: sends the ClientHello now; `on_handshake` runs
    /// once the handshake finished (or failed, with a message naming the reason, e.g. a
    /// certificate that does not match `server_name`).
    pub fn client(
        tcp: Rc<TcpSocket>,
        ctx: &TlsContext,
        server_name: &str,
        port: u16,
        on_handshake: impl FnOnce(Result<(), TlsError>) + 'static,
    ) -> Result<Rc<TlsSocket>, TlsError> {
        let engine = TlsEngine::client_with_port(ctx, server_name, port)?;
        let sock = Self::wrap(tcp, engine);
        *sock.on_handshake.borrow_mut() = Some(Box::new(on_handshake));
        sock.pump_output();
        sock.tcp.resume_reading();
        Ok(sock)
    }

    fn wrap(tcp: Rc<TcpSocket>, engine: TlsEngine) -> Rc<TlsSocket> {
        let sock = Rc::new_cyclic(|me| TlsSocket {
            me: me.clone(),
            tcp,
            engine: RefCell::new(engine),
            handler: RefCell::new(None),
            handshake_done: Cell::new(false),
            on_handshake: RefCell::new(None),
            failed: Cell::new(false),
            corked: RefCell::new(Vec::new()),
            corks: Cell::new(0),
            failure: RefCell::new(None),
        });
        let weak: Weak<dyn SocketHandler> = sock.me.clone() as Weak<dyn SocketHandler>;
        sock.tcp.set_handler(weak);
        sock
    }

    /// The negotiated ALPN protocol, e.g. `b"http/1.1"`.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.engine.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The server name the client asked for (SNI), on the server side.
    pub fn server_name(&self) -> Option<String> {
        self.engine.borrow().server_name().map(str::to_owned)
    }

    /// The protocol version, e.g. `"TLSv1.3"`.
    pub fn protocol_version(&self) -> String {
        self.engine.borrow().protocol_version().to_string()
    }

    /// True if the session was resumed rather than fully negotiated.
    pub fn session_reused(&self) -> bool {
        self.engine.borrow().session_reused()
    }

    fn encrypt(&self, data: &[u8]) {
        let result = self.engine.borrow_mut().write(data);
        match result {
            Ok(()) => self.pump_output(),
            Err(e) => log::debug!("TLS write refused: {e}"),
        }
    }

    fn handler(&self) -> Option<Rc<dyn SocketHandler>> {
        self.handler.borrow().as_ref().and_then(Weak::upgrade)
    }

    /// Moves whatever the engine produced (handshake, records, alerts) onto TCP.
    fn pump_output(&self) {
        let mut engine = self.engine.borrow_mut();
        while engine.has_output() {
            let mut out = pool::take_bytes();
            out.clear();
            engine.take_output(&mut out);
            if out.is_empty() {
                pool::give_bytes(out);
                break;
            }
            self.tcp.write_owned(OwnedBuf::Vec(out));
        }
    }

    fn fail(&self, err: TlsError) {
        if self.failed.replace(true) {
            return;
        }
        log::debug!("TLS with {:?} failed: {err}", self.tcp.peer_addr());
        *self.failure.borrow_mut() = Some(err.clone());
        // The engine may have produced an alert: send it, then close.
        self.pump_output();
        if let Some(cb) = self.on_handshake.borrow_mut().take() {
            cb(Err(err.clone()));
        }
        let handler = self.handler();
        self.tcp.close_after_flush();
        if let Some(h) = handler {
            h.on_close(Some(UvError::with_context(
                crate::uv::sys::uv_errno_t_UV_EPROTO,
                format!("TLS: {err}"),
            )));
        }
    }
}

impl SocketHandler for TlsSocket {
    fn on_data(&self, data: &[u8]) {
        if self.failed.get() {
            return;
        }
        let _me = self.me.upgrade();
        let mut plain = pool::take_bytes();
        plain.clear();
        let status = {
            let mut engine = self.engine.borrow_mut();
            engine.feed(data);
            engine.read(&mut plain)
        };
        self.tcp.cork();
        self.pump_output();
        match status {
            Err(e) => {
                let _ = self.tcp.uncork();
                pool::give_bytes(plain);
                self.fail(e);
            }
            Ok(st) => {
                if st.handshake_completed {
                    self.handshake_done.set(true);
                    if let Some(cb) = self.on_handshake.borrow_mut().take() {
                        cb(Ok(()));
                    }
                }
                if !plain.is_empty() {
                    if let Some(h) = self.handler() {
                        h.on_data(&plain);
                    }
                }
                pool::give_bytes(plain);
                if st.peer_closed {
                    if let Some(h) = self.handler() {
                        h.on_eof();
                    }
                }
                if let Err(e) = self.tcp.uncork() {
                    log::debug!("TLS write failed: {e}");
                }
                // The handler uncorked inside the call above while TCP was still corked by us,
                // so the flush (and a drain back to low water) happens only now, after its own
                // check. This runs straight from the read callback, so tell it here; otherwise a
                // connection paused at the high-water mark would never resume.
                if self.tcp.take_drain_owed() {
                    if let Some(h) = self.handler() {
                        h.on_drain();
                    }
                }
            }
        }
    }

    fn on_eof(&self) {
        if !self.engine.borrow().peer_closed() {
            log::debug!(
                "TLS peer {:?} closed TCP without close_notify",
                self.tcp.peer_addr()
            );
        }
        if !self.handshake_done.get() {
            if let Some(cb) = self.on_handshake.borrow_mut().take() {
                cb(Err(TlsError::new(
                    super::tls::TlsErrorKind::Handshake,
                    "connection closed during the TLS handshake",
                )));
            }
        }
        if let Some(h) = self.handler() {
            h.on_eof();
        }
    }

    fn on_drain(&self) {
        if let Some(h) = self.handler() {
            h.on_drain();
        }
    }

    fn on_close(&self, err: Option<UvError>) {
        if !self.handshake_done.get() {
            if let Some(cb) = self.on_handshake.borrow_mut().take() {
                cb(Err(TlsError::new(
                    super::tls::TlsErrorKind::Handshake,
                    "connection closed during the TLS handshake",
                )));
            }
        }
        if let Some(h) = self.handler() {
            h.on_close(err);
        }
    }
}

impl Socket for TlsSocket {
    fn set_handler(&self, handler: Weak<dyn SocketHandler>) {
        *self.handler.borrow_mut() = Some(handler);
    }

    fn resume_reading(&self) {
        self.tcp.resume_reading();
    }

    fn disable_nagle(&self) {
        self.tcp.disable_nagle();
    }

    fn read_available(&self) {
        // The ClientHello, usually: it reaches this socket's handshake through `on_data`.
        self.tcp.read_available();
    }

    fn pause_reading(&self) {
        self.tcp.pause_reading();
    }

    fn write(&self, data: &[u8]) {
        if self.failed.get() || data.is_empty() {
            return;
        }
        if self.corks.get() > 0 {
            let mut buf = self.corked.borrow_mut();
            if buf.capacity() == 0 {
                *buf = pool::take_bytes();
            }
            buf.extend_from_slice(data);
            return;
        }
        self.encrypt(data);
    }

    fn write_owned(&self, buf: OwnedBuf) {
        // Encryption copies into records anyway.
        self.write(buf.as_slice());
    }

    fn write_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        if self.failed.get() {
            return;
        }
        if self.corks.get() > 0 {
            // Straight into the plaintext that becomes one record at the uncork.
            let mut buf = self.corked.borrow_mut();
            if buf.capacity() == 0 {
                *buf = pool::take_bytes();
            }
            fill(&mut buf);
            return;
        }
        let mut v = pool::take_bytes();
        fill(&mut v);
        if !v.is_empty() {
            self.encrypt(&v);
        }
        pool::give_bytes(v);
    }

    fn cork(&self) {
        self.corks.set(self.corks.get() + 1);
        self.tcp.cork();
    }

    fn uncork(&self) -> Result<(), UvError> {
        let n = self.corks.get().saturating_sub(1);
        self.corks.set(n);
        if n == 0 {
            let buf = std::mem::take(&mut *self.corked.borrow_mut());
            if !buf.is_empty() && !self.failed.get() {
                self.encrypt(&buf);
            }
            pool::give_bytes(buf);
        }
        self.tcp.uncork()
    }

    fn queued_bytes(&self) -> usize {
        self.tcp.queued_bytes() + self.corked.borrow().len()
    }

    fn write_progress(&self) -> u64 {
        self.tcp.write_progress()
    }

    fn take_drain_owed(&self) -> bool {
        self.tcp.take_drain_owed()
    }

    fn set_high_water_mark(&self, bytes: usize) {
        self.tcp.set_high_water_mark(bytes);
    }

    fn is_over_high_water(&self) -> bool {
        self.tcp.is_over_high_water()
    }

    fn close_after_flush(&self) {
        // Whatever was written before the close goes out before close_notify.
        let pending = std::mem::take(&mut *self.corked.borrow_mut());
        if !pending.is_empty() && !self.failed.get() {
            self.encrypt(&pending);
        }
        pool::give_bytes(pending);
        if !self.tcp.is_closing() && self.handshake_done.get() {
            self.engine.borrow_mut().shutdown();
            self.pump_output();
        }
        self.tcp.close_after_flush();
    }

    fn close(&self) {
        self.tcp.close();
    }

    fn abort(&self) {
        self.tcp.abort();
    }

    fn is_closed(&self) -> bool {
        self.tcp.is_closed()
    }

    fn is_closing(&self) -> bool {
        self.tcp.is_closing()
    }

    fn is_shut_down(&self) -> bool {
        self.tcp.is_shut_down()
    }

    fn tls_failure(&self) -> Option<TlsError> {
        self.failure.borrow().clone()
    }

    fn is_handshaking(&self) -> bool {
        !self.handshake_done.get()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp.peer_addr()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr()
    }
}
