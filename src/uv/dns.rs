//! Asynchronous host name resolution (`uv_getaddrinfo`) with a Rust closure as callback.
//!
//! Resolution runs on libuv's thread pool; the callback always runs later, on the loop thread,
//! never inside [`resolve`] — also for IP literals, which `getaddrinfo` answers without any
//! network query. A caller that wants to skip the thread-pool hop for literals parses them
//! itself (the HTTP client does).

use std::cell::Cell;
use std::ffi::CString;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::rc::Rc;

use libuv_sys2 as sys;

use super::addr::RawAddr;
use super::error::UvError;
use super::event_loop::Loop;
use super::handle::ffi_guard;

type ResolveCallback = Box<dyn FnOnce(Result<Vec<SocketAddr>, UvError>)>;

/// The request plus what its callback needs. `repr(C)` puts the libuv request first, so the
/// callback finds the box from the request pointer.
#[repr(C)]
struct ResolveReq {
    req: sys::uv_getaddrinfo_t,
    host: String,
    port: u16,
    callback: Option<ResolveCallback>,
    /// Shared with the [`Resolving`] token: the request's address while it is pending, cleared
    /// when the callback frees the box, so `cancel` never touches freed memory.
    pending: Rc<Cell<Option<NonNull<sys::uv_getaddrinfo_t>>>>,
}

/// A resolution in progress, returned by [`resolve`]. Dropping it does not cancel anything.
#[derive(Debug)]
pub struct Resolving {
    pending: Rc<Cell<Option<NonNull<sys::uv_getaddrinfo_t>>>>,
}

impl Resolving {
    /// Cancels the resolution if it has not started on the thread pool yet (`uv_cancel`); the
    /// callback then runs with an `EAI_CANCELED` error. A lookup already running cannot be
    /// stopped: its callback runs when it finishes. Returns whether the cancel took effect.
    pub fn cancel(&self) -> bool {
        let Some(req) = self.pending.get() else {
            return false;
        };
        // SAFETY: `pending` holds the request's address only while its box is alive (the
        // callback clears it before freeing); single-threaded, so it cannot be freed meanwhile.
        unsafe { sys::uv_cancel(req.as_ptr() as *mut sys::uv_req_t) == 0 }
    }

    /// True until the callback has run.
    pub fn is_pending(&self) -> bool {
        self.pending.get().is_some()
    }
}

/// Resolves `host` to the socket addresses of its TCP services on `port` (IPv4 and IPv6, in
/// the order the system resolver prefers). `callback` runs exactly once on the loop thread,
/// with at least one address or an error whose message names the host, e.g.
/// "cannot resolve nosuch.invalid: unknown node or service (EAI_NONAME)".
///
/// A pending resolution keeps the loop alive (it is a libuv request) until its callback ran.
/// Fails synchronously only when the request cannot be started (e.g. a host with a NUL byte).
pub fn resolve(
    lp: Loop,
    host: &str,
    port: u16,
    callback: impl FnOnce(Result<Vec<SocketAddr>, UvError>) + 'static,
) -> Result<Resolving, UvError> {
    // getaddrinfo wants the bare IPv6 literal, without URL brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let node = CString::new(bare).map_err(|_| {
        UvError::with_context(
            sys::uv_errno_t_UV_EINVAL,
            format!("cannot resolve {host:?}: the name contains a NUL byte"),
        )
    })?;
    let pending = Rc::new(Cell::new(None));
    let req = Box::into_raw(Box::new(ResolveReq {
        // SAFETY: plain C data, initialised by uv_getaddrinfo.
        req: unsafe { std::mem::zeroed() },
        host: host.to_string(),
        port,
        callback: Some(Box::new(callback)),
        pending: pending.clone(),
    }));
    // SAFETY: addrinfo is plain C data; zero is "no preference" for every field we leave.
    let mut hints: sys::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = sys::AF_UNSPEC as i32;
    hints.ai_socktype = sys::SOCK_STREAM as i32;
    // SAFETY: `req` is a valid, uniquely owned request; `node` and `hints` are copied by
    // libuv before uv_getaddrinfo returns. The box is freed in resolved_cb (or below).
    let rc = unsafe {
        sys::uv_getaddrinfo(
            lp.as_raw(),
            &mut (*req).req,
            Some(resolved_cb),
            node.as_ptr(),
            std::ptr::null(),
            &hints,
        )
    };
    if rc < 0 {
        // SAFETY: libuv did not take the request.
        drop(unsafe { Box::from_raw(req) });
        return Err(UvError::with_context(rc, format!("cannot resolve {host}")));
    }
    // SAFETY: `req` is valid until resolved_cb; its first field is the libuv request.
    pending.set(Some(unsafe { NonNull::new_unchecked(&mut (*req).req) }));
    Ok(Resolving { pending })
}

