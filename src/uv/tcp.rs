//! TCP handles: listen, accept, connect, read, write, shutdown, close.
//!
//! A TCP handle lives inside the allocation of the object that owns it: a [`TcpCell`] is a
//! field of some `T` held in an `Rc<T>` (the socket layer's `TcpSocket`), so a connection is one
//! heap block, not a socket plus a separate box for libuv. [`TcpRef`] runs the handle's
//! operations for such an owner. [`TcpHandle`] is the same machinery packaged as a standalone
//! owner, for listeners and for code that wants a bare handle.
//!
//! Lifetime: [`TcpRef::init`] stores a `Weak<T>` to the owner in the handle's `data`. That weak
//! count keeps the allocation, and so the `uv_tcp_t` inside it, in place even after the last
//! `Rc<T>` is gone; the close callback gives it back, and only then can the memory be freed.
//! libuv holds no strong reference, so nothing can keep an owner alive in a cycle: dropping the
//! last `Rc<T>` drops the [`TcpCell`], which starts `uv_close` unless that already happened.
//! Callbacks find the owner by upgrading the weak pointer; events for an owner that is gone, or
//! that asked to close, are dropped (a write's buffers with them). Pending writes are cancelled
//! by the close (their callbacks run with `ECANCELED`, before the close callback).
//!
//! Deferred adoption (Unix): a connection taken straight from the listening socket
//! (`TcpHandle::accept_pending`) may wait in its owner's [`EmbedsTcp::unadopted_fd`] instead of
//! going to libuv at once. Until an operation needs libuv's stream (reading with
//! `uv_read_start`, queuing a write, shutdown, socket options), reads and writes go to the
//! descriptor directly. A connection answered at once and closed — `Connection: close`, the
//! common case under a high connection rate — then costs the kernel what it costs nginx:
//! accept, read, write, close. Adopting it would add `uv_tcp_open`'s `ioctl(FIONBIO)` and, at
//! `uv_close`, an `epoll_ctl(EPOLL_CTL_DEL)` for a descriptor that was never registered.

#[cfg(unix)]
use std::cell::Cell;
use std::cell::{RefCell, UnsafeCell};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::{size_of, ManuallyDrop};
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

use libuv_sys2 as sys;

use super::addr::RawAddr;
use super::buf::{lend_read_buffer, return_read_buffer, uv_buf, OwnedBuf};
use super::error::{check, UvError};
use super::event_loop::Loop;
use super::handle::ffi_guard;

/// Receives a stream's events. Implemented by the socket layer above.
pub trait StreamHandler {
    /// Bytes arrived. The slice is only valid for the duration of the call.
    fn on_read(&self, data: &[u8]);
    /// Reading ended: end of file (`err.is_eof()`) or an error. No more `on_read` follows.
    fn on_read_end(&self, err: UvError);
    /// A [`TcpHandle::write`] finished (or was cancelled); its buffers come back for reuse.
    fn on_write_done(&self, bufs: Vec<OwnedBuf>, status: Result<(), UvError>);
    /// A [`TcpHandle::shutdown`] finished.
    fn on_shutdown(&self, status: Result<(), UvError>);
}

type ConnectionCallback = Box<dyn FnMut(Result<(), UvError>)>;
type ConnectCallback = Box<dyn FnOnce(Result<(), UvError>)>;

/// The low bit of a handle's `data`: close was requested. The rest of `data` is still the
/// `Weak<T>` pointer, which the close callback needs; that pointer is at least 8-aligned since
/// `T` contains a `uv_tcp_t`, so its low bit is free.
const CLOSE_REQUESTED: usize = 1;

/// A libuv TCP handle embedded in its owner `T`, which lives in an `Rc<T>`.
///
/// States, told apart by the handle's `data`: null (never initialised, or closed and released),
/// a `Weak<T>` to the owner (open), or that pointer with [`CLOSE_REQUESTED`] set (closing).
/// Dropping an open cell closes the handle; the memory stays allocated until the close callback
/// because `data` holds a weak count on it.
pub(crate) struct TcpCell<T> {
    raw: UnsafeCell<sys::uv_tcp_t>,
    /// `data` holds a `Weak<T>` while the handle is open.
    owner: PhantomData<Weak<T>>,
}

impl<T> TcpCell<T> {
    /// A cell with no handle yet; [`TcpRef::init`] makes it one.
    pub(crate) fn new() -> Self {
        TcpCell {
            // SAFETY: uv_tcp_t is plain C data for which all-zero bytes are a valid value; the
            // null `data` marks the cell as not initialised.
            raw: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            owner: PhantomData,
        }
    }

    fn raw(&self) -> *mut sys::uv_tcp_t {
        self.raw.get()
    }

    fn data(&self) -> *mut c_void {
        // SAFETY: reads a plain field of our own cell on the loop thread (the cell is not
        // Send); libuv never writes `data`.
        unsafe { (*self.raw.get()).data }
    }
}

impl<T> Default for TcpCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for TcpCell<T> {
    fn drop(&mut self) {
        let data = self.data() as usize;
        if data == 0 || data & CLOSE_REQUESTED != 0 {
            return;
        }
        // In place or a moved copy? Only a cell inside the owner it was initialised for lies
        // within that owner's memory: a copy cannot, since that memory stays allocated (the weak
        // count), and the cell cannot move within its owner (it is reached only through
        // `EmbedsTcp::tcp_cell`, a shared borrow of an owner that stays in its `Rc`).
        let at = self.raw() as usize;
        if at >= data && at + size_of::<Self>() <= data + size_of::<T>() {
            // The owner is being dropped where it lives (its last Rc went away): close now; the
            // weak count in `data` keeps this memory allocated until the close callback.
            // SAFETY: the handle is open and in place (checked above); `data` is its Weak<T>.
            unsafe { request_close::<T>(self.raw()) };
        } else {
            // The owner was moved out of its Rc while open (`Rc::try_unwrap`): libuv's handle
            // is still at the old place, which this copy cannot reach (and must not close from
            // here). Leaving it open is safe: the weak count keeps that memory allocated.
            log::error!(
                "an open TCP handle's owner was moved out of its Rc; the handle stays open"
            );
        }
    }
}

/// Implemented by the owner of an embedded TCP handle; libuv's events go to its
/// [`StreamHandler`] methods.
pub(crate) trait EmbedsTcp: StreamHandler + Sized + 'static {
    /// The owner's handle: a field of `self` (checked when the handle is initialised), since the
    /// weak count libuv holds keeps exactly the owner's allocation in place. Being a shared
    /// borrow of `self`, the cell cannot be moved while the owner lives in its `Rc`.
    fn tcp_cell(&self) -> &TcpCell<Self>;

    /// Where an accepted socket may wait before libuv adopts it (see the module's "Deferred
    /// adoption"); `None`, the default, adopts every socket at once. The owner only provides
    /// the place: [`TcpRef`] puts the descriptor there, takes it out when libuv needs it, and
    /// closes it on `close`; dropping the owner closes it with the cell.
    #[cfg(unix)]
    fn unadopted_fd(&self) -> Option<&Cell<Option<OwnedFd>>> {
        None
    }
}

