//! Timers (`uv_timer_t`) with a Rust closure as callback.

use std::ptr::NonNull;

use libuv_sys2 as sys;

use super::error::{check, UvError};
use super::event_loop::Loop;
use super::handle::{close_boxed, ffi_guard};

struct TimerInner {
    raw: sys::uv_timer_t,
    callback: Option<Box<dyn FnMut()>>,
}

/// A libuv timer owned by Rust. Dropping it closes it.
///
/// The callback may restart, stop or even drop the timer from inside itself.
pub struct Timer {
    inner: NonNull<TimerInner>,
}

impl Timer {
    /// Creates a stopped timer on `lp`.
    pub fn new(lp: Loop) -> Result<Timer, UvError> {
        let inner = Box::into_raw(Box::new(TimerInner {
            // SAFETY: plain C data, initialised by uv_timer_init below.
            raw: unsafe { std::mem::zeroed() },
            callback: None,
        }));
        // SAFETY: `inner` is valid and uniquely owned.
        let rc = unsafe { sys::uv_timer_init(lp.as_raw(), &mut (*inner).raw) };
        if rc < 0 {
            // SAFETY: init failed; libuv holds no reference.
            drop(unsafe { Box::from_raw(inner) });
            return Err(UvError::with_context(rc, "uv_timer_init"));
        }
        // SAFETY: valid pointer; `data` leads callbacks back to the box.
        unsafe { (*inner).raw.data = inner as *mut std::ffi::c_void };
        Ok(Timer {
            // SAFETY: Box::into_raw is never null.
            inner: unsafe { NonNull::new_unchecked(inner) },
        })
    }

    fn raw(&self) -> *mut sys::uv_timer_t {
        // SAFETY: the box lives until our close callback, which runs after drop.
        unsafe { &mut (*self.inner.as_ptr()).raw }
    }

    /// Starts (or restarts) the timer: `callback` runs after `timeout_ms`, then every
    /// `repeat_ms` if that is non-zero.
    pub fn start(
        &self,
        timeout_ms: u64,
        repeat_ms: u64,
        callback: impl FnMut() + 'static,
    ) -> Result<(), UvError> {
        // SAFETY: single-threaded; no other reference to the inner box is live here.
        unsafe { (*self.inner.as_ptr()).callback = Some(Box::new(callback)) };
        // libuv counts from the loop's cached clock, which is stale when earlier callbacks of
        // this iteration took long (or the process was descheduled): refresh it so a timer
        // never fires before `timeout_ms` of real time have passed. One vDSO clock read.
        // SAFETY: the timer's loop pointer is valid while the handle is open.
        unsafe { sys::uv_update_time((*self.raw()).loop_) };
        // SAFETY: initialised timer.
        let rc = unsafe { sys::uv_timer_start(self.raw(), Some(timer_cb), timeout_ms, repeat_ms) };
        check(rc, || "uv_timer_start".to_string()).map(|_| ())
    }

    /// Stops the timer; the callback is kept for a later `again`.
    pub fn stop(&self) {
        // SAFETY: initialised timer.
        unsafe { sys::uv_timer_stop(self.raw()) };
    }

    /// Restarts a repeating timer with its repeat interval (`uv_timer_again`).
    pub fn again(&self) -> Result<(), UvError> {
        // SAFETY: initialised timer.
        let rc = unsafe { sys::uv_timer_again(self.raw()) };
        check(rc, || "uv_timer_again".to_string()).map(|_| ())
    }

    /// Lets the loop exit while this timer is still active (`uv_unref`).
    pub fn unref(&self) {
        // SAFETY: initialised, open handle.
        unsafe { super::handle::unref(self.raw() as *mut sys::uv_handle_t) }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the handle is embedded in the Box<TimerInner> at `data`. The callback closure
        // is dropped with the box in the close callback — not here, because the timer may be
        // dropped from inside its own callback.
        unsafe { close_boxed::<TimerInner>(self.raw() as *mut sys::uv_handle_t) }
    }
}

unsafe extern "C" fn timer_cb(handle: *mut sys::uv_timer_t) {
    ffi_guard("timer", || {
        // SAFETY: `data` is the timer's box, alive until its close callback.
        let inner = unsafe { &mut *((*handle).data as *mut TimerInner) };
        // Take the closure out while it runs so it may restart the timer with a new one.
        if let Some(mut cb) = inner.callback.take() {
            cb();
            // SAFETY: still alive (close callbacks run later in the loop iteration).
            let inner = unsafe { &mut *((*handle).data as *mut TimerInner) };
            // SAFETY: valid handle.
            let closing = unsafe { sys::uv_is_closing(handle as *mut sys::uv_handle_t) } != 0;
            if inner.callback.is_none() && !closing {
                inner.callback = Some(cb);
            }
        }
    });
}
