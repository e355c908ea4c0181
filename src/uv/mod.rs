//! The libuv layer: the only code that calls libuv.
//!
//! Every handle lives on the heap at a stable address and is freed in its close callback: in a
//! box of its own (see `handle.rs`), or, for TCP, inside its owner's `Rc` allocation (see
//! `tcp.rs`). Nothing here is `Send`: a loop and its
//! handles belong to the thread that runs the loop; [`Remote`] is the one way in from another
//! thread.

mod addr;
mod async_handle;
mod buf;
pub mod dns;
mod error;
mod event_loop;
pub(crate) mod handle;
mod random;
mod signal_handle;
mod tcp;
mod timer;

pub use addr::parse_host;
pub use async_handle::{Async, Closed, Remote};
pub use buf::OwnedBuf;
pub use error::UvError;
pub use event_loop::{close_default_loop, default_loop, run, Loop, OwnedLoop, RunMode};
pub use handle::panic_message;
pub use random::fill_random;
pub use signal_handle::{SignalHandle, SIGINT, SIGTERM};
#[cfg(unix)]
pub use tcp::take_systemd_listener;
pub(crate) use tcp::{EmbedsTcp, TcpCell, TcpRef};
pub use tcp::{StreamHandler, TcpHandle, MAX_IOVECS};
pub use timer::Timer;

/// The raw libuv bindings, for embedding code that needs them (e.g. `uv_loop_t`).
pub use libuv_sys2 as sys;
