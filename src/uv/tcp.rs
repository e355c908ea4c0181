//! TCP handles: listen, accept, connect, read, write, shutdown, close.
//!
//! [`TcpHandle`] is the unique owner of one `uv_tcp_t`. Dropping it (or calling
//! [`TcpHandle::close`]) starts `uv_close`; the memory is freed in the close callback, after
//! libuv has cancelled outstanding writes (their callbacks run with `ECANCELED` first).
//! Stream events go to a [`StreamHandler`] held weakly, so the handle never keeps its owner alive.

use std::cell::Cell;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};

use libuv_sys2 as sys;

use super::addr::RawAddr;
use super::buf::{lend_read_buffer, return_read_buffer, uv_buf, OwnedBuf};
use super::error::{check, UvError};
use super::event_loop::Loop;
use super::handle::{close_boxed, ffi_guard};

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

struct TcpInner {
    raw: sys::uv_tcp_t,
    handler: Option<Weak<dyn StreamHandler>>,
    /// Only listeners and connecting sockets have one: boxed, so an accepted connection's
    /// handle carries a single null pointer for it.
    callback: Option<Box<Callback>>,
}

enum Callback {
    /// A listener's connection callback.
    Listen(ConnectionCallback),
    /// A pending connect's completion.
    Connect(ConnectCallback),
}

impl TcpInner {
    fn take_listen(&mut self) -> Option<ConnectionCallback> {
        match self.callback.take().map(|b| *b) {
            Some(Callback::Listen(cb)) => Some(cb),
            other => {
                self.callback = other.map(Box::new);
                None
            }
        }
    }

    fn take_connect(&mut self) -> Option<ConnectCallback> {
        match self.callback.take().map(|b| *b) {
            Some(Callback::Connect(cb)) => Some(cb),
            other => {
                self.callback = other.map(Box::new);
                None
            }
        }
    }
}

/// An owned libuv TCP handle. Not `Send`: it belongs to its loop's thread.
pub struct TcpHandle {
    inner: NonNull<TcpInner>,
    closed: Cell<bool>,
}

/// A write request: the libuv request plus the buffers it must keep alive. `repr(C)` puts the
/// libuv request first, so the callback can find the box from the request pointer.
#[repr(C)]
struct WriteReq {
    req: sys::uv_write_t,
    bufs: Vec<OwnedBuf>,
    handler: Option<Weak<dyn StreamHandler>>,
}

#[repr(C)]
struct ShutdownReq {
    req: sys::uv_shutdown_t,
    handler: Option<Weak<dyn StreamHandler>>,
}

#[repr(C)]
struct ConnectReq {
    req: sys::uv_connect_t,
    handle: *mut TcpInner,
}

/// The most buffers passed to one `uv_try_write` / `uv_write` call (below every IOV_MAX).
pub const MAX_IOVECS: usize = 64;

impl TcpHandle {
    /// Creates a TCP handle on `lp` (`uv_tcp_init`).
    pub fn new(lp: Loop) -> Result<TcpHandle, UvError> {
        // SAFETY: uv_tcp_t is plain C data, initialised by uv_tcp_init below before any use.
        let inner = Box::new(TcpInner {
            raw: unsafe { std::mem::zeroed() },
            handler: None,
            callback: None,
        });
        let inner = Box::into_raw(inner);
        // SAFETY: `inner` is a valid, uniquely owned allocation; its uv_tcp_t is initialised
        // here and its `data` points back at the box for the callbacks.
        let rc = unsafe { sys::uv_tcp_init(lp.as_raw(), &mut (*inner).raw) };
        if rc < 0 {
            // SAFETY: uv_tcp_init failed, so libuv holds no reference: free directly.
            drop(unsafe { Box::from_raw(inner) });
            return Err(UvError::with_context(rc, "uv_tcp_init"));
        }
        // SAFETY: `inner` is valid; setting data is plain field access.
        unsafe { (*inner).raw.data = inner as *mut std::ffi::c_void };
        Ok(TcpHandle {
            // SAFETY: Box::into_raw never returns null.
            inner: unsafe { NonNull::new_unchecked(inner) },
            closed: Cell::new(false),
        })
    }

    fn raw(&self) -> *mut sys::uv_tcp_t {
        debug_assert!(!self.closed.get(), "TcpHandle used after close");
        // SAFETY: the box lives until the close callback, which runs only after close().
        unsafe { &mut (*self.inner.as_ptr()).raw }
    }

