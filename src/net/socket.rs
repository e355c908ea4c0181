//! The socket interface the HTTP layer talks to, whatever the transport (TCP or TLS).

use std::net::SocketAddr;
use std::rc::Weak;

use crate::uv::{OwnedBuf, UvError};

/// Events a socket delivers to the layer above (an HTTP or WebSocket connection).
///
/// A socket never calls its handler from inside a call the handler made on it; events arrive
/// from the loop, so the handler may call back into the socket freely.
pub trait SocketHandler {
    /// Bytes arrived (plaintext, for TLS). Only valid during the call.
    fn on_data(&self, data: &[u8]);
    /// The peer will send nothing more (end of file). Writing is still possible.
    fn on_eof(&self);
    /// The bytes queued for writing fell back to the low-water mark after having reached the
    /// high-water mark: a paused producer may resume.
    fn on_drain(&self);
    /// The socket closed by itself: `Some(err)` after an error (reset, write failure, TLS
    /// failure), `None` when a graceful [`Socket::close_after_flush`] finished. Not called for
    /// closes the handler asked for with [`Socket::close`] or [`Socket::abort`].
    fn on_close(&self, err: Option<UvError>);
}

/// A connected byte stream on the loop.
pub trait Socket {
    /// Sets who receives events.
    fn set_handler(&self, handler: Weak<dyn SocketHandler>);
    /// Starts (or resumes) reading.
    fn resume_reading(&self);
    /// Stops reading (backpressure): no `on_data` until [`Socket::resume_reading`].
    fn pause_reading(&self);
    /// Before reading starts: delivers, through `on_data`, bytes that already arrived (a
    /// request sent right after connecting), without waiting for the loop. The caller then
    /// calls [`Socket::resume_reading`] unless `on_data` paused or closed. The default delivers
    /// nothing.
    fn read_available(&self) {}
    /// Turns Nagle's algorithm off (TCP_NODELAY): small writes leave at once instead of
    /// waiting for the peer's ACK of earlier ones. The default does nothing (no TCP below).
    fn disable_nagle(&self) {}
    /// Queues a copy of `data`. Small writes are coalesced into one buffer.
    fn write(&self, data: &[u8]);
    /// Queues an owned buffer without copying it.
    fn write_owned(&self, buf: OwnedBuf);
    /// Queues what `fill` appends to the buffer it is given: for output produced in place
    /// (a response head) with no intermediate copy. `fill` may only append, and must not call
    /// back into this socket. The default builds a pooled buffer and writes a copy of it.
    fn write_with(&self, fill: &mut dyn FnMut(&mut Vec<u8>)) {
        let mut v = super::pool::take_bytes();
        fill(&mut v);
        self.write(&v);
        super::pool::give_bytes(v);
    }
    /// Queues copies of `first` then `second` as if one buffer: a whole small response (its
    /// head and body) costs one call. The default goes through [`Socket::write_with`].
    fn write_pair(&self, first: &[u8], second: &[u8]) {
        self.write_with(&mut |out| {
            out.reserve(first.len() + second.len());
            out.extend_from_slice(first);
            out.extend_from_slice(second);
        });
    }
    /// Defers flushing until the matching [`Socket::uncork`]: writes made while corked go out in
    /// one gathered write.
    fn cork(&self);
    /// Ends a [`Socket::cork`]; flushes when the outermost cork ends.
    fn uncork(&self) -> Result<(), UvError>;
    /// Bytes accepted by `write` but not yet taken by the kernel.
    fn queued_bytes(&self) -> usize;
    /// Total bytes the kernel has accepted so far: a write stall shows as no progress.
    fn write_progress(&self) -> u64;
    /// True (once) when the queue fell to the low-water mark inside a call the handler made
    /// (a synchronous flush), where the socket cannot call `on_drain` itself: the handler must
    /// deliver that drain later, from the loop.
    fn take_drain_owed(&self) -> bool;
    /// Sets the high-water mark for [`SocketHandler::on_drain`] (low water is half of it).
    fn set_high_water_mark(&self, bytes: usize);
    /// True while queued bytes are at or above the high-water mark.
    fn is_over_high_water(&self) -> bool;
    /// Writes everything queued, sends end-of-stream (FIN / TLS close_notify), waits for the
    /// peer to finish too (discarding what it sends, bounded), then closes. `on_close(None)`
    /// follows. This is how a response is never truncated by a reset.
    fn close_after_flush(&self);
    /// Like [`Socket::close_after_flush`], for when the peer has said it sends nothing more
    /// and everything it sent was read: closes as soon as the queue is written, without
    /// waiting for the peer's FIN (the kernel sends ours after the data). Saves a read and a
    /// loop turn per connection; with unread input this would turn the close into a reset,
    /// which is why the caller decides. If the queue empties inside this call or inside the
    /// handler's own [`Socket::uncork`], the socket is simply closed ([`Socket::is_closed`])
    /// and no `on_close` follows; if it empties later, `on_close(None)` follows from the loop.
    /// Transports with a closing handshake of their own (TLS) may linger anyway.
    fn close_after_flush_without_linger(&self) {
        self.close_after_flush();
    }
    /// Closes now; queued bytes are dropped. No `on_close` follows.
    fn close(&self);
    /// Closes with a reset, telling the peer the stream was cut (for an incomplete response).
    fn abort(&self);
    /// True once closed or closing.
    fn is_closing(&self) -> bool;
    /// True once closed (the handle is gone; nothing more is written or read).
    fn is_closed(&self) -> bool;
    /// True after [`Socket::close_after_flush`] finished writing and the FIN went out.
    fn is_shut_down(&self) -> bool;
    /// True while a security handshake (TLS) is still running; plain TCP never is.
    fn is_handshaking(&self) -> bool {
        false
    }
    /// The TLS failure that closed this socket, if that is why it closed (plain TCP: never).
    fn tls_failure(&self) -> Option<crate::net::tls::TlsError> {
        None
    }
    /// The peer's address.
    fn peer_addr(&self) -> Option<SocketAddr>;
    /// The local address.
    fn local_addr(&self) -> Option<SocketAddr>;
}