/// A connection taken from the listening socket by [`TcpHandle::accept_pending`].
#[cfg(unix)]
pub(crate) struct AcceptedFd {
    fd: OwnedFd,
    /// Already non-blocking (`accept4` with `SOCK_NONBLOCK`), so it can be read and written
    /// before libuv adopts it; otherwise it must go to libuv (`uv_tcp_open`) first.
    nonblocking: bool,
}

/// The operations on the TCP handle embedded in `owner`. Every operation checks that the handle
/// is open and still where libuv knows it (its `data` is the owner's own address); otherwise it
/// fails with `EBADF` (or does nothing, for the ones that cannot fail).
pub(crate) struct TcpRef<'a, T: EmbedsTcp> {
    owner: &'a T,
}

/// A write request: the libuv request plus the buffers it must keep alive. `repr(C)` puts the
/// libuv request first, so the callback can find the box from the request pointer. The handle is
/// found through the request's own `handle` field.
#[repr(C)]
struct WriteReq {
    req: sys::uv_write_t,
    bufs: Vec<OwnedBuf>,
}

/// The most buffers passed to one `uv_try_write` / `uv_write` call (below every IOV_MAX).
pub const MAX_IOVECS: usize = 64;

/// A connect request carries its own completion callback: only connecting sockets pay for it.
#[repr(C)]
struct ConnectReq {
    req: sys::uv_connect_t,
    on_connect: ConnectCallback,
}

fn closed_error(what: &str) -> UvError {
    UvError::with_context(
        sys::uv_errno_t_UV_EBADF,
        format!("{what}: the TCP handle is closed"),
    )
}

impl<'a, T: EmbedsTcp> TcpRef<'a, T> {
    /// The handle embedded in `owner`.
    pub(crate) fn of(owner: &'a T) -> Self {
        TcpRef { owner }
    }

    /// Initialises `owner`'s handle on `lp` (`uv_tcp_init`). Fails if the cell is not a field of
    /// `owner` or is already in use.
    pub(crate) fn init(owner: &Rc<T>, lp: Loop) -> Result<(), UvError> {
        let cell = owner.tcp_cell();
        let base = Rc::as_ptr(owner) as usize;
        let at = cell.raw() as usize;
        if at < base || at + size_of::<TcpCell<T>>() > base + size_of::<T>() {
            return Err(UvError::with_context(
                sys::uv_errno_t_UV_EINVAL,
                "uv_tcp_init: the handle is not a field of its owner",
            ));
        }
        if !cell.data().is_null() {
            // Open, or closing with its close callback still to come: libuv owns the memory.
            return Err(UvError::with_context(
                sys::uv_errno_t_UV_EBUSY,
                "uv_tcp_init: the handle is in use",
            ));
        }
        // SAFETY: the cell is inside the owner's allocation (checked above) and libuv does not
        // use it (null `data`: never initialised, or its close callback has run).
        let rc = unsafe { sys::uv_tcp_init(lp.as_raw(), cell.raw()) };
        check(rc, || "uv_tcp_init".to_string())?;
        let weak = Weak::into_raw(Rc::downgrade(owner));
        // SAFETY: plain field write on the loop thread. From here the weak count keeps the
        // allocation alive until close_cb gives it back.
        unsafe { (*cell.raw()).data = weak as *mut c_void };
        Ok(())
    }

    /// The handle if it is open and in place: its `data` is this owner's own address. A copy of
    /// the owner moved out of its `Rc` (see `TcpCell`'s drop) is never at that address, which
    /// stays allocated while the handle is open, so it never reaches libuv.
    fn live(&self) -> Option<*mut sys::uv_tcp_t> {
        let cell = self.owner.tcp_cell();
        std::ptr::eq(cell.data() as *const T, self.owner).then(|| cell.raw())
    }

    /// The OS socket of the open handle, for the few calls libuv has no wrapper for: the one
    /// waiting to be adopted, or libuv's (`uv_fileno`). The owner or libuv keeps owning it.
    #[cfg(unix)]
    fn os_fd(&self, what: &str) -> Result<sys::uv_os_fd_t, UvError> {
        let tcp = self.live_or(what)?;
        if let Some(fd) = self.waiting_fd() {
            return Ok(fd);
        }
        let mut fd: sys::uv_os_fd_t = -1;
        // SAFETY: open handle; uv_fileno only writes `fd`.
        check(
            unsafe { sys::uv_fileno(tcp as *const sys::uv_handle_t, &mut fd) },
            || what.to_string(),
        )?;
        Ok(fd)
    }

    fn live_or(&self, what: &str) -> Result<*mut sys::uv_tcp_t, UvError> {
        self.live().ok_or_else(|| closed_error(what))
    }

    /// The open handle with its socket in libuv's hands: a socket still waiting to be adopted
    /// is adopted first. For every operation that goes through libuv's stream.
    #[inline]
    fn adopted_or(&self, what: &str) -> Result<*mut sys::uv_tcp_t, UvError> {
        let tcp = self.live_or(what)?;
        #[cfg(unix)]
        if self.waiting_fd().is_some() {
            self.adopt_waiting(what)?;
        }
        Ok(tcp)
    }

    /// Hands the waiting descriptor to libuv (`uv_tcp_open`): once per connection at most,
    /// so out of the callers' way.
    #[cfg(unix)]
    #[cold]
    #[inline(never)]
    fn adopt_waiting(&self, what: &str) -> Result<(), UvError> {
        match self.owner.unadopted_fd().and_then(Cell::take) {
            Some(fd) => self
                .adopt_fd(fd)
                .map_err(|e| e.context(format!("{what}: adopting the accepted socket"))),
            None => Ok(()),
        }
    }

    fn stream_or(&self, what: &str) -> Result<*mut sys::uv_stream_t, UvError> {
        self.adopted_or(what).map(|t| t as *mut sys::uv_stream_t)
    }

    /// The descriptor waiting in the owner to be adopted, if any (it stays there).
    #[cfg(unix)]
    #[inline]
    fn waiting_fd(&self) -> Option<RawFd> {
        let cell = self.owner.unadopted_fd()?;
        let fd = cell.take();
        let raw = fd.as_ref().map(AsRawFd::as_raw_fd);
        cell.set(fd);
        raw
    }

    /// Takes an accepted connection: into the owner's waiting place when it has one and the
    /// socket is non-blocking already, else to libuv at once (`uv_tcp_open`). The descriptor
    /// is closed if that fails.
    #[cfg(unix)]
    pub(crate) fn adopt_accepted(&self, accepted: AcceptedFd) -> Result<(), UvError> {
        self.live_or("adopt socket")?;
        match self.owner.unadopted_fd() {
            Some(cell) if accepted.nonblocking => {
                // Dropping a descriptor that was somehow still waiting closes it.
                drop(cell.replace(Some(accepted.fd)));
                Ok(())
            }
            _ => self.adopt_fd(accepted.fd),
        }
    }

    /// True while the handle is initialised and not closing.
    pub(crate) fn is_open(&self) -> bool {
        self.live().is_some()
    }

