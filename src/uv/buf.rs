//! Byte buffers handed to libuv for writing, and the loop thread's shared read buffer.

use std::cell::RefCell;
use std::sync::Arc;

use libuv_sys2 as sys;

/// Bytes that a write owns until libuv is done with them: the zero-copy way to send.
///
/// `Vec` and `Static` cost nothing to hand over; `Shared` lets one large body (say a 1 MiB file
/// held in memory) go to many connections at once without a copy per connection.
pub enum OwnedBuf {
    /// An owned vector.
    Vec(Vec<u8>),
    /// Bytes that live for the whole program (literals, leaked tables).
    Static(&'static [u8]),
    /// Reference-counted bytes shared between connections and threads.
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
}

impl OwnedBuf {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            OwnedBuf::Vec(v) => v,
            OwnedBuf::Static(s) => s,
            OwnedBuf::Shared(a) => (**a).as_ref(),
        }
    }

    /// Number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when there are no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for OwnedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            OwnedBuf::Vec(_) => "Vec",
            OwnedBuf::Static(_) => "Static",
            OwnedBuf::Shared(_) => "Shared",
        };
        write!(f, "OwnedBuf::{kind}({} bytes)", self.len())
    }
}

impl From<Vec<u8>> for OwnedBuf {
    fn from(v: Vec<u8>) -> Self {
        OwnedBuf::Vec(v)
    }
}

impl From<String> for OwnedBuf {
    fn from(s: String) -> Self {
        OwnedBuf::Vec(s.into_bytes())
    }
}

impl From<&'static [u8]> for OwnedBuf {
    fn from(s: &'static [u8]) -> Self {
        OwnedBuf::Static(s)
    }
}

impl From<&'static str> for OwnedBuf {
    fn from(s: &'static str) -> Self {
        OwnedBuf::Static(s.as_bytes())
    }
}

impl<T: AsRef<[u8]> + Send + Sync + 'static> From<Arc<T>> for OwnedBuf {
    fn from(a: Arc<T>) -> Self {
        OwnedBuf::Shared(a)
    }
}

impl From<Arc<[u8]>> for OwnedBuf {
    fn from(a: Arc<[u8]>) -> Self {
        OwnedBuf::Shared(Arc::new(a))
    }
}

/// Builds a `uv_buf_t` over a byte slice. libuv only reads through the pointer for writes.
#[inline]
pub(crate) fn uv_buf(bytes: &[u8]) -> sys::uv_buf_t {
    sys::uv_buf_t {
        base: bytes.as_ptr() as *mut std::ffi::c_char,
        len: bytes.len() as _,
    }
}

/// Size of the loop thread's shared read buffer.
pub(crate) const READ_BUFFER_SIZE: usize = 64 * 1024;

/// One read buffer per thread, lent to whichever stream libuv is reading right now.
///
/// libuv always calls `alloc_cb` and then `read_cb` for the same stream before it allocates
/// for another, and our read callbacks consume (or copy) the bytes before returning, so a single
/// buffer serves every connection on the loop: an idle connection holds no read buffer at all.
/// Should a read ever be nested (a second loop run from inside a callback), the fallback is a
/// fresh allocation.
struct SharedReadBuffer {
    buf: Box<[u8]>,
    in_use: bool,
}

thread_local! {
    static READ_BUFFER: RefCell<SharedReadBuffer> = RefCell::new(SharedReadBuffer {
        buf: vec![0u8; READ_BUFFER_SIZE].into_boxed_slice(),
        in_use: false,
    });
}

/// Lends a buffer to libuv's `alloc_cb`.
pub(crate) fn lend_read_buffer() -> sys::uv_buf_t {
    READ_BUFFER.with(|cell| {
        let mut shared = cell.borrow_mut();
        if !shared.in_use {
            shared.in_use = true;
            sys::uv_buf_t {
                base: shared.buf.as_mut_ptr() as *mut std::ffi::c_char,
                len: shared.buf.len() as _,
            }
        } else {
            let fallback: Box<[u8]> = vec![0u8; READ_BUFFER_SIZE].into_boxed_slice();
            let len = fallback.len();
            let base = Box::into_raw(fallback) as *mut u8;
            sys::uv_buf_t {
                base: base as *mut std::ffi::c_char,
                len: len as _,
            }
        }
    })
}

/// Takes back a buffer lent by [`lend_read_buffer`] once `read_cb` is done with it.
///
/// # Safety
/// `buf` must be exactly what `lend_read_buffer` returned (or have a null base), and no slice
/// into it may be used afterwards.
pub(crate) unsafe fn return_read_buffer(buf: &sys::uv_buf_t) {
    if buf.base.is_null() {
        return;
    }
    let shared_base = READ_BUFFER.with(|cell| {
        let mut shared = cell.borrow_mut();
        let base = shared.buf.as_mut_ptr() as *mut std::ffi::c_char;
        if base == buf.base {
            shared.in_use = false;
        }
        base
    });
    if shared_base != buf.base {
        let slice = std::ptr::slice_from_raw_parts_mut(buf.base as *mut u8, buf.len);
        // SAFETY: a base that is not the shared buffer's was leaked from a Box<[u8]> of exactly
        // this length in lend_read_buffer, and is returned exactly once.
        drop(unsafe { Box::from_raw(slice) });
    }
}
