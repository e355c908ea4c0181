//! Answering a request from another thread.
//!
//! A [`RemoteConnection`] is a `Send` handle to one request's response. Its methods post a
//! closure to the server's loop (through `uv_async`); on the loop the closure finds the request
//! in a per-thread registry and acts on it. Nothing on the loop thread takes a lock except the
//! mailbox hand-off itself, so the single-threaded fast path is untouched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::server_connection::{ServerConnection, ServerConnectionPtr};
use super::status::StatusCode;
use crate::uv::{Closed, Remote};

thread_local! {
    /// Requests held for remote handles, on the loop thread that owns them.
    static REGISTRY: RefCell<HashMap<u64, ServerConnectionPtr>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The server's loop is gone (stopped): the action was not performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGone;

impl std::fmt::Display for LoopGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server's event loop no longer accepts work (server stopped)")
    }
}

impl std::error::Error for LoopGone {}

impl From<Closed> for LoopGone {
    fn from(_: Closed) -> Self {
        LoopGone
    }
}

/// A `Send` handle to a request's response: answer it from any thread.
///
/// Each method posts to the loop and returns at once. If the client disconnected meanwhile the
/// action is a harmless no-op (logged at debug level); [`RemoteConnection::is_connected`] tells
/// whether that has happened. Dropping the handle without completing the response makes the
/// library answer `500` (or finish the body) and log it.
pub struct RemoteConnection {
    remote: Remote,
    id: u64,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for RemoteConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RemoteConnection({}, connected={})",
            self.id,
            self.is_connected()
        )
    }
}

impl RemoteConnection {
    pub(crate) fn register(conn: ServerConnectionPtr, remote: Remote) -> RemoteConnection {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let connected = Arc::new(AtomicBool::new(conn.is_connected()));
        {
            let flag = connected.clone();
            conn.close
                .attach(move |_| flag.store(false, Ordering::Release));
        }
        REGISTRY.with(|r| r.borrow_mut().insert(id, conn));
        RemoteConnection {
            remote,
            id,
            connected,
        }
    }

    /// False once the client's connection closed (the response can no longer be delivered).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Runs `f` with the request on the loop thread: the general form of every other method.
    pub fn with(&self, f: impl FnOnce(&ServerConnection) + Send + 'static) -> Result<(), LoopGone> {
        let id = self.id;
        self.remote.post(move || {
            let conn = REGISTRY.with(|r| r.borrow().get(&id).cloned());
            match conn {
                Some(conn) if conn.is_connected() => f(&conn),
                _ => log::debug!("response for a request whose client is gone: ignored"),
            }
        })?;
        Ok(())
    }

    /// Sends a whole response: status, `Content-Type`, `Content-Length` and body.
    pub fn respond(
        &self,
        status: StatusCode,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<(), LoopGone> {
        let content_type = content_type.to_string();
        let body = body.into();
        self.with(move |c| {
            let _ = c.respond(status, &content_type, &body);
        })
    }

    /// Sends body bytes (the head first if needed), without copying them again on the loop.
    pub fn send(&self, data: Vec<u8>) -> Result<(), LoopGone> {
        self.with(move |c| {
            let _ = c.send_owned(data);
        })
    }

    /// Finishes the response (see [`ServerConnection::complete`]).
    pub fn complete(&self) -> Result<(), LoopGone> {
        self.with(|c| {
            let _ = c.complete();
        })
    }
}

impl Drop for RemoteConnection {
    fn drop(&mut self) {
        let id = self.id;
        // Releasing the loop-side reference may answer 500 if the response was left unfinished.
        let _ = self.remote.post(move || {
            let conn = REGISTRY.with(|r| r.borrow_mut().remove(&id));
            drop(conn);
        });
    }
}