    /// Binds to `addr` (`uv_tcp_bind`), with `UV_TCP_REUSEPORT` when `reuse_port`.
    pub(crate) fn bind(&self, addr: &SocketAddr, reuse_port: bool) -> Result<(), UvError> {
        let tcp = self.adopted_or("bind")?;
        let raw = RawAddr::from_socket_addr(addr)?;
        let mut flags = 0;
        if reuse_port {
            flags |= sys::uv_tcp_flags_UV_TCP_REUSEPORT;
        }
        // SAFETY: open handle; `raw` holds a valid sockaddr for the call.
        let rc = unsafe { sys::uv_tcp_bind(tcp, raw.as_ptr(), flags as _) };
        check(rc, || format!("bind {addr}")).map(|_| ())
    }

    /// Adopts an open socket (`uv_tcp_open`). On failure the descriptor is left to the caller.
    ///
    /// # Safety
    /// `fd` must be an open TCP socket that nothing else closes or uses.
    pub(crate) unsafe fn open(&self, fd: std::os::raw::c_int) -> Result<(), UvError> {
        let tcp = self.live_or("adopt socket")?;
        // SAFETY: caller's contract for fd; open handle.
        let rc = unsafe { sys::uv_tcp_open(tcp, fd as _) };
        check(rc, || format!("adopt socket fd {fd}")).map(|_| ())
    }

    /// Adopts an owned socket; it is closed if that fails.
    #[cfg(unix)]
    pub(crate) fn adopt_fd(&self, fd: std::os::fd::OwnedFd) -> Result<(), UvError> {
        use std::os::fd::{AsRawFd, IntoRawFd};
        // SAFETY: `fd` is owned here, so nothing else closes or uses it; on success the handle
        // owns it (into_raw_fd below), on failure the OwnedFd still closes it.
        unsafe { self.open(fd.as_raw_fd()) }?;
        let _ = fd.into_raw_fd();
        Ok(())
    }

    /// Takes an accepted std stream (made non-blocking), e.g. from an acceptor thread: it
    /// waits in the owner when the owner has a place for it, as a batch-accepted socket does.
    #[cfg(unix)]
    pub(crate) fn adopt_std_stream(&self, stream: std::net::TcpStream) -> Result<(), UvError> {
        stream.set_nonblocking(true).map_err(|e| {
            UvError::with_context(sys::uv_errno_t_UV_EINVAL, format!("adopt socket: {e}"))
        })?;
        self.adopt_accepted(AcceptedFd {
            fd: stream.into(),
            nonblocking: true,
        })
    }

    /// Connects to `addr`; `on_connect` runs once with the outcome, unless the handle is closed
    /// first (then it is dropped without being called).
    pub(crate) fn connect(
        &self,
        addr: &SocketAddr,
        on_connect: impl FnOnce(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        let tcp = self.adopted_or("connect")?;
        let raw = RawAddr::from_socket_addr(addr)?;
        let req = Box::into_raw(Box::new(ConnectReq {
            // SAFETY: plain C data, initialised by uv_tcp_connect.
            req: unsafe { std::mem::zeroed() },
            on_connect: Box::new(on_connect),
        }));
        // SAFETY: open handle and a valid request; the request box is freed in connect_cb (or
        // below on immediate failure).
        let rc =
            unsafe { sys::uv_tcp_connect(&mut (*req).req, tcp, raw.as_ptr(), Some(connect_cb)) };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            return Err(UvError::with_context(rc, format!("connect to {addr}")));
        }
        Ok(())
    }

    /// Starts reading; bytes go to the owner's `on_read`.
    pub(crate) fn read_start(&self) -> Result<(), UvError> {
        let stream = self.stream_or("read_start")?;
        // SAFETY: open stream whose `data` is a Weak<T>, which read_cb::<T> expects.
        let rc = unsafe { sys::uv_read_start(stream, Some(alloc_cb), Some(read_cb::<T>)) };
        check(rc, || "read_start".to_string()).map(|_| ())
    }

    /// Stops reading (backpressure). Harmless when not reading or closed.
    pub(crate) fn read_stop(&self) {
        if let Some(tcp) = self.live() {
            // SAFETY: open stream.
            unsafe { sys::uv_read_stop(tcp as *mut sys::uv_stream_t) };
        }
    }

    /// Hands `f` the bytes the kernel already holds for this stream, read without waiting for
    /// the loop to poll; returns whether there were any. For a connection just accepted: a
    /// client sends its request right after connecting, and reading it at once saves
    /// registering for readiness and a poll round trip (and, when the answer closes the
    /// connection, ever registering at all). Nothing read (would block), end of file and
    /// errors all return false and are left to the regular read path, which meets them again.
    /// libuv has no such call (no `uv_try_read`), so on Unix this reads the descriptor (libuv's
    /// or the one waiting to be adopted), once, before `uv_read_start`; elsewhere it reads
    /// nothing.
    pub(crate) fn read_available(&self, f: impl FnOnce(&[u8])) -> bool {
        #[cfg(unix)]
        {
            use std::io::Read;
            use std::os::fd::FromRawFd;
            let Ok(fd) = self.os_fd("read") else {
                return false;
            };
            // SAFETY: `fd` is the open, non-blocking socket libuv owns; ManuallyDrop never
            // closes it, and it is only read from, during this call.
            let file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let buf = lend_read_buffer();
            // SAFETY: the lent buffer is `len` writable bytes, ours until returned below.
            let space = unsafe { std::slice::from_raw_parts_mut(buf.base as *mut u8, buf.len) };
            let got = match (&*file).read(space) {
                Ok(n) if n > 0 => {
                    f(&space[..n]);
                    true
                }
                _ => false,
            };
            // SAFETY: `buf` came from lend_read_buffer and the slice above is no longer used.
            unsafe { return_read_buffer(&buf) };
            got
        }
        #[cfg(not(unix))]
        {
            let _ = f;
            false
        }
    }

    /// Writes as much of `slices` as the kernel takes right now (`uv_try_write`): the byte
    /// count, `Ok(0)` when it would block.
    #[inline]
    pub(crate) fn try_write(&self, slices: &[&[u8]]) -> Result<usize, UvError> {
        let stream = self.live_or("write")? as *mut sys::uv_stream_t;
        #[cfg(unix)]
        if let Some(fd) = self.waiting_fd() {
            return write_fd(fd, slices);
        }
        let rc = if let [only] = slices {
            // One buffer (the common case): no array of MAX_IOVECS to initialise.
            let buf = uv_buf(only);
            // SAFETY: open stream; `buf` points into a slice that outlives this synchronous call.
            unsafe { sys::uv_try_write(stream, &buf, 1) }
        } else {
            let mut bufs = [sys::uv_buf_t {
                base: std::ptr::null_mut(),
                len: 0,
            }; MAX_IOVECS];
            let n = slices.len().min(MAX_IOVECS);
            for (b, s) in bufs.iter_mut().zip(slices.iter()) {
                *b = uv_buf(s);
            }
            // SAFETY: open stream; the bufs point into slices that outlive this synchronous call.
            unsafe { sys::uv_try_write(stream, bufs.as_ptr(), n as _) }
        };
        if rc == sys::uv_errno_t_UV_EAGAIN {
            return Ok(0);
        }
        check(rc, || "write".to_string()).map(|n| n as usize)
    }

