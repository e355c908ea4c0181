//! The adapter slot: what a connection becomes after an upgrade (`101 Switching Protocols`).
//!
//! icey's connections have an adapter that interprets the byte stream; on a WebSocket upgrade
//! the HTTP adapter is replaced by the WebSocket framer. Here the HTTP parser is built into the
//! connection, and [`ServerConnection::replace_adapter`](super::ServerConnection::replace_adapter)
//! installs the replacement: once the `101` response has been written (after every response
//! before it), the connection stops parsing HTTP and hands every byte to the adapter, starting
//! with any bytes that arrived together with the handshake. The upgraded connection is out of
//! HTTP keep-alive and HTTP timeouts; the adapter gets a periodic `on_tick` for its own policy.

use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::conn::ConnCore;
use crate::net::Socket;
use crate::uv::{OwnedBuf, UvError};

/// Receives the byte stream of an upgraded connection.
pub trait ConnectionAdapter {
    /// The connection is now this adapter's. Bytes that arrived together with the upgrade
    /// request (they belong to the new protocol) follow at once through `on_data`.
    fn on_upgrade(&mut self, conn: UpgradedConnection);
    /// Bytes arrived (borrowed for the call).
    fn on_data(&mut self, data: &[u8]);
    /// The peer finished sending (end of file).
    fn on_eof(&mut self) {}
    /// The write queue drained to its low-water mark.
    fn on_drain(&mut self) {}
    /// The server is stopping: end the protocol politely (a WebSocket sends Close 1001). The
    /// connection is closed anyway after the server's `stop_timeout`.
    fn on_server_stop(&mut self) {}
    /// Periodic call (the server's sweep interval) for idle / ping policies.
    fn on_tick(&mut self, _now_ms: u64) {}
    /// The connection closed; `err` says why when it was not a clean close.
    fn on_close(&mut self, _err: Option<&UvError>) {}
}

/// The upgraded connection as the adapter sees it: a byte stream to write to and close.
#[derive(Clone)]
pub struct UpgradedConnection {
    pub(crate) socket: Rc<dyn Socket>,
    pub(crate) core: Weak<ConnCore>,
}

impl UpgradedConnection {
    /// Queues a copy of `data`.
    pub fn write(&self, data: &[u8]) {
        self.socket.write(data);
    }

    /// Queues an owned buffer without copying.
    pub fn write_owned(&self, buf: OwnedBuf) {
        self.socket.write_owned(buf);
    }

    /// Gathers the writes made until [`UpgradedConnection::uncork`] into one.
    pub fn cork(&self) {
        self.socket.cork();
    }

    /// Ends a cork and flushes.
    pub fn uncork(&self) {
        if let Err(e) = self.socket.uncork() {
            log::debug!("write on upgraded connection failed: {e}");
        }
    }

    /// Bytes queued for writing.
    pub fn queued_bytes(&self) -> usize {
        self.socket.queued_bytes()
    }

    /// True when the write queue is at or above its high-water mark.
    pub fn is_over_high_water(&self) -> bool {
        self.socket.is_over_high_water()
    }

    /// Stops reading (backpressure) until [`UpgradedConnection::resume_reading`].
    pub fn pause_reading(&self) {
        self.socket.pause_reading();
    }

    /// Resumes reading.
    pub fn resume_reading(&self) {
        self.socket.resume_reading();
    }

    /// Flushes, sends FIN, waits (bounded) for the peer's FIN, closes. `on_close` follows.
    pub fn close(&self) {
        // Through the connection, not the socket alone: only the connection bounds the wait
        // for the peer's FIN (`linger_timeout`, from its sweep). A bare `close_after_flush`
        // lingered forever for a peer that never closes its side, keeping the connection
        // (and its server slot) alive, and `stop()` waiting.
        if let Some(core) = self.core.upgrade() {
            core.close_gracefully();
        } else {
            self.socket.close_after_flush();
        }
    }

    /// Closes at once with a reset.
    pub fn abort(&self) {
        if let Some(core) = self.core.upgrade() {
            core.abort();
        } else {
            self.socket.abort();
        }
    }

    /// True once closing or closed.
    pub fn is_closing(&self) -> bool {
        self.socket.is_closing()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.socket.peer_addr()
    }

    /// The loop's current time in milliseconds (for timers in adapter policies).
    pub fn now(&self) -> u64 {
        self.core.upgrade().map(|c| c.now()).unwrap_or(0)
    }
}
