//! Cryptographically secure random bytes from the operating system, through libuv.

use libuv_sys2 as sys;

use super::error::{check, UvError};

/// Fills `buf` with CSPRNG bytes (`uv_random`, synchronous form: no loop, no callback).
/// Used for WebSocket masking keys and handshake nonces.
pub fn fill_random(buf: &mut [u8]) -> Result<(), UvError> {
    // SAFETY: synchronous uv_random (null loop, req and cb) writes exactly buf.len() bytes.
    let rc = unsafe {
        sys::uv_random(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            buf.as_mut_ptr() as *mut std::ffi::c_void,
            buf.len(),
            0,
            None,
        )
    };
    check(rc, || "uv_random".to_string()).map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_bytes_differ() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        super::fill_random(&mut a).unwrap();
        super::fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