    /// Queues `bufs` (`uv_write`), skipping the first `skip` bytes of the first one. They come
    /// back through the owner's `on_write_done`. At most [`MAX_IOVECS`] buffers.
    pub(crate) fn write(&self, bufs: Vec<OwnedBuf>, skip: usize) -> Result<(), UvError> {
        debug_assert!(bufs.len() <= MAX_IOVECS);
        let stream = self.stream_or("write")?;
        let req = Box::into_raw(Box::new(WriteReq {
            // SAFETY: plain C data, initialised by uv_write.
            req: unsafe { std::mem::zeroed() },
            bufs,
        }));
        let mut iov = [sys::uv_buf_t {
            base: std::ptr::null_mut(),
            len: 0,
        }; MAX_IOVECS];
        // SAFETY: `req` is valid; the buffers it owns stay put until write_cb frees the box
        // (moving the Vec into the box did not move the heap bytes the iovecs point to).
        let n = unsafe {
            let owned = &(*req).bufs;
            for (i, b) in owned.iter().enumerate().take(MAX_IOVECS) {
                let s = b.as_slice();
                iov[i] = if i == 0 {
                    uv_buf(&s[skip..])
                } else {
                    uv_buf(s)
                };
            }
            owned.len().min(MAX_IOVECS)
        };
        // SAFETY: open stream whose `data` is a Weak<T> (as write_cb::<T> expects) and a valid
        // request; libuv copies the iovec array itself.
        let rc = unsafe {
            sys::uv_write(
                &mut (*req).req,
                stream,
                iov.as_ptr(),
                n as _,
                Some(write_cb::<T>),
            )
        };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            return Err(UvError::with_context(rc, "write"));
        }
        Ok(())
    }

    /// Bytes queued in libuv waiting for the socket; 0 once closed.
    pub(crate) fn write_queue_size(&self) -> usize {
        match self.live() {
            // SAFETY: open stream.
            Some(tcp) => unsafe {
                sys::uv_stream_get_write_queue_size(tcp as *const sys::uv_stream_t)
            },
            None => 0,
        }
    }

    /// Half-closes after queued writes (`uv_shutdown`); the owner's `on_shutdown` follows.
    pub(crate) fn shutdown(&self) -> Result<(), UvError> {
        let stream = self.stream_or("shutdown")?;
        let req = Box::into_raw(Box::new(
            // SAFETY: plain C data, initialised by uv_shutdown.
            unsafe { std::mem::zeroed::<sys::uv_shutdown_t>() },
        ));
        // SAFETY: open stream whose `data` is a Weak<T> (as shutdown_cb::<T> expects) and a
        // valid request; the box is freed in shutdown_cb.
        let rc = unsafe { sys::uv_shutdown(req, stream, Some(shutdown_cb::<T>)) };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            return Err(UvError::with_context(rc, "shutdown"));
        }
        Ok(())
    }

    /// Sets `TCP_NODELAY` (`uv_tcp_nodelay`).
    pub(crate) fn set_nodelay(&self, enable: bool) -> Result<(), UvError> {
        let tcp = self.adopted_or("set TCP_NODELAY")?;
        // SAFETY: open handle.
        let rc = unsafe { sys::uv_tcp_nodelay(tcp, enable as i32) };
        check(rc, || "set TCP_NODELAY".to_string()).map(|_| ())
    }

    /// Enables keep-alive probes after `delay_s` idle seconds (`uv_tcp_keepalive`).
    pub(crate) fn set_keepalive(&self, enable: bool, delay_s: u32) -> Result<(), UvError> {
        let tcp = self.adopted_or("set SO_KEEPALIVE")?;
        // SAFETY: open handle.
        let rc = unsafe { sys::uv_tcp_keepalive(tcp, enable as i32, delay_s) };
        check(rc, || "set SO_KEEPALIVE".to_string()).map(|_| ())
    }

    /// The local address (`uv_tcp_getsockname`); `None` once closed.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        let tcp = self.live()?;
        #[cfg(unix)]
        if let Some(fd) = self.waiting_fd() {
            return with_std_stream(fd, |s| s.local_addr().ok());
        }
        let mut raw = RawAddr::zeroed();
        let mut len = RawAddr::capacity();
        // SAFETY: open handle; `raw` is writable for `len` bytes.
        let rc = unsafe { sys::uv_tcp_getsockname(tcp, raw.as_mut_ptr(), &mut len) };
        if rc < 0 {
            return None;
        }
        raw.to_socket_addr()
    }

    /// The peer's address (`uv_tcp_getpeername`); `None` once closed.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        let tcp = self.live()?;
        #[cfg(unix)]
        if let Some(fd) = self.waiting_fd() {
            return with_std_stream(fd, |s| s.peer_addr().ok());
        }
        let mut raw = RawAddr::zeroed();
        let mut len = RawAddr::capacity();
        // SAFETY: open handle; `raw` is writable for `len` bytes.
        let rc = unsafe { sys::uv_tcp_getpeername(tcp, raw.as_mut_ptr(), &mut len) };
        if rc < 0 {
            return None;
        }
        raw.to_socket_addr()
    }

    /// Marks the handle as not keeping the loop alive (`uv_unref`).
    pub(crate) fn unref(&self) {
        if let Some(tcp) = self.live() {
            // SAFETY: open handle.
            unsafe { super::handle::unref(tcp as *mut sys::uv_handle_t) }
        }
    }

    /// Closes the handle (`uv_close`). From now on no event reaches the owner; queued writes
    /// are cancelled; the close callback releases the weak count, which frees the memory if
    /// the owner is gone by then. A socket still waiting to be adopted is closed here, and
    /// libuv closes a handle that never had one. Idempotent.
    pub(crate) fn close(&self) {
        if let Some(tcp) = self.live() {
            #[cfg(unix)]
            drop(self.owner.unadopted_fd().and_then(Cell::take));
            // SAFETY: open handle whose `data` is a Weak<T>.
            unsafe { request_close::<T>(tcp) };
        }
    }

    /// Closes with a TCP reset (`uv_tcp_close_reset`) instead of a FIN, falling back to an
    /// ordinary close when libuv refuses (e.g. after a shutdown).
    pub(crate) fn close_reset(&self) {
        // A socket waiting to be adopted goes to libuv first, which knows how to reset it; if
        // even that fails, the ordinary close below still closes it.
        let _ = self.adopted_or("reset");
        let Some(tcp) = self.live() else { return };
        // SAFETY: open handle whose `data` is a Weak<T>, which close_cb::<T> releases.
        let rc = unsafe { sys::uv_tcp_close_reset(tcp, Some(close_cb::<T>)) };
        if rc < 0 {
            // SAFETY: uv_tcp_close_reset failed without closing: still open, same contract.
            unsafe { request_close::<T>(tcp) };
        } else {
            // SAFETY: open handle; marks it closing exactly as request_close does.
            unsafe { mark_close_requested(tcp) };
        }
    }
}

/// Writes what the kernel takes of `slices` to a socket libuv has not adopted, as
/// `uv_try_write` would: the byte count, `Ok(0)` when it would block.
#[cfg(unix)]
#[inline(never)]
fn write_fd(fd: RawFd, slices: &[&[u8]]) -> Result<usize, UvError> {
    use std::io::{IoSlice, Write};
    // SAFETY: `fd` is the open, non-blocking socket waiting in the owner; ManuallyDrop never
    // closes it, and it is only written to, during this call.
    let mut file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    loop {
        let written = if let [only] = slices {
            file.write(only)
        } else {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = slices.len().min(MAX_IOVECS);
            for (v, s) in iov.iter_mut().zip(slices) {
                *v = IoSlice::new(s);
            }
            file.write_vectored(&iov[..n])
        };
        return match written {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(UvError::with_context(
                -e.raw_os_error().unwrap_or(libc::EIO),
                "write",
            )),
        };
    }
}

