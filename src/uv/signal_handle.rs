//! Process signals (SIGINT, SIGTERM, ...) delivered on the loop (`uv_signal_t`).

use std::ptr::NonNull;

use libuv_sys2 as sys;

use super::error::{check, UvError};
use super::event_loop::Loop;
use super::handle::{close_boxed, ffi_guard};

/// `SIGINT` (Ctrl-C).
pub const SIGINT: i32 = 2;
/// `SIGTERM` (the polite stop request of service managers).
pub const SIGTERM: i32 = 15;

struct SignalInner {
    raw: sys::uv_signal_t,
    callback: Option<Box<dyn FnMut(i32)>>,
}

/// Watches one signal number on a loop. Dropping it stops watching and closes the handle.
pub struct SignalHandle {
    inner: NonNull<SignalInner>,
}

impl SignalHandle {
    /// Creates a signal watcher on `lp`.
    pub fn new(lp: Loop) -> Result<SignalHandle, UvError> {
        let inner = Box::into_raw(Box::new(SignalInner {
            // SAFETY: plain C data, initialised by uv_signal_init.
            raw: unsafe { std::mem::zeroed() },
            callback: None,
        }));
        // SAFETY: valid, uniquely owned.
        let rc = unsafe { sys::uv_signal_init(lp.as_raw(), &mut (*inner).raw) };
        if rc < 0 {
            // SAFETY: init failed; libuv holds no reference.
            drop(unsafe { Box::from_raw(inner) });
            return Err(UvError::with_context(rc, "uv_signal_init"));
        }
        // SAFETY: valid pointer.
        unsafe { (*inner).raw.data = inner as *mut std::ffi::c_void };
        Ok(SignalHandle {
            // SAFETY: never null.
            inner: unsafe { NonNull::new_unchecked(inner) },
        })
    }

    /// Calls `callback(signum)` on the loop each time `signum` arrives.
    pub fn start(&self, signum: i32, callback: impl FnMut(i32) + 'static) -> Result<(), UvError> {
        // SAFETY: the box is alive while `self` is; no other reference is live.
        let inner = unsafe { &mut *self.inner.as_ptr() };
        inner.callback = Some(Box::new(callback));
        // SAFETY: initialised handle.
        let rc = unsafe { sys::uv_signal_start(&mut inner.raw, Some(signal_cb), signum) };
        check(rc, || format!("watch signal {signum}")).map(|_| ())
    }

    /// Stops watching.
    pub fn stop(&self) {
        // SAFETY: initialised handle.
        unsafe { sys::uv_signal_stop(&mut (*self.inner.as_ptr()).raw) };
    }

    /// Lets the loop exit while this watcher is active.
    pub fn unref(&self) {
        // SAFETY: initialised, open handle.
        unsafe {
            super::handle::unref(&mut (*self.inner.as_ptr()).raw as *mut _ as *mut sys::uv_handle_t)
        }
    }
}

impl Drop for SignalHandle {
    fn drop(&mut self) {
        // SAFETY: handle embedded in the Box<SignalInner> at `data`; freed in the close callback.
        unsafe {
            close_boxed::<SignalInner>(
                &mut (*self.inner.as_ptr()).raw as *mut _ as *mut sys::uv_handle_t,
            )
        }
    }
}

unsafe extern "C" fn signal_cb(handle: *mut sys::uv_signal_t, signum: i32) {
    ffi_guard("signal", || {
        // SAFETY: `data` is the box, alive until its close callback.
        let inner = unsafe { &mut *((*handle).data as *mut SignalInner) };
        if let Some(mut cb) = inner.callback.take() {
            cb(signum);
            // SAFETY: still alive (close callbacks run later).
            let inner = unsafe { &mut *((*handle).data as *mut SignalInner) };
            // SAFETY: valid handle.
            let closing = unsafe { sys::uv_is_closing(handle as *mut sys::uv_handle_t) } != 0;
            if inner.callback.is_none() && !closing {
                inner.callback = Some(cb);
            }
        }
    });
}
