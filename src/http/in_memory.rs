//! A server connection over an in-memory socket: for microbenchmarks and allocation tests of
//! the request path, without the kernel in the measurement.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::conn::ConnCore;
use super::server::Server;
use crate::net::{Socket, SocketHandler};
use crate::uv::{OwnedBuf, UvError};

/// A socket whose "kernel" is a byte counter (or a buffer, when capture is on). Like a real
/// socket it gathers corked writes into one output buffer, so copies cost what they cost there.
struct MemorySocket {
    handler: RefCell<Option<Weak<dyn SocketHandler>>>,
    corks: Cell<u32>,
    out: RefCell<Vec<u8>>,
    written: Cell<u64>,
    captured: RefCell<Vec<u8>>,
    capture: Cell<bool>,
    closing: Cell<bool>,
    /// `disable_nagle` calls (there is no TCP here; tests count the decisions).
    nagle_offs: Cell<u32>,
}

impl MemorySocket {
    /// The "kernel" takes everything written so far.
    fn flush_unless_corked(&self) {
        if self.corks.get() > 0 {
            return;
        }
        let mut out = self.out.borrow_mut();
        self.written.set(self.written.get() + out.len() as u64);
        if self.capture.get() {
            self.captured.borrow_mut().extend_from_slice(&out);
        }
        out.clear();
    }
}

impl Socket for MemorySocket {
    fn disable_nagle(&self) {
        self.nagle_offs.set(self.nagle_offs.get() + 1);
    }

    fn set_handler(&self, handler: Weak<dyn SocketHandler>) {
        *self.handler.borrow_mut() = Some(handler);
    }
    fn resume_reading(&self) {}
    fn pause_reading(&self) {}
    fn write(&self, data: &[u8]) {
        self.out.borrow_mut().extend_from_slice(data);
        self.flush_unless_corked();
    }
    fn write_owned(&self, buf: OwnedBuf) {
        self.write(buf.as_slice());
        crate::net::pool::give_owned(buf);
    }
    fn write_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        fill(&mut self.out.borrow_mut());
        self.flush_unless_corked();
    }
    fn cork(&self) {
        self.corks.set(self.corks.get() + 1);
    }
    fn uncork(&self) -> Result<(), UvError> {
        self.corks.set(self.corks.get().saturating_sub(1));
        self.flush_unless_corked();
        Ok(())
    }
    fn queued_bytes(&self) -> usize {
        0
    }
    fn write_progress(&self) -> u64 {
        self.written.get()
    }
    fn take_drain_owed(&self) -> bool {
        false
    }
    fn set_high_water_mark(&self, _bytes: usize) {}
    fn is_over_high_water(&self) -> bool {
        false
    }
    fn close_after_flush(&self) {
        self.closing.set(true);
    }
    fn close(&self) {
        self.closing.set(true);
    }
    fn abort(&self) {
        self.closing.set(true);
    }
    fn is_closing(&self) -> bool {
        self.closing.get()
    }
    fn is_closed(&self) -> bool {
        self.closing.get()
    }
    fn is_shut_down(&self) -> bool {
        self.closing.get()
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// One server connection whose socket is memory: [`InMemoryConnection::feed`] delivers bytes
/// as if read from the network; responses are counted (or captured).
///
/// The server's `connection` signal and factory handle the requests exactly as for a real
/// connection; the server does not need to be started (nothing listens).
pub struct InMemoryConnection {
    core: Rc<ConnCore>,
    socket: Rc<MemorySocket>,
}

impl InMemoryConnection {
    /// A connection of `server` (its handlers, options and pools).
    pub fn new(server: &Server) -> InMemoryConnection {
        let socket = Rc::new(MemorySocket {
            handler: RefCell::new(None),
            corks: Cell::new(0),
            out: RefCell::new(Vec::new()),
            written: Cell::new(0),
            captured: RefCell::new(Vec::new()),
            capture: Cell::new(false),
            closing: Cell::new(false),
            nagle_offs: Cell::new(0),
        });
        let sock: Rc<dyn Socket> = socket.clone();
        let core = server.new_detached_connection(sock);
        InMemoryConnection { core, socket }
    }

    /// Keeps a copy of everything written (off by default: benchmarks only count).
    pub fn capture_output(&self, on: bool) {
        self.socket.capture.set(on);
    }

    /// Delivers `bytes` as one read.
    pub fn feed(&self, bytes: &[u8]) {
        self.core.on_data(bytes);
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.socket.written.get()
    }

    /// Takes the captured output.
    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut *self.socket.captured.borrow_mut())
    }

    /// True while the connection holds its busy state (requests in line, unparsed bytes, a
    /// body being read); an idle keep-alive connection gives it back to the pool.
    pub fn holds_busy_state(&self) -> bool {
        self.core.holds_busy_state()
    }

    /// True once the connection decided to close.
    pub fn is_closing(&self) -> bool {
        self.socket.closing.get()
    }

    /// How many times the connection asked to turn Nagle's algorithm off.
    #[cfg(test)]
    pub(crate) fn nagle_offs(&self) -> u32 {
        self.socket.nagle_offs.get()
    }
}