/// Items for the systems that have `accept4` and for the Unix systems that do not, with the
/// list of the former written once.
macro_rules! by_accept4 {
    (with: $with:item without: $without:item) => {
        by_accept4! {
            systems: [
                target_os = "linux",
                target_os = "android",
                target_os = "freebsd",
                target_os = "dragonfly",
                target_os = "netbsd",
                target_os = "openbsd"
            ]
            with: $with
            without: $without
        }
    };
    (systems: [$($system:meta),*] with: $with:item without: $without:item) => {
        #[cfg(any($($system),*))]
        $with
        #[cfg(all(unix, not(any($($system),*))))]
        $without
    };
}

by_accept4! {
    with:
    /// Accepts one connection from the non-blocking listening socket `fd`, itself
    /// non-blocking and close-on-exec, as libuv's own accept does (`accept4`: one system
    /// call, where `accept` plus `uv_tcp_open` make two).
    fn accept_one(fd: RawFd) -> std::io::Result<AcceptedFd> {
        loop {
            // SAFETY: `fd` is the open listening socket libuv owns; null address pointers
            // ask for no peer address; the flags are accept4's own.
            let rc = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if rc >= 0 {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(rc) };
                return Ok(AcceptedFd {
                    fd,
                    nonblocking: true,
                });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
    without:
    /// Accepts one connection from the non-blocking listening socket `fd` with std's
    /// `accept`: the socket comes out blocking, for libuv to adopt at once.
    fn accept_one(fd: RawFd) -> std::io::Result<AcceptedFd> {
        // SAFETY: `fd` is the open listening socket libuv owns; ManuallyDrop never closes
        // it, and it is only used for this accept.
        let listener = ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd) });
        let (stream, _) = listener.accept()?;
        Ok(AcceptedFd {
            fd: stream.into(),
            nonblocking: false,
        })
    }
}

/// Runs `f` on a socket libuv has not adopted, as a borrowed std stream.
#[cfg(unix)]
fn with_std_stream<R>(fd: RawFd, f: impl FnOnce(&std::net::TcpStream) -> R) -> R {
    // SAFETY: `fd` is the open socket waiting in the owner; ManuallyDrop never closes it, and
    // it is only used for this call.
    let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    f(&stream)
}

/// # Safety
/// `tcp` must be an open handle (not closing) whose `data` is a `Weak<T>` pointer.
unsafe fn mark_close_requested(tcp: *mut sys::uv_tcp_t) {
    // SAFETY: caller's contract; a plain field write. The pointer keeps its provenance.
    unsafe { (*tcp).data = ((*tcp).data as *mut u8).wrapping_add(CLOSE_REQUESTED) as *mut c_void };
}

/// Starts `uv_close`; `close_cb::<T>` releases the weak count afterwards.
///
/// # Safety
/// `tcp` must be an open handle (not closing) whose `data` is a `Weak<T>` pointer.
unsafe fn request_close<T>(tcp: *mut sys::uv_tcp_t) {
    // SAFETY: caller's contract.
    unsafe {
        mark_close_requested(tcp);
        sys::uv_close(tcp as *mut sys::uv_handle_t, Some(close_cb::<T>));
    }
}

/// The close callback: nothing of libuv's refers to the handle any more, so the weak count
/// that kept its memory allocated is released (freeing it if the owner is gone).
unsafe extern "C" fn close_cb<T>(handle: *mut sys::uv_handle_t) {
    ffi_guard("close", || {
        // SAFETY: `handle` is the closed handle, still allocated (we hold the weak count).
        let data = unsafe { (*handle).data } as *mut u8;
        // SAFETY: as above; cleared first, since dropping the weak count may free the memory.
        unsafe { (*handle).data = std::ptr::null_mut() };
        let weak = data.wrapping_sub(data as usize & CLOSE_REQUESTED) as *const T;
        if !weak.is_null() {
            // SAFETY: `weak` came from Weak::<T>::into_raw in TcpRef::init and its count is
            // given back exactly once, here.
            drop(unsafe { Weak::from_raw(weak) });
        }
    });
}

/// The owner of a TCP handle, unless it is gone or asked to close.
///
/// # Safety
/// `handle` must be a TCP handle initialised by `TcpRef::<T>::init` whose close callback has not
/// run yet (so its memory is allocated and `data` is null, a `Weak<T>`, or one marked closing).
unsafe fn owner_of<T>(handle: *const sys::uv_handle_t) -> Option<Rc<T>> {
    // SAFETY: caller's contract.
    let data = unsafe { (*handle).data } as *const T;
    if data.is_null() || data as usize & CLOSE_REQUESTED != 0 {
        return None;
    }
    // SAFETY: `data` came from Weak::<T>::into_raw and that weak count is held until the close
    // callback; ManuallyDrop leaves the count with the handle.
    let weak = ManuallyDrop::new(unsafe { Weak::from_raw(data) });
    weak.upgrade()
}

/// The standalone owner behind a [`TcpHandle`]: the embedded handle plus who gets its events
/// and, for a listener, the connection callback.
struct HandleInner {
    tcp: TcpCell<HandleInner>,
    handler: RefCell<Option<Weak<dyn StreamHandler>>>,
    on_connection: RefCell<Option<ConnectionCallback>>,
}

impl HandleInner {
    fn handler(&self) -> Option<Rc<dyn StreamHandler>> {
        self.handler.borrow().as_ref().and_then(Weak::upgrade)
    }
}

impl EmbedsTcp for HandleInner {
    fn tcp_cell(&self) -> &TcpCell<Self> {
        &self.tcp
    }
}

impl StreamHandler for HandleInner {
    fn on_read(&self, data: &[u8]) {
        if let Some(h) = self.handler() {
            h.on_read(data);
        }
    }

    fn on_read_end(&self, err: UvError) {
        if let Some(h) = self.handler() {
            h.on_read_end(err);
        }
    }

    fn on_write_done(&self, bufs: Vec<OwnedBuf>, status: Result<(), UvError>) {
        if let Some(h) = self.handler() {
            h.on_write_done(bufs, status);
        }
    }

    fn on_shutdown(&self, status: Result<(), UvError>) {
        if let Some(h) = self.handler() {
            h.on_shutdown(status);
        }
    }
}

/// An owned libuv TCP handle in a block of its own, for listeners and for code that wants a
/// bare handle (sockets embed theirs instead). Dropping it (or calling [`TcpHandle::close`])
/// starts `uv_close`; the memory is freed in the close callback. Stream events go to a
/// [`StreamHandler`] held weakly, so the handle never keeps its handler alive. Not `Send`: it
/// belongs to its loop's thread.
pub struct TcpHandle {
    inner: Rc<HandleInner>,
}

