//! Posting work to a loop from other threads (`uv_async_t`).

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use libuv_sys2 as sys;

use super::error::UvError;
use super::event_loop::Loop;
use super::handle::{close_boxed, ffi_guard, panic_message};

type Job = Box<dyn FnOnce() + Send>;

/// The queue shared between the loop and the threads that post to it.
struct Mailbox {
    state: Mutex<MailboxState>,
}

struct MailboxState {
    jobs: Vec<Job>,
    /// The async handle while it is open; null once the loop side closed it, after which
    /// posts fail instead of touching freed memory.
    raw: *mut sys::uv_async_t,
}

// SAFETY: `raw` is only dereferenced (by uv_async_send, which is thread-safe) while the mutex
// is held and the handle is known to be open; the loop side nulls it under the same mutex
// before closing the handle.
unsafe impl Send for MailboxState {}

struct AsyncInner {
    raw: sys::uv_async_t,
    mailbox: Arc<Mailbox>,
}

/// The loop side of a cross-thread mailbox. Closures posted through its [`Remote`]s run on
/// the loop thread, in the order they were posted. Dropping it closes the handle; posts after
/// that fail with [`Closed`].
pub struct Async {
    inner: NonNull<AsyncInner>,
}

/// A `Send + Sync` handle that runs closures on the loop of its [`Async`].
#[derive(Clone)]
pub struct Remote {
    mailbox: Arc<Mailbox>,
}

/// The loop side is gone: the posted closure was not run (it is returned inside).
pub struct Closed(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(the loop no longer accepts work)")
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event loop's mailbox is closed (server stopped or loop gone)")
    }
}

impl std::error::Error for Closed {}

impl Async {
    /// Creates the mailbox on `lp`. While it is open it keeps the loop alive unless
    /// [`Async::unref`] is called.
    pub fn new(lp: Loop) -> Result<Async, UvError> {
        let mailbox = Arc::new(Mailbox {
            state: Mutex::new(MailboxState {
                jobs: Vec::new(),
                raw: std::ptr::null_mut(),
            }),
        });
        let inner = Box::into_raw(Box::new(AsyncInner {
            // SAFETY: plain C data, initialised by uv_async_init.
            raw: unsafe { std::mem::zeroed() },
            mailbox: mailbox.clone(),
        }));
        // SAFETY: `inner` is valid and uniquely owned.
        let rc = unsafe { sys::uv_async_init(lp.as_raw(), &mut (*inner).raw, Some(async_cb)) };
        if rc < 0 {
            // SAFETY: init failed; libuv holds no reference.
            drop(unsafe { Box::from_raw(inner) });
            return Err(UvError::with_context(rc, "uv_async_init"));
        }
        // SAFETY: valid pointer.
        unsafe { (*inner).raw.data = inner as *mut std::ffi::c_void };
        // SAFETY: as above; publish the handle to posting threads.
        mailbox.state.lock().unwrap_or_else(|e| e.into_inner()).raw = unsafe { &mut (*inner).raw };
        Ok(Async {
            // SAFETY: never null.
            inner: unsafe { NonNull::new_unchecked(inner) },
        })
    }

    /// A handle other threads use to post closures.
    pub fn remote(&self) -> Remote {
        // SAFETY: the box is alive while `self` is.
        let mailbox = unsafe { (*self.inner.as_ptr()).mailbox.clone() };
        Remote { mailbox }
    }

    /// Lets the loop exit while this handle is open.
    pub fn unref(&self) {
        // SAFETY: initialised, open handle.
        unsafe {
            super::handle::unref(&mut (*self.inner.as_ptr()).raw as *mut _ as *mut sys::uv_handle_t)
        }
    }
}

impl Drop for Async {
    fn drop(&mut self) {
        // SAFETY: the box is alive until the close callback below.
        let inner = unsafe { &mut *self.inner.as_ptr() };
        let leftover = {
            let mut st = inner
                .mailbox
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            st.raw = std::ptr::null_mut();
            std::mem::take(&mut st.jobs)
        };
        if !leftover.is_empty() {
            log::debug!(
                "dropping {} job(s) posted to a closing loop",
                leftover.len()
            );
        }
        drop(leftover);
        // SAFETY: initialised handle embedded in the Box<AsyncInner> at `data`.
        unsafe { close_boxed::<AsyncInner>(&mut inner.raw as *mut _ as *mut sys::uv_handle_t) }
    }
}

impl Remote {
    /// Runs `job` on the loop thread soon. Fails, handing the job back, if the loop side closed.
    pub fn post(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Closed> {
        let mut st = self.mailbox.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.raw.is_null() {
            return Err(Closed(Box::new(job)));
        }
        st.jobs.push(Box::new(job));
        // SAFETY: the handle is open (raw non-null under the lock); uv_async_send is the one
        // libuv function that may be called from any thread.
        unsafe { sys::uv_async_send(st.raw) };
        Ok(())
    }

    /// True while the loop side still accepts posts.
    pub fn is_open(&self) -> bool {
        !self
            .mailbox
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .raw
            .is_null()
    }
}

unsafe extern "C" fn async_cb(handle: *mut sys::uv_async_t) {
    ffi_guard("async", || {
        // SAFETY: `data` is the AsyncInner box, alive until its close callback.
        let inner = unsafe { &*((*handle).data as *const AsyncInner) };
        let mailbox = inner.mailbox.clone();
        // Swap the queue out so posting threads are never blocked while jobs run.
        let jobs =
            std::mem::take(&mut mailbox.state.lock().unwrap_or_else(|e| e.into_inner()).jobs);
        for job in jobs {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                log::error!("panic in a job posted to the loop: {}", panic_message(&*p));
            }
        }
    });
}