    fn stream(&self) -> *mut sys::uv_stream_t {
        self.raw() as *mut sys::uv_stream_t
    }

    /// Runs `f` with the handle's box. The `&mut` cannot escape the closure, and no closure
    /// given here calls back into user code, so two of them never overlap.
    fn with_inner<R>(&self, f: impl FnOnce(&mut TcpInner) -> R) -> R {
        // SAFETY: the box is alive until the close callback; single-threaded (not Send), and
        // the borrow is confined to `f`, which never re-enters this handle.
        f(unsafe { &mut *self.inner.as_ptr() })
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Binds to `addr` (`uv_tcp_bind`). `reuse_port` asks for `UV_TCP_REUSEPORT` (load
    /// balancing across several loops on platforms that have it).
    pub fn bind(&self, addr: &SocketAddr, reuse_port: bool) -> Result<(), UvError> {
        let raw = RawAddr::from_socket_addr(addr)?;
        let mut flags = 0;
        if reuse_port {
            flags |= sys::uv_tcp_flags_UV_TCP_REUSEPORT;
        }
        // SAFETY: handle initialised; `raw` holds a valid sockaddr for the call.
        let rc = unsafe { sys::uv_tcp_bind(self.raw(), raw.as_ptr(), flags as _) };
        check(rc, || format!("bind {addr}")).map(|_| ())
    }

    /// Adopts an already-open socket (`uv_tcp_open`), e.g. one inherited from systemd.
    ///
    /// # Safety
    /// `fd` must be an open TCP socket that nothing else closes or uses.
    pub unsafe fn open(&self, fd: std::os::raw::c_int) -> Result<(), UvError> {
        // SAFETY: caller's contract for fd; handle initialised.
        let rc = unsafe { sys::uv_tcp_open(self.raw(), fd as _) };
        check(rc, || format!("adopt socket fd {fd}")).map(|_| ())
    }

    /// A handle owning an accepted std stream (made non-blocking), e.g. handed over by an
    /// acceptor thread.
    #[cfg(unix)]
    pub fn from_std_stream(lp: Loop, stream: std::net::TcpStream) -> Result<TcpHandle, UvError> {
        use std::os::fd::IntoRawFd;
        stream.set_nonblocking(true).map_err(|e| {
            UvError::with_context(sys::uv_errno_t_UV_EINVAL, format!("adopt socket: {e}"))
        })?;
        Self::from_owned_fd(lp, stream.into_raw_fd())
    }

    /// A handle owning a bound (listening or not) std listener.
    #[cfg(unix)]
    pub fn from_std_listener(
        lp: Loop,
        listener: std::net::TcpListener,
    ) -> Result<TcpHandle, UvError> {
        use std::os::fd::IntoRawFd;
        Self::from_owned_fd(lp, listener.into_raw_fd())
    }

    #[cfg(unix)]
    fn from_owned_fd(lp: Loop, fd: std::os::raw::c_int) -> Result<TcpHandle, UvError> {
        let handle = TcpHandle::new(lp)?;
        // SAFETY: the caller released `fd` from its owner (into_raw_fd), so this handle is now
        // its only owner and closes it.
        match unsafe { handle.open(fd) } {
            Ok(()) => Ok(handle),
            Err(e) => {
                // SAFETY: the handle did not take the descriptor; we still own it.
                unsafe { libc_close(fd) };
                Err(e)
            }
        }
    }

    /// Starts listening; `on_connection` runs for each incoming connection (call
    /// [`TcpHandle::accept`] inside it, or later to apply backpressure).
    pub fn listen(
        &self,
        backlog: i32,
        on_connection: impl FnMut(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        self.with_inner(|i| i.callback = Some(Box::new(Callback::Listen(Box::new(on_connection)))));
        // SAFETY: handle initialised; the callback finds its closure through `data`.
        let rc = unsafe { sys::uv_listen(self.stream(), backlog, Some(connection_cb)) };
        let addr = self.local_addr();
        check(rc, || match addr {
            Some(a) => format!("listen on {a}"),
            None => "listen".to_string(),
        })
        .map(|_| ())
    }

    /// Accepts a pending connection into a new handle on `lp`.
    pub fn accept(&self, lp: Loop) -> Result<TcpHandle, UvError> {
        let client = TcpHandle::new(lp)?;
        // SAFETY: both handles are initialised TCP streams on the same loop.
        let rc = unsafe { sys::uv_accept(self.stream(), client.stream()) };
        check(rc, || "accept".to_string())?;
        Ok(client)
    }

    /// Connects to `addr`; `on_connect` runs once with the outcome.
    pub fn connect(
        &self,
        addr: &SocketAddr,
        on_connect: impl FnOnce(Result<(), UvError>) + 'static,
    ) -> Result<(), UvError> {
        let raw = RawAddr::from_socket_addr(addr)?;
        self.with_inner(|i| i.callback = Some(Box::new(Callback::Connect(Box::new(on_connect)))));
        let req = Box::into_raw(Box::new(ConnectReq {
            // SAFETY: plain C data, initialised by uv_tcp_connect.
            req: unsafe { std::mem::zeroed() },
            handle: self.inner.as_ptr(),
        }));
        // SAFETY: valid handle and request; the request box is freed in connect_cb (or below
        // on immediate failure).
        let rc = unsafe {
            sys::uv_tcp_connect(&mut (*req).req, self.raw(), raw.as_ptr(), Some(connect_cb))
        };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            self.with_inner(|i| i.callback = None);
            return Err(UvError::with_context(rc, format!("connect to {addr}")));
        }
        Ok(())
    }

    /// Sets who receives read, write and shutdown events.
    pub fn set_handler(&self, handler: Weak<dyn StreamHandler>) {
        self.with_inner(|i| i.handler = Some(handler));
    }

    /// Starts reading; bytes go to the handler's `on_read`.
    pub fn read_start(&self) -> Result<(), UvError> {
        // SAFETY: initialised stream; callbacks find the handler through `data`.
        let rc = unsafe { sys::uv_read_start(self.stream(), Some(alloc_cb), Some(read_cb)) };
        check(rc, || "read_start".to_string()).map(|_| ())
    }

    /// Stops reading (backpressure). Harmless when not reading.
    pub fn read_stop(&self) {
        // SAFETY: initialised stream.
        unsafe { sys::uv_read_stop(self.stream()) };
    }

    /// Writes as much of `slices` as the kernel takes right now without queuing
    /// (`uv_try_write`). Returns the byte count written; `Ok(0)` when it would block.
    pub fn try_write(&self, slices: &[&[u8]]) -> Result<usize, UvError> {
        let mut bufs = [sys::uv_buf_t {
            base: std::ptr::null_mut(),
            len: 0,
        }; MAX_IOVECS];
        let n = slices.len().min(MAX_IOVECS);
        for (b, s) in bufs.iter_mut().zip(slices.iter()) {
            *b = uv_buf(s);
        }
        // SAFETY: the bufs point into slices that outlive this synchronous call.
        let rc = unsafe { sys::uv_try_write(self.stream(), bufs.as_ptr(), n as _) };
        if rc == sys::uv_errno_t_UV_EAGAIN {
            return Ok(0);
        }
        check(rc, || "write".to_string()).map(|n| n as usize)
    }

    /// Queues `bufs` for writing (`uv_write`), skipping the first `skip` bytes of the first
    /// buffer (already written by a `try_write`). The buffers come back through the handler's
    /// `on_write_done`. At most [`MAX_IOVECS`] buffers per call.
    pub fn write(&self, bufs: Vec<OwnedBuf>, skip: usize) -> Result<(), UvError> {
        debug_assert!(bufs.len() <= MAX_IOVECS);
        let req = Box::into_raw(Box::new(WriteReq {
            // SAFETY: plain C data, initialised by uv_write.
            req: unsafe { std::mem::zeroed() },
            bufs,
            handler: self.with_inner(|i| i.handler.clone()),
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
        // SAFETY: valid stream and request; libuv copies the iovec array itself.
        let rc = unsafe {
            sys::uv_write(
                &mut (*req).req,
                self.stream(),
                iov.as_ptr(),
                n as _,
                Some(write_cb),
            )
        };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            return Err(UvError::with_context(rc, "write"));
        }
        Ok(())
    }

    /// Bytes queued in libuv waiting for the socket (`uv_stream_get_write_queue_size`).
    pub fn write_queue_size(&self) -> usize {
        // SAFETY: initialised stream.
        unsafe { sys::uv_stream_get_write_queue_size(self.stream()) }
    }

    /// Half-closes the write side after queued writes finish (`uv_shutdown`); the handler's
    /// `on_shutdown` runs when done.
    pub fn shutdown(&self) -> Result<(), UvError> {
        let req = Box::into_raw(Box::new(ShutdownReq {
            // SAFETY: plain C data, initialised by uv_shutdown.
            req: unsafe { std::mem::zeroed() },
            handler: self.with_inner(|i| i.handler.clone()),
        }));
        // SAFETY: valid stream and request; the box is freed in shutdown_cb.
        let rc = unsafe { sys::uv_shutdown(&mut (*req).req, self.stream(), Some(shutdown_cb)) };
        if rc < 0 {
            // SAFETY: libuv did not take the request.
            drop(unsafe { Box::from_raw(req) });
            return Err(UvError::with_context(rc, "shutdown"));
        }
        Ok(())
    }

    /// Disables Nagle's algorithm (`uv_tcp_nodelay`).
    pub fn set_nodelay(&self, enable: bool) -> Result<(), UvError> {
        // SAFETY: initialised handle.
        let rc = unsafe { sys::uv_tcp_nodelay(self.raw(), enable as i32) };
        check(rc, || "set TCP_NODELAY".to_string()).map(|_| ())
    }

    /// Enables TCP keep-alive probes after `delay_s` seconds idle (`uv_tcp_keepalive`).
    pub fn set_keepalive(&self, enable: bool, delay_s: u32) -> Result<(), UvError> {
        // SAFETY: initialised handle.
        let rc = unsafe { sys::uv_tcp_keepalive(self.raw(), enable as i32, delay_s) };
        check(rc, || "set SO_KEEPALIVE".to_string()).map(|_| ())
    }

    /// The local address (`uv_tcp_getsockname`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let mut raw = RawAddr::zeroed();
        let mut len = RawAddr::capacity();
        // SAFETY: `raw` is writable for `len` bytes.
        let rc = unsafe { sys::uv_tcp_getsockname(self.raw(), raw.as_mut_ptr(), &mut len) };
        if rc < 0 {
            return None;
        }
        raw.to_socket_addr()
    }

    /// The peer's address (`uv_tcp_getpeername`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let mut raw = RawAddr::zeroed();
        let mut len = RawAddr::capacity();
        // SAFETY: `raw` is writable for `len` bytes.
        let rc = unsafe { sys::uv_tcp_getpeername(self.raw(), raw.as_mut_ptr(), &mut len) };
        if rc < 0 {
            return None;
        }
        raw.to_socket_addr()
    }

    /// Marks the handle as not keeping the loop alive.
    pub fn unref(&self) {
        // SAFETY: initialised, open handle.
        unsafe { super::handle::unref(self.raw() as *mut sys::uv_handle_t) }
    }

    /// Closes the handle. Queued writes are cancelled (their callbacks see `ECANCELED`);
    /// the memory is released in the close callback. Idempotent.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let raw = self.with_inner(|inner| {
            inner.handler = None;
            inner.callback = None;
            &mut inner.raw as *mut sys::uv_tcp_t
        });
        // SAFETY: the handle is initialised and embedded in the Box<TcpInner> at `data`.
        unsafe { close_boxed::<TcpInner>(raw as *mut sys::uv_handle_t) }
    }

    /// Closes with a TCP reset (`uv_tcp_close_reset`) instead of an orderly FIN: for aborting
    /// a connection whose response cannot be completed.
    pub fn close_reset(&self) {
        if self.closed.get() {
            return;
        }
        // SAFETY: initialised handle. uv_tcp_close_reset fails (e.g. after shutdown) without
        // closing; then fall back to an ordinary close.
        let rc = unsafe { sys::uv_tcp_close_reset(self.raw(), Some(free_tcp)) };
        if rc < 0 {
            self.close();
        } else {
            self.closed.set(true);
            self.with_inner(|inner| {
                inner.handler = None;
                inner.callback = None;
            });
        }
    }
}