impl TcpHandle {
    /// Creates a TCP handle on `lp` (`uv_tcp_init`).
    pub fn new(lp: Loop) -> Result<TcpHandle, UvError> {
        let inner = Rc::new(HandleInner {
            tcp: TcpCell::new(),
            handler: RefCell::new(None),
            on_connection: RefCell::new(None),
        });
        TcpRef::init(&inner, lp)?;
        Ok(TcpHandle { inner })
    }

    fn tcp(&self) -> TcpRef<'_, HandleInner> {
        TcpRef::of(&self.inner)
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        !self.tcp().is_open()
    }

    /// Binds to `addr` (`uv_tcp_bind`). `reuse_port` asks for `UV_TCP_REUSEPORT` (load
    /// balancing across several loops on platforms that have it).
    pub fn bind(&self, addr: &SocketAddr, reuse_port: bool) -> Result<(), UvError> {
        self.tcp().bind(addr, reuse_port)
    }

    /// Adopts an already-open socket (`uv_tcp_open`), e.g. one inherited from systemd.
    ///
    /// # Safety
    /// `fd` must be an open TCP socket that nothing else closes or uses.
    pub unsafe fn open(&self, fd: std::os::raw::c_int) -> Result<(), UvError> {
        // SAFETY: the caller's contract is the same.
        unsafe { self.tcp().open(fd) }
    }

    /// A handle owning an accepted std stream (made non-blocking), e.g. handed over by an
    /// acceptor thread.
    #[cfg(unix)]
    pub fn from_std_stream(lp: Loop, stream: std::net::TcpStream) -> Result<TcpHandle, UvError> {
        let handle = TcpHandle::new(lp)?;
        handle.tcp().adopt_std_stream(stream)?;
        Ok(handle)
    }

    /// A handle owning a bound (listening or not) std listener.
    #[cfg(unix)]
    pub fn from_std_listener(
        lp: Loop,
        listener: std::net::TcpListener,
    ) -> Result<TcpHandle, UvError> {
        let handle = TcpHandle::new(lp)?;
        handle.tcp().adopt_fd(listener.into())?;
        Ok(handle)
    }

    /// Starts listening; `on_connection` runs for each incoming connection (call
    /// [`TcpHandle::accept`] inside it, or later to apply backpressure).
    pub fn listen(
        &self,
        backlog: i32,
        on_connection: impl FnMut(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        let stream = self.tcp().stream_or("listen")?;
        *self.inner.on_connection.borrow_mut() = Some(Box::new(on_connection));
        // SAFETY: open stream whose `data` is a Weak<HandleInner>, as connection_cb expects.
        let rc = unsafe { sys::uv_listen(stream, backlog, Some(connection_cb)) };
        let addr = self.local_addr();
        check(rc, || match addr {
            Some(a) => format!("listen on {a}"),
            None => "listen".to_string(),
        })
        .map(|_| ())
    }

    /// Asks the kernel to hand over connections only once their client sent data (Linux's
    /// `TCP_DEFER_ACCEPT`, waiting up to `seconds`), so that accepting and reading the first
    /// request take one wakeup instead of two. Returns false where the OS has no such option
    /// (everything but Linux): the server works the same, only without the saving.
    pub fn set_defer_accept(&self, seconds: u32) -> Result<bool, UvError> {
        #[cfg(target_os = "linux")]
        {
            let fd = self.tcp().os_fd("defer accept")?;
            let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
            // SAFETY: `fd` is the listening socket libuv owns; the option value is a c_int
            // that lives through the call, and its size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    &value as *const libc::c_int as *const c_void,
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                return Err(UvError::with_context(
                    -err.raw_os_error().unwrap_or(0),
                    "set TCP_DEFER_ACCEPT".to_string(),
                ));
            }
            Ok(true)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = seconds;
            Ok(false)
        }
    }

    /// Takes one more pending connection straight from this listening socket, without
    /// libuv: `uv_accept` hands over one connection per readiness event, then the loop polls
    /// again, which under a high connection rate is one `epoll_wait` per connection. Call it
    /// after `accept` to take more of the queue in the same turn (nginx's `multi_accept`).
    /// `Ok(None)`: nothing is pending.
    ///
    /// Where the OS has `accept4` the socket comes out non-blocking, so it can be used before
    /// libuv adopts it (see the module's "Deferred adoption"); elsewhere std's `accept` takes
    /// it and libuv must adopt it at once.
    #[cfg(unix)]
    pub(crate) fn accept_pending(&self) -> Result<Option<AcceptedFd>, UvError> {
        let fd = self.tcp().os_fd("accept")?;
        match accept_one(fd) {
            Ok(accepted) => Ok(Some(accepted)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(UvError::with_context(
                -e.raw_os_error().unwrap_or(0),
                format!("accept: {e}"),
            )),
        }
    }

    /// Accepts a pending connection into a new handle on `lp`.
    pub fn accept(&self, lp: Loop) -> Result<TcpHandle, UvError> {
        let client = TcpHandle::new(lp)?;
        self.accept_into(&*client.inner)?;
        Ok(client)
    }

    /// Accepts a pending connection into the (initialised, unconnected) handle of `client`.
    pub(crate) fn accept_into<T: EmbedsTcp>(&self, client: &T) -> Result<(), UvError> {
        let server = self.tcp().stream_or("accept")?;
        let client = TcpRef::of(client).stream_or("accept")?;
        // SAFETY: both are open TCP streams; the caller created the client on this loop.
        let rc = unsafe { sys::uv_accept(server, client) };
        check(rc, || "accept".to_string()).map(|_| ())
    }

    /// Connects to `addr`; `on_connect` runs once with the outcome (not at all if the handle
    /// is closed first).
    pub fn connect(
        &self,
        addr: &SocketAddr,
        on_connect: impl FnOnce(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        self.tcp().connect(addr, on_connect)
    }

    /// Sets who receives read, write and shutdown events.
    pub fn set_handler(&self, handler: Weak<dyn StreamHandler>) {
        *self.inner.handler.borrow_mut() = Some(handler);
    }

    /// Starts reading; bytes go to the handler's `on_read`.
    pub fn read_start(&self) -> Result<(), UvError> {
        self.tcp().read_start()
    }

    /// Stops reading (backpressure). Harmless when not reading.
    pub fn read_stop(&self) {
        self.tcp().read_stop()
    }

    /// Writes as much of `slices` as the kernel takes right now without queuing
    /// (`uv_try_write`). Returns the byte count written; `Ok(0)` when it would block.
    pub fn try_write(&self, slices: &[&[u8]]) -> Result<usize, UvError> {
        self.tcp().try_write(slices)
    }

    /// Queues `bufs` for writing (`uv_write`), skipping the first `skip` bytes of the first
    /// buffer (already written by a `try_write`). The buffers come back through the handler's
    /// `on_write_done`. At most [`MAX_IOVECS`] buffers per call.
    pub fn write(&self, bufs: Vec<OwnedBuf>, skip: usize) -> Result<(), UvError> {
        self.tcp().write(bufs, skip)
    }

    /// Bytes queued in libuv waiting for the socket (`uv_stream_get_write_queue_size`).
    pub fn write_queue_size(&self) -> usize {
        self.tcp().write_queue_size()
    }

    /// Half-closes the write side after queued writes finish (`uv_shutdown`); the handler's
    /// `on_shutdown` runs when done.
    pub fn shutdown(&self) -> Result<(), UvError> {
        self.tcp().shutdown()
    }

    /// Disables Nagle's algorithm (`uv_tcp_nodelay`).
    pub fn set_nodelay(&self, enable: bool) -> Result<(), UvError> {
        self.tcp().set_nodelay(enable)
    }

    /// Enables TCP keep-alive probes after `delay_s` seconds idle (`uv_tcp_keepalive`).
    pub fn set_keepalive(&self, enable: bool, delay_s: u32) -> Result<(), UvError> {
        self.tcp().set_keepalive(enable, delay_s)
    }

    /// The local address (`uv_tcp_getsockname`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp().local_addr()
    }

    /// The peer's address (`uv_tcp_getpeername`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Marks the handle as not keeping the loop alive.
    pub fn unref(&self) {
        self.tcp().unref()
    }

    /// Closes the handle. Queued writes are cancelled and no event reaches the handler any
    /// more; the memory is released in the close callback. Idempotent.
    pub fn close(&self) {
        self.release_callbacks();
        self.tcp().close();
    }

    /// Closes with a TCP reset (`uv_tcp_close_reset`) instead of an orderly FIN: for aborting
    /// a connection whose response cannot be completed.
    pub fn close_reset(&self) {
        self.release_callbacks();
        self.tcp().close_reset();
    }

    /// Drops the handler and the connection callback now rather than with the last reference,
    /// so whatever they hold is released at close time.
    fn release_callbacks(&self) {
        self.inner.handler.borrow_mut().take();
        // Taken into a local first: dropping a closure may drop things that reach back here.
        let cb = self.inner.on_connection.borrow_mut().take();
        drop(cb);
    }
}

