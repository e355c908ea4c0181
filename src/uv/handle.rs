//! What every handle type shares: heap placement, the close-then-free protocol, and the guard
//! that keeps a panic from unwinding into C.
//!
//! Each handle lives in a `Box<Inner>` whose first use is the libuv struct; `data` points back
//! at the box. The Rust owner holds a raw pointer and never frees the box itself: it calls
//! `uv_close`, and the close callback frees it. Until then libuv may still call back, so the
//! box must stay put; after it, nothing may touch it. (TCP handles follow the same rule inside
//! their owner's allocation instead of a box of their own: see `tcp.rs`.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use libuv_sys2 as sys;

/// Runs `f` from an `extern "C"` callback. A panic must not unwind into libuv's C frames:
/// it is caught and logged here; the callbacks above this layer already catch application
/// panics, so reaching this is a library bug worth shouting about.
#[inline]
pub(crate) fn ffi_guard<F: FnOnce()>(what: &'static str, f: F) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = panic_message(&*payload);
        log::error!("panic in libuv {what} callback (caught at the FFI boundary): {msg}");
    }
}

/// Extracts the text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Close callback that frees the `Box<T>` whose address is in the handle's `data`.
///
/// # Safety
/// Must only be installed by `close_boxed::<T>` for a handle whose `data` is a leaked `Box<T>`.
unsafe extern "C" fn free_boxed<T>(handle: *mut sys::uv_handle_t) {
    // SAFETY: guaranteed by close_boxed's contract; libuv calls this exactly once.
    let data = unsafe { (*handle).data } as *mut T;
    if !data.is_null() {
        // SAFETY: `data` came from Box::into_raw::<T> and is freed only here.
        ffi_guard("close", || drop(unsafe { Box::from_raw(data) }));
    }
}

/// Starts closing a handle whose memory is the `Box<T>` at `data`; the box is freed in the close
/// callback. Idempotent: a handle already closing is left alone.
///
/// # Safety
/// `handle` must be an initialised handle embedded in a leaked `Box<T>` that `data` points to.
pub(crate) unsafe fn close_boxed<T>(handle: *mut sys::uv_handle_t) {
    // SAFETY: the handle is initialised (caller's contract).
    if unsafe { sys::uv_is_closing(handle) } != 0 {
        return;
    }
    // SAFETY: as above; free_boxed::<T> matches the box type by the caller's contract.
    unsafe { sys::uv_close(handle, Some(free_boxed::<T>)) }
}

/// Marks a handle as not keeping the loop alive (`uv_unref`).
///
/// # Safety
/// `handle` must be an initialised handle that is not closed.
pub(crate) unsafe fn unref(handle: *mut sys::uv_handle_t) {
    // SAFETY: caller's contract.
    unsafe { sys::uv_unref(handle) }
}