impl Drop for TcpHandle {
    fn drop(&mut self) {
        self.close();
    }
}

unsafe extern "C" fn free_tcp(handle: *mut sys::uv_handle_t) {
    // SAFETY: `data` is the leaked Box<TcpInner>; this is its close callback, run once.
    let data = unsafe { (*handle).data } as *mut TcpInner;
    // SAFETY: as above.
    ffi_guard("close", || drop(unsafe { Box::from_raw(data) }));
}

/// # Safety
/// `data` of a live TCP handle is its Box<TcpInner>.
unsafe fn inner_of<'a>(h: *mut sys::uv_stream_t) -> &'a mut TcpInner {
    // SAFETY: caller's contract.
    unsafe { &mut *((*h).data as *mut TcpInner) }
}

fn handler_of(inner: &TcpInner) -> Option<Rc<dyn StreamHandler>> {
    inner.handler.as_ref().and_then(Weak::upgrade)
}

unsafe extern "C" fn alloc_cb(_h: *mut sys::uv_handle_t, _size: usize, buf: *mut sys::uv_buf_t) {
    // SAFETY: libuv passes a writable uv_buf_t.
    unsafe { *buf = lend_read_buffer() };
}

unsafe extern "C" fn read_cb(
    stream: *mut sys::uv_stream_t,
    nread: isize,
    buf: *const sys::uv_buf_t,
) {
    ffi_guard("read", || {
        // SAFETY: this callback is only installed on TCP handles built by TcpHandle::new.
        let inner = unsafe { inner_of(stream) };
        let handler = handler_of(inner);
        if let Some(h) = handler {
            if nread > 0 {
                // SAFETY: libuv wrote `nread` bytes at the start of the buffer we lent.
                let data =
                    unsafe { std::slice::from_raw_parts((*buf).base as *const u8, nread as usize) };
                h.on_read(data);
            } else if nread < 0 {
                h.on_read_end(UvError::from_code(nread as i32));
            }
        }
    });
    // SAFETY: `buf` is the buffer lent in alloc_cb; the slice above is gone.
    unsafe { return_read_buffer(&*buf) };
}