impl Drop for TcpHandle {
    fn drop(&mut self) {
        self.close();
    }
}

unsafe extern "C" fn alloc_cb(_h: *mut sys::uv_handle_t, _size: usize, buf: *mut sys::uv_buf_t) {
    // SAFETY: libuv passes a writable uv_buf_t.
    unsafe { *buf = lend_read_buffer() };
}

unsafe extern "C" fn read_cb<T: StreamHandler>(
    stream: *mut sys::uv_stream_t,
    nread: isize,
    buf: *const sys::uv_buf_t,
) {
    ffi_guard("read", || {
        // SAFETY: read_start installs read_cb::<T> only on open handles initialised for T, and
        // libuv reads only from handles that are not closed.
        let Some(owner) = (unsafe { owner_of::<T>(stream as *const sys::uv_handle_t) }) else {
            return;
        };
        if nread > 0 {
            // SAFETY: libuv wrote `nread` bytes at the start of the buffer we lent.
            let data =
                unsafe { std::slice::from_raw_parts((*buf).base as *const u8, nread as usize) };
            owner.on_read(data);
        } else if nread < 0 {
            owner.on_read_end(UvError::from_code(nread as i32));
        }
    });
    // SAFETY: `buf` is the buffer lent in alloc_cb; the slice above is gone.
    unsafe { return_read_buffer(&*buf) };
}

unsafe extern "C" fn write_cb<T: StreamHandler>(req: *mut sys::uv_write_t, status: i32) {
    // SAFETY: `req` is the first field of a leaked Box<WriteReq> (repr(C)), freed exactly once,
    // here.
    let req = unsafe { Box::from_raw(req as *mut WriteReq) };
    ffi_guard("write", move || {
        let handle = req.req.handle as *const sys::uv_handle_t;
        let bufs = req.bufs;
        // SAFETY: libuv set `handle` to the stream written to, initialised for T by the
        // TcpRef::<T>::write that installed this callback; write callbacks (even cancelled
        // ones) run before the handle's close callback, so its memory is still allocated.
        if let Some(owner) = unsafe { owner_of::<T>(handle) } {
            let status = if status < 0 {
                Err(UvError::with_context(status, "write"))
            } else {
                Ok(())
            };
            owner.on_write_done(bufs, status);
        }
    });
}

unsafe extern "C" fn shutdown_cb<T: StreamHandler>(req: *mut sys::uv_shutdown_t, status: i32) {
    // SAFETY: `req` is a leaked Box<uv_shutdown_t>, freed exactly once, here.
    let req = unsafe { Box::from_raw(req) };
    ffi_guard("shutdown", move || {
        // SAFETY: as in write_cb: `handle` is the stream, initialised for T, and still
        // allocated (the shutdown callback runs before the close callback).
        if let Some(owner) = unsafe { owner_of::<T>(req.handle as *const sys::uv_handle_t) } {
            let status = if status < 0 {
                Err(UvError::with_context(status, "shutdown"))
            } else {
                Ok(())
            };
            owner.on_shutdown(status);
        }
    });
}

unsafe extern "C" fn connection_cb(server: *mut sys::uv_stream_t, status: i32) {
    ffi_guard("connection", || {
        // SAFETY: installed only by TcpHandle::listen on an open handle of a HandleInner; a
        // listening handle calls back only while it is not closed.
        let Some(inner) = (unsafe { owner_of::<HandleInner>(server as *const sys::uv_handle_t) })
        else {
            return;
        };
        // Take the callback out while it runs, so it may re-enter the handle (e.g. close it).
        let Some(mut cb) = inner.on_connection.borrow_mut().take() else {
            return;
        };
        let result = if status < 0 {
            Err(UvError::with_context(status, "incoming connection"))
        } else {
            Ok(())
        };
        cb(result);
        // Put it back unless the handle was closed (or given another callback) meanwhile.
        if TcpRef::of(&*inner).is_open() {
            let mut slot = inner.on_connection.borrow_mut();
            if slot.is_none() {
                *slot = Some(cb);
            }
        }
    });
}

unsafe extern "C" fn connect_cb(req: *mut sys::uv_connect_t, status: i32) {
    // SAFETY: first field of a leaked Box<ConnectReq> (repr(C)), freed exactly once, here.
    let req = unsafe { Box::from_raw(req as *mut ConnectReq) };
    ffi_guard("connect", move || {
        let ConnectReq { req, on_connect } = *req;
        // SAFETY: libuv set `handle`; a connect callback (even a cancelled one) runs before
        // the handle's close callback, so the handle is still allocated.
        if unsafe { sys::uv_is_closing(req.handle as *const sys::uv_handle_t) } != 0 {
            // Closed while connecting: whoever closed it expects no callback.
            return;
        }
        let result = if status < 0 {
            Err(UvError::with_context(status, "connect"))
        } else {
            Ok(())
        };
        on_connect(result);
    });
}

