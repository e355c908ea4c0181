//! The event loop: the default loop, a loop of our own, or a caller's `uv_loop_t`.

use std::ptr::NonNull;

use libuv_sys2 as sys;

use super::error::{check, UvError};

/// How [`Loop::run`] runs the loop (libuv's `uv_run_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Run until no active and referenced handles or requests remain (or `stop()` is called).
    Default,
    /// Poll for I/O once, blocking if there is nothing pending.
    Once,
    /// Poll for I/O once without blocking.
    NoWait,
}

/// A reference to a libuv loop. It is `Copy` and does not own the loop: the default loop lives
/// for the whole program, an [`OwnedLoop`] owns its own, and a caller's loop (from C or other
/// Rust code, via [`Loop::from_raw`]) stays the caller's.
///
/// A loop is single-threaded: `Loop` is neither `Send` nor `Sync`. To reach a loop from another
/// thread, use [`super::Async`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop {
    raw: NonNull<sys::uv_loop_t>,
}

impl Loop {
    /// The process-wide default loop (`uv_default_loop()`), as icey's `uv::defaultLoop()`.
    pub fn default_loop() -> Loop {
        // SAFETY: uv_default_loop has no preconditions; it returns null only when allocation
        // fails, which we treat like any other out-of-memory condition.
        let raw = unsafe { sys::uv_default_loop() };
        Loop {
            raw: NonNull::new(raw).expect("uv_default_loop: out of memory"),
        }
    }

    /// Wraps a loop owned by someone else (for example a C program that calls `uv_run` itself).
    ///
    /// # Safety
    /// `raw` must point to an initialised `uv_loop_t` that outlives every handle created on it
    /// through this library, and must only be used from the thread that runs it.
    pub unsafe fn from_raw(raw: *mut sys::uv_loop_t) -> Option<Loop> {
        NonNull::new(raw).map(|raw| Loop { raw })
    }

    /// The raw pointer, for passing to libuv or to C code.
    pub fn as_raw(&self) -> *mut sys::uv_loop_t {
        self.raw.as_ptr()
    }

    /// Runs the loop (`uv_run`). Returns true if there are still active handles (only possible
    /// after `stop()` or with `Once` / `NoWait`).
    pub fn run(&self, mode: RunMode) -> bool {
        let mode = match mode {
            RunMode::Default => sys::uv_run_mode_UV_RUN_DEFAULT,
            RunMode::Once => sys::uv_run_mode_UV_RUN_ONCE,
            RunMode::NoWait => sys::uv_run_mode_UV_RUN_NOWAIT,
        };
        // SAFETY: the loop pointer is valid by construction; uv_run is called from the loop's
        // own thread because `Loop` is not `Send`.
        unsafe { sys::uv_run(self.as_raw(), mode) != 0 }
    }

    /// Asks a running loop to return from `run` as soon as possible (`uv_stop`).
    pub fn stop(&self) {
        // SAFETY: valid loop pointer, loop thread.
        unsafe { sys::uv_stop(self.as_raw()) }
    }

    /// The loop's cached time in milliseconds (`uv_now`): monotonic, updated once per iteration.
    #[inline]
    pub fn now(&self) -> u64 {
        // Read in place: `uv_now` only returns this field, and the HTTP layer asks for the
        // time on every response, where a call through the PLT costs more than the read.
        // SAFETY: valid loop pointer, read on the loop's thread (`Loop` is not `Send`).
        unsafe { (*self.as_raw()).time }
    }

    /// Refreshes the loop's cached time (`uv_update_time`).
    pub fn update_time(&self) {
        // SAFETY: valid loop pointer, loop thread.
        unsafe { sys::uv_update_time(self.as_raw()) }
    }

    /// True if the loop has active and referenced handles or requests (`uv_loop_alive`).
    pub fn is_alive(&self) -> bool {
        // SAFETY: valid loop pointer.
        unsafe { sys::uv_loop_alive(self.as_raw()) != 0 }
    }