unsafe extern "C" fn write_cb(req: *mut sys::uv_write_t, status: i32) {
    // SAFETY: `req` is the first field of a leaked Box<WriteReq> (repr of a Rust struct puts it
    // at the address we passed to uv_write); freed exactly once, here.
    let req = unsafe { Box::from_raw(req as *mut WriteReq) };
    ffi_guard("write", move || {
        let WriteReq { bufs, handler, .. } = *req;
        if let Some(h) = handler.as_ref().and_then(Weak::upgrade) {
            let status = if status < 0 {
                Err(UvError::with_context(status, "write"))
            } else {
                Ok(())
            };
            h.on_write_done(bufs, status);
        }
    });
}

unsafe extern "C" fn shutdown_cb(req: *mut sys::uv_shutdown_t, status: i32) {
    // SAFETY: as for write_cb, with Box<ShutdownReq>.
    let req = unsafe { Box::from_raw(req as *mut ShutdownReq) };
    ffi_guard("shutdown", move || {
        if let Some(h) = req.handler.as_ref().and_then(Weak::upgrade) {
            let status = if status < 0 {
                Err(UvError::with_context(status, "shutdown"))
            } else {
                Ok(())
            };
            h.on_shutdown(status);
        }
    });
}

unsafe extern "C" fn connection_cb(server: *mut sys::uv_stream_t, status: i32) {
    ffi_guard("connection", || {
        // SAFETY: installed only on handles built by TcpHandle::new.
        let inner = unsafe { inner_of(server) };
        // Take the callback out while it runs, so it may re-enter the handle (e.g. close it).
        if let Some(mut cb) = inner.take_listen() {
            let result = if status < 0 {
                Err(UvError::with_context(status, "incoming connection"))
            } else {
                Ok(())
            };
            cb(result);
            // SAFETY: the box is still alive (freed only in the close callback, which cannot
            // have run yet); only put the callback back if the handle was not closed meanwhile.
            let inner = unsafe { inner_of(server) };
            // SAFETY: `server` is a valid handle for uv_is_closing.
            if inner.callback.is_none()
                && unsafe { sys::uv_is_closing(server as *mut sys::uv_handle_t) } == 0
            {
                inner.callback = Some(Box::new(Callback::Listen(cb)));
            }
        }
    });
}

unsafe extern "C" fn connect_cb(req: *mut sys::uv_connect_t, status: i32) {
    // SAFETY: first field of a leaked Box<ConnectReq>, freed exactly once here.
    let req = unsafe { Box::from_raw(req as *mut ConnectReq) };
    ffi_guard("connect", move || {
        // SAFETY: the handle outlives its pending connect request (libuv cancels the request
        // before the handle's close callback frees the box).
        let inner = unsafe { &mut *req.handle };
        if let Some(cb) = inner.take_connect() {
            let result = if status < 0 {
                Err(UvError::with_context(status, "connect"))
            } else {
                Ok(())
            };
            cb(result);
        }
    });
}

/// Closes a descriptor that could not be adopted.
///
/// # Safety
/// `fd` must be an open descriptor owned by the caller.
#[cfg(unix)]
unsafe fn libc_close(fd: std::os::raw::c_int) {
    use std::os::fd::FromRawFd;
    // SAFETY: caller's contract; the OwnedFd closes it on drop.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
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
