//! TCP sockets and listeners: libuv's TCP handle plus an output queue.
//!
//! Memory: a [`TcpSocket`] is one heap block, libuv's `uv_tcp_t` included (see
//! `uv::TcpCell`), and an idle one holds nothing else: its output state is a pooled box that
//! exists only while there is output. Keeping that block small is what an idle keep-alive
//! connection costs.
//!
//! Writing: bytes queue in per-thread pooled buffers; a flush gathers them into one
//! `uv_try_write` and only what the kernel did not take becomes a `uv_write` request (at most one
//! in flight, the rest waits). Corking lets the HTTP layer gather every response produced by one
//! read into one write.
//!
//! Closing gracefully ("lingering close"): flush, send FIN, keep reading and discarding until the
//! peer's FIN (bounded in bytes; the caller bounds it in time by calling `close`), then close.
//! Closing while unread request bytes sit in the kernel would make it send a reset that can
//! destroy a response the client has not read yet.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::pool;
use super::socket::{Socket, SocketHandler};
use crate::uv::{
    EmbedsTcp, Loop, OwnedBuf, StreamHandler, TcpCell, TcpHandle, TcpRef, UvError, MAX_IOVECS,
};

/// Coalesce small copied writes into one buffer up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;
/// While lingering, give up after discarding this much from the peer.
const LINGER_MAX_BYTES: u32 = 1024 * 1024;
/// Default high-water mark for the output queue.
pub const DEFAULT_HIGH_WATER: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Graceful close requested: flushing, then shutdown, then waiting for the peer's FIN.
    Closing,
    Closed,
}

// The socket's yes/no state, one bit each in `TcpSocket::flags` (one byte instead of seven).
/// Reading is started (`uv_read_start`).
const READING: u8 = 1 << 0;
/// The peer's FIN arrived.
const EOF: u8 = 1 << 1;
/// Our FIN went out (the shutdown request completed).
const SHUT_DOWN: u8 = 1 << 2;
/// The shutdown request was issued.
const SHUTDOWN_STARTED: u8 = 1 << 3;
/// Closing does not wait for the peer's FIN: close once the queue is written.
const NO_LINGER: u8 = 1 << 4;
/// Queued bytes reached the high-water mark; `on_drain` is due when they fall to half of it.
const OVER_HIGH_WATER: u8 = 1 << 5;
/// A drain happened inside a call the handler made; it must deliver it (`take_drain_owed`).
const DRAIN_OWED: u8 = 1 << 6;
/// Nagle's algorithm is settled: turned off (`disable_nagle`), or to be kept (`keep_nagle`).
const NAGLE_SETTLED: u8 = 1 << 7;

/// A socket's output while it has any: boxed, taken from the per-thread pool when the first
/// byte is queued and given back when the kernel has taken the last one, so an idle socket pays
/// one null pointer for it and steady-state traffic allocates nothing.
#[derive(Default)]
pub(crate) struct OutQueue {
    /// Buffers not yet handed to libuv.
    pending: VecDeque<OwnedBuf>,
    /// Bytes of `pending[0]` already written by a partial `try_write`.
    head_offset: usize,
    pending_bytes: usize,
    in_flight_bytes: usize,
    in_flight: bool,
    /// An emptied buffer kept for the next output (capacity 0 when none). The queue and the
    /// buffer it needs are then taken from and given back to the pool together: one pool trip
    /// per burst of output instead of three.
    spare: Vec<u8>,
}

impl OutQueue {
    /// A buffer to queue bytes in: the spare if there is one, else one from the pool.
    fn fresh_buffer(&mut self) -> Vec<u8> {
        if self.spare.capacity() > 0 {
            std::mem::take(&mut self.spare)
        } else {
            pool::take_bytes()
        }
    }

    /// Takes back a buffer whose bytes were written: kept as the spare if there is none yet.
    fn recycle(&mut self, b: OwnedBuf) {
        match b {
            OwnedBuf::Vec(mut v) if self.spare.capacity() == 0 && pool::worth_keeping(&v) => {
                v.clear();
                self.spare = v;
            }
            other => pool::give_owned(other),
        }
    }

    /// Empties the queue for reuse (buffers go back to the pool); false if it grew too large to
    /// be worth keeping.
    pub(crate) fn reset(&mut self) -> bool {
        // Usually empty (given back after a complete flush): skip setting up a drain.
        while let Some(b) = self.pending.pop_front() {
            self.recycle(b);
        }
        self.head_offset = 0;
        self.pending_bytes = 0;
        self.in_flight_bytes = 0;
        self.in_flight = false;
        self.pending.capacity() <= 1024
    }
}