/// Copies the addresses out of a `getaddrinfo` result list, with `port` set.
///
/// # Safety
/// `list` is null or the head of a valid `addrinfo` list.
unsafe fn collect_addrs(list: *const sys::addrinfo, port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list (caller's contract).
        let ai = unsafe { &*cur };
        let len = ai.ai_addrlen as usize;
        if !ai.ai_addr.is_null() && len <= RawAddr::capacity() as usize {
            let mut raw = RawAddr::zeroed();
            // SAFETY: `ai_addr` points to `len` readable bytes; `raw` has room for them
            // (checked above); the regions do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ai.ai_addr as *const u8,
                    raw.as_mut_ptr() as *mut u8,
                    len,
                )
            };
            if let Some(mut addr) = raw.to_socket_addr() {
                addr.set_port(port);
                // The resolver may list an address once per protocol; keep the first.
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        cur = ai.ai_next;
    }
    out
}

unsafe extern "C" fn resolved_cb(
    req: *mut sys::uv_getaddrinfo_t,
    status: i32,
    res: *mut sys::addrinfo,
) {
    // SAFETY: `req` is the first field of the Box<ResolveReq> leaked in `resolve`; libuv calls
    // this exactly once, so the box is freed exactly once, here.
    let mut req = unsafe { Box::from_raw(req as *mut ResolveReq) };
    req.pending.set(None);
    ffi_guard("getaddrinfo", move || {
        let result = if status < 0 {
            Err(UvError::with_context(
                status,
                format!("cannot resolve {}", req.host),
            ))
        } else {
            // SAFETY: on success `res` is the list libuv got from getaddrinfo.
            let addrs = unsafe { collect_addrs(res, req.port) };
            if addrs.is_empty() {
                Err(UvError::with_context(
                    sys::uv_errno_t_UV_EAI_NODATA,
                    format!("cannot resolve {}: no IPv4 or IPv6 address", req.host),
                ))
            } else {
                Ok(addrs)
            }
        };
        // SAFETY: `res` is ours to free (null is allowed); nothing points into it any more.
        unsafe { sys::uv_freeaddrinfo(res) };
        if let Some(cb) = req.callback.take() {
            cb(result);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::{OwnedLoop, RunMode};
    use std::cell::RefCell;

    fn resolve_on_own_loop(host: &str) -> (Result<Vec<SocketAddr>, UvError>, usize) {
        let lp = OwnedLoop::new().unwrap();
        let out = Rc::new(RefCell::new(Vec::new()));
        let o = out.clone();
        let token = resolve(lp.handle(), host, 8080, move |r| o.borrow_mut().push(r)).unwrap();
        assert!(
            out.borrow().is_empty(),
            "the callback never runs inside resolve"
        );
        assert!(token.is_pending());
        lp.handle().run(RunMode::Default);
        assert!(!token.is_pending());
        assert!(!token.cancel(), "nothing left to cancel");
        lp.close().unwrap();
        let mut v = out.borrow_mut();
        let n = v.len();
        (v.pop().unwrap(), n)
    }

    #[test]
    fn ip_literals_resolve_without_dns() {
        let (r, calls) = resolve_on_own_loop("127.0.0.1");
        assert_eq!(calls, 1);
        assert_eq!(r.unwrap(), vec!["127.0.0.1:8080".parse().unwrap()]);
        let (r, _) = resolve_on_own_loop("[::1]");
        assert_eq!(r.unwrap(), vec!["[::1]:8080".parse().unwrap()]);
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        let (r, _) = resolve_on_own_loop("localhost");
        let addrs = r.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
    }

    #[test]
    fn unknown_name_names_the_host() {
        let (r, calls) = resolve_on_own_loop("nosuch.invalid");
        assert_eq!(calls, 1);
        let e = r.unwrap_err();
        assert!(
            e.to_string().starts_with("cannot resolve nosuch.invalid: "),
            "{e}"
        );
        assert!(e.name().starts_with("EAI_"), "{e}");
    }

    #[test]
    fn nul_byte_fails_synchronously() {
        let lp = OwnedLoop::new().unwrap();
        let e = resolve(lp.handle(), "a\0b", 1, |_| panic!("no callback")).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        lp.close().unwrap();
    }

    #[test]
    fn cancelled_lookup_reports_once() {
        let lp = OwnedLoop::new().unwrap();
        let out = Rc::new(RefCell::new(Vec::new()));
        // Queue several lookups so some are still waiting for a pool thread when cancelled.
        let tokens: Vec<Resolving> = (0..16)
            .map(|_| {
                let o = out.clone();
                resolve(lp.handle(), "localhost", 1, move |r| o.borrow_mut().push(r)).unwrap()
            })
            .collect();
        let cancelled = tokens.iter().filter(|t| t.cancel()).count();
        lp.handle().run(RunMode::Default);
        assert_eq!(out.borrow().len(), 16, "every callback ran exactly once");
        let mut saw_cancelled = 0;
        for r in out.borrow().iter() {
            if let Err(e) = r {
                assert_eq!(e.code(), sys::uv_errno_t_UV_EAI_CANCELED, "{e}");
                saw_cancelled += 1;
            }
        }
        assert_eq!(
            saw_cancelled, cancelled,
            "a successful cancel shows as EAI_CANCELED"
        );
        lp.close().unwrap();
    }
}
