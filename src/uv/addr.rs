//! Conversion between `std::net::SocketAddr` and the C socket address structures.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};

use libuv_sys2 as sys;

use super::error::{check, UvError};

/// A socket address in C form, large enough for IPv4 and IPv6.
pub(crate) struct RawAddr {
    storage: sys::sockaddr_storage,
}

impl RawAddr {
    /// Converts through libuv's own parsers (`uv_ip4_addr` / `uv_ip6_addr`), which are portable.
    pub(crate) fn from_socket_addr(addr: &SocketAddr) -> Result<RawAddr, UvError> {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: sys::sockaddr_storage = unsafe { std::mem::zeroed() };
        let ip = CString::new(addr.ip().to_string()).expect("IP text has no NUL");
        let port = addr.port() as i32;
        let rc = match addr.ip() {
            IpAddr::V4(_) => {
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in;
                // `ip` is a valid C string for the call.
                unsafe {
                    sys::uv_ip4_addr(
                        ip.as_ptr(),
                        port,
                        &mut storage as *mut _ as *mut sys::sockaddr_in,
                    )
                }
            }
            IpAddr::V6(_) => {
                // SAFETY: as above, for sockaddr_in6.
                unsafe {
                    sys::uv_ip6_addr(
                        ip.as_ptr(),
                        port,
                        &mut storage as *mut _ as *mut sys::sockaddr_in6,
                    )
                }
            }
        };
        check(rc, || format!("invalid address {addr}"))?;
        Ok(RawAddr { storage })
    }

    pub(crate) fn zeroed() -> RawAddr {
        RawAddr {
            // SAFETY: plain old data.
            storage: unsafe { std::mem::zeroed() },
        }
    }

    pub(crate) fn as_ptr(&self) -> *const sys::sockaddr {
        &self.storage as *const _ as *const sys::sockaddr
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::sockaddr {
        &mut self.storage as *mut _ as *mut sys::sockaddr
    }

    pub(crate) fn capacity() -> i32 {
        std::mem::size_of::<sys::sockaddr_storage>() as i32
    }

    /// Reads the address back (after getsockname / getpeername filled it in).
    pub(crate) fn to_socket_addr(&self) -> Option<SocketAddr> {
        let family = self.storage.ss_family as u32;
        let mut text = [0 as std::ffi::c_char; 64];
        if family == sys::AF_INET {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(self.as_ptr() as *const sys::sockaddr_in) };
            // SAFETY: `text` is writable for its whole length.
            let rc = unsafe { sys::uv_ip4_name(sin, text.as_mut_ptr(), text.len()) };
            if rc != 0 {
                return None;
            }
            let ip = c_text(&text)?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::from_be(sin.sin_port)))
        } else if family == sys::AF_INET6 {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(self.as_ptr() as *const sys::sockaddr_in6) };
            // SAFETY: `text` is writable for its whole length.
            let rc = unsafe { sys::uv_ip6_name(sin6, text.as_mut_ptr(), text.len()) };
            if rc != 0 {
                return None;
            }
            let ip = c_text(&text)?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::from_be(sin6.sin6_port)))
        } else {
            None
        }
    }
}

fn c_text(text: &[std::ffi::c_char]) -> Option<&str> {
    let bytes: &[u8] =
        // SAFETY: c_char and u8 have the same size and layout.
        unsafe { std::slice::from_raw_parts(text.as_ptr() as *const u8, text.len()) };
    let end = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Parses a host given to a server or client: an IPv4 or IPv6 literal (brackets allowed), or
/// `localhost`. Other names need DNS, which a server bind does not do.
pub fn parse_host(host: &str, port: u16) -> Result<SocketAddr, String> {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    if trimmed.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    trimmed
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| {
            format!("host {host:?} is not an IP address (use e.g. 0.0.0.0, ::, 127.0.0.1)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_and_v6() {
        for text in ["127.0.0.1:1337", "[::1]:8080", "0.0.0.0:0", "[fe80::1]:443"] {
            let addr: SocketAddr = text.parse().unwrap();
            let raw = RawAddr::from_socket_addr(&addr).unwrap();
            assert_eq!(raw.to_socket_addr(), Some(addr));
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("localhost", 1).unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(parse_host("[::1]", 2).unwrap().to_string(), "[::1]:2");
        assert!(parse_host("example.com", 3)
            .unwrap_err()
            .contains("not an IP"));
    }
}