/// A TCP connection on the loop.
///
/// Every idle keep-alive connection is one of these, so fields are sized for that: state that
/// exists only while writing lives in the pooled `out` box, and counters use the smallest type
/// their range allows.
pub struct TcpSocket {
    /// libuv's handle, in this allocation; its close callback frees the block (see
    /// `uv::TcpCell`), and dropping the last `Rc` closes it.
    tcp: TcpCell<TcpSocket>,
    /// Who gets the socket's events. A `Cell` (taken, upgraded, put back) rather than a
    /// `RefCell`: no borrow flag to pay for, and nothing runs while it is taken out.
    handler: Cell<Option<Weak<dyn SocketHandler>>>,
    /// Output state, only while there is output. Taken out of the cell while in use; no code
    /// that runs meanwhile touches it (see `with_out`).
    out: Cell<Option<Box<OutQueue>>>,
    /// Total bytes the kernel accepted (write progress, for stall detection). Lives here, not
    /// in `out`, because it must keep counting across the queue being given back.
    written: Cell<u64>,
    /// The output high-water mark; `u32` (4 GiB) keeps the socket in its allocation size.
    high_water: Cell<u32>,
    /// An accepted socket libuv has not adopted yet (`uv::tcp`'s "Deferred adoption"): a
    /// connection answered at once and closed never goes to libuv.
    #[cfg(unix)]
    unadopted: Cell<Option<std::os::fd::OwnedFd>>,
    /// Bytes discarded while lingering; capped at `LINGER_MAX_BYTES`, so `u32` is plenty.
    lingered: Cell<u32>,
    /// Cork depth: a few levels at most (TLS, connection, response), so `u16` is plenty.
    corks: Cell<u16>,
    /// `READING`, `EOF`, ... above.
    flags: Cell<u8>,
    state: Cell<State>,
}

impl EmbedsTcp for TcpSocket {
    fn tcp_cell(&self) -> &TcpCell<Self> {
        &self.tcp
    }

    #[cfg(unix)]
    fn unadopted_fd(&self) -> Option<&Cell<Option<std::os::fd::OwnedFd>>> {
        Some(&self.unadopted)
    }
}

impl TcpSocket {
    /// A socket whose handle is not initialised yet.
    fn alloc() -> Rc<TcpSocket> {
        Rc::new(TcpSocket {
            tcp: TcpCell::new(),
            handler: Cell::new(None),
            out: Cell::new(None),
            written: Cell::new(0),
            high_water: Cell::new(DEFAULT_HIGH_WATER as u32),
            #[cfg(unix)]
            unadopted: Cell::new(None),
            lingered: Cell::new(0),
            corks: Cell::new(0),
            flags: Cell::new(0),
            state: Cell::new(State::Open),
        })
    }

    /// A socket with an initialised, unconnected handle on `lp`.
    fn open(lp: Loop) -> Result<Rc<TcpSocket>, UvError> {
        let sock = Self::alloc();
        TcpRef::init(&sock, lp)?;
        Ok(sock)
    }