/// The first socket passed by systemd socket activation (`LISTEN_PID` is this process and
/// `LISTEN_FDS` >= 1: descriptor 3), taken over once per process.
#[cfg(unix)]
pub fn take_systemd_listener() -> Option<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !ours || count < 1 || TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    const SD_LISTEN_FDS_START: i32 = 3;
    // SAFETY: by the socket-activation protocol descriptor 3 is a socket handed to this
    // process; TAKEN makes sure it is wrapped only once.
    Some(unsafe { std::net::TcpListener::from_raw_fd(SD_LISTEN_FDS_START) })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Read;

    use super::*;
    use crate::uv::{OwnedLoop, RunMode};

    /// An owner that counts what reaches it and when its value is dropped.
    struct Probe {
        tcp: TcpCell<Probe>,
        reads: Cell<usize>,
        writes_done: Cell<usize>,
        drops: Rc<Cell<usize>>,
    }

    impl EmbedsTcp for Probe {
        fn tcp_cell(&self) -> &TcpCell<Self> {
            &self.tcp
        }
    }

    impl StreamHandler for Probe {
        fn on_read(&self, data: &[u8]) {
            self.reads.set(self.reads.get() + data.len());
        }
        fn on_read_end(&self, _err: UvError) {}
        fn on_write_done(&self, _bufs: Vec<OwnedBuf>, _status: Result<(), UvError>) {
            self.writes_done.set(self.writes_done.get() + 1);
        }
        fn on_shutdown(&self, _status: Result<(), UvError>) {}
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    fn probe(lp: Loop) -> (Rc<Probe>, Rc<Cell<usize>>) {
        let drops = Rc::new(Cell::new(0));
        let p = Rc::new(Probe {
            tcp: TcpCell::new(),
            reads: Cell::new(0),
            writes_done: Cell::new(0),
            drops: drops.clone(),
        });
        TcpRef::init(&p, lp).unwrap();
        (p, drops)
    }

    /// A probe connected to a std stream (the peer).
    fn connected(lp: Loop) -> (Rc<Probe>, Rc<Cell<usize>>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (p, drops) = probe(lp);
        TcpRef::of(&*p).adopt_std_stream(accepted).unwrap();
        (p, drops, peer)
    }

    #[test]
    fn the_embedded_handle_adds_nothing_but_itself() {
        assert_eq!(
            size_of::<TcpCell<Probe>>(),
            size_of::<sys::uv_tcp_t>(),
            "the cell is the bare uv_tcp_t"
        );
    }

    #[test]
    fn dropping_the_last_rc_closes_and_frees_after_the_close_callback() {
        let lp = OwnedLoop::new().unwrap();
        let (p, drops, mut peer) = connected(lp.handle());
        TcpRef::of(&*p).read_start().unwrap();
        let weak = Rc::downgrade(&p);
        drop(p);
        // The value is dropped at once; the memory waits for libuv.
        assert_eq!(drops.get(), 1);
        assert!(weak.upgrade().is_none());
        assert_eq!(lp.handle().handle_count(), 1, "closing, not yet released");
        lp.handle().run(RunMode::NoWait);
        assert_eq!(lp.handle().handle_count(), 0, "the close callback ran");
        let mut buf = [0u8; 1];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "the peer sees our FIN");
        lp.close().expect("no handle left open");
    }

    #[test]
    fn close_stops_events_and_cancels_queued_writes() {
        let lp = OwnedLoop::new().unwrap();
        let (p, drops, _peer) = connected(lp.handle());
        let tcp = TcpRef::of(&*p);
        // Fill the kernel's buffers (the peer never reads), then queue a write in libuv.
        let chunk = vec![7u8; 64 * 1024];
        while tcp.try_write(&[&chunk]).unwrap() > 0 {}
        tcp.write(vec![OwnedBuf::Vec(chunk.clone())], 0).unwrap();
        assert!(tcp.write_queue_size() > 0, "the write is queued in libuv");
        tcp.close();
        assert!(!tcp.is_open());
        let err = tcp.write(vec![OwnedBuf::Vec(chunk)], 0).unwrap_err();
        assert_eq!(err.code(), sys::uv_errno_t_UV_EBADF);
        tcp.close(); // idempotent
        lp.handle().run(RunMode::NoWait);
        assert_eq!(p.writes_done.get(), 0, "the cancelled write reached no one");
        assert_eq!(drops.get(), 0, "still owned");
        drop(p);
        assert_eq!(drops.get(), 1);
        lp.close().expect("no handle left open");
    }

    #[test]
    fn dropping_with_a_write_in_flight_frees_only_after_the_cancelled_write() {
        let lp = OwnedLoop::new().unwrap();
        let (p, drops, _peer) = connected(lp.handle());
        let chunk = vec![7u8; 64 * 1024];
        {
            let tcp = TcpRef::of(&*p);
            while tcp.try_write(&[&chunk]).unwrap() > 0 {}
            tcp.write(vec![OwnedBuf::Vec(chunk)], 0).unwrap();
        }
        drop(p);
        assert_eq!(drops.get(), 1);
        assert_eq!(lp.handle().handle_count(), 1, "closing, not yet released");
        lp.handle().run(RunMode::NoWait);
        assert_eq!(lp.handle().handle_count(), 0, "the close callback ran");
        lp.close().expect("no handle left open");
    }

    #[test]
    fn a_handle_moved_out_of_its_rc_is_inert_and_stays_open() {
        let lp = OwnedLoop::new().unwrap();
        let (p, drops, _peer) = connected(lp.handle());
        let moved = Rc::try_unwrap(p)
            .ok()
            .expect("the handle holds only a weak count");
        let tcp = TcpRef::of(&moved);
        assert!(!tcp.is_open(), "libuv's handle is elsewhere");
        assert!(tcp.try_write(&[b"x"]).is_err());
        assert!(tcp.peer_addr().is_none());
        tcp.close(); // does nothing: this copy cannot reach libuv's handle
        drop(moved);
        assert_eq!(drops.get(), 1);
        // Leaked rather than closed through the wrong address (the loop is leaked with it).
        assert!(lp.close().is_err());
    }

    #[test]
    fn init_checks_where_the_cell_is() {
        struct Outside {
            elsewhere: &'static TcpCell<Outside>,
        }
        impl EmbedsTcp for Outside {
            fn tcp_cell(&self) -> &TcpCell<Self> {
                self.elsewhere
            }
        }
        impl StreamHandler for Outside {
            fn on_read(&self, _data: &[u8]) {}
            fn on_read_end(&self, _err: UvError) {}
            fn on_write_done(&self, _bufs: Vec<OwnedBuf>, _status: Result<(), UvError>) {}
            fn on_shutdown(&self, _status: Result<(), UvError>) {}
        }
        let lp = OwnedLoop::new().unwrap();
        let outside = Rc::new(Outside {
            elsewhere: Box::leak(Box::new(TcpCell::new())),
        });
        let err = TcpRef::init(&outside, lp.handle()).unwrap_err();
        assert_eq!(err.code(), sys::uv_errno_t_UV_EINVAL);

        let (p, _drops) = probe(lp.handle());
        let err = TcpRef::init(&p, lp.handle()).unwrap_err();
        assert_eq!(err.code(), sys::uv_errno_t_UV_EBUSY, "initialised once");
        drop(p);
        lp.close().expect("no handle left open");
    }

    #[test]
    fn reads_reach_the_owner_until_it_closes() {
        use std::io::Write;
        let lp = OwnedLoop::new().unwrap();
        let (p, _drops, mut peer) = connected(lp.handle());
        TcpRef::of(&*p).read_start().unwrap();
        peer.write_all(b"hello").unwrap();
        while p.reads.get() < 5 {
            lp.handle().run(RunMode::Once);
        }
        TcpRef::of(&*p).close();
        peer.write_all(b"more").unwrap();
        lp.handle().run(RunMode::NoWait);
        assert_eq!(p.reads.get(), 5);
        drop(p);
        lp.close().expect("no handle left open");
    }
}