    /// Counts the handles still open on the loop, closing or not (diagnostics and tests).
    pub fn handle_count(&self) -> usize {
        unsafe extern "C" fn count(_h: *mut sys::uv_handle_t, arg: *mut std::ffi::c_void) {
            // SAFETY: `arg` is the &mut usize passed to uv_walk below, alive for the call.
            unsafe { *(arg as *mut usize) += 1 };
        }
        let mut n: usize = 0;
        // SAFETY: valid loop pointer; the callback only touches `n`, which outlives uv_walk.
        unsafe {
            sys::uv_walk(
                self.as_raw(),
                Some(count),
                &mut n as *mut usize as *mut std::ffi::c_void,
            )
        };
        n
    }

    /// Closes the loop (`uv_loop_close`). Fails with `EBUSY` while handles are still open: run
    /// the loop until every handle's close callback has run first.
    ///
    /// # Safety
    /// Nothing may use the loop afterwards; for the default loop this ends its use by the
    /// whole program.
    pub unsafe fn close(&self) -> Result<(), UvError> {
        // SAFETY: guaranteed by the caller.
        let rc = unsafe { sys::uv_loop_close(self.as_raw()) };
        check(rc, || {
            format!(
                "uv_loop_close with {} handle(s) still open",
                self.handle_count()
            )
        })
        .map(|_| ())
    }
}

/// A loop this library allocated and owns. Dropping it runs the loop until every closed handle
/// has been released and then closes it; call [`OwnedLoop::close`] to see the result.
pub struct OwnedLoop {
    raw: Option<Box<sys::uv_loop_t>>,
}

impl OwnedLoop {
    /// Allocates and initialises a new loop (`uv_loop_init`).
    pub fn new() -> Result<OwnedLoop, UvError> {
        // SAFETY: uv_loop_t is a plain C struct; zeroed memory is a valid argument to
        // uv_loop_init, which initialises every field.
        let mut raw: Box<sys::uv_loop_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `raw` is a valid, writable uv_loop_t with a stable heap address.
        let rc = unsafe { sys::uv_loop_init(&mut *raw) };
        check(rc, || "uv_loop_init".to_string())?;
        Ok(OwnedLoop { raw: Some(raw) })
    }

    /// The loop, to create handles on and to run.
    pub fn handle(&self) -> Loop {
        let raw = self.raw.as_ref().expect("loop already closed");
        Loop {
            raw: NonNull::from(&**raw),
        }
    }

    /// Runs the loop until the close callbacks of closed handles have run, then closes it.
    /// Returns an error naming the number of handles still open if some never closed.
    pub fn close(mut self) -> Result<(), UvError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), UvError> {
        let Some(raw) = self.raw.as_mut() else {
            return Ok(());
        };
        let lp = Loop {
            raw: NonNull::from(&mut **raw),
        };
        // Let pending close callbacks run so their memory is released.
        lp.run(RunMode::NoWait);
        // SAFETY: we own the loop and nothing uses it after this point on success.
        let result = unsafe { lp.close() };
        if result.is_ok() {
            self.raw = None;
        }
        result
    }
}

impl Drop for OwnedLoop {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            // The loop cannot be freed while libuv still references handles on it: leak it
            // rather than free memory libuv still points into.
            log::error!("leaking event loop: {e}");
            if let Some(raw) = self.raw.take() {
                std::mem::forget(raw);
            }
        }
    }
}

/// The default loop, as icey's `uv::defaultLoop()`.
pub fn default_loop() -> Loop {
    Loop::default_loop()
}

/// Ends a program's use of the default loop: runs pending close callbacks, then
/// `uv_loop_close`. Fails (naming how many handles are still open) if something was not closed,
/// which makes it a leak check at the end of `main`. Call it last: nothing may use the default
/// loop (or a `Loop` copy of it) afterwards, except `default_loop()`, which starts a fresh one.
pub fn close_default_loop() -> Result<(), UvError> {
    let lp = Loop::default_loop();
    lp.run(RunMode::NoWait);
    // SAFETY: the caller's contract above; the default loop's memory is static inside libuv,
    // and libuv re-initialises it if uv_default_loop() is called again.
    unsafe { lp.close() }
}

/// Runs `lp` in `mode`, as icey's `uv_run(loop, UV_RUN_DEFAULT)`.
pub fn run(lp: Loop, mode: RunMode) -> bool {
    lp.run(mode)
}