    fn tcp(&self) -> TcpRef<'_, TcpSocket> {
        TcpRef::of(self)
    }

    /// Connects to `addr`; `on_connect` receives the socket or the error.
    pub fn connect(
        lp: Loop,
        addr: SocketAddr,
        on_connect: impl FnOnce(Result<Rc<TcpSocket>, UvError>) + 'static,
    ) -> Result<Rc<TcpSocket>, UvError> {
        let sock = TcpSocket::open(lp)?;
        let weak = Rc::downgrade(&sock);
        sock.tcp().connect(&addr, move |result| {
            let Some(sock) = weak.upgrade() else { return };
            match result {
                Ok(()) => {
                    let _ = sock.set_nodelay(true);
                    on_connect(Ok(sock))
                }
                Err(e) => {
                    sock.close();
                    on_connect(Err(e.context(format!("connect to {addr}"))))
                }
            }
        })?;
        Ok(sock)
    }

    /// Adopts an accepted std stream (e.g. from an acceptor thread). The stream is made
    /// non-blocking and, like a batch-accepted socket, goes to libuv only when something needs
    /// libuv's stream (see `uv::tcp`, "Deferred adoption").
    #[cfg(unix)]
    pub fn from_std(lp: Loop, stream: std::net::TcpStream) -> Result<Rc<TcpSocket>, UvError> {
        let sock = TcpSocket::open(lp)?;
        sock.tcp().adopt_std_stream(stream)?;
        Ok(sock)
    }

    /// Sets TCP_NODELAY: responses go out as soon as they are written.
    pub fn set_nodelay(&self, enable: bool) -> Result<(), UvError> {
        self.tcp().set_nodelay(enable)
    }

    /// Leaves Nagle's algorithm on for good: later [`Socket::disable_nagle`] calls do nothing.
    pub fn keep_nagle(&self) {
        self.set_flag(NAGLE_SETTLED, true);
    }

    fn flag(&self, f: u8) -> bool {
        self.flags.get() & f != 0
    }

    fn set_flag(&self, f: u8, on: bool) {
        let flags = self.flags.get();
        self.flags.set(if on { flags | f } else { flags & !f });
    }

    /// Sets or clears `f`, returning whether it was set.
    fn replace_flag(&self, f: u8, on: bool) -> bool {
        let was = self.flag(f);
        self.set_flag(f, on);
        was
    }

    fn high_water(&self) -> usize {
        self.high_water.get() as usize
    }

    fn handler(&self) -> Option<Rc<dyn SocketHandler>> {
        let weak = self.handler.take();
        let handler = weak.as_ref().and_then(Weak::upgrade);
        self.handler.set(weak);
        handler
    }

    /// Runs `f` on the output queue, taking one from the pool if there is none. `f` must not
    /// call back into this socket: the queue is out of its cell while `f` runs.
    fn with_out<R>(&self, f: impl FnOnce(&mut OutQueue) -> R) -> R {
        let mut out = self.out.take().unwrap_or_else(pool::take_out_queue);
        let result = f(&mut out);
        self.out.set(Some(out));
        result
    }

    fn queue_buf(&self, buf: OwnedBuf) {
        self.with_out(|out| {
            out.pending_bytes += buf.len();
            out.pending.push_back(buf);
        });
    }

    /// Queues copies of `first` then `second`: appended to the last buffer when they fit
    /// (small writes coalesce), else in a fresh one. Returns the bytes queued now, pending
    /// and in flight, for [`note_queue_growth_to`](Self::note_queue_growth_to): read while
    /// the queue is out of its cell, rather than taken out again for it.
    fn queue_pair(&self, first: &[u8], second: &[u8]) -> usize {
        self.with_out(|out| {
            let total = first.len() + second.len();
            out.pending_bytes += total;
            let queued = out.pending_bytes + out.in_flight_bytes;
            if let Some(OwnedBuf::Vec(last)) = out.pending.back_mut() {
                if last.len() + total <= COALESCE_LIMIT.max(last.capacity()) {
                    last.extend_from_slice(first);
                    last.extend_from_slice(second);
                    return queued;
                }
            }
            let mut v = out.fresh_buffer();
            v.reserve(total);
            v.extend_from_slice(first);
            v.extend_from_slice(second);
            out.pending.push_back(OwnedBuf::Vec(v));
            queued
        })
    }

    /// Appends produced bytes to the last queued buffer (coalescing like `queue_pair`).
    /// `fill` must not call back into this socket (the queue is taken out while it runs).
    fn queue_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        self.with_out(|out| {
            let q = &mut out.pending;
            let reuse =
                matches!(q.back(), Some(OwnedBuf::Vec(last)) if last.len() < COALESCE_LIMIT);
            if !reuse {
                let fresh = out.fresh_buffer();
                out.pending.push_back(OwnedBuf::Vec(fresh));
            }
            let q = &mut out.pending;
            let Some(OwnedBuf::Vec(last)) = q.back_mut() else {
                unreachable!("a vector was just ensured at the back");
            };
            let before = last.len();
            fill(last);
            let added = last.len() - before;
            if added == 0 && !reuse {
                // Never leave an empty buffer queued: flushing could not make progress on it.
                if let Some(b) = q.pop_back() {
                    out.recycle(b);
                }
            }
            out.pending_bytes += added;
        });
    }

    /// After bytes were queued: the high-water check, and the write itself unless corked.
    #[inline]
    fn queued_more(&self) {
        self.note_queue_growth();
        self.flush_unless_corked();
    }

    /// [`queued_more`](Self::queued_more) when the caller knows how much is queued.
    #[inline]
    fn queued_more_to(&self, queued: usize) {
        self.note_queue_growth_to(queued);
        self.flush_unless_corked();
    }

    /// Writes what is queued now, unless a cork holds the queue for more.
    #[inline]
    fn flush_unless_corked(&self) {
        if self.corks.get() == 0 {
            if let Err(e) = self.flush() {
                log::debug!("write failed: {e}");
            }
        }
    }

    fn queued(&self) -> usize {
        let out = self.out.take();
        let queued = out
            .as_ref()
            .map_or(0, |o| o.pending_bytes + o.in_flight_bytes);
        self.out.set(out);
        queued
    }

    fn note_queue_growth(&self) {
        if !self.flag(OVER_HIGH_WATER) && self.queued() >= self.high_water() {
            self.set_flag(OVER_HIGH_WATER, true);
        }
    }

    /// [`note_queue_growth`](Self::note_queue_growth) with the queued bytes at hand.
    #[inline]
    fn note_queue_growth_to(&self, queued: usize) {
        if !self.flag(OVER_HIGH_WATER) && queued >= self.high_water() {
            self.set_flag(OVER_HIGH_WATER, true);
        }
    }

    /// Called when bytes left the queue: reports the drain once we are back at low water.
    fn check_drain(&self) {
        if self.flag(OVER_HIGH_WATER) && self.queued() <= self.high_water() / 2 {
            self.set_flag(OVER_HIGH_WATER, false);
            if let Some(h) = self.handler() {
                h.on_drain();
            }
        }
    }

    /// Writes what is pending: `try_write` first, then one `uv_write` for the remainder. Gives
    /// the queue back to the pool once nothing is pending or in flight.
    fn flush(&self) -> Result<(), UvError> {
        if self.state.get() == State::Closed {
            return Ok(());
        }
        loop {
            let Some(mut out) = self.out.take() else {
                break;
            };
            if out.in_flight {
                self.out.set(Some(out));
                return Ok(());
            }
            if out.pending.is_empty() {
                pool::give_out_queue(out);
                break;
            }
            let result = self.write_some(&mut out);
            // Back in its cell before anything below can reach the socket again.
            self.out.set(Some(out));
            match result {
                Ok(None) => {}
                Ok(Some((bufs, skip))) => {
                    if let Err(e) = self.tcp().write(bufs, skip) {
                        self.close();
                        return Err(e);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            }
        }
        // Everything is written.
        if self.state.get() == State::Closing {
            if self.flag(NO_LINGER) {
                // close(2) sends our FIN after the data the kernel still holds.
                self.close();
            } else {
                self.start_shutdown();
            }
        }
        Ok(())
    }

    /// One gathered `try_write` of up to `MAX_IOVECS` pending buffers. Returns the buffers for
    /// a `uv_write` (and how much of the first one was already written) if the kernel did not
    /// take everything; they are then in flight. Touches only `out` and plain fields, never
    /// the handler.
    fn write_some(&self, out: &mut OutQueue) -> Result<Option<(Vec<OwnedBuf>, usize)>, UvError> {
        let head_offset = out.head_offset;
        let q = &mut out.pending;
        let (written, total) = if q.len() == 1 {
            // The usual case (everything coalesced into one buffer): no iovec array to fill.
            let only = &q[0].as_slice()[head_offset..];
            (self.tcp().try_write(&[only])?, only.len())
        } else {
            let mut slices: [&[u8]; MAX_IOVECS] = [&[]; MAX_IOVECS];
            let mut n = 0;
            let mut total = 0;
            for (i, b) in q.iter().take(MAX_IOVECS).enumerate() {
                let s = if i == 0 {
                    &b.as_slice()[head_offset..]
                } else {
                    b.as_slice()
                };
                slices[i] = s;
                total += s.len();
                n += 1;
            }
            (self.tcp().try_write(&slices[..n])?, total)
        };
        // Consume what the kernel took.
        let mut left = written;
        let mut offset = head_offset;
        while left > 0 {
            let front_len = out.pending.front().map(|b| b.len()).unwrap_or(0) - offset;
            if left >= front_len {
                left -= front_len;
                offset = 0;
                if let Some(b) = out.pending.pop_front() {
                    out.recycle(b);
                }
            } else {
                offset += left;
                left = 0;
            }
        }
        out.head_offset = offset;
        out.pending_bytes -= written;
        self.written.set(self.written.get() + written as u64);
        if self.flag(OVER_HIGH_WATER)
            && out.pending_bytes + out.in_flight_bytes <= self.high_water() / 2
        {
            self.set_flag(OVER_HIGH_WATER, false);
            self.set_flag(DRAIN_OWED, true);
        }
        if written == total {
            return Ok(None);
        }
        // The kernel is full: hand the rest (up to MAX_IOVECS buffers) to libuv.
        let k = out.pending.len().min(MAX_IOVECS);
        let mut bufs = Vec::with_capacity(k);
        let mut bytes = 0;
        for _ in 0..k {
            let b = out.pending.pop_front().expect("k <= len");
            bytes += b.len();
            bufs.push(b);
        }
        let skip = out.head_offset;
        bytes -= skip;
        out.head_offset = 0;
        out.pending_bytes -= bytes;
        out.in_flight_bytes = bytes;
        out.in_flight = true;
        Ok(Some((bufs, skip)))
    }

    fn start_shutdown(&self) {
        if self.replace_flag(SHUTDOWN_STARTED, true) {
            return;
        }
        if let Err(e) = self.tcp().shutdown() {
            log::debug!("shutdown failed, closing: {e}");
            self.finish_close(None);
        }
    }

    /// Closes and tells the handler (used for closes the socket decides on in a loop callback).
    fn finish_close(&self, err: Option<UvError>) {
        if self.state.get() == State::Closed {
            return;
        }
        let handler = self.handler();
        self.close();
        if let Some(h) = handler {
            h.on_close(err);
        }
    }

    /// Gives the output queue back (a closed socket writes nothing more; a write still in
    /// flight owns its own buffers).
    fn release_queue(&self) {
        if let Some(q) = self.out.take() {
            pool::give_out_queue(q);
        }
    }
}

impl Socket for TcpSocket {
    fn set_handler(&self, handler: Weak<dyn SocketHandler>) {
        self.handler.set(Some(handler));
    }

    fn resume_reading(&self) {
        if self.state.get() == State::Closed || self.flag(READING) || self.flag(EOF) {
            return;
        }
        match self.tcp().read_start() {
            Ok(()) => self.set_flag(READING, true),
            Err(e) => log::debug!("read_start failed: {e}"),
        }
    }

    fn disable_nagle(&self) {
        if self.replace_flag(NAGLE_SETTLED, true) {
            return;
        }
        if let Err(e) = self.set_nodelay(true) {
            log::debug!("TCP_NODELAY: {e}");
        }
    }

    fn read_available(&self) {
        if self.state.get() != State::Open || self.flag(READING) || self.flag(EOF) {
            return;
        }
        self.tcp()
            .read_available(|data| StreamHandler::on_read(self, data));
    }

    fn pause_reading(&self) {
        // A closing socket keeps reading: it must see the peer's FIN.
        if self.flag(READING) && self.state.get() == State::Open {
            self.tcp().read_stop();
            self.set_flag(READING, false);
        }
    }

    fn write(&self, data: &[u8]) {
        self.write_pair(data, &[]);
    }

    fn write_owned(&self, buf: OwnedBuf) {
        if self.state.get() != State::Open || buf.is_empty() {
            return;
        }
        self.queue_buf(buf);
        self.queued_more();
    }

    fn write_pair(&self, first: &[u8], second: &[u8]) {
        if self.state.get() != State::Open || first.len() + second.len() == 0 {
            return;
        }
        let queued = self.queue_pair(first, second);
        self.queued_more_to(queued);
    }

    fn write_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        if self.state.get() != State::Open {
            return;
        }
        self.queue_with(fill);
        self.queued_more();
    }

    fn cork(&self) {
        self.corks.set(self.corks.get() + 1);
    }

    fn uncork(&self) -> Result<(), UvError> {
        let n = self.corks.get().saturating_sub(1);
        self.corks.set(n);
        if n == 0 {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn queued_bytes(&self) -> usize {
        self.queued()
    }

    fn take_drain_owed(&self) -> bool {
        self.replace_flag(DRAIN_OWED, false)
    }

    fn write_progress(&self) -> u64 {
        self.written.get()
    }

    fn set_high_water_mark(&self, bytes: usize) {
        self.high_water
            .set(u32::try_from(bytes).unwrap_or(u32::MAX).max(1));
    }

    fn is_over_high_water(&self) -> bool {
        self.flag(OVER_HIGH_WATER)
    }

    fn close_after_flush_without_linger(&self) {
        if self.state.get() != State::Open {
            return;
        }
        self.set_flag(NO_LINGER, true);
        self.state.set(State::Closing);
        if self.corks.get() == 0 {
            if let Err(e) = self.flush() {
                log::debug!("flush before close failed: {e}");
            }
        }
    }

    fn close_after_flush(&self) {
        if self.state.get() != State::Open {
            return;
        }
        self.state.set(State::Closing);
        // Keep reading so the peer's FIN (or excess data) is noticed while we linger.
        if !self.flag(READING) && !self.flag(EOF) && self.tcp().read_start().is_ok() {
            self.set_flag(READING, true);
        }
        if self.corks.get() == 0 {
            if let Err(e) = self.flush() {
                log::debug!("flush before close failed: {e}");
            }
        }
    }

    fn close(&self) {
        if self.state.replace(State::Closed) == State::Closed {
            return;
        }
        self.tcp().close();
        self.release_queue();
    }

    fn abort(&self) {
        if self.state.replace(State::Closed) == State::Closed {
            return;
        }
        self.tcp().close_reset();
        self.release_queue();
    }

    fn is_closing(&self) -> bool {
        self.state.get() != State::Open
    }

    fn is_closed(&self) -> bool {
        self.state.get() == State::Closed
    }

    fn is_shut_down(&self) -> bool {
        self.flag(SHUT_DOWN)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        if self.state.get() == State::Closed {
            return None;
        }
        self.tcp().peer_addr()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        if self.state.get() == State::Closed {
            return None;
        }
        self.tcp().local_addr()
    }
}

impl StreamHandler for TcpSocket {
    fn on_read(&self, data: &[u8]) {
        match self.state.get() {
            State::Open => {
                if let Some(h) = self.handler() {
                    h.on_data(data);
                }
            }
            State::Closing => {
                // Lingering: discard, but not forever.
                let total = self
                    .lingered
                    .get()
                    .saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
                self.lingered.set(total);
                if total > LINGER_MAX_BYTES {
                    log::debug!("peer kept sending {total} bytes while we closed; closing now");
                    self.finish_close(None);
                }
            }
            State::Closed => {}
        }
    }

    fn on_read_end(&self, err: UvError) {
        self.set_flag(READING, false);
        if err.is_eof() {
            self.set_flag(EOF, true);
            match self.state.get() {
                State::Open => {
                    if let Some(h) = self.handler() {
                        h.on_eof();
                    }
                }
                State::Closing => {
                    if self.flag(SHUT_DOWN) {
                        self.finish_close(None);
                    }
                }
                State::Closed => {}
            }
        } else {
            log::debug!("connection from {:?} failed: {err}", self.tcp().peer_addr());
            self.finish_close(Some(err.context("read")));
        }
    }

    fn on_write_done(&self, bufs: Vec<OwnedBuf>, status: Result<(), UvError>) {
        for b in bufs {
            pool::give_owned(b);
        }
        if let Some(mut out) = self.out.take() {
            out.in_flight = false;
            if status.is_ok() {
                self.written
                    .set(self.written.get() + out.in_flight_bytes as u64);
            }
            out.in_flight_bytes = 0;
            self.out.set(Some(out));
        }
        if self.state.get() == State::Closed {
            return;
        }
        if let Err(e) = status {
            log::debug!("write failed: {e}");
            self.finish_close(Some(e));
            return;
        }
        let was_closing = self.state.get() == State::Closing;
        if let Err(e) = self.flush() {
            self.finish_close(Some(e));
            return;
        }
        if was_closing && self.state.get() == State::Closed {
            // A close without linger finished with this write: tell the handler (from the
            // loop, so it may do anything).
            if let Some(h) = self.handler() {
                h.on_close(None);
            }
            return;
        }
        self.check_drain();
        if self.replace_flag(DRAIN_OWED, false) {
            if let Some(h) = self.handler() {
                h.on_drain();
            }
        }
    }

    fn on_shutdown(&self, status: Result<(), UvError>) {
        self.set_flag(SHUT_DOWN, true);
        if self.state.get() != State::Closing {
            return;
        }
        if status.is_err() || self.flag(EOF) {
            self.finish_close(None);
        }
        // Otherwise linger until the peer's FIN (or the caller's timeout closes us).
    }
}

/// A listening TCP socket.
pub struct TcpListener {
    handle: TcpHandle,
    lp: Loop,
}

impl TcpListener {
    /// Binds to `addr` (SO_REUSEADDR is libuv's default on Unix).
    pub fn bind(lp: Loop, addr: &SocketAddr, reuse_port: bool) -> Result<TcpListener, UvError> {
        let handle = TcpHandle::new(lp)?;
        handle.bind(addr, reuse_port)?;
        Ok(TcpListener { handle, lp })
    }

    /// Adopts an already bound (and possibly listening) socket, e.g. one inherited from
    /// systemd or created by the caller.
    #[cfg(unix)]
    pub fn from_std(lp: Loop, listener: std::net::TcpListener) -> Result<TcpListener, UvError> {
        let handle = TcpHandle::from_std_listener(lp, listener)?;
        Ok(TcpListener { handle, lp })
    }

    /// Starts listening; `on_connection` runs for each pending connection.
    pub fn listen(
        &self,
        backlog: i32,
        on_connection: impl FnMut(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        self.handle.listen(backlog, on_connection)
    }

    /// See [`TcpHandle::set_defer_accept`](crate::uv::TcpHandle::set_defer_accept).
    pub fn set_defer_accept(&self, seconds: u32) -> Result<bool, UvError> {
        self.handle.set_defer_accept(seconds)
    }

    /// Accepts one pending connection.
    pub fn accept(&self) -> Result<Rc<TcpSocket>, UvError> {
        // libuv accepts into an initialised handle: the socket (with its embedded handle) is
        // allocated first. On failure, dropping it closes and frees the unused handle.
        let sock = TcpSocket::open(self.lp)?;
        self.handle.accept_into(&*sock)?;
        Ok(sock)
    }

    /// Accepts one more pending connection if there is one, after [`accept`](Self::accept)
    /// in the same turn of the loop (see `TcpHandle::accept_pending`): a busy server takes
    /// several connections per wakeup instead of one. `Ok(None)` when none is pending, and
    /// always where the OS is not Unix.
    pub fn accept_pending(&self) -> Result<Option<Rc<TcpSocket>>, UvError> {
        #[cfg(unix)]
        if let Some(accepted) = self.handle.accept_pending()? {
            let sock = TcpSocket::open(self.lp)?;
            sock.tcp().adopt_accepted(accepted)?;
            return Ok(Some(sock));
        }
        Ok(None)
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.handle.local_addr()
    }

    /// Stops listening and closes the socket.
    pub fn close(&self) {
        self.handle.close();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::io::{Read, Write};

    use super::*;
    use crate::uv::{OwnedLoop, RunMode};

    #[test]
    fn an_idle_socket_adds_little_to_the_libuv_handle() {
        // What an idle keep-alive connection costs at this layer: libuv's uv_tcp_t plus these
        // bytes, in one block. 48 keeps the block (with Rc's two counts) in one 320-byte
        // malloc chunk on 64-bit Linux.
        let extra = size_of::<TcpSocket>() - size_of::<crate::uv::sys::uv_tcp_t>();
        assert!(extra <= 48, "TcpSocket adds {extra} bytes to its uv_tcp_t");
    }

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (ours, peer)
    }

    #[test]
    fn a_close_without_linger_writes_everything_then_closes_without_the_peers_fin() {
        let lp = OwnedLoop::new().unwrap();
        let (ours, mut peer) = pair();
        let sock = TcpSocket::from_std(lp.handle(), ours).unwrap();
        assert_eq!(sock.peer_addr(), Some(peer.local_addr().unwrap()));
        sock.write(b"all of it");
        sock.close_after_flush_without_linger();
        // The peer never closes its side; the socket closes anyway once the data is out.
        while !sock.is_closed() {
            lp.handle().run(RunMode::Once);
        }
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"all of it");
        drop(sock);
        lp.close().expect("the handle is closed");
    }

    /// Records what a socket delivers.
    #[derive(Default)]
    struct Recorder {
        data: RefCell<Vec<u8>>,
        eof: Cell<bool>,
    }

    impl SocketHandler for Recorder {
        fn on_data(&self, data: &[u8]) {
            self.data.borrow_mut().extend_from_slice(data);
        }
        fn on_eof(&self) {
            self.eof.set(true);
        }
        fn on_drain(&self) {}
        fn on_close(&self, _err: Option<UvError>) {}
    }

    #[test]
    fn bytes_that_already_arrived_are_delivered_before_reading_starts() {
        let lp = OwnedLoop::new().unwrap();
        let (ours, mut peer) = pair();
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // The bytes are in the kernel: a blocking peek on a clone says so.
        let mut probe = [0u8; 1];
        ours.peek(&mut probe).unwrap();
        let sock = TcpSocket::from_std(lp.handle(), ours).unwrap();
        let rec = Rc::new(Recorder::default());
        let weak: Weak<dyn SocketHandler> = Rc::downgrade(&rec) as Weak<dyn SocketHandler>;
        sock.set_handler(weak);
        // Delivered within the call, without running the loop.
        sock.read_available();
        #[cfg(unix)]
        assert_eq!(&*rec.data.borrow(), b"GET / HTTP/1.1\r\n\r\n");
        // Nothing more is there: nothing more is delivered, and EOF is left to reading.
        sock.read_available();
        drop(peer);
        sock.resume_reading();
        while !rec.eof.get() {
            lp.handle().run(RunMode::Once);
        }
        assert_eq!(&*rec.data.borrow(), b"GET / HTTP/1.1\r\n\r\n");
        sock.close();
        drop(sock);
        lp.close().expect("the handle is closed");
    }

    #[test]
    fn an_idle_socket_holds_no_output_queue() {
        let lp = OwnedLoop::new().unwrap();
        let (ours, mut peer) = pair();
        let sock = TcpSocket::from_std(lp.handle(), ours).unwrap();
        sock.cork();
        sock.write(b"hello ");
        sock.write_owned(OwnedBuf::Static(b"world"));
        assert_eq!(sock.queued_bytes(), 11);
        sock.uncork().unwrap();
        assert_eq!(sock.queued_bytes(), 0);
        let out = sock.out.take();
        assert!(
            out.is_none(),
            "written out: the queue went back to the pool"
        );
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
        sock.close();
        drop(sock);
        lp.close().expect("no handle left open");
    }

    #[cfg(unix)]
    #[test]
    fn accept_pending_takes_what_is_queued_then_says_none() {
        let lp = OwnedLoop::new().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = TcpListener::bind(lp.handle(), &addr, false).unwrap();
        // libuv's own callback is never run here (the loop does not turn): only the queue.
        listener.listen(16, |_| {}).unwrap();
        let bound = listener.local_addr().unwrap();
        assert!(
            listener.accept_pending().unwrap().is_none(),
            "nothing queued yet"
        );
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(bound).unwrap())
            .collect();
        // The server side queues a connection when the client's last handshake ACK arrives,
        // which may trail connect() by a moment: poll, within a bound.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut peers = Vec::new();
        let mut sockets = Vec::new();
        while sockets.len() < 3 && std::time::Instant::now() < deadline {
            match listener.accept_pending().unwrap() {
                Some(sock) => {
                    peers.push(sock.peer_addr().unwrap());
                    sockets.push(sock);
                }
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        assert!(
            listener.accept_pending().unwrap().is_none(),
            "the queue is empty"
        );
        let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        peers.sort();
        expected.sort();
        assert_eq!(peers, expected, "each queued connection, once");
        // They are ordinary sockets of the loop: a write reaches the client.
        sockets[0].write(b"hi");
        let mut got = [0u8; 2];
        let first = clients
            .iter()
            .position(|c| c.local_addr().unwrap() == sockets[0].peer_addr().unwrap())
            .unwrap();
        (&clients[first]).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        for sock in &sockets {
            sock.close();
        }
        drop(sockets);
        listener.close();
        drop(listener);
        lp.close().expect("no handle left open");
    }

    /// A listener with one client connected (and `hello`, if any, sent), and that client's
    /// connection taken with `accept_pending`.
    #[cfg(unix)]
    fn batch_accepted(
        lp: &OwnedLoop,
        hello: &[u8],
    ) -> (TcpListener, Rc<TcpSocket>, std::net::TcpStream) {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = TcpListener::bind(lp.handle(), &addr, false).unwrap();
        listener.listen(16, |_| {}).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        client.write_all(hello).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(sock) = listener.accept_pending().unwrap() {
                return (listener, sock, client);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the connection never queued"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Whether libuv has the socket yet (it may wait in the socket, see `uv::tcp`).
    #[cfg(unix)]
    fn adopted(sock: &TcpSocket) -> bool {
        let fd = sock.unadopted.take();
        let waiting = fd.is_some();
        sock.unadopted.set(fd);
        !waiting
    }

    fn recorder(sock: &TcpSocket) -> Rc<Recorder> {
        let rec = Rc::new(Recorder::default());
        sock.set_handler(Rc::downgrade(&rec) as Weak<dyn SocketHandler>);
        rec
    }

    /// Closes what `batch_accepted` made (the socket, unless the test dropped it already) and
    /// checks that the loop closes with no handle left open.
    #[cfg(unix)]
    fn close_all(lp: OwnedLoop, listener: TcpListener, sock: Option<Rc<TcpSocket>>) {
        if let Some(sock) = sock {
            sock.close();
            while !sock.is_closed() {
                lp.handle().run(RunMode::Once);
            }
        }
        listener.close();
        drop(listener);
        lp.close().expect("no handle left open");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_answered_at_once_is_closed_without_ever_going_to_libuv() {
        let lp = OwnedLoop::new().unwrap();
        let (listener, sock, mut client) = batch_accepted(&lp, b"ping");
        assert!(
            !adopted(&sock),
            "accept4 made it non-blocking: it waits in the socket"
        );
        assert_eq!(sock.peer_addr(), Some(client.local_addr().unwrap()));
        assert_eq!(sock.local_addr(), Some(client.peer_addr().unwrap()));
        let rec = recorder(&sock);
        // The request is in the kernel once the client's write returned (loopback); poll
        // briefly in case the peek raced it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while rec.data.borrow().is_empty() && std::time::Instant::now() < deadline {
            sock.read_available();
        }
        assert_eq!(&*rec.data.borrow(), b"ping");
        sock.write(b"pong");
        assert_eq!(
            sock.queued_bytes(),
            0,
            "written at once, straight to the socket"
        );
        assert!(
            !adopted(&sock),
            "reading and writing at once needed no libuv"
        );
        // Nothing is left to write: the close is immediate, and it closes the socket itself
        // (libuv's handle never had it).
        sock.close_after_flush_without_linger();
        assert!(sock.is_closed());
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"pong", "the answer, then the server's FIN");
        close_all(lp, listener, Some(sock));
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_that_must_wait_goes_to_libuv_and_keeps_its_byte_order() {
        let lp = OwnedLoop::new().unwrap();
        let (listener, sock, mut client) = batch_accepted(&lp, b"");
        let rec = recorder(&sock);
        sock.write(b"first ");
        // Waiting for the next bytes needs libuv's reading: the socket is adopted for it.
        sock.resume_reading();
        assert!(adopted(&sock));
        client.write_all(b"more").unwrap();
        while rec.data.borrow().len() < 4 {
            lp.handle().run(RunMode::Once);
        }
        assert_eq!(&*rec.data.borrow(), b"more");
        sock.write(b"second");
        let mut got = [0u8; 12];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"first second");
        drop(client);
        while !rec.eof.get() {
            lp.handle().run(RunMode::Once);
        }
        close_all(lp, listener, Some(sock));
    }

    #[cfg(unix)]
    #[test]
    fn a_write_the_kernel_cannot_take_at_once_finishes_through_libuv() {
        let lp = OwnedLoop::new().unwrap();
        let (listener, sock, client) = batch_accepted(&lp, b"");
        // Far more than loopback's socket buffers: the first write takes part, the rest is
        // queued for libuv, which needs the socket.
        let body: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        sock.write(&body);
        assert!(
            sock.queued_bytes() > 0,
            "the kernel did not take 32 MiB at once"
        );
        sock.close_after_flush_without_linger();
        while !sock.is_closed() {
            lp.handle().run(RunMode::Once);
        }
        let got = reader.join().unwrap();
        assert!(
            got == body,
            "every byte, in order ({} of {})",
            got.len(),
            body.len()
        );
        close_all(lp, listener, Some(sock));
    }

    #[cfg(unix)]
    #[test]
    fn dropping_a_socket_that_never_went_to_libuv_closes_it() {
        let lp = OwnedLoop::new().unwrap();
        let (listener, sock, mut client) = batch_accepted(&lp, b"");
        drop(sock);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "closed without a byte");
        // Closing the loop runs the handle's close callback, which frees the memory.
        close_all(lp, listener, None);
    }
}
